//! Applying plans: one host through `src/remote/apply.sh` (one round trip; its records and the
//! reading of its answer are in `src/remote/apply.rs`), and the rollout over the fleet (batches,
//! `--max-fail`, `--reboot`). The script takes the lock, refuses a host that moved since the plan,
//! writes temp files (owner and mode before content), validates them all, then renames each over
//! its target and runs the handlers, recorded as pending first so an interrupted apply never loses
//! one.

use crate::desired::DesiredHost;
use crate::error::HostError;
use crate::gather::{Gathered, Reach, Target};
use crate::plan::{HostPlan, Plan};
use crate::remote::apply::{answer, payload};
use crate::transport::Transport;
use serde::Serialize;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The embedded apply script, with the shared path functions.
pub const SCRIPT: &str = crate::remote::APPLY;

pub use crate::remote::apply::ScriptExit;

/// How one host's apply ended.
#[derive(Debug, Clone, Serialize)]
pub struct HostResult {
    pub host: String,
    pub ok: bool,
    /// What was done: paths written and removed, handlers run.
    pub done: Vec<String>,
    /// Why it failed, in the host's words where there are any.
    #[serde(serialize_with = "HostError::serialize_text")]
    pub error: Option<HostError>,
}

/// Runs the apply on one host and reads its answer.
pub async fn apply_host(t: &Transport, plan: &HostPlan, payload: Vec<u8>) -> HostResult {
    let started = std::time::Instant::now();
    let r = apply_host_inner(t, plan, payload).await;
    tracing::info!(host = plan.host, round_trips = 1, ok = r.ok, elapsed = ?started.elapsed(), "applied");
    r
}

async fn apply_host_inner(t: &Transport, plan: &HostPlan, payload: Vec<u8>) -> HostResult {
    let host = plan.host.clone();
    let (ok, done, error) = match t.run("apply", SCRIPT, &[], payload).await {
        Ok(out) => answer(&host, out.status, &out.stdout, &out.stderr_text()),
        Err(source) => (
            false,
            vec![],
            Some(HostError::Lost {
                host: host.clone(),
                source,
            }),
        ),
    };
    HostResult {
        host,
        ok,
        done,
        error,
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
                        error: Some(HostError::NotConnected {
                            host: hp.host.clone(),
                        }),
                    };
                };
                let mut r = match payload(&hp, desired, &who) {
                    Ok(b) => apply_host(t, &hp, b).await,
                    Err(source) => HostResult {
                        host: hp.host.clone(),
                        ok: false,
                        done: vec![],
                        error: Some(HostError::Payload {
                            host: hp.host.clone(),
                            source,
                        }),
                    },
                };
                if let Some(window_s) = crate::remote::apply::confirm_window(&r.done) {
                    match confirm_firewall(&reach, target.as_ref(), window_s).await {
                        Ok(done) => r.done.push(done),
                        Err(why) => {
                            r.ok = false;
                            r.error = Some(HostError::FirewallUnconfirmed {
                                host: hp.host.clone(),
                                why,
                                window_s,
                            });
                        }
                    }
                }
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
                        (_, None) => {
                            r.error = Some(HostError::Internal {
                                host: hp.host.clone(),
                                why: "reboot skipped: no SSH destination for this host (internal error)".into(),
                            })
                        }
                        (Transport::Ssh(_), Some(target)) => {
                            match reboot_and_wait(t, &reach, &target, reboot_timeout).await {
                                Ok(done) => r.done.push(done),
                                Err(why) => {
                                    r.error = Some(HostError::Reboot {
                                        host: hp.host.clone(),
                                        why,
                                    })
                                }
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
                error: Some(HostError::Internal {
                    host: "?".into(),
                    why: format!("internal error: {e}"),
                }),
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

/// Confirms a firewall the apply loaded, over a NEW SSH connection: if that connection gets
/// through the new rules, the host's revert timer is stopped. Retried until the window is nearly
/// over (a new ruleset may take a moment), never past it.
async fn confirm_firewall(
    reach: &Reach,
    target: Option<&Target>,
    window_s: u64,
) -> Result<String, String> {
    let (Some(ssh), Some(target)) = (&reach.ssh, target) else {
        return Err("not reached over SSH".into());
    };
    let started = Instant::now();
    // Keep a margin: a confirmation that lands after the revert would confirm nothing.
    let deadline = Duration::from_secs(window_s.saturating_sub(5).max(1));
    loop {
        let last = match ssh
            .run_fresh(
                &target.name,
                &target.ssh,
                crate::remote::apply::CONFIRM_SCRIPT,
            )
            .await
        {
            Ok((true, _)) => {
                return Ok(format!(
                    "firewall confirmed over a new SSH connection after {:.1}s",
                    started.elapsed().as_secs_f64()
                ))
            }
            Ok((false, said)) => return Err(said),
            Err(e) => e.to_string(),
        };
        if started.elapsed() + Duration::from_secs(2) >= deadline {
            return Err(last);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
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
    // Only a name to show (the lock, `plan`'s notice): an environment's stray control character
    // is shown as `?` rather than refused by the record encoder with a cryptic field number.
    format!("{user}@{host} (oignon apply)")
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
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
            Err(e) => last = e.to_string(),
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
