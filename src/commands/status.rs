//! `oignon status`: one row per relay instance, gathered in the same single round trip per host
//! as `plan`; exit 0 healthy, 2 attention, 1 error.

use crate::cli::Global;
use crate::commands::plan::Targets;
use oignon::error::{exit_code, Outcome};
use oignon::status::Verdict;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub targets: Targets,
    /// Print the status as JSON (schema `oignon.status/1`, see README.md).
    #[arg(long)]
    pub json: bool,
}

pub fn run(g: &Global, a: Args) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Runtime::new()?;
    let Some(status) = oignon::status::status(&a.targets.options(g), &rt)? else {
        return Ok(ExitCode::from(exit_code([], Outcome::Failed)));
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print!("{}", oignon::status::text(&status));
    }
    Ok(ExitCode::from(exit_code(
        [],
        Verdict::of(&status.rows).outcome(),
    )))
}
