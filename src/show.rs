//! The plan as people read it: per host, per file, `+ ~ -` markers and unified diffs, a summary
//! line per host and one for the fleet (Terraform's layout, which operators already know).

use crate::plan::{ChangeKind, HostPlan, Plan};
use crate::text::plural;
use console::style;
use std::fmt::Write as _;

/// Renders the whole plan. `show_content`: include the full content of created files.
pub fn plan_text(plan: &Plan, show_content: bool) -> String {
    let mut out = String::new();
    for h in &plan.hosts {
        host_text(&mut out, h, show_content);
    }
    out.push_str(&fleet_summary(plan));
    out.push('\n');
    out
}

fn host_text(out: &mut String, h: &HostPlan, show_content: bool) {
    let _ = writeln!(out, "{} ({})", style(&h.host).bold(), h.transport);
    if let Some(e) = &h.error {
        let _ = writeln!(
            out,
            "  {} {}",
            style("error:").red().bold(),
            e.to_string().replace('\n', "\n    ")
        );
        let _ = writeln!(out);
        return;
    }
    for c in &h.changes {
        let (mark, painted) = match c.kind {
            ChangeKind::Create | ChangeKind::CreateInstance => ("+", style("+").green()),
            ChangeKind::Update | ChangeKind::Metadata => ("~", style("~").yellow()),
            ChangeKind::Remove | ChangeKind::RemoveInstance => ("-", style("-").red()),
        };
        let _ = mark;
        let what = match c.kind {
            ChangeKind::CreateInstance => format!("instance {}", c.target),
            ChangeKind::RemoveInstance => format!("instance {}", c.target),
            _ => c.target.clone(),
        };
        let mut detail = c.reason.clone();
        if let (ChangeKind::Create, Some(mode), Some(o), Some(g)) =
            (c.kind, c.mode, &c.owner, &c.group)
        {
            detail = format!("{detail}, {mode:04o} {o}:{g}");
        }
        let _ = writeln!(out, "  {painted} {what} ({detail})");
        if c.secret && matches!(c.kind, ChangeKind::Create | ChangeKind::Update) {
            let _ = writeln!(
                out,
                "      (secret) sha256 {}",
                if c.kind == ChangeKind::Create {
                    "new"
                } else {
                    "changed"
                }
            );
        } else if let Some(diff) = &c.diff {
            if c.kind != ChangeKind::Create || show_content {
                out.push_str(&crate::diff::paint(diff, "      "));
            }
        }
    }
    for hr in &h.handlers {
        let _ = writeln!(
            out,
            "  {} run `{}` ({})",
            style(">").cyan(),
            hr.command.join(" "),
            hr.reason
        );
    }
    for n in &h.notices {
        let _ = writeln!(out, "  {} {n}", style("!").magenta());
    }
    let _ = writeln!(out, "  {}", host_summary(h));
    let _ = writeln!(out);
}

/// `ekumen: 3 to create, 1 to update, 0 to remove, 2 handlers`
pub fn host_summary(h: &HostPlan) -> String {
    if h.error.is_some() {
        return format!("{}: failed", h.host);
    }
    if !h.has_changes() {
        return format!("{}: no changes", h.host);
    }
    let create = h.count(ChangeKind::Create) + h.count(ChangeKind::CreateInstance);
    let update = h.count(ChangeKind::Update) + h.count(ChangeKind::Metadata);
    let remove = h.count(ChangeKind::Remove) + h.count(ChangeKind::RemoveInstance);
    let drift = h.changes.iter().filter(|c| c.drift).count();
    let mut s = format!(
        "{}: {create} to create, {update} to update, {remove} to remove, {} handler{}",
        h.host,
        h.handlers.len(),
        plural(h.handlers.len())
    );
    if drift > 0 {
        let _ = write!(s, " ({drift} drifted)");
    }
    s
}

/// `Fleet: 4 hosts, 3 with changes, 1 unchanged, 0 failed.`
pub fn fleet_summary(plan: &Plan) -> String {
    let failed = plan.hosts.iter().filter(|h| h.error.is_some()).count();
    let changed = plan
        .hosts
        .iter()
        .filter(|h| h.error.is_none() && h.has_changes())
        .count();
    let unchanged = plan.hosts.len() - failed - changed;
    let n = plan.hosts.len();
    format!(
        "Fleet: {n} host{}, {changed} with changes, {unchanged} unchanged, {failed} failed.",
        plural(n)
    )
}

/// What a rollout did, host by host, then the stop (if any) and the summary line.
pub fn rollout_text(r: &crate::apply::Rollout, max_fail: usize, failed_before: usize) -> String {
    let mut out = String::from("\n");
    for h in &r.results {
        if h.ok && h.error.is_none() {
            let _ = writeln!(out, "{} {}: applied", console::style("✓").green(), h.host);
        } else {
            let _ = writeln!(out, "{} {}: FAILED", console::style("✗").red(), h.host);
        }
        for d in &h.done {
            let _ = writeln!(out, "    {d}");
        }
        if let Some(e) = &h.error {
            let _ = writeln!(
                out,
                "    error: {}",
                e.to_string().replace('\n', "\n      ")
            );
        }
    }
    if let Some(skipped) = &r.skipped {
        let _ = writeln!(
            out,
            "rollout stopped after {} failed host{} (--max-fail {max_fail}): not applied: {}",
            r.failures,
            plural(r.failures),
            skipped.join(", ")
        );
    }
    let ok = r.ok();
    let _ = writeln!(
        out,
        "Applied: {ok} host{} ok, {} failed, {failed_before} not reachable or refused.",
        plural(ok),
        r.failures
    );
    out
}
