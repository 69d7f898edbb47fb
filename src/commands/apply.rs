//! `oignon apply [FILE]`: plan, show, confirm, then apply host by host (all at once, or a rolling
//! `--serial N` that stops at the first failures so exits stay up). With a saved plan FILE, what
//! is applied is still the fresh plan, once checked equal to the file's (see `crate::saved`).

use super::plan::{close_all, plan_fleet, Planned, Targets};
use crate::apply::{apply_host, payload, HostResult};
use crate::cli::Global;
use crate::gather::{Reach, Target};
use crate::plan::{HostPlan, Plan};
use crate::transport::Transport;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A plan saved by `oignon plan --out FILE`: applied only if it is exactly what oignon plans now
    /// from the inventory, roles, secrets and hosts (refused otherwise, saying why). Nothing is
    /// taken from the file: the fresh plan is applied, the way (--local or SSH) the plan was made.
    #[arg(value_name = "PLAN_FILE")]
    pub plan_file: Option<PathBuf>,
    #[command(flatten)]
    pub targets: Targets,
    /// Do not ask for confirmation (needed when stdin is not a terminal).
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Rolling apply: N hosts at a time; stop after the first failed host (see --max-fail).
    #[arg(long, value_name = "N")]
    pub serial: Option<usize>,
    /// With --serial: how many failed hosts to tolerate before the rollout stops.
    #[arg(long, value_name = "K", default_value_t = 0)]
    pub max_fail: usize,
    /// Reboot hosts whose kernel command line needs it, after a successful apply, and wait for
    /// each to come back (a new boot id, answering over SSH).
    #[arg(long)]
    pub reboot: bool,
    /// With --reboot: how long to wait for a host to come back before calling it failed.
    #[arg(long, value_name = "SECONDS", default_value_t = 600)]
    pub reboot_timeout: u64,
    /// Do not print the content of files to create.
    #[arg(long)]
    pub brief: bool,
    /// Overwrite this relay's identity keys on its host with the ones in secrets/ (repeatable).
    /// Without it, a host whose relay identity differs from secrets/ is refused.
    #[arg(long, value_name = "NICKNAME")]
    pub replace_identity: Vec<String>,
}

