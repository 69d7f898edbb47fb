//! `oignon monitoring targets|rules --out FILE`: Prometheus's `file_sd` targets and alert rules,
//! made from the inventory (no host is contacted).

use crate::cli::Global;
use oignon::error::Outcome;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub what: What,
}

#[derive(Debug, clap::Subcommand)]
pub enum What {
    /// Prometheus file_sd JSON: every relay and node-exporter, labels hoster, host, nickname, exit.
    Targets {
        /// Write here (atomically) instead of stdout.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Alert rules on tor's MetricsPort (check them with `promtool check rules FILE`).
    Rules {
        /// Write here (atomically) instead of stdout.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

pub fn run(g: &Global, a: Args) -> anyhow::Result<Outcome> {
    let (text, out) = match a.what {
        What::Targets { out } => {
            let Some(loaded) = oignon::fleet::load(&g.paths(), false) else {
                return Ok(Outcome::Failed);
            };
            (oignon::monitoring::targets_json(loaded.fleet()), out)
        }
        What::Rules { out } => (oignon::monitoring::rules_yaml(), out),
    };
    match out {
        None => print!("{text}"),
        Some(path) => {
            // 0644: Prometheus reads it as its own user.
            let mode = oignon::util::Mode::Keep(0o644);
            oignon::util::write_atomic(&path, text.as_bytes(), mode, false).map_err(|e| {
                anyhow::anyhow!(
                    "cannot write {}: {e} (its directory must exist)",
                    path.display()
                )
            })?;
            eprintln!("wrote {}", path.display());
        }
    }
    Ok(Outcome::Clean)
}
