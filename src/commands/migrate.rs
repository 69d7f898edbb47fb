//! `oignon migrate NICKNAME --to HOST`: moves a relay and its identity to another host of the
//! inventory, resumably (see `oignon::migrate`). This file only turns flags into its options.

use crate::cli::Global;
use oignon::error::{exit_code, Outcome};
use oignon::migrate::{Ended, MigrateOptions};
use std::io::{IsTerminal, Write};
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The relay to move (its nickname).
    #[arg(value_name = "NICKNAME")]
    pub nickname: String,
    /// The host it moves to (already in the inventory: `host add`, or a `[[host]]` by hand).
    #[arg(long, value_name = "HOST")]
    pub to: String,
    /// Show the plan over the two hosts and the inventory patch; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// The source host is dead: go on without it (the old copy cannot be proven stopped).
    #[arg(long)]
    pub source_unreachable: bool,
    /// Do not ask for confirmation (needed when stdin is not a terminal).
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Undo an unfinished migration: stop the target's copy, restore and start the source's.
    #[arg(long)]
    pub rollback: bool,
    /// How long the target's tor may take to start, log its fingerprint and listen.
    #[arg(long, value_name = "SECONDS", default_value_t = 90)]
    pub verify_timeout: u64,
}

pub fn run(g: &Global, a: Args) -> anyhow::Result<ExitCode> {
    let o = MigrateOptions {
        paths: g.paths(),
        identity: g.identity.clone(),
        ssh_config: g.ssh_config.clone(),
        nick: a.nickname,
        to: a.to,
        dry_run: a.dry_run,
        source_unreachable: a.source_unreachable,
        yes: a.yes,
        verify_seconds: a.verify_timeout,
    };
    if a.rollback {
        oignon::migrate::rollback(&o)?;
        return Ok(ExitCode::from(exit_code([], Outcome::Clean)));
    }
    let ended = oignon::migrate::migrate(&o, &confirm)?;
    let outcome = match ended {
        Ended::Complete | Ended::Shown => Outcome::Clean,
        Ended::Cancelled => Outcome::Failed,
    };
    Ok(ExitCode::from(exit_code([], outcome)))
}

/// Asks on the terminal; without one, refuses (automation passes --yes).
pub fn confirm(question: &str) -> bool {
    if !std::io::stdin().is_terminal() {
        eprintln!(
            "error: this changes hosts and needs confirmation: run it on a terminal, or pass --yes"
        );
        return false;
    }
    print!("{question} Only 'yes' is accepted: ");
    let _ = std::io::stdout().flush();
    let mut line = String::new();
    if std::io::stdin().read_line(&mut line).is_err() || line.trim() != "yes" {
        eprintln!("Cancelled.");
        return false;
    }
    true
}