pub fn run(g: &Global, a: Args) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Runtime::new()?;
    let (g, targets, saved) = match &a.plan_file {
        None => (g.clone(), a.targets.clone(), None),
        Some(path) => match prepare_saved(g, &a.targets, path)? {
            Some((g, t, s)) => (g, t, Some((path.as_path(), s))),
            None => return Ok(ExitCode::from(1)),
        },
    };
    let before_gather = |fleet: &crate::inventory::Fleet| match &saved {
        Some((path, s)) => saved_hosts_selected(fleet, &a.targets, path, s),
        None => Ok(()),
    };
    let Some(Planned {
        mut plan,
        hosts,
        reach,
        targets: reachable,
    }) = plan_fleet(&g, &targets, &rt, &before_gather)?
    else {
        return Ok(ExitCode::from(1));
    };

    // A saved plan is applied only as the fresh plan it must equal: what runs below is `plan`.
    if let Some((path, s)) = &saved {
        if let Err(msg) = check_saved(&g, path, s, &mut plan) {
            close_all(&rt, hosts);
            eprintln!("error: {msg}");
            return Ok(ExitCode::from(1));
        }
    }
    // A relay's identity is never overwritten by accident: that is how relays are lost.
    for h in plan.hosts.iter_mut().filter(|h| h.error.is_none()) {
        let refused: Vec<String> = h
            .changes
            .iter()
            .filter(|c| c.conflict)
            .filter_map(|c| c.instance.clone())
            .filter(|i| !a.replace_identity.iter().any(|r| r.eq_ignore_ascii_case(i)))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        if !refused.is_empty() {
            h.error = Some(format!(
                "refused: the identity of {} on this host differs from secrets/; nothing was written. If secrets/ is right, apply with {}",
                refused.join(", "),
                refused.iter().map(|n| format!("--replace-identity {n}")).collect::<Vec<_>>().join(" ")
            ));
        }
    }
    print!("{}", crate::show::plan_text(&plan, !a.brief));
    let todo: Vec<usize> = plan
        .hosts
        .iter()
        .enumerate()
        .filter(|(_, h)| h.error.is_none() && (h.has_changes() || (a.reboot && needs_reboot(h))))
        .map(|(i, _)| i)
        .collect();
    let failed_before = plan.hosts.iter().filter(|h| h.error.is_some()).count();
    if todo.is_empty() {
        close_all(&rt, hosts);
        println!("Nothing to apply.");
        return Ok(ExitCode::from(if failed_before > 0 { 1 } else { 0 }));
    }
    if !a.yes && !confirm(todo.len())? {
        close_all(&rt, hosts);
        return Ok(ExitCode::from(1));
    }

    let who = holder();
    let batch = a.serial.unwrap_or(usize::MAX).max(1);
    let budget = if a.serial.is_some() {
        a.max_fail
    } else {
        usize::MAX
    };
    let mut results: Vec<HostResult> = vec![];
    let mut failures = 0;
    let hosts = Arc::new(hosts);
    let sem = Arc::new(tokio::sync::Semaphore::new(a.targets.parallel.max(1)));
    let mut stopped_at = None;
    for (bi, chunk) in todo.chunks(batch).enumerate() {
        if failures > budget {
            stopped_at = Some(bi * batch);
            break;
        }
        let mut tasks = vec![];
        for &i in chunk {
            let hp = plan.hosts[i].clone();
            let hosts = hosts.clone();
            let who = who.clone();
            let sem = sem.clone();
            let reboot = a.reboot;
            let reboot_timeout = Duration::from_secs(a.reboot_timeout);
            let reach = reach.clone();
            let target = reachable.iter().find(|t| t.name == hp.host).cloned();
            tasks.push(rt.spawn(async move {
                let _permit = sem.acquire_owned().await;
                let (desired, gathered) = &hosts[i];
                let Some(t) = &gathered.transport else {
                    return HostResult {
                        host: hp.host.clone(),
                        ok: false,
                        done: vec![],
                        error: Some("not connected".into()),
                    };
                };
                let mut r = match payload(&hp, desired, &who) {
                    Ok(b) => apply_host(t, &hp, b).await,
                    Err(e) => HostResult {
                        host: hp.host.clone(),
                        ok: false,
                        done: vec![],
                        error: Some(e),
                    },
                };
                if r.ok
                    && reboot
                    && (needs_reboot(&hp)
                        || hp
                            .changes
                            .iter()
                            .any(|c| c.target.starts_with("/etc/default/grub")))
                {
                    match (t, target) {
                        // A local image is a directory: "rebooting" it would reboot this machine.
                        (Transport::Local(_), _) => r.done.push(
                            "not rebooted: a local image runs its new kernel command line when it boots (--reboot is for hosts reached over SSH)".into(),
                        ),
                        (_, None) => r.error = Some("reboot skipped: no SSH destination for this host (internal error)".into()),
                        (Transport::Ssh(_), Some(target)) => {
                            match reboot_and_wait(t, &reach, &target, reboot_timeout).await {
                                Ok(done) => r.done.push(done),
                                Err(e) => r.error = Some(e),
                            }
                        }
                    }
                }
                r
            }));
        }
        for t in tasks {
            let r = rt.block_on(t).unwrap_or_else(|e| HostResult {
                host: "?".into(),
                ok: false,
                done: vec![],
                error: Some(format!("internal error: {e}")),
            });
            if !r.ok || r.error.is_some() {
                failures += 1;
            }
            results.push(r);
        }
    }
    if let Ok(hosts) = Arc::try_unwrap(hosts) {
        close_all(&rt, hosts);
    }

    println!();
    for r in &results {
        if r.ok && r.error.is_none() {
            println!("{} {}: applied", console::style("✓").green(), r.host);
        } else {
            println!("{} {}: FAILED", console::style("✗").red(), r.host);
        }
        for d in &r.done {
            println!("    {d}");
        }
        if let Some(e) = &r.error {
            println!("    error: {}", e.replace('\n', "\n      "));
        }
    }
    if let Some(at) = stopped_at {
        let skipped: Vec<&str> = todo[at..]
            .iter()
            .map(|&i| plan.hosts[i].host.as_str())
            .collect();
        println!(
            "rollout stopped after {failures} failed host{} (--max-fail {}): not applied: {}",
            super::plural(failures),
            a.max_fail,
            skipped.join(", ")
        );
    }
    let ok = results.iter().filter(|r| r.ok && r.error.is_none()).count();
    println!(
        "Applied: {ok} host{} ok, {failures} failed, {} not reachable or refused.",
        super::plural(ok),
        failed_before
    );
    Ok(ExitCode::from(
        if failures > 0 || failed_before > 0 || stopped_at.is_some() {
            1
        } else {
            0
        },
    ))
}

