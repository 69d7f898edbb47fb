//! `oignon bootstrap HOST [--apply]`: the preflight table (one round trip, nothing changed), then,
//! when no fact blocks, the install (one more round trip), then `apply` for that host with
//! `--apply` (the same apply as `oignon apply --host HOST`).

use crate::cli::Global;
use oignon::bootstrap::run::{Options, Refused, Session};
use oignon::error::{exit_code, Outcome};
use oignon::text::plural;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The host, as named in the inventory.
    #[arg(value_name = "HOST")]
    pub host: String,
    /// Only the preflight table: install nothing.
    #[arg(long, conflicts_with = "apply")]
    pub preflight: bool,
    /// Then apply the inventory to the host (as `oignon apply --host HOST`).
    #[arg(long)]
    pub apply: bool,
    /// With --apply: do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
}

pub fn run(g: &Global, a: Args) -> anyhow::Result<ExitCode> {
    let failed = || Ok(ExitCode::from(exit_code([], Outcome::Failed)));
    let rt = tokio::runtime::Runtime::new()?;
    let o = Options {
        paths: g.paths(),
        ssh_config: g.ssh_config.clone(),
        host: a.host.clone(),
    };
    let mut s = match Session::open(&o, &rt) {
        Ok(s) => s,
        Err(Refused(msg)) => {
            if let Some(m) = msg {
                eprintln!("error: {m}");
            }
            return failed();
        }
    };
    let rows = match s.preflight(&rt) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            s.close(&rt);
            return failed();
        }
    };
    println!("Preflight of {}:\n", a.host);
    print!("{}", oignon::bootstrap::table(&rows));
    println!();
    let blocking = oignon::bootstrap::blocking(&rows);
    if blocking > 0 {
        s.close(&rt);
        eprintln!(
            "error: {blocking} blocking fact{} on {}: nothing was changed; fix {} (see \"how to fix\") and run `oignon bootstrap {}` again",
            plural(blocking),
            a.host,
            if blocking == 1 { "it" } else { "them" },
            a.host
        );
        return failed();
    }
    if a.preflight {
        s.close(&rt);
        println!(
            "Preflight ok: nothing blocks. `oignon bootstrap {}` installs.",
            a.host
        );
        return Ok(ExitCode::from(exit_code([], Outcome::Clean)));
    }
    let result = s.install(&rt);
    s.close(&rt);
    match result {
        Err(e) => {
            eprintln!("error: {e}");
            return failed();
        }
        Ok(changes) if changes.is_empty() => {
            println!(
                "Nothing to change: {} already holds what a relay needs.",
                a.host
            )
        }
        Ok(changes) => {
            println!("Bootstrapped {}:", a.host);
            for c in changes {
                println!("  {c}");
            }
        }
    }
    if !a.apply {
        println!(
            "Next: oignon plan --host {h}, then oignon apply --host {h}",
            h = a.host
        );
        return Ok(ExitCode::from(exit_code([], Outcome::Clean)));
    }
    println!();
    super::apply::run(
        g,
        super::apply::Args {
            plan_file: None,
            targets: super::plan::Targets {
                hosts: vec![a.host.clone()],
                hosters: vec![],
                local: None,
                parallel: 1,
                resurrect: vec![],
            },
            yes: a.yes,
            serial: None,
            max_fail: 0,
            reboot: false,
            reboot_timeout: 600,
            brief: true,
            replace_identity: vec![],
        },
    )
}
