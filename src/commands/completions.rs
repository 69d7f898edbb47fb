//! `oignon completions SHELL` and `oignon man`, generated from the clap definition.

use crate::cli::Cli;
use clap::CommandFactory;
use oignon::error::Outcome;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The shell to generate completions for.
    pub shell: clap_complete::Shell,
}

pub fn run(a: Args) -> anyhow::Result<Outcome> {
    let mut cmd = Cli::command();
    clap_complete::generate(a.shell, &mut cmd, "oignon", &mut std::io::stdout());
    Ok(Outcome::Clean)
}

pub fn man() -> anyhow::Result<Outcome> {
    clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout())?;
    Ok(Outcome::Clean)
}
