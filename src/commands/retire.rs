//! `oignon retire NICKNAME`: stop a relay for good on its host and remove it from the inventory
//! (see `oignon::migrate::retire`). This file only turns flags into its options.

use crate::cli::Global;
use oignon::error::{exit_code, Outcome};
use oignon::migrate::{Ended, RetireOptions};
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The relay to retire (its nickname).
    #[arg(value_name = "NICKNAME")]
    pub nickname: String,
    /// Show what would be done and the inventory patch; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Do not ask for confirmation (needed when stdin is not a terminal).
    #[arg(long, short = 'y')]
    pub yes: bool,
}

pub fn run(g: &Global, a: Args) -> anyhow::Result<ExitCode> {
    let o = RetireOptions {
        paths: g.paths(),
        ssh_config: g.ssh_config.clone(),
        nick: a.nickname,
        dry_run: a.dry_run,
        yes: a.yes,
    };
    let outcome = match oignon::migrate::retire(&o, &super::migrate::confirm)? {
        Ended::Complete | Ended::Shown => Outcome::Clean,
        Ended::Cancelled => Outcome::Failed,
    };
    Ok(ExitCode::from(exit_code([], outcome)))
}
