//! apply.sh's Rust half: the records it reads on stdin (through the one encoder, [`Records`]), the
//! names of its exit codes, and the parser of its answer into what was done and a typed
//! [`HostError`]. The script's header documents all three.

use crate::desired::DesiredHost;
use crate::error::HostError;
use crate::plan::{ChangeKind, HostPlan};
use crate::remote::record::{RecordError, Records};
use crate::role::ValidatorKind;

/// Why apply.sh's records could not be made; nothing was sent.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PayloadError {
    /// A value holds a control character (or another byte a record cannot carry).
    #[error(transparent)]
    Record(#[from] RecordError),
    /// The plan changes a file the fresh render does not hold (a bug).
    #[error("no content for {0}")]
    NoContent(String),
    /// The fresh render's content is not the one planned.
    #[error("the content of {0} is not the one planned (the inventory or secrets changed since): plan again")]
    NotPlanned(String),
}

/// The records for apply.sh, through the one encoder ([`Records`]): a value holding a control
/// character refuses the whole payload. Content travels base64-encoded on stdin, inside the SSH
/// channel.
///
/// Content comes from the fresh render (`desired`) only, never from a saved plan's file.
pub fn payload(plan: &HostPlan, desired: &DesiredHost, who: &str) -> Result<Vec<u8>, PayloadError> {
    use base64::Engine as _;
    let mut out = Records::new();
    out.push(&["L", who])?;
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
        out.push(&["E", &c.target, &want])?;
    }
    for c in plan
        .changes
        .iter()
        .filter(|c| c.kind == ChangeKind::CreateInstance)
    {
        out.push(&["I", &c.target])?;
    }
    for c in &plan.changes {
        match c.kind {
            ChangeKind::Create | ChangeKind::Update | ChangeKind::Metadata => {
                let file = desired
                    .files
                    .iter()
                    .find(|f| f.path == c.target)
                    .ok_or_else(|| PayloadError::NoContent(c.target.clone()))?;
                let bytes = file.content.bytes();
                if let Some(want) = &c.new_sha256 {
                    if file.sha256() != want {
                        return Err(PayloadError::NotPlanned(c.target.clone()));
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
                ])?;
            }
            ChangeKind::Remove => out.push(&["R", &c.target])?,
            ChangeKind::RemoveInstance => out.push(&["X", &c.target])?,
            ChangeKind::CreateInstance => {}
        }
    }
    for f in &desired.files {
        out.push(&["M", &f.path, f.sha256()])?;
        if f.content.is_secret() {
            out.push(&["S", &f.path])?;
        }
    }
    for h in &plan.handlers {
        let mut fields = vec!["H"];
        fields.extend(h.command.iter().map(String::as_str));
        out.push(&fields)?;
    }
    let kernel_changed = plan.changes.iter().any(|c| {
        desired
            .files
            .iter()
            .any(|f| f.path == c.target && f.reboot_required)
    });
    if kernel_changed {
        out.push(&["B"])?;
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

/// How a `done` line says that a firewall was loaded and waits for confirmation (apply.sh's
/// `CONFIRM SECONDS`); [`confirm_window`] reads it back.
pub const CONFIRM_PENDING: &str =
    "firewall loaded, the host restores the old ruleset unless confirmed within ";

/// The confirmation window of a firewall this apply loaded, if it loaded one.
pub fn confirm_window(done: &[String]) -> Option<u64> {
    done.iter().find_map(|d| {
        d.strip_prefix(CONFIRM_PENDING)?
            .strip_suffix('s')?
            .parse()
            .ok()
    })
}

/// Run on the host over a NEW connection to confirm a firewall change: stops the revert timer,
/// makes what was loaded the ruleset loaded at boot (oignon-firewall.service, enabled here), and
/// says so; or says that it is too late (the old ruleset is already back). An unconfirmed ruleset
/// never reaches the boot.
pub const CONFIRM_SCRIPT: &str = "if systemctl is-active --quiet oignon-nft-revert.timer; then \
systemctl stop oignon-nft-revert.timer && rm -f /var/lib/oignon/nft-before && \
mv -fT /var/lib/oignon/nft-loaded /var/lib/oignon/nft-confirmed && \
{ [ ! -f /etc/systemd/system/oignon-firewall.service ] || systemctl enable --quiet oignon-firewall.service; } && \
echo confirmed; \
else echo 'too late: the timer already restored the previous ruleset'; exit 3; fi";

/// Reads apply.sh's answer: whether it completed (exit 0), what was done (its lines, in the
/// user's words) and, if it failed, why (its exit status, with the answer lines that say more).
pub fn answer(
    host: &str,
    status: Option<i32>,
    stdout: &[u8],
    stderr: &str,
) -> (bool, Vec<String>, Option<HostError>) {
    let stdout = String::from_utf8_lossy(stdout);
    let host = host.to_string();
    let words = stderr.to_string();
    let mut done = vec![];
    let mut error = None;
    let mut stale = vec![];
    let mut invalid = vec![];
    let mut rolled: Vec<(String, String)> = vec![];
    for line in stdout.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        match f.as_slice() {
            ["WROTE", p] => done.push(format!("wrote {p}")),
            ["REMOVED", p] => done.push(format!("removed {p} (archived in /var/backups/oignon)")),
            ["RAN", c] => done.push(format!("ran `{c}`")),
            ["NOTE", text] => done.push(format!("note: {text}")),
            ["CONFIRM", secs] => done.push(format!("{CONFIRM_PENDING}{secs}s")),
            ["SKIPPED", c] => done.push(format!("skipped `{c}` (local image: runs at boot)")),
            ["SKIPPED", c, why] => done.push(format!("skipped `{c}` (local image): {why}")),
            ["OFFLINE", c] => done.push(format!(
                "ran `{c}` (local image: enabled offline, starts at boot)"
            )),
            ["STALE-LOCK", who] => done.push(format!(
                "took over a stale lock left by a dead apply ({who})"
            )),
            ["LOCKED", who] => {
                error = Some(HostError::Locked {
                    host: host.clone(),
                    holder: who.to_string(),
                })
            }
            ["STALE", p, want, have] => stale.push(format!(
                "{p} (planned sha256 {}, now {})",
                short(want),
                short(have)
            )),
            ["INVALID", p] => invalid.push(p.to_string()),
            ["BACKUP-FAILED", p] => {
                error = Some(HostError::BackupFailed {
                    host: host.clone(),
                    path: p.to_string(),
                    words: words.clone(),
                })
            }
            ["REFUSED", why] => {
                error = Some(HostError::Refused {
                    host: host.clone(),
                    why: why.to_string(),
                })
            }
            ["ROLLED-BACK", p, unit] => rolled.push((p.to_string(), unit.to_string())),
            ["HANDLER-FAILED", c] => {
                error = Some(HostError::HandlerFailed {
                    host: host.clone(),
                    command: c.to_string(),
                    words: words.clone(),
                })
            }
            _ => {}
        }
    }
    let exit = ScriptExit::of(status);
    match exit {
        ScriptExit::Done => {}
        ScriptExit::Stale => {
            error = Some(HostError::Stale {
                host,
                paths: stale,
                by_script: true,
            })
        }
        ScriptExit::Invalid => {
            error = Some(HostError::Invalid {
                host,
                paths: invalid,
                words,
            })
        }
        ScriptExit::RolledBack => {
            let unit = rolled
                .first()
                .map_or_else(|| "the relay".to_string(), |(_, u)| u.clone());
            let paths = rolled.into_iter().map(|(p, _)| p).collect();
            error = Some(HostError::RolledBack {
                host,
                unit,
                paths,
                words,
            });
        }
        // Their answer line (LOCKED, HANDLER-FAILED, REFUSED, BACKUP-FAILED) said it already.
        ScriptExit::Locked | ScriptExit::HandlerFailed | ScriptExit::Refused => {}
        ScriptExit::WriteFailed | ScriptExit::Other(_) => {
            if error.is_none() {
                let code = status.unwrap_or(-1);
                error = Some(HostError::ApplyFailed { host, code, words });
            }
        }
        ScriptExit::Killed => error = Some(HostError::Interrupted { host }),
    }
    (exit == ScriptExit::Done, done, error)
}