/// Reads a saved plan and decides how to apply it, before any host is contacted: the way it
/// went (an apply option contradicting it is refused) and its inputs (a change to the inventory,
/// roles or secrets since is refused, naming the files). Returns the options to plan afresh with.
fn prepare_saved(
    g: &Global,
    t: &Targets,
    path: &Path,
) -> anyhow::Result<Option<(Global, Targets, Plan)>> {
    let saved = crate::saved::load(path)?;
    if saved.hosts.is_empty() {
        eprintln!("error: {} plans no host; nothing to apply", path.display());
        return Ok(None);
    }
    let transport = match saved
        .transport
        .resolve(t.local.as_deref(), g.ssh_config.as_deref())
    {
        Ok(tr) => tr,
        Err(msg) => {
            eprintln!("error: {}: {msg}", path.display());
            return Ok(None);
        }
    };
    let now = crate::saved::Inputs::read(&g.inventory, &g.roles, &g.secrets)
        .map_err(|e| anyhow::anyhow!(e))?;
    if let Err(msg) = inputs_unchanged(g, path, &saved, &now) {
        eprintln!("error: {msg}");
        return Ok(None);
    }
    let mut g = g.clone();
    g.ssh_config = transport.ssh_config.clone();
    let mut targets = t.clone();
    targets.local = transport.local.clone();
    if targets.hosts.is_empty() && targets.hosters.is_empty() {
        // Exact names: a host name is never taken as a glob here.
        targets.hosts = saved
            .hosts
            .iter()
            .map(|h| glob::Pattern::escape(&h.host))
            .collect();
    }
    Ok(Some((g, targets, saved)))
}

/// The inventory, roles and secrets are the ones the plan was made from.
fn inputs_unchanged(
    g: &Global,
    path: &Path,
    saved: &Plan,
    now: &crate::saved::Inputs,
) -> Result<(), String> {
    let changed = saved.inputs.changes_since(
        now,
        [
            g.inventory.as_path(),
            g.roles.as_path(),
            g.secrets.as_path(),
        ],
    );
    if changed.is_empty() {
        return Ok(());
    }
    Err(format!(
        "{} cannot be applied, nothing was done: {}\n  = help: a saved plan is applied only while the inventory, roles and secrets are the ones it was made from; plan again (`oignon plan --out {}`) and review the new plan",
        path.display(),
        changed.join("; "),
        path.display()
    ))
}

/// Before gathering: every host of the saved plan is in the inventory, once, and a selection
/// (`--host`/`--hoster` may narrow a saved plan) picks only hosts the plan has.
fn saved_hosts_selected(
    fleet: &crate::inventory::Fleet,
    t: &Targets,
    path: &Path,
    saved: &Plan,
) -> Result<(), String> {
    use crate::saved::clean;
    let mut names = std::collections::BTreeSet::new();
    for h in &saved.hosts {
        if !names.insert(h.host.as_str()) {
            return Err(format!(
                "{}: host `{}` appears twice in the saved plan; plan again",
                path.display(),
                clean(&h.host, 80)
            ));
        }
        if !fleet.hosts.iter().any(|x| x.name == h.host) {
            return Err(format!(
                "{}: host `{}` of the saved plan is not in the inventory; plan again",
                path.display(),
                clean(&h.host, 80)
            ));
        }
    }
    if !t.hosts.is_empty() || !t.hosters.is_empty() {
        let select = super::host_filter(&t.hosts, &t.hosters);
        let extra: Vec<&str> = fleet
            .hosts
            .iter()
            .filter(|h| select(h) && !names.contains(h.name.as_str()))
            .map(|h| h.name.as_str())
            .collect();
        if !extra.is_empty() {
            return Err(format!(
                "{}: --host/--hoster selects {}, which the saved plan does not plan; apply it without that host, or plan it (`oignon plan --out FILE`) and review",
                path.display(),
                extra.join(", ")
            ));
        }
    }
    Ok(())
}

