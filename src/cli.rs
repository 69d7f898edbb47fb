//! The command line: global options and the subcommands, each defined in `commands/`.

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// Declarative provisioning and configuration management for Tor relay fleets.
#[derive(Debug, Parser)]
#[command(name = "oignon", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every subcommand takes.
#[derive(Debug, clap::Args, Clone)]
pub struct Global {
    /// Inventory directory (TOML files).
    #[arg(
        long,
        global = true,
        default_value = "inventory",
        env = "OIGNON_INVENTORY"
    )]
    pub inventory: PathBuf,
    /// Roles directory (manifests and Tera templates).
    #[arg(long, global = true, default_value = "roles", env = "OIGNON_ROLES")]
    pub roles: PathBuf,
    /// Colour output: auto (on a terminal, unless NO_COLOR is set), always, never.
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
    /// Secrets directory (age-encrypted relay keys, recipients.txt).
    #[arg(long, global = true, default_value = "secrets", env = "OIGNON_SECRETS")]
    pub secrets: PathBuf,
    /// Identity to decrypt secrets (age identity file or OpenSSH private key); default:
    /// OIGNON_IDENTITY, then ~/.config/oignon/identity (the demo store uses its demo identity).
    #[arg(long, global = true, value_name = "FILE")]
    pub identity: Option<PathBuf>,
    /// ssh config file for every connection (`ssh -F FILE`), so SSH destinations can be aliases.
    #[arg(long, global = true, value_name = "FILE", env = "OIGNON_SSH_CONFIG")]
    pub ssh_config: Option<PathBuf>,
    /// Keep each host's ssh connection this many seconds after its last use, so that the next
    /// run within that time skips the handshake; 0: close them when the run ends. A killed run's
    /// connections end after the same idle time.
    #[arg(
        long,
        global = true,
        value_name = "SECONDS",
        env = "OIGNON_SSH_PERSIST",
        default_value_t = oignon::transport::ssh::DEFAULT_PERSIST_S,
        value_parser = clap::value_parser!(u64).range(0..=86_400)
    )]
    pub ssh_persist: u64,
    /// More logs on stderr (-v info, -vv debug, -vvv trace); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

impl Global {
    /// The input directories, as the library takes them.
    pub fn paths(&self) -> oignon::fleet::Paths {
        oignon::fleet::Paths {
            inventory: self.inventory.clone(),
            roles: self.roles.clone(),
            secrets: self.secrets.clone(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate the inventory, roles and templates; report every problem at once.
    Check(crate::commands::check::Args),
    /// Render each host's files (to stdout, or under --out DIR/HOST/<path>).
    Render(crate::commands::render::Args),
    /// Show what apply would change on every selected host.
    Plan(crate::commands::plan::Args),
    /// Make every selected host match the inventory: plan, confirm, apply (or apply a saved plan).
    Apply(crate::commands::apply::Args),
    /// Relay identities and the family key: keygen, import, rekey, verify.
    Secrets(crate::commands::secrets::Args),
    /// Nickname, RSA fingerprint and ed25519 id of every relay (or the CIISS rsa-fingerprint.txt).
    Fingerprints(crate::commands::secrets::FingerprintsArgs),
    /// How the fleet is now: one row per relay (unit, tor, identity, drift, reboot, certificate,
    /// metrics, last apply); exit 0 healthy, 2 attention, 1 a host unreachable.
    Status(crate::commands::status::Args),
    /// Prometheus: file_sd targets and alert rules for the fleet.
    Monitoring(crate::commands::monitoring::Args),
    /// Print shell completions.
    Completions(crate::commands::completions::Args),
    /// Print the man page (roff).
    Man,
    /// Add a hoster to the inventory (`hoster add NAME --domain DOMAIN`).
    Hoster(crate::commands::hoster::Args),
    /// Add a host and its relays to a hoster's file (`host add NAME --hoster H …`), or retire one
    /// and its relays (`host retire NAME`).
    Host(crate::commands::host::Args),
    /// Check a new host's facts (one round trip, a table), then install what a relay needs.
    Bootstrap(crate::commands::bootstrap::Args),
    /// Move a relay and its identity to another host: one plan over both, never two copies.
    Migrate(crate::commands::migrate::Args),
    /// Stop a relay for good: stop, disable, mask, tombstone, destroy its keys there, archive its
    /// config, and remove it from the inventory.
    Retire(crate::commands::retire::Args),
}
