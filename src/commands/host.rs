//! `oignon host add NAME --hoster H …`: a new `[[host]]` with its relays in the hoster's file (see
//! `oignon::inventory::edit`), then the next steps, or `secrets keygen` itself with `--keygen`.
//! `oignon host retire NAME`: every relay of the host retired, then its `[[host]]` removed (see
//! `oignon::migrate::retire_host`).

use crate::cli::Global;
use oignon::error::Outcome;
use oignon::inventory::edit;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Sub,
}

#[derive(Debug, clap::Subcommand)]
pub enum Sub {
    /// Append a [[host]] with N [[host.relay]] to its hoster's file (nicknames and ORPorts in the
    /// fleet's pattern: NAME1, NAME2… on 443, 9001…), checked like `oignon check` before writing.
    Add(AddArgs),
    /// Retire every relay of the host (stop, disable, mask, tombstone, destroy its keys there,
    /// archive its config), then remove the host's [[host]] from the inventory.
    Retire(RetireArgs),
}

#[derive(Debug, clap::Args)]
pub struct RetireArgs {
    /// The host, as named in the inventory.
    #[arg(value_name = "NAME")]
    pub name: String,
    /// Show what would be done and the inventory patch; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Do not ask for confirmation (needed when stdin is not a terminal).
    #[arg(long, short = 'y')]
    pub yes: bool,
}

#[derive(Debug, clap::Args)]
pub struct AddArgs {
    /// The host's name (lowercase letters, digits, '-').
    #[arg(value_name = "NAME")]
    pub name: String,
    /// Its hoster: name or domain, as in the hoster's file.
    #[arg(long, value_name = "HOSTER")]
    pub hoster: String,
    #[arg(long, value_name = "ADDR")]
    pub ipv4: String,
    #[arg(long, value_name = "ADDR")]
    pub ipv6: Option<String>,
    /// The uplink the hoster sells, decimal: "200 Mbit/s".
    #[arg(long, value_name = "RATE")]
    pub uplink: String,
    /// How many relay instances.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub relays: usize,
    /// Nicknames instead of the pattern's (one per relay; repeatable).
    #[arg(long = "nickname", value_name = "NICKNAME")]
    pub nicknames: Vec<String>,
    /// SSH destination, if not the host's name.
    #[arg(long, value_name = "DEST")]
    pub ssh: Option<String>,
    /// `grub` (default: oignon manages the kernel command line) or `none` (no GRUB on the host).
    #[arg(long, value_name = "BOOT")]
    pub boot: Option<String>,
    /// Also make the new relays' identities (`oignon secrets keygen`).
    #[arg(long)]
    pub keygen: bool,
}

pub fn run(g: &Global, a: Args) -> anyhow::Result<Outcome> {
    match a.command {
        Sub::Add(a) => add(g, a),
        Sub::Retire(a) => retire(g, a),
    }
}

fn retire(g: &Global, a: RetireArgs) -> anyhow::Result<Outcome> {
    let o = oignon::migrate::RetireHostOptions {
        paths: g.paths(),
        ssh_config: g.ssh_config.clone(),
        host: a.name,
        dry_run: a.dry_run,
        yes: a.yes,
    };
    Ok(
        match oignon::migrate::retire_host(&o, &super::migrate::confirm)? {
            oignon::migrate::Ended::Complete | oignon::migrate::Ended::Shown => Outcome::Clean,
            oignon::migrate::Ended::Cancelled => Outcome::Failed,
        },
    )
}

fn add(g: &Global, a: AddArgs) -> anyhow::Result<Outcome> {
    let relays = if a.nicknames.is_empty() || a.relays != 1 {
        a.relays
    } else {
        // The default of --relays is not a count given: the nicknames are.
        0
    };
    let new = edit::NewHost {
        name: a.name.clone(),
        hoster: a.hoster,
        ipv4: a.ipv4,
        ipv6: a.ipv6,
        uplink: a.uplink,
        relays,
        nicknames: a.nicknames,
        ssh: a.ssh,
        boot: a.boot,
    };
    if new.relays == 0 && new.nicknames.is_empty() {
        eprintln!("error: --relays 0: a host runs at least one relay");
        return Ok(Outcome::Failed);
    }
    let e = match edit::host_add(&g.inventory, &new) {
        Ok(e) => e,
        Err(e) => return Ok(super::hoster::refused(e)),
    };
    if let Some(refused) = super::hoster::checked(g, &e) {
        return Ok(refused);
    }
    edit::write(&e).map_err(|m| anyhow::anyhow!(m))?;
    let listed: Vec<String> = e
        .relays
        .iter()
        .map(|(n, p)| format!("{n} (ORPort {p})"))
        .collect();
    println!(
        "Added host {} to {}: {}.",
        a.name,
        e.path.display(),
        listed.join(", ")
    );
    let nicks: Vec<String> = e.relays.iter().map(|(n, _)| n.clone()).collect();
    let mut next = vec![];
    if a.keygen {
        let store = oignon::secrets::Store::open(&g.secrets);
        println!("Relay identities (nickname, RSA fingerprint, ed25519 id):");
        if let Err(err) = oignon::secrets::admin::keygen(&store, &nicks, false) {
            eprintln!(
                "error: {err:#}\n  = help: the host is in the inventory; make its identities with `oignon secrets keygen {}`",
                nicks.join(" ")
            );
            return Ok(Outcome::Failed);
        }
    } else {
        next.push(format!("oignon secrets keygen {}", nicks.join(" ")));
    }
    next.push("oignon check".to_string());
    next.push(format!("oignon bootstrap {}", a.name));
    println!("Next:");
    for n in next {
        println!("  {n}");
    }
    Ok(Outcome::Clean)
}
