//! `oignon plan`: gather every selected host (one connection, one round trip each, all at once)
//! and show what `apply` would change.

use crate::cli::Global;
use crate::desired::DesiredHost;
use crate::gather::{Gathered, Reach};
use crate::plan::{HostPlan, Plan, SCHEMA};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

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

/// Everything planning produced: the plan, and per host its open transport and desired state.
pub struct Planned {
    pub plan: Plan,
    pub hosts: Vec<(DesiredHost, Gathered)>,
    /// How the hosts were reached, to reach them again (`apply --reboot` reconnects after a reboot).
    pub reach: Arc<Reach>,
    /// Each selected host's name and SSH destination.
    pub targets: Vec<crate::gather::Target>,
}

/// Loads, renders and gathers the selected hosts; None when the inventory had errors (reported).
/// `before_gather` sees the loaded fleet first and may refuse the run (its message is printed).
pub fn plan_fleet(
    g: &Global,
    t: &Targets,
    rt: &tokio::runtime::Runtime,
    before_gather: &dyn Fn(&crate::inventory::Fleet) -> Result<(), String>,
) -> anyhow::Result<Option<Planned>> {
    let Some(loaded) = super::load(g) else {
        return Ok(None);
    };
    // Digested after loading succeeded (its errors say it better), from the same files.
    let inputs = crate::saved::Inputs::read(&g.inventory, &g.roles, &g.secrets)
        .map_err(|e| anyhow::anyhow!(e))?;
    let run_transport =
        crate::saved::RunTransport::new(t.local.as_deref(), g.ssh_config.as_deref())
            .map_err(|e| anyhow::anyhow!(e))?;
    let fleet = loaded.fleet();
    if let Err(msg) = before_gather(fleet) {
        eprintln!("error: {msg}");
        return Ok(None);
    }
    if let Err(msg) = super::check_filter_matches(fleet, &t.hosts, &t.hosters) {
        eprintln!("error: {msg}");
        return Ok(None);
    }
    let select = super::host_filter(&t.hosts, &t.hosters);
    // Plan and apply deploy key files: they need the identity that decrypts them.
    let identity = if fleet.manage_identities {
        match crate::secrets::Identity::find(g.identity.as_deref(), &loaded.store) {
            Ok(id) => Some(id),
            Err(e) => {
                eprintln!("error: {e}\n  = help: relay keys are deployed from {}; or set manage_identities = false in [fleet]", loaded.store.dir.display());
                return Ok(None);
            }
        }
    } else {
        None
    };
    let keys = crate::render::Keys {
        store: &loaded.store,
        identity: identity.as_ref(),
    };
    let Some(desired) = loaded.render(&select, &keys) else {
        return Ok(None);
    };
    let specs: Vec<&crate::inventory::HostSpec> =
        fleet.hosts.iter().filter(|h| select(h)).collect();
    // The recorded (absolute) paths: the plan names the directories it went to, wherever it is read.
    let reach = Reach::new(
        run_transport.local.clone(),
        run_transport.ssh_config.as_deref(),
        &specs,
        t.parallel,
    )
    .map_err(|e| anyhow::anyhow!(e))?;
    let progress = crate::progress::Progress::new(false);
    let targets = specs
        .iter()
        .map(|s| crate::gather::Target::from(*s))
        .collect();
    let pairs: Vec<_> = specs.iter().copied().zip(desired.hosts).collect();
    let reach = Arc::new(reach);
    let gathered = rt.block_on(crate::gather::gather_all(reach.clone(), pairs, &progress));
    progress.finish();
    let hosts: Vec<HostPlan> = gathered
        .iter()
        .map(|(d, gh)| match &gh.observed {
            Ok(o) => crate::plan::plan_host(d, o, &gh.transport_name),
            Err(e) => HostPlan::failed(&gh.name, &gh.transport_name, e.clone()),
        })
        .collect();
    Ok(Some(Planned {
        plan: Plan {
            schema: SCHEMA.into(),
            inputs,
            transport: run_transport,
            hosts,
        },
        hosts: gathered,
        reach,
        targets,
    }))
}

/// Closes every open connection.
pub fn close_all(rt: &tokio::runtime::Runtime, hosts: Vec<(DesiredHost, Gathered)>) {
    rt.block_on(async {
        for (_, g) in hosts {
            if let Some(t) = g.transport {
                t.close().await;
            }
        }
    });
}

pub fn run(g: &Global, a: Args) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Runtime::new()?;
    let Some(planned) = plan_fleet(g, &a.targets, &rt, &|_| Ok(()))? else {
        return Ok(ExitCode::from(1));
    };
    let Planned { plan, hosts, .. } = planned;
    close_all(&rt, hosts);
    if a.json {
        println!("{}", serde_json::to_string_pretty(&plan)?);
    } else {
        print!("{}", crate::show::plan_text(&plan, !a.brief));
    }
    if let Some(path) = &a.out {
        crate::saved::save(&plan, path)?;
        eprintln!(
            "plan saved to {} (apply it with `oignon apply {}`)",
            path.display(),
            path.display()
        );
    }
    let failed = plan.hosts.iter().any(|h| h.error.is_some());
    let changes = plan.hosts.iter().any(|h| h.has_changes());
    Ok(ExitCode::from(
        match (failed, changes, a.detailed_exitcode) {
            (true, _, _) => 1,
            (false, true, true) => 2,
            _ => 0,
        },
    ))
}
