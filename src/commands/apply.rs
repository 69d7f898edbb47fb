//! `oignon apply [FILE]`: plan, show, confirm, then apply host by host (all at once, or a rolling
//! `--serial N` that stops at the first failures so exits stay up).

use super::plan::{close_all, plan_fleet, Planned, Targets};
use crate::apply::{apply_host, payload, ContentSource, HostResult};
use crate::cli::Global;
use crate::desired::DesiredHost;
use crate::plan::HostPlan;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A plan saved by `oignon plan --out FILE`: apply exactly it (refused where a host moved since).
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
    /// Reboot hosts whose kernel command line needs it, after a successful apply.
    #[arg(long)]
    pub reboot: bool,
    /// Do not print the content of files to create.
    #[arg(long)]
    pub brief: bool,
    /// Overwrite this relay's identity keys on its host with the ones in secrets/ (repeatable).
    /// Without it, a host whose relay identity differs from secrets/ is refused.
    #[arg(long, value_name = "NICKNAME")]
    pub replace_identity: Vec<String>,
}

/// Content of a saved plan: non-secret files from the plan, secrets re-rendered (and checked
/// against the planned hash by `payload`).
struct Saved<'a> {
    plan: &'a HostPlan,
    desired: &'a DesiredHost,
}

impl ContentSource for Saved<'_> {
    fn content(&self, path: &str) -> Option<Vec<u8>> {
        use base64::Engine as _;
        let c = self.plan.changes.iter().find(|c| c.target == path)?;
        match &c.content_base64 {
            Some(b) => base64::engine::general_purpose::STANDARD.decode(b).ok(),
            None => self.desired.content(path),
        }
    }
}

pub fn run(g: &Global, a: Args) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Runtime::new()?;
    let saved = match &a.plan_file {
        Some(p) => Some(crate::saved::load(p)?),
        None => None,
    };
    let mut targets = a.targets.clone();
    if let Some(s) = &saved {
        if targets.hosts.is_empty() && targets.hosters.is_empty() {
            targets.hosts = s.hosts.iter().map(|h| h.host.clone()).collect();
        }
    }
    let Some(Planned { mut plan, hosts }) = plan_fleet(g, &targets, &rt)? else {
        return Ok(ExitCode::from(1));
    };

    // A saved plan replaces the fresh one, host by host, unless the host moved since it was saved.
    let mut refused: Vec<String> = vec![];
    if let Some(s) = &saved {
        for fresh in plan.hosts.iter_mut() {
            let Some(old) = s.hosts.iter().find(|h| h.host == fresh.host) else {
                continue;
            };
            if fresh.error.is_some() {
                continue;
            }
            let moved: Vec<&String> = old
                .observed
                .iter()
                .filter(|(p, sha)| fresh.observed.get(*p).is_some_and(|now| now != *sha))
                .map(|(p, _)| p)
                .collect();
            if moved.is_empty() {
                *fresh = old.clone();
            } else {
                let list: Vec<&str> = moved.iter().map(|s| s.as_str()).collect();
                refused.push(fresh.host.clone());
                fresh.error = Some(format!(
                    "stale plan: {} changed on the host since the plan was saved; plan again",
                    list.join(", ")
                ));
                fresh.changes.clear();
                fresh.handlers.clear();
            }
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
            let from_saved = saved
                .as_ref()
                .is_some_and(|s| s.hosts.iter().any(|h| h.host == hp.host));
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
                let body = if from_saved {
                    payload(&hp, desired, &Saved { plan: &hp, desired }, &who)
                } else {
                    payload(&hp, desired, desired, &who)
                };
                let mut r = match body {
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
                    match t.run("reboot", "systemctl reboot", &[], vec![]).await {
                        Ok(o) if o.success() => r.done.push("rebooting (--reboot)".into()),
                        Ok(o) => r.error = Some(format!("reboot failed: {}", o.stderr_text())),
                        Err(e) => r.error = Some(format!("reboot failed: {e}")),
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
    let _ = refused;
    Ok(ExitCode::from(
        if failures > 0 || failed_before > 0 || stopped_at.is_some() {
            1
        } else {
            0
        },
    ))
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
