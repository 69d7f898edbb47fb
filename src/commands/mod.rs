//! One module per subcommand, each with its clap `Args` and a `run` that turns flags into the
//! library's options and calls it. This file dispatches and sets up output.

pub mod apply;
pub mod bootstrap;
pub mod check;
pub mod completions;
pub mod host;
pub mod hoster;
pub mod migrate;
pub mod monitoring;
pub mod plan;
pub mod render;
pub mod retire;
pub mod secrets;
pub mod status;

use crate::cli::{Cli, ColorChoice, Command, Global};
use oignon::error::{exit_code, Outcome};
use std::io::IsTerminal;
use std::process::ExitCode;

/// Colours and logging, from the global flags.
pub fn init_output(g: &Global) {
    let color = match g.color {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
                && std::io::stdout().is_terminal()
        }
    };
    console::set_colors_enabled(color);
    console::set_colors_enabled_stderr(color);
    let level = match g.verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("oignon={level}")));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(color)
        .without_time()
        .try_init();
}

/// Runs the command and turns how it ended into its exit status. plan and apply decide theirs
/// from their host errors; the others end `Clean` or `Failed`, which [`exit_code`] maps the same
/// way for every command.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let ended = |o: anyhow::Result<Outcome>| o.map(|o| ExitCode::from(exit_code([], o)));
    match cli.command {
        Command::Check(a) => ended(check::run(&cli.global, a)),
        Command::Render(a) => ended(render::run(&cli.global, a)),
        Command::Plan(a) => plan::run(&cli.global, a),
        Command::Apply(a) => apply::run(&cli.global, a),
        Command::Secrets(a) => ended(secrets::run(&cli.global, a)),
        Command::Fingerprints(a) => ended(secrets::fingerprints(&cli.global, a)),
        Command::Status(a) => status::run(&cli.global, a),
        Command::Monitoring(a) => ended(monitoring::run(&cli.global, a)),
        Command::Completions(a) => ended(completions::run(a)),
        Command::Man => ended(completions::man()),
        Command::Hoster(a) => ended(hoster::run(&cli.global, a)),
        Command::Host(a) => ended(host::run(&cli.global, a)),
        Command::Bootstrap(a) => bootstrap::run(&cli.global, a),
        Command::Migrate(a) => migrate::run(&cli.global, a),
        Command::Retire(a) => retire::run(&cli.global, a),
    }
}
