//! `oignon check`: every problem of the inventory, roles and templates at once, then tor's own
//! verdict on each rendered torrc. `--explain NICKNAME` shows what a relay's exit policy accepts.

use crate::cli::Global;
use oignon::error::Outcome;
use oignon::exit_policy;
use oignon::role::ValidatorKind;
use oignon::text::plural;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Show a relay's effective exit policy and the ports it accepts.
    #[arg(long, value_name = "NICKNAME")]
    pub explain: Option<String>,
    /// Skip `tor --verify-config` of the rendered torrc files.
    #[arg(long)]
    pub no_tor: bool,
}

pub fn run(g: &Global, a: Args) -> anyhow::Result<Outcome> {
    let Some(loaded) = oignon::fleet::load(&g.paths(), true) else {
        return Ok(Outcome::Failed);
    };
    let fleet = loaded.fleet();
    for role in &loaded.roles.roles {
        tracing::info!(
            "role {}: {} ({} files)",
            role.name,
            role.description,
            role.files.len()
        );
    }
    let Some(desired) = loaded.render(|_| true, &loaded.public_keys()) else {
        return Ok(Outcome::Failed);
    };
    if let Some(nick) = &a.explain {
        return explain(fleet, &desired, nick);
    }
    let mut failed = 0;
    let mut verified = 0;
    if a.no_tor {
        eprintln!("note: tor --verify-config skipped (--no-tor)");
    } else if !oignon::tor::available() {
        // A check that did not run tor must not look like one that did.
        eprintln!("error: tor is not installed here, so the rendered torrc files cannot be verified by tor\n  = help: apt-get install tor, or run `oignon check --no-tor` to check without tor's verdict");
        return Ok(Outcome::Failed);
    } else {
        for h in &desired.hosts {
            for f in h
                .files
                .iter()
                .filter(|f| f.validate == Some(ValidatorKind::Torrc))
            {
                let name = f.instance.as_deref().unwrap_or("tor");
                verified += 1;
                if let Err(msg) = oignon::tor::verify_config_local(name, f.content.bytes()) {
                    failed += 1;
                    eprintln!("error: tor rejects the torrc of `{name}` on host `{}` ({})\n  {}\n  = help: fix the inventory value that produced it (often torrc_extra)\n", h.name, f.path, msg.replace('\n', "\n  "));
                }
            }
        }
    }
    let warnings = loaded.inventory.diagnostics.len();
    if failed > 0 {
        eprintln!("{failed} torrc file{} rejected by tor", plural(failed));
        return Ok(Outcome::Failed);
    }
    let relays: usize = fleet.hosts.iter().map(|h| h.relays.len()).sum();
    let files: usize = desired.hosts.iter().map(|h| h.files.len()).sum();
    println!(
        "ok: {} host{}, {relays} relay{}, {files} file{} rendered{}{}",
        fleet.hosts.len(),
        plural(fleet.hosts.len()),
        plural(relays),
        plural(files),
        if verified > 0 {
            format!(", {verified} torrc verified by tor")
        } else {
            String::new()
        },
        if warnings > 0 {
            format!(", {warnings} warning{}", plural(warnings))
        } else {
            String::new()
        }
    );
    Ok(Outcome::Clean)
}

/// The exit policy of one relay as tor would enforce it, read from the relay's rendered torrc
/// (not from the inventory): what the relay would really do is what the file says.
fn explain(
    fleet: &oignon::inventory::Fleet,
    desired: &oignon::desired::Desired,
    nick: &str,
) -> anyhow::Result<Outcome> {
    let found = fleet
        .hosts
        .iter()
        .flat_map(|h| h.relays.iter().map(move |r| (h, r)))
        .find(|(_, r)| r.nickname.eq_ignore_ascii_case(nick));
    let Some((host, relay)) = found else {
        let names: Vec<&str> = fleet
            .hosts
            .iter()
            .flat_map(|h| h.relays.iter().map(|r| r.nickname.as_str()))
            .collect();
        let hint = oignon::diagnostic::suggest(nick, names.iter().copied())
            .map(|s| format!(" (did you mean `{s}`?)"))
            .unwrap_or_default();
        eprintln!(
            "error: no relay is nicknamed `{}`{hint}; relays: {}",
            oignon::inventory::text::escaped_cut(nick),
            names.join(", ")
        );
        return Ok(Outcome::Failed);
    };
    let file = desired
        .hosts
        .iter()
        .filter(|h| h.name == host.name)
        .flat_map(|h| h.files.iter())
        .find(|f| {
            f.validate == Some(ValidatorKind::Torrc)
                && f.instance.as_deref() == Some(relay.nickname.as_str())
        });
    let Some(file) = file else {
        eprintln!(
            "error: `{}` on host `{}` has no rendered torrc (is the tor role in the host's roles?)",
            relay.nickname, host.name
        );
        return Ok(Outcome::Failed);
    };
    let text = String::from_utf8_lossy(file.content.bytes());
    let torrc = match oignon::torrc::parse(&text) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: tor cannot read {}: {e}", file.path);
            return Ok(Outcome::Failed);
        }
    };
    // The last value of a singleton option wins in tor; a list option keeps every line in order.
    let values = |name: &str| -> Vec<&str> {
        torrc
            .entries
            .iter()
            .filter(|e| {
                oignon::torrc::canonical(&e.key).is_some_and(|r| r.name.eq_ignore_ascii_case(name))
            })
            .map(|e| e.value.as_str())
            .collect()
    };
    let flag = |name: &str, default: bool| values(name).last().map_or(default, |v| v.trim() == "1");
    println!(
        "{} on {} ({}), exit policy `{}`, as tor reads {}",
        relay.nickname, host.name, host.hoster, relay.exit_policy_name, file.path
    );
    let mut rules = vec![];
    for v in values("ExitPolicy") {
        // One ExitPolicy value may hold several rules, comma-separated.
        for part in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match exit_policy::parse_rule(part) {
                Ok((rule, _)) => rules.push(rule),
                Err(e) => {
                    eprintln!("error: ExitPolicy `{part}` in {}: {}", file.path, e.message);
                    return Ok(Outcome::Failed);
                }
            }
        }
    }
    if !flag("ExitRelay", true) {
        println!("not an exit: ExitRelay 0 (tor exits nowhere, whatever its ExitPolicy)");
        return Ok(Outcome::Clean);
    }
    let effective = exit_policy::effective(&rules, flag("ExitPolicyRejectPrivate", true));
    println!("\neffective policy (first match wins):");
    for r in &effective {
        println!("  {r}");
    }
    let v4 = exit_policy::accepted_ports(&effective, exit_policy::Family::V4);
    println!(
        "\naccepted ports, IPv4: {}",
        if v4.is_empty() {
            "none".into()
        } else {
            exit_policy::format_ports(&v4)
        }
    );
    if flag("IPv6Exit", false) {
        let v6 = exit_policy::accepted_ports(&effective, exit_policy::Family::V6);
        println!(
            "accepted ports, IPv6: {}",
            if v6.is_empty() {
                "none".into()
            } else {
                exit_policy::format_ports(&v6)
            }
        );
    } else {
        println!("IPv6 exit: off");
    }
    Ok(Outcome::Clean)
}