/// After gathering: the fresh plan must be the saved one. A host that moved since it was planned
/// (its observed state differs) is refused on its own, as a stale plan, and the others proceed.
/// Any other difference means the file was edited after it was saved (or the inputs changed
/// while gathering): the whole apply is refused before anything is written.
fn check_saved(g: &Global, path: &Path, saved: &Plan, plan: &mut Plan) -> Result<(), String> {
    use crate::saved::{clean, differences, first, moved};
    inputs_unchanged(g, path, saved, &plan.inputs)?;
    let mut wrong: Vec<String> = vec![];
    for fresh in plan.hosts.iter_mut() {
        let Some(old) = saved.hosts.iter().find(|h| h.host == fresh.host) else {
            // The selection is checked before gathering; a host the file does not plan never runs.
            fresh.error = Some("not in the saved plan; plan it again".into());
            continue;
        };
        if fresh.error.is_some() {
            continue;
        }
        if let Some(e) = &old.error {
            fresh.error = Some(format!(
                "not applied: this host could not be planned when the plan was saved ({}); plan again",
                clean(e, 300)
            ));
            continue;
        }
        let paths = moved(old, fresh);
        if !paths.is_empty() {
            fresh.error = Some(format!(
                "stale plan: {} changed on the host since the plan was saved; plan again",
                first(&paths, 6).replace("; ", ", ")
            ));
            continue;
        }
        let d = differences(old, fresh);
        for line in d.iter().take(5) {
            wrong.push(format!("  {}: {line}", fresh.host));
        }
        if d.len() > 5 {
            wrong.push(format!(
                "  {}: and {} more differences",
                fresh.host,
                d.len() - 5
            ));
        }
    }
    if wrong.is_empty() {
        return Ok(());
    }
    Err(format!(
        "{} is not what oignon plans now from the inventory, roles, secrets and hosts; nothing was applied:\n{}\n  = help: a saved plan is a record to review, not a program: apply runs a fresh plan and refuses a saved one that differs from it (the file was edited after `oignon plan --out`, or the host changed in a way the stale-plan check does not see: a unit stopped, a handler left pending). Plan again and review the new plan",
        path.display(),
        wrong.join("\n")
    ))
}

/// The kernel's id of the running boot: a new one after every reboot (nspawn gives each boot of
/// a container its own too).
const BOOT_ID: &str = "cat /proc/sys/kernel/random/boot_id";

/// Pause between attempts to reach a rebooting host.
const REBOOT_POLL: Duration = Duration::from_secs(2);

async fn boot_id(t: &Transport) -> Result<String, String> {
    let out = t
        .run("boot-id", BOOT_ID, &[], vec![])
        .await
        .map_err(|e| e.to_string())?;
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.success() || id.is_empty() {
        return Err(format!(
            "cannot read the boot id ({BOOT_ID}): {}",
            out.stderr_text()
        ));
    }
    Ok(id)
}

/// `systemctl reboot`, then waits until the host answers over a NEW connection with a boot id
/// other than the one before: the host went down and came back. Until `timeout`, a refused or
/// timed-out connection, or the old boot still answering, is only waited on.
async fn reboot_and_wait(
    t: &Transport,
    reach: &Reach,
    target: &Target,
    timeout: Duration,
) -> Result<String, String> {
    let before = boot_id(t).await.map_err(|e| format!("not rebooted: {e}"))?;
    let started = Instant::now();
    match t.run("reboot", "systemctl reboot", &[], vec![]).await {
        Ok(o) if o.success() => {}
        Ok(o) => return Err(format!("reboot failed: {}", o.stderr_text())),
        // The host may close the connection while it goes down: only the new boot tells.
        Err(e) => tracing::debug!(host = target.name, "systemctl reboot: {e}"),
    }
    loop {
        let last;
        tokio::time::sleep(REBOOT_POLL).await;
        match reach.open(target).await {
            Err(e) => last = e,
            Ok(again) => {
                let id = boot_id(&again).await;
                again.close().await;
                match id {
                    Ok(id) if id != before => {
                        return Ok(format!(
                            "rebooted (--reboot): back after {:.0}s, boot id {} (was {})",
                            started.elapsed().as_secs_f64(),
                            short_id(&id),
                            short_id(&before)
                        ))
                    }
                    Ok(_) => last = "the old boot still answers: the reboot has not begun".into(),
                    Err(e) => last = e,
                }
            }
        }
        if started.elapsed() >= timeout {
            return Err(format!(
                "rebooted (`systemctl reboot` ran), but the host did not come back within {}s; last: {last}\n  = help: it may still be booting, or be stuck at its console: check it, then `oignon plan` (raise --reboot-timeout for slow hosts)",
                timeout.as_secs()
            ));
        }
    }
}

fn short_id(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

fn needs_reboot(h: &HostPlan) -> bool {
    h.notices.iter().any(|n| n.starts_with("reboot required"))
}

/// Asks on the terminal; without one, refuses (automation passes --yes).
fn confirm(n: usize) -> anyhow::Result<bool> {
    if !std::io::stdin().is_terminal() {
        eprintln!("error: apply changes hosts and needs confirmation: run it on a terminal, or pass --yes");
        return Ok(false);
    }
    print!(
        "Apply these changes to {n} host{}? Only 'yes' is accepted: ",
        super::plural(n)
    );
    std::io::stdout().flush()?;
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    if line.trim() == "yes" {
        Ok(true)
    } else {
        eprintln!("Apply cancelled.");
        Ok(false)
    }
}

/// Who holds the lock: `user@controller`.
fn holder() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    format!("{user}@{host} (oignon apply)")
}
