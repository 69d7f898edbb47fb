//! Applying one host's plan: the records fed to `src/remote/apply.sh` (one round trip), and what
//! its answer means. The script takes the lock, refuses a host that moved since the plan, writes
//! temp files (owner and mode before content), validates them all, then renames each over its
//! target and runs the handlers, recorded as pending first so an interrupted apply never loses one.

use crate::desired::DesiredHost;
use crate::gather::{Gathered, Reach, Target};
use crate::plan::{ChangeKind, HostPlan, Plan};
use crate::remote::record::Records;
use crate::role::ValidatorKind;
use crate::transport::Transport;
use serde::Serialize;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The embedded apply script, with the shared path functions.
pub const SCRIPT: &str = crate::remote::APPLY;

/// How one host's apply ended.
#[derive(Debug, Clone, Serialize)]
pub struct HostResult {
    pub host: String,
    pub ok: bool,
    /// What was done: paths written and removed, handlers run.
    pub done: Vec<String>,
    /// Why it failed, in the host's words where there are any.
    pub error: Option<String>,
}

/// The records for apply.sh, through the one encoder ([`Records`]): a value holding a control
/// character refuses the whole payload. Content travels base64-encoded on stdin, inside the SSH
/// channel.
///
/// Content comes from the fresh render (`desired`) only, never from a saved plan's file.
pub fn payload(plan: &HostPlan, desired: &DesiredHost, who: &str) -> Result<Vec<u8>, String> {
    use base64::Engine as _;
    let mut out = Records::new();
    let e = |e: crate::remote::record::RecordError| e.to_string();
    out.push(&["L", who]).map_err(e)?;
    for c in &plan.changes {
        if matches!(
            c.kind,
            ChangeKind::CreateInstance | ChangeKind::RemoveInstance
        ) {
            continue;
        }
        let want = plan
            .observed
            .get(&c.target)
            .cloned()
            .flatten()
            .unwrap_or_else(|| "0".into());
        out.push(&["E", &c.target, &want]).map_err(e)?;
    }
    for c in plan
        .changes
        .iter()
        .filter(|c| c.kind == ChangeKind::CreateInstance)
    {
        out.push(&["I", &c.target]).map_err(e)?;
    }
    for c in &plan.changes {
        match c.kind {
            ChangeKind::Create | ChangeKind::Update | ChangeKind::Metadata => {
                let file = desired
                    .files
                    .iter()
                    .find(|f| f.path == c.target)
                    .ok_or_else(|| format!("no content for {}", c.target))?;
                let bytes = file.content.bytes();
                if let Some(want) = &c.new_sha256 {
                    if file.sha256() != want {
                        return Err(format!("the content of {} is not the one planned (the inventory or secrets changed since): plan again", c.target));
                    }
                }
                let validate = c.validate.map_or("-", ValidatorKind::name);
                out.push(&[
                    "W",
                    &c.target,
                    c.owner.as_deref().unwrap_or("root"),
                    c.group.as_deref().unwrap_or("root"),
                    &format!("{:o}", c.mode.unwrap_or(0o644)),
                    validate,
                    c.instance.as_deref().unwrap_or("-"),
                    &base64::engine::general_purpose::STANDARD.encode(bytes),
                ])
                .map_err(e)?;
            }
            ChangeKind::Remove => out.push(&["R", &c.target]).map_err(e)?,
            ChangeKind::RemoveInstance => out.push(&["X", &c.target]).map_err(e)?,
            ChangeKind::CreateInstance => {}
        }
    }
    for f in &desired.files {
        out.push(&["M", &f.path, f.sha256()]).map_err(e)?;
    }
    for h in &plan.handlers {
        let mut fields = vec!["H"];
        fields.extend(h.command.iter().map(String::as_str));
        out.push(&fields).map_err(e)?;
    }
    let kernel_changed = plan.changes.iter().any(|c| {
        desired
            .files
            .iter()
            .any(|f| f.path == c.target && f.reboot_required)
    });
    if kernel_changed {
        out.push(&["B"]).map_err(e)?;
    }
    Ok(out.into_bytes())
}

