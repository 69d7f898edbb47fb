//! `oignon apply [FILE]`: plan, show, confirm, then apply host by host (all at once, or a rolling
//! `--serial N` that stops at the first failures so exits stay up). With a saved plan FILE, what
//! is applied is still the fresh plan, once checked equal to the file's (see `oignon::saved`).

use super::plan::Targets;
use crate::cli::Global;
use oignon::apply::RolloutOptions;
use oignon::error::{exit_code, Outcome};
use oignon::fleet::{close_all, HostFilter, Planned};
use oignon::text::plural;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A plan saved by `oignon plan --out FILE`: applied only if it is exactly what oignon plans now
    /// from the inventory, roles, secrets and hosts (refused otherwise, saying why). Nothing is
    /// taken from the file: the fresh plan is applied, the way (--local or SSH) the plan was made.
    #[arg(value_name = "PLAN_FILE")]
    pub plan_file: Option<PathBuf>,
    #[command(flatten)]
    pub targets: Targets,
    /// Do not ask for confirmation (needed when stdin is not a terminal).
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Rolling apply: N hosts at a time; stop after the first failed host (see --max-fail).
    #[arg(long, value_name = "N")]
    pub serial: Option<usize>,
    /// With --serial: how many failed hosts to tolerate before the rollout stops.
    #[arg(long, value_name = "K", default_value_t = 0)]
    pub max_fail: usize,
    /// Reboot hosts whose kernel command line needs it, after a successful apply, and wait for
    /// each to come back (a new boot id, answering over SSH).
    #[arg(long)]
    pub reboot: bool,
    /// With --reboot: how long to wait for a host to come back before calling it failed.
    #[arg(long, value_name = "SECONDS", default_value_t = 600)]
    pub reboot_timeout: u64,
    /// Do not print the content of files to create.
    #[arg(long)]
    pub brief: bool,
    /// Overwrite this relay's identity keys on its host with the ones in secrets/ (repeatable).
    /// Without it, a host whose relay identity differs from secrets/ is refused.
    #[arg(long, value_name = "NICKNAME")]
    pub replace_identity: Vec<String>,
}

pub fn run(g: &Global, a: Args) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Runtime::new()?;
    let options = a.targets.options(g);
    // With a saved plan, the fresh plan is made the way the saved one was (see `oignon::saved`).
    let (options, saved) = match &a.plan_file {
        None => (options, None),
        Some(path) => {
            let (o, s) = oignon::saved::prepare(&options, path)?;
            (o, Some((path.as_path(), s)))
        }
    };
    // The user's own selection, not the saved plan's host list.
    let asked = HostFilter::new(&a.targets.hosts, &a.targets.hosters);
    let before_gather = |fleet: &oignon::inventory::Fleet| match &saved {
        Some((path, s)) => oignon::saved::hosts_selected(fleet, &asked, path, s),
        None => Ok(()),
    };
    let Some(Planned {
        mut plan,
        hosts,
        reach,
        targets,
    }) = oignon::fleet::plan(&options, &rt, &before_gather)?
    else {
        return Ok(ExitCode::from(exit_code([], Outcome::Failed)));
    };
    // A saved plan is applied only as the fresh plan it must equal: what runs below is `plan`.
    if let Some((path, s)) = &saved {
        if let Err(msg) = oignon::saved::check(&options.paths, path, s, &mut plan) {
            close_all(&rt, hosts);
            eprintln!("error: {msg}");
            return Ok(ExitCode::from(exit_code([], Outcome::Failed)));
        }
    }
    oignon::plan::refuse_identity_changes(&mut plan, &a.replace_identity);
    print!("{}", oignon::show::plan_text(&plan, !a.brief));
    let todo = oignon::apply::todo(&plan, a.reboot);
    let failed_before = plan.hosts.iter().filter(|h| h.error.is_some()).count();
    if todo.is_empty() {
        close_all(&rt, hosts);
        println!("Nothing to apply.");
        let errors = plan.hosts.iter().filter_map(|h| h.error.as_ref());
        return Ok(ExitCode::from(exit_code(errors, Outcome::Clean)));
    }
    if !a.yes && !confirm(todo.len())? {
        close_all(&rt, hosts);
        return Ok(ExitCode::from(exit_code([], Outcome::Failed)));
    }
    if let Err(msg) = oignon::migrate::lift_tombstones(&rt, &hosts, &a.targets.resurrect) {
        close_all(&rt, hosts);
        eprintln!("error: {msg}");
        return Ok(ExitCode::from(exit_code([], Outcome::Failed)));
    }
    let rollout = RolloutOptions {
        serial: a.serial,
        max_fail: a.max_fail,
        reboot: a.reboot,
        reboot_timeout: std::time::Duration::from_secs(a.reboot_timeout),
        parallel: a.targets.parallel,
    };
    let again = oignon::apply::Reconnect { reach, targets };
    let done = oignon::apply::rollout(&rt, &plan, hosts, &again, &todo, &rollout);
    print!(
        "{}",
        oignon::show::rollout_text(&done, a.max_fail, failed_before)
    );
    // A host that failed without a typed error (an undocumented exit) still fails the run.
    let outcome = if done.failures > 0 || done.skipped.is_some() {
        Outcome::Failed
    } else {
        Outcome::Clean
    };
    let errors = plan
        .hosts
        .iter()
        .filter_map(|h| h.error.as_ref())
        .chain(done.results.iter().filter_map(|r| r.error.as_ref()));
    Ok(ExitCode::from(exit_code(errors, outcome)))
}

/// Asks on the terminal; without one, refuses (automation passes --yes).
fn confirm(n: usize) -> anyhow::Result<bool> {
    if !std::io::stdin().is_terminal() {
        eprintln!("error: apply changes hosts and needs confirmation: run it on a terminal, or pass --yes");
        return Ok(false);
    }
    print!(
        "Apply these changes to {n} host{}? Only 'yes' is accepted: ",
        plural(n)
    );
    std::io::stdout().flush()?;
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    if line.trim() == "yes" {
        Ok(true)
    } else {
        eprintln!("Apply cancelled.");
        Ok(false)
    }
}
