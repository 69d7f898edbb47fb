//! The inventory's TOML files as written by people: every field optional where inheritance allows it.
//!
//! One file may hold `[fleet]` and `[defaults]` (the fleet-wide settings), or one `[hoster]` with its
//! `[[host]]`s and their `[[host.relay]]` instances. Unknown keys are reported (all of them, with a
//! suggestion), never silently ignored; see `load.rs`.

use serde::Deserialize;
use std::collections::BTreeMap;

/// One inventory file.
#[derive(Debug, Default, Deserialize)]
pub struct InventoryFile {
    pub fleet: Option<FleetMeta>,
    pub defaults: Option<Settings>,
    pub hoster: Option<Hoster>,
    #[serde(default)]
    pub host: Vec<Host>,
}

/// Who runs the fleet: feeds ContactInfo (CIISS v2) and the family.
#[derive(Debug, Deserialize)]
pub struct FleetMeta {
    pub operator: String,
    /// Abuse contact, rendered as `email:abuse[]example.org` in ContactInfo.
    pub email: String,
    pub url: String,
    /// CIISS `proof:` (default `uri-rsa`).
    pub proof: Option<String>,
    /// Whether oignon deploys relay identities and the family key from secrets/ (default true).
    /// Off for fleets whose keys are not imported yet: tor then keeps whatever keys the hosts have.
    pub manage_identities: Option<bool>,
    /// Where `oignon bootstrap` installs tor from: `"debian"` (the release's package, default) or
    /// `"torproject"` (deb.torproject.org, which ships every tor release; needs `tor_keyring`).
    pub tor_source: Option<String>,
    /// The Tor Project's archive keyring (OpenPGP, binary), a path relative to the inventory
    /// directory: copied to hosts as the `Signed-By` of the torproject source.
    pub tor_keyring: Option<String>,
    /// The torproject source's URI (default `https://deb.torproject.org/torproject.org`): a
    /// mirror, the repository's onion address (`tor+http://…`), or a local `file:` copy.
    pub tor_repository: Option<String>,
    /// The oldest tor `bootstrap` accepts on a host (`"0.4.9"`: the 0.4.9 series; default), since
    /// the directory authorities reject older series.
    pub min_tor_version: Option<String>,
}

/// A hosting provider; every host of the file belongs to it.
#[derive(Debug, Deserialize)]
pub struct Hoster {
    pub name: String,
    /// CIISS `hoster:` value, e.g. `gandi.net`.
    pub domain: String,
    pub defaults: Option<Settings>,
}

/// A machine running one or more relay instances.
#[derive(Debug, Deserialize)]
pub struct Host {
    pub name: String,
    /// SSH destination (an alias of `~/.ssh/config` works); defaults to `name`.
    pub ssh: Option<String>,
    /// Pinned SSH host key (`ssh-ed25519 AAAA…`): oignon then checks it and nothing else.
    pub host_key: Option<String>,
    pub ipv4: String,
    pub ipv6: Option<String>,
    /// The host's uplink, decimal: `"100 Mbit/s"`, `"1 Gbit/s"`.
    pub uplink: String,
    /// `grub` (kernel command line managed) or `none`.
    pub boot: Option<String>,
    pub defaults: Option<Settings>,
    #[serde(default)]
    pub relay: Vec<Relay>,
}

/// A tor instance (Debian's `tor@NAME`).
#[derive(Debug, Deserialize)]
pub struct Relay {
    pub nickname: String,
    pub orport: u16,
    /// Overrides of the host's addresses, for a host with several.
    pub ipv4: Option<String>,
    pub ipv6: Option<String>,
    /// Fraction of the host's uplink for this instance (default: an equal share).
    pub bandwidth_share: Option<f64>,
    /// Explicit rate/burst (`"40 Mbit/s"`), overriding the share.
    pub bandwidth_rate: Option<String>,
    pub bandwidth_burst: Option<String>,
    pub metrics_port: Option<u16>,
    pub exit: Option<bool>,
    pub exit_policy: Option<String>,
    pub exit_policy_prepend: Option<Vec<String>>,
    pub ipv6_exit: Option<bool>,
    pub torrc_extra: Option<Vec<String>>,
    /// `OfflineMasterKey 1`: the ed25519 master key stays in secrets/; hosts get a signing key
    /// and certificate, renewed with `oignon secrets renew-signing`.
    pub offline_master_key: Option<bool>,
}

/// Settings inherited fleet → hoster → host → relay.
///
/// Scalars: the most specific level wins. Lists named `*_prepend`, `*_remove` and `torrc_extra`
/// accumulate (fleet first). `sysctl` maps merge key by key. `kernel_params` and `roles` replace.
/// `dos_defense` as written: a word or a boolean.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum DosSetting {
    Flag(bool),
    Word(String),
}

#[derive(Debug, Default, Clone, Deserialize)]
pub struct Settings {
    pub roles: Option<Vec<String>>,
    pub exit: Option<bool>,
    pub exit_policy: Option<String>,
    pub exit_policy_prepend: Option<Vec<String>>,
    pub ipv6_exit: Option<bool>,
    /// MetricsPort of a host's first instance; the next instances take the following ports.
    pub metrics_port: Option<u16>,
    pub sandbox: Option<bool>,
    pub noexec: Option<bool>,
    /// DoS defences: DoSCircuitCreationEnabled, DoSConnectionEnabled, DoSStreamCreationEnabled
    /// (exits): `"auto"` (tor's default: the consensus decides), `"on"`/`true` or `"off"`/`false`.
    pub dos_defense: Option<DosSetting>,
    /// Burst as a multiple of the rate (≥ 1.0).
    pub burst_factor: Option<f64>,
    /// The dos-firewall role's per-source limits on each ORPort; merged key by key.
    pub dos_firewall: Option<DosFirewallSetting>,
    pub kernel_params: Option<Vec<String>>,
    pub kernel_params_remove: Option<Vec<String>>,
    pub sysctl: Option<BTreeMap<String, SysctlValue>>,
    /// Default sysctl keys to leave out (accumulates), for kernels that lack them.
    pub sysctl_remove: Option<Vec<String>>,
    pub torrc_extra: Option<Vec<String>>,
    /// `OfflineMasterKey 1`: the ed25519 master key stays in secrets/; hosts get a signing key
    /// and certificate, renewed with `oignon secrets renew-signing`.
    pub offline_master_key: Option<bool>,
}

/// `dos_firewall = { per_minute = 8, burst = 8, concurrent = 8, block_hours = 24,
/// confirm_seconds = 60 }` as written; each key inherits on its own (a host may change one and
/// keep the others).
#[derive(Debug, Default, Clone, Deserialize)]
pub struct DosFirewallSetting {
    pub per_minute: Option<u32>,
    pub burst: Option<u32>,
    pub concurrent: Option<u32>,
    pub block_hours: Option<u32>,
    /// The confirm-or-revert window of a firewall change on the host, in seconds.
    pub confirm_seconds: Option<u32>,
}

/// A sysctl value as written: `2` or `"1"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum SysctlValue {
    Int(i64),
    Str(String),
}

impl std::fmt::Display for SysctlValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SysctlValue::Int(i) => write!(f, "{i}"),
            SysctlValue::Str(s) => f.write_str(s),
        }
    }
}