/// What apply.sh's exit status says (the script's header documents the same codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScriptExit {
    /// 0: everything written and every handler run.
    Done,
    /// 3: another apply holds the host's lock (a `LOCKED` line says who).
    Locked,
    /// 4: the host changed since the plan (`STALE` lines); nothing written.
    Stale,
    /// 5: a validator refused a new file (`INVALID` lines); nothing written.
    Invalid,
    /// 6: a handler failed (`HANDLER-FAILED`); it stays pending.
    HandlerFailed,
    /// 7: a write failed (stderr says which).
    WriteFailed,
    /// 8: a record was refused or a backup failed (`REFUSED` / `BACKUP-FAILED`).
    Refused,
    /// 9: a new unit file made the first relay it restarted fail; every unit file of this apply
    /// was put back (`ROLLED-BACK` lines) and that relay started again under the old ones.
    RolledBack,
    /// Any other code.
    Other(i32),
    /// No code: the remote shell was killed.
    Killed,
}

impl ScriptExit {
    /// The meaning of an exit status (None: killed by a signal).
    pub fn of(status: Option<i32>) -> ScriptExit {
        match status {
            Some(0) => ScriptExit::Done,
            Some(3) => ScriptExit::Locked,
            Some(4) => ScriptExit::Stale,
            Some(5) => ScriptExit::Invalid,
            Some(6) => ScriptExit::HandlerFailed,
            Some(7) => ScriptExit::WriteFailed,
            Some(8) => ScriptExit::Refused,
            Some(9) => ScriptExit::RolledBack,
            Some(code) => ScriptExit::Other(code),
            None => ScriptExit::Killed,
        }
    }
}

/// Runs the apply on one host and reads its answer.
pub async fn apply_host(t: &Transport, plan: &HostPlan, payload: Vec<u8>) -> HostResult {
    let started = std::time::Instant::now();
    let r = apply_host_inner(t, plan, payload).await;
    tracing::info!(host = plan.host, round_trips = 1, ok = r.ok, elapsed = ?started.elapsed(), "applied");
    r
}

