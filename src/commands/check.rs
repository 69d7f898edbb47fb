//! `oignon check`: every problem of the inventory, roles and templates at once, then tor's own
//! verdict on each rendered torrc. `--explain NICKNAME` shows what a relay's exit policy accepts.

use crate::cli::Global;
use crate::exit_policy;
use crate::role::ValidatorKind;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Show a relay's effective exit policy and the ports it accepts.
    #[arg(long, value_name = "NICKNAME")]
    pub explain: Option<String>,
    /// Skip `tor --verify-config` of the rendered torrc files.
    #[arg(long)]
    pub no_tor: bool,
}

pub fn run(g: &Global, a: Args) -> anyhow::Result<ExitCode> {
    let Some(loaded) = super::load(g) else {
        return Ok(ExitCode::from(1));
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
        return Ok(ExitCode::from(1));
    };
    if let Some(nick) = &a.explain {
        return explain(fleet, nick);
    }
    let mut failed = 0;
    let mut verified = 0;
    if a.no_tor {
        eprintln!("note: tor --verify-config skipped (--no-tor)");
    } else if !crate::tor::available() {
        eprintln!("note: tor is not installed here, so rendered torrc files were not verified by tor (apt-get install tor)");
    } else {
        for h in &desired.hosts {
            for f in h
                .files
                .iter()
                .filter(|f| f.validate == Some(ValidatorKind::Torrc))
            {
                let name = f.instance.as_deref().unwrap_or("tor");
                verified += 1;
                if let Err(msg) = crate::tor::verify_config_local(name, f.content.bytes()) {
                    failed += 1;
                    eprintln!("error: tor rejects the torrc of `{name}` on host `{}` ({})\n  {}\n  = help: fix the inventory value that produced it (often torrc_extra)\n", h.name, f.path, msg.replace('\n', "\n  "));
                }
            }
        }
    }
    let warnings = loaded.inventory.diagnostics.len();
    if failed > 0 {
        eprintln!(
            "{failed} torrc file{} rejected by tor",
            super::plural(failed)
        );
        return Ok(ExitCode::from(1));
    }
    let relays: usize = fleet.hosts.iter().map(|h| h.relays.len()).sum();
    let files: usize = desired.hosts.iter().map(|h| h.files.len()).sum();
    println!(
        "ok: {} hosts, {relays} relays, {files} files rendered{}{}",
        fleet.hosts.len(),
        if verified > 0 {
            format!(", {verified} torrc verified by tor")
        } else {
            String::new()
        },
        if warnings > 0 {
            format!(", {warnings} warning{}", super::plural(warnings))
        } else {
            String::new()
        }
    );
    Ok(ExitCode::SUCCESS)
}

fn explain(fleet: &crate::inventory::Fleet, nick: &str) -> anyhow::Result<ExitCode> {
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
        let hint = crate::diagnostic::suggest(nick, names.iter().copied())
            .map(|s| format!(" (did you mean `{s}`?)"))
            .unwrap_or_default();
        eprintln!(
            "error: no relay is nicknamed `{nick}`{hint}; relays: {}",
            names.join(", ")
        );
        return Ok(ExitCode::from(1));
    };
    println!(
        "{} on {} ({}), exit policy `{}`",
        relay.nickname, host.name, host.hoster, relay.exit_policy_name
    );
    if !relay.exit {
        println!("not an exit: ExitRelay 0, ExitPolicy reject *:*");
        return Ok(ExitCode::SUCCESS);
    }
    let effective = exit_policy::effective(&relay.exit_policy, true);
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
    if relay.ipv6_exit {
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
    Ok(ExitCode::SUCCESS)
}
