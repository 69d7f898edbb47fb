//! `oignon secrets …` and `oignon fingerprints`: relay identities and the family key, made by tor,
//! kept age-encrypted in the secrets directory.

use crate::cli::Global;
use oignon::error::Outcome;
use oignon::secrets::admin::{self, ImportOptions};
use oignon::secrets::Store;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Sub,
}

#[derive(Debug, clap::Subcommand)]
pub enum Sub {
    /// Create relay identities with tor (networking disabled) and encrypt them to recipients.txt.
    Keygen {
        #[arg(required = true, value_name = "NICKNAME")]
        nicknames: Vec<String>,
        /// Replace an existing identity (the old relay's reputation is lost).
        #[arg(long)]
        force: bool,
    },
    /// Create the family key with `tor --keygen-family` and record its FamilyId.
    FamilyKeygen {
        #[arg(long)]
        force: bool,
    },
    /// Adopt the identities of relays already running on HOST (one SSH round trip), checking each
    /// against the fingerprint the running relay reports.
    Import {
        #[arg(value_name = "HOST")]
        host: String,
        #[command(flatten)]
        targets: super::plan::Targets,
    },
    /// Re-encrypt every secret to the current recipients.txt (after an admin joins or leaves).
    Rekey,
    /// OfflineMasterKey relays: a new signing key and certificate from the master key in secrets/.
    RenewSigning {
        #[arg(required = true, value_name = "NICKNAME")]
        nicknames: Vec<String>,
        /// How long the certificate is valid, in tor's words (`30 days`, `2 months`).
        #[arg(long, default_value = "30 days")]
        lifetime: String,
    },
    /// Decrypt each relay's keys and check with tor that they give the recorded fingerprint.
    Verify,
}

#[derive(Debug, clap::Args)]
pub struct FingerprintsArgs {
    /// Print the body of https://URL/.well-known/tor-relay/rsa-fingerprint.txt (CIISS uri-rsa proof).
    #[arg(long)]
    pub rsa_fingerprint_txt: bool,
}

pub fn run(g: &Global, a: Args) -> anyhow::Result<Outcome> {
    let store = Store::open(&g.secrets);
    let identity = g.identity.as_deref();
    let done = match a.command {
        Sub::Keygen { nicknames, force } => admin::keygen(&store, &nicknames, force),
        Sub::FamilyKeygen { force } => admin::family_keygen(&store, force),
        Sub::Import { host, targets } => admin::import(
            &store,
            &ImportOptions {
                paths: &g.paths(),
                host: &host,
                local: targets.local,
                ssh_config: g.ssh_config.as_deref(),
            },
        ),
        Sub::Rekey => admin::rekey(&store, identity),
        Sub::RenewSigning {
            nicknames,
            lifetime,
        } => admin::renew_signing(&g.paths(), identity, &store, &nicknames, &lifetime),
        Sub::Verify => admin::verify(&store, identity),
    };
    Ok(done?)
}

pub fn fingerprints(g: &Global, a: FingerprintsArgs) -> anyhow::Result<Outcome> {
    Ok(admin::fingerprints(&g.paths(), a.rsa_fingerprint_txt)?)
}
