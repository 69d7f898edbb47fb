//! Applying one host's plan: the records fed to `src/remote/apply.sh` (one round trip), and what
//! its answer means. The script takes the lock, refuses a host that moved since the plan, writes
//! temp files (owner and mode before content), validates them all, then renames each over its
//! target and runs the handlers, recorded as pending first so an interrupted apply never loses one.

use crate::desired::DesiredHost;
use crate::plan::{ChangeKind, HostPlan};
use crate::remote::record::Records;
use crate::role::ValidatorKind;
use crate::transport::Transport;
use serde::Serialize;

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
                let bytes = desired
                    .files
                    .iter()
                    .find(|f| f.path == c.target)
                    .map(|f| f.content.bytes())
                    .ok_or_else(|| format!("no content for {}", c.target))?;
                if let Some(want) = &c.new_sha256 {
                    if crate::util::sha256_hex(bytes) != *want {
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
        out.push(&["M", &f.path, &f.sha256()]).map_err(e)?;
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
            ["HANDLER-FAILED", c] => r.error = Some(format!("handler `{c}` failed: {stderr}; it stays pending and runs on the next apply")),
            _ => {}
        }
    }
    match out.status {
        Some(0) => r.ok = true,
        Some(4) => r.error = Some(format!("the host changed since the plan, nothing was written: {}; plan again", stale.join(", "))),
        Some(5) => {
            r.error = Some(format!("validation failed for {}, nothing was written (the old files stay active):\n{stderr}", invalid.join(", ")))
        }
        Some(3) | Some(6) | Some(8) => {}
        Some(code) => {
            if r.error.is_none() {
                r.error = Some(format!("apply failed (exit {code}): {stderr}"));
            }
        }
        None => r.error = Some("the apply was interrupted (the remote shell was killed); files are each wholly old or wholly new: plan again".into()),
    }
    r
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
    use crate::desired::{Content, DesiredFile};
    use crate::plan::{Change, HandlerRun};

    #[test]
    fn payload_locks_expects_writes_and_lists_handlers_in_order() {
        let f = DesiredFile {
            path: "/etc/x".into(),
            content: Content::Plain(b"hi\n".to_vec()),
            owner: "root".into(),
            group: "root".into(),
            mode: 0o644,
            role: "r".into(),
            handler: None,
            validate: Some(crate::role::ValidatorKind::Sysctl),
            reboot_required: false,
            instance: None,
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
        let f = DesiredFile {
            path: "/etc/x".into(),
            content: Content::Plain(b"hi\n".to_vec()),
            owner: "root".into(),
            group: "root".into(),
            mode: 0o644,
            role: "r".into(),
            handler: None,
            validate: None,
            reboot_required: false,
            instance: None,
        };
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
