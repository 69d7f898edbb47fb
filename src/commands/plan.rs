//! `oignon plan`: gather every selected host (one connection, one round trip each, all at once)
//! and show what `apply` would change.

use crate::cli::Global;
use oignon::error::{exit_code, Outcome};
use oignon::fleet::{close_all, PlanOptions, Planned};
use std::path::PathBuf;
use std::process::ExitCode;

/// Which hosts, and how to reach them: shared by `plan` and `apply`.
#[derive(Debug, clap::Args, Clone)]
pub struct Targets {
    /// Only these hosts (repeatable; globs such as `mar*` work).
    #[arg(long = "host", value_name = "HOST")]
    pub hosts: Vec<String>,
    /// Only the hosts of this hoster (name or domain; repeatable).
    #[arg(long = "hoster", value_name = "HOSTER")]
    pub hosters: Vec<String>,
    /// Local transport: host H is the directory DIR/H (a mounted image, or the demo) instead of SSH.
    #[arg(long, value_name = "DIR")]
    pub local: Option<PathBuf>,
    /// How many hosts to work on at once.
    #[arg(long, default_value_t = 32, value_name = "N")]
    pub parallel: usize,
    /// Bring back a relay that was migrated away from or retired on a host (its tombstone there
    /// refuses it otherwise): apply unmasks it and removes the tombstone (repeatable).
    #[arg(long, value_name = "NICKNAME")]
    pub resurrect: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub targets: Targets,
    /// Print the plan as JSON (schema `oignon.plan/2`, see README.md).
    #[arg(long)]
    pub json: bool,
    /// Save the plan to FILE, for review and `oignon apply FILE` (never holds a secret's plaintext).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Exit 0 when nothing would change, 2 when something would, 1 on any error.
    #[arg(long)]
    pub detailed_exitcode: bool,
    /// Do not print the content of files to create (diffs of updates are still shown).
    #[arg(long)]
    pub brief: bool,
}

impl Targets {
    /// The options `plan` and `apply` give the library.
    pub fn options(&self, g: &Global) -> PlanOptions {
        PlanOptions {
            paths: g.paths(),
            identity: g.identity.clone(),
            ssh_config: g.ssh_config.clone(),
            local: self.local.clone(),
            hosts: self.hosts.clone(),
            hosters: self.hosters.clone(),
            parallel: self.parallel,
            resurrect: self.resurrect.clone(),
        }
    }
}

pub fn run(g: &Global, a: Args) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Runtime::new()?;
    let Some(planned) = oignon::fleet::plan(&a.targets.options(g), &rt, &|_| Ok(()))? else {
        return Ok(ExitCode::from(exit_code([], Outcome::Failed)));
    };
    let Planned { plan, hosts, .. } = planned;
    close_all(&rt, hosts);
    if a.json {
        println!("{}", serde_json::to_string_pretty(&plan)?);
    } else {
        print!("{}", oignon::show::plan_text(&plan, !a.brief));
    }
    if let Some(path) = &a.out {
        oignon::saved::save(&plan, path)?;
        eprintln!(
            "plan saved to {} (apply it with `oignon apply {}`)",
            path.display(),
            path.display()
        );
    }
    let changes = plan.hosts.iter().any(|h| h.has_changes());
    let outcome = if changes && a.detailed_exitcode {
        Outcome::Changes
    } else {
        Outcome::Clean
    };
    let errors = plan.hosts.iter().filter_map(|h| h.error.as_ref());
    Ok(ExitCode::from(exit_code(errors, outcome)))
}