fn short(s: &str) -> &str {
    match s {
        "0" => "absent",
        s => s.get(..12).unwrap_or(s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::DesiredFile;
    use crate::plan::{Change, HandlerRun};

    #[test]
    fn each_failing_answer_is_its_typed_error_with_the_words_users_read() {
        let (ok, done, e) = answer(
            "h",
            Some(4),
            b"WROTE\t/a\nSTALE\t/etc/x\t0\tabcdef0123456789\n",
            "",
        );
        assert!(!ok);
        assert_eq!(done, ["wrote /a"]);
        let e = e.unwrap();
        assert!(matches!(&e, HostError::Stale { host, by_script: true, .. } if host == "h"));
        assert_eq!(e.to_string(), "the host changed since the plan, nothing was written: /etc/x (planned sha256 absent, now abcdef012345); plan again");
        let (_, _, e) = answer("h", Some(3), b"LOCKED\tme@ctl\n", "");
        assert!(matches!(e, Some(HostError::Locked { holder, .. }) if holder == "me@ctl"));
        let (_, _, e) = answer("h", Some(5), b"INVALID\t/etc/x\n", "bad key");
        assert_eq!(e.unwrap().to_string(), "validation failed for /etc/x, nothing was written (the old files stay active):\nbad key");
        let (_, _, e) = answer("h", Some(9), b"ROLLED-BACK\t/d.conf\ttor@a\n", "boom");
        assert!(e.unwrap().to_string().starts_with("refused by systemd at start: tor@a failed under the new /d.conf, so it was rolled back"));
        let (_, _, e) = answer("h", Some(7), b"", "disk full");
        assert_eq!(e.unwrap().to_string(), "apply failed (exit 7): disk full");
        let (_, _, e) = answer("h", None, b"", "");
        assert!(matches!(e, Some(HostError::Interrupted { .. })));
        let (ok, _, e) = answer("h", Some(0), b"RAN\tsysctl --system\n", "");
        assert!(ok && e.is_none());
    }

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
            firewall_window: 60,
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
            firewall_window: 60,
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
            assert!(matches!(e, PayloadError::Record(_)), "{e}");
            assert!(e.to_string().contains("control character"), "{e}");
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
