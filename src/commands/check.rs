//! `oignon check`: every problem of the inventory, roles and templates at once, then tor's own
//! verdict on each rendered torrc. `--explain NICKNAME` shows what a relay's exit policy accepts.

use crate::cli::Global;
use oignon::error::Outcome;
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
        return Ok(match oignon::explain::explain(fleet, &desired, nick) {
            Ok(e) => {
                print!("{e}");
                Outcome::Clean
            }
            Err(e) => {
                eprintln!("error: {e}");
                Outcome::Failed
            }
        });
    }
    let mut verified = 0;
    if a.no_tor {
        eprintln!("note: tor --verify-config skipped (--no-tor)");
    } else if !oignon::tor::available() {
        // A check that did not run tor must not look like one that did.
        eprintln!("error: tor is not installed here, so the rendered torrc files cannot be verified by tor\n  = help: apt-get install tor, or run `oignon check --no-tor` to check without tor's verdict");
        return Ok(Outcome::Failed);
    } else {
        let rejected;
        (verified, rejected) = match oignon::tor::verify_rendered(&desired) {
            Ok(v) => v,
            Err(e) => {
                eprintln!("error: the rendered torrc files could not be verified: {e}");
                return Ok(Outcome::Failed);
            }
        };
        for r in &rejected {
            eprintln!("error: tor rejects the torrc of `{}` on host `{}` ({})\n  {}\n  = help: fix the inventory value that produced it (often torrc_extra)\n", r.instance, r.host, r.path, r.words.replace('\n', "\n  "));
        }
        if !rejected.is_empty() {
            eprintln!(
                "{} torrc file{} rejected by tor",
                rejected.len(),
                plural(rejected.len())
            );
            return Ok(Outcome::Failed);
        }
    }
    let warnings = loaded.inventory.diagnostics.len();
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
