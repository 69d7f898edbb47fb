//! oignon: declarative provisioning and configuration management for Tor relay fleets.

mod cli;
mod commands;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    oignon::hardening::at_start();
    quiet_broken_pipe();
    let cli = cli::Cli::parse();
    oignon::transport::ssh::set_persist(cli.global.ssh_persist);
    commands::init_output(&cli.global);
    match commands::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            let failed = oignon::error::Outcome::Failed;
            ExitCode::from(oignon::error::exit_code([], failed))
        }
    }
}

/// `oignon plan | head` must not end in a panic: when stdout is closed early, exit quietly as a
/// SIGPIPE'd tool would (141). SIGPIPE itself stays ignored, because a killed ssh child must never
/// kill oignon through the pipe of its stdin.
fn quiet_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.starts_with("failed printing to stdout") && msg.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info);
    }));
}