async fn apply_host_inner(t: &Transport, plan: &HostPlan, payload: Vec<u8>) -> HostResult {
    let mut r = HostResult {
        host: plan.host.clone(),
        ok: false,
        done: vec![],
        error: None,
    };
    let out = match t.run("apply", SCRIPT, &[], payload).await {
        Ok(o) => o,
        Err(e) => {
            r.error = Some(format!("{e} (files are each wholly old or wholly new; plan again to see where the host stands)"));
            return r;
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = out.stderr_text();
    let mut stale = vec![];
    let mut invalid = vec![];
    let mut rolled: Vec<(String, String)> = vec![];
    for line in stdout.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        match f.as_slice() {
            ["WROTE", p] => r.done.push(format!("wrote {p}")),
            ["REMOVED", p] => r.done.push(format!("removed {p} (archived in /var/backups/oignon)")),
            ["RAN", c] => r.done.push(format!("ran `{c}`")),
            ["NOTE", text] => r.done.push(format!("note: {text}")),
            ["SKIPPED", c] => r.done.push(format!("skipped `{c}` (local image: runs at boot)")),
            ["SKIPPED", c, why] => r.done.push(format!("skipped `{c}` (local image): {why}")),
            ["OFFLINE", c] => r.done.push(format!("ran `{c}` (local image: enabled offline, starts at boot)")),
            ["STALE-LOCK", who] => r.done.push(format!("took over a stale lock left by a dead apply ({who})")),
            ["LOCKED", who] => r.error = Some(format!("another apply holds the lock on this host: {who}; wait for it, or if it died, run apply again (a dead holder's lock is taken over)")),
            ["STALE", p, want, have] => stale.push(format!("{p} (planned sha256 {}, now {})", short(want), short(have))),
            ["INVALID", p] => invalid.push(p.to_string()),
            ["BACKUP-FAILED", p] => r.error = Some(format!("backing up {p} under /var/backups/oignon failed, nothing was replaced (the old files stay active): {stderr}; free space there, then apply again")),
            ["REFUSED", why] => r.error = Some(format!("refused by the host script, nothing was changed: {why}")),
            ["ROLLED-BACK", p, unit] => rolled.push((p.to_string(), unit.to_string())),
            ["HANDLER-FAILED", c] => r.error = Some(format!("handler `{c}` failed: {stderr}; it stays pending and runs on the next apply")),
            _ => {}
        }
    }
    match ScriptExit::of(out.status) {
        ScriptExit::Done => r.ok = true,
        ScriptExit::Stale => r.error = Some(format!("the host changed since the plan, nothing was written: {}; plan again", stale.join(", "))),
        ScriptExit::Invalid => {
            r.error = Some(format!("validation failed for {}, nothing was written (the old files stay active):\n{stderr}", invalid.join(", ")))
        }
        ScriptExit::RolledBack => {
            let paths: Vec<&str> = rolled.iter().map(|(p, _)| p.as_str()).collect();
            let unit = rolled.first().map_or("the relay", |(_, u)| u.as_str());
            r.error = Some(format!(
                "refused by systemd at start: {unit} failed under the new {}, so {} rolled back and {unit} started again under the old one; nothing of it is left changed. Fix the drop-in (the role's template or the inventory), then apply again:\n{stderr}",
                paths.join(", "),
                if paths.len() == 1 { "it was" } else { "they were" }
            ));
        }
        // Their answer line (LOCKED, HANDLER-FAILED, REFUSED, BACKUP-FAILED) said it already.
        ScriptExit::Locked | ScriptExit::HandlerFailed | ScriptExit::Refused => {}
        ScriptExit::WriteFailed | ScriptExit::Other(_) => {
            if r.error.is_none() {
                let code = out.status.unwrap_or(-1);
                r.error = Some(format!("apply failed (exit {code}): {stderr}"));
            }
        }
        ScriptExit::Killed => r.error = Some("the apply was interrupted (the remote shell was killed); files are each wholly old or wholly new: plan again".into()),
    }
    r
}

fn short(s: &str) -> &str {
    match s {
        "0" => "absent",
        s => s.get(..12).unwrap_or(s),
    }
}

/// How a rollout goes: all selected hosts at once, or `serial` at a time stopping once more than
/// `max_fail` hosts failed; at most `parallel` hosts at once either way.
#[derive(Debug, Clone)]
pub struct RolloutOptions {
    pub serial: Option<usize>,
    pub max_fail: usize,
    /// Reboot hosts whose kernel command line needs it (or whose grub changed), once applied, and
    /// wait for each to come back.
    pub reboot: bool,
    /// How long a rebooting host may take to come back before it counts as failed.
    pub reboot_timeout: Duration,
    pub parallel: usize,
}

/// How to reach the hosts again, over new connections (after a reboot).
pub struct Reconnect {
    pub reach: Arc<Reach>,
    pub targets: Vec<Target>,
}

/// How a rollout ended.
#[derive(Debug, Clone, Default)]
pub struct Rollout {
    /// One per host applied, in the order of the plan.
    pub results: Vec<HostResult>,
    pub failures: usize,
    /// When the rollout stopped early (`--max-fail` exceeded): the hosts never applied.
    pub skipped: Option<Vec<String>>,
}

impl Rollout {
    /// Hosts applied without error.
    pub fn ok(&self) -> usize {
        self.results
            .iter()
            .filter(|r| r.ok && r.error.is_none())
            .count()
    }
}

/// The hosts to apply (indices into `plan.hosts`): planned without error, and with something to
/// change (or a reboot to do, with `reboot`).
pub fn todo(plan: &Plan, reboot: bool) -> Vec<usize> {
    plan.hosts
        .iter()
        .enumerate()
        .filter(|(_, h)| h.error.is_none() && (h.has_changes() || (reboot && h.needs_reboot())))
        .map(|(i, _)| i)
        .collect()
}

/// Applies the `todo` hosts of `plan` in batches (one batch when not serial), each host through
/// its open connection in `hosts`, and closes every connection. One host's failure never stops
/// the others of its batch; more than `max_fail` failures stop the next batches.
pub fn rollout(
    rt: &tokio::runtime::Runtime,
    plan: &Plan,
    hosts: Vec<(DesiredHost, Gathered)>,
    again: &Reconnect,
    todo: &[usize],
    o: &RolloutOptions,
) -> Rollout {
    let who = holder();
    let batch = o.serial.unwrap_or(usize::MAX).max(1);
    let budget = if o.serial.is_some() {
        o.max_fail
    } else {
        usize::MAX
    };
    let mut out = Rollout::default();
    let hosts = Arc::new(hosts);
    let sem = Arc::new(tokio::sync::Semaphore::new(o.parallel.max(1)));
    for (bi, chunk) in todo.chunks(batch).enumerate() {
        if out.failures > budget {
            out.skipped = Some(
                todo[bi * batch..]
                    .iter()
                    .map(|&i| plan.hosts[i].host.clone())
                    .collect(),
            );
            break;
        }
        let mut tasks = vec![];
        for &i in chunk {
            let hp = plan.hosts[i].clone();
            let hosts = hosts.clone();
            let who = who.clone();
            let sem = sem.clone();
            let reboot = o.reboot;
            let reboot_timeout = o.reboot_timeout;
            let reach = again.reach.clone();
            let target = again.targets.iter().find(|t| t.name == hp.host).cloned();
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
                    && (hp.needs_reboot()
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
                out.failures += 1;
            }
            out.results.push(r);
        }
    }
    if let Ok(hosts) = Arc::try_unwrap(hosts) {
        crate::fleet::close_all(rt, hosts);
    }
    out
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::DesiredFile;
    use crate::plan::{Change, HandlerRun};

    #[test]
    fn payload_locks_expects_writes_and_lists_handlers_in_order() {
        let f = DesiredFile {
            validate: Some(crate::role::ValidatorKind::Sysctl),
            ..DesiredFile::for_test("/etc/x", b"hi\n")
        };
        let d = DesiredHost {
            name: "h".into(),
            files: vec![f.clone()],
            instances: vec![],
            kernel_params: None,
            notices: vec![],
        };
        let change: Change = serde_json::from_value(serde_json::json!({
            "kind": "update", "target": "/etc/x", "reason": "r", "drift": false, "secret": false,
            "old_sha256": "aa", "new_sha256": f.sha256(), "owner": "root", "group": "root", "mode": 420,
            "diff": null, "content_base64": null, "validate": "sysctl", "instance": null
        }))
        .unwrap();
        let plan = HostPlan {
            host: "h".into(),
            transport: "t".into(),
            error: None,
            changes: vec![change],
            handlers: vec![HandlerRun {
                command: vec!["sysctl".into(), "--system".into()],
                reason: "x".into(),
            }],
            notices: vec![],
            observed: [("/etc/x".to_string(), Some("aa".to_string()))].into(),
        };
        let p = String::from_utf8(payload(&plan, &d, "me@ctl").unwrap()).unwrap();
        assert_eq!(
            p,
            format!("L\tme@ctl\nE\t/etc/x\taa\nW\t/etc/x\troot\troot\t644\tsysctl\t-\taGkK\nM\t/etc/x\t{}\nH\tsysctl\t--system\n", f.sha256())
        );
    }

    #[test]
    fn payload_refuses_a_value_that_would_add_a_record() {
        let f = DesiredFile::for_test("/etc/x", b"hi\n");
        let d = DesiredHost {
            name: "h".into(),
            files: vec![f.clone()],
            instances: vec![],
            kernel_params: None,
            notices: vec![],
        };
        let change = |owner: &str, target: &str| -> Change {
            serde_json::from_value(serde_json::json!({
                "kind": "create", "target": target, "reason": "r", "drift": false, "secret": false,
                "old_sha256": null, "new_sha256": f.sha256(), "owner": owner, "group": "root", "mode": 420,
                "diff": null, "content_base64": null, "validate": null, "instance": null
            }))
            .unwrap()
        };
        for (owner, target) in [
            ("root\t\nH\ttouch /root/PWNED", "/etc/x"),
            ("root", "/etc/x\nH\ttouch /root/PWNED"),
            ("root\r", "/etc/x"),
        ] {
            let plan = HostPlan {
                host: "h".into(),
                transport: "t".into(),
                error: None,
                changes: vec![change(owner, target)],
                handlers: vec![],
                notices: vec![],
                observed: Default::default(),
            };
            let e = payload(&plan, &d, "me").unwrap_err();
            assert!(e.contains("control character"), "{e}");
        }
        let plan = HostPlan {
            host: "h".into(),
            transport: "t".into(),
            error: None,
            changes: vec![],
            handlers: vec![HandlerRun {
                command: vec!["systemctl".into(), "reload\nH\ttouch".into()],
                reason: "x".into(),
            }],
            notices: vec![],
            observed: Default::default(),
        };
        assert!(payload(&plan, &d, "me").is_err());
    }
}
