//! oignon: declarative provisioning and configuration management for Tor relay fleets.

mod apply;
mod cli;
mod commands;
mod desired;
mod diagnostic;
mod diff;
mod exit_policy;
mod gather;
mod inventory;
mod observed;
mod plan;
mod progress;
mod remote;
mod render;
mod role;
mod saved;
mod secret;
mod show;
mod tor;
mod transport;
mod util;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    commands::init_output(&cli.global);
    match commands::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
