//! `oignon hoster add NAME --domain DOMAIN`: a new hoster file in the inventory (see
//! `oignon::inventory::edit`).

use crate::cli::Global;
use oignon::error::Outcome;
use oignon::inventory::edit;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Sub,
}

#[derive(Debug, clap::Subcommand)]
pub enum Sub {
    /// Write inventory/<domain>.toml with the [hoster] table and a commented [hoster.defaults].
    Add {
        /// The hoster's name, as people say it (`Aquilenet`).
        #[arg(value_name = "NAME")]
        name: String,
        /// The hoster's domain (CIISS `hoster:`, e.g. `aquilenet.fr`); names the file.
        #[arg(long, value_name = "DOMAIN")]
        domain: String,
    },
}

pub fn run(g: &Global, a: Args) -> anyhow::Result<Outcome> {
    match a.command {
        Sub::Add { name, domain } => {
            let e = match edit::hoster_add(&g.inventory, &name, &domain) {
                Ok(e) => e,
                Err(e) => return Ok(refused(e)),
            };
            if let Some(refused) = checked(g, &e) {
                return Ok(refused);
            }
            edit::write(&e).map_err(|m| anyhow::anyhow!(m))?;
            println!("Wrote {} (hoster {name}, {domain}).", e.path.display());
            println!("Next: add its first host:");
            println!("  oignon host add NAME --hoster {domain} --ipv4 ADDR --ipv6 ADDR --uplink \"100 Mbit/s\" --relays 1");
            Ok(Outcome::Clean)
        }
    }
}

/// Reports why an edit was refused (nothing was written).
pub fn refused(e: edit::EditError) -> Outcome {
    match e {
        edit::EditError::Refused(m) => eprintln!("error: {m}"),
        edit::EditError::Invalid(diags) => {
            oignon::diagnostic::report(&diags);
            eprintln!(
                "{}; the edit is refused and nothing was written",
                oignon::diagnostic::summary(&diags)
            );
        }
    }
    Outcome::Failed
}

/// The checks of `check` beyond the inventory's (render, tor) on the edited inventory; the
/// outcome to return when they refuse it.
pub fn checked(g: &Global, e: &edit::Edit) -> Option<Outcome> {
    let c = oignon::onboard::check_edit(e, &g.roles, &g.secrets);
    if c.tor_skipped {
        eprintln!("note: tor is not installed here: the new torrc files were not verified by tor (`oignon check` on a machine with tor does)");
    }
    if c.errors.is_empty() {
        return None;
    }
    Some(refused(edit::EditError::Invalid(c.errors)))
}
