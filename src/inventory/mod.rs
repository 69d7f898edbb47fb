//! The inventory: TOML files in → a validated [`Fleet`] out, with every problem located.
//!
//! Inheritance: each relay's settings are the fleet's `[defaults]`, overridden by its hoster's
//! `[hoster.defaults]`, then its host's `[host.defaults]`, then the relay's own keys. Scalars: the
//! most specific level wins. `exit_policy_prepend`, `kernel_params_remove`, `sysctl_remove` and `torrc_extra`
//! accumulate from fleet to relay; `sysctl` merges key by key; `roles` and `kernel_params` replace.

pub mod bandwidth;
mod ciiss;
pub mod edit;
pub mod file;
mod introspect;
pub mod load;
pub mod relocate;
mod resolve;
pub mod source;
pub mod text;

pub use resolve::check_nickname;
use resolve::Resolver;

use crate::diagnostic::Diagnostic;
use crate::exit_policy::Rule;
use serde::Serialize;
use source::{Seg, SourceFile};
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;

/// Hardening parameters for the kernel command line (KSPP), unless the inventory says otherwise.
pub const DEFAULT_KERNEL_PARAMS: &[&str] = &[
    "slab_nomerge",
    "init_on_alloc=1",
    "init_on_free=1",
    "page_alloc.shuffle=1",
    "randomize_kstack_offset=on",
    "pti=on",
    "vsyscall=none",
    "mitigations=auto,nosmt",
    "debugfs=off",
];

/// Roles a host gets unless the inventory says otherwise.
pub const DEFAULT_ROLES: &[&str] = &["tor", "exit-policy", "kernel", "hardening"];

/// Where a value was written: a file and the path to the key inside it.
#[derive(Debug, Clone)]
pub struct Origin {
    pub source: usize,
    pub path: Vec<Seg>,
}

/// The validated fleet, ready to render.
#[derive(Debug, Serialize)]
pub struct Fleet {
    pub operator: String,
    pub email: String,
    pub url: String,
    pub proof: String,
    pub manage_identities: bool,
    pub hosts: Vec<HostSpec>,
    /// Where `bootstrap` installs tor from, and the keyring that signs it.
    #[serde(skip)]
    pub tor_source: TorSource,
    /// The oldest tor `bootstrap` accepts on a host.
    #[serde(skip)]
    pub min_tor_version: TorVersion,
}

/// Where `oignon bootstrap` installs tor from (`tor_source` in `[fleet]`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum TorSource {
    /// The Debian release's own `tor` package, from the host's apt sources.
    #[default]
    Debian,
    /// deb.torproject.org, as a deb822 source whose `Signed-By` is this keyring (the file's
    /// path as resolved against the inventory directory).
    TorProject {
        keyring: std::path::PathBuf,
        /// The repository's URI (`tor_repository`).
        uri: String,
    },
}

/// The Tor Project's own repository, the default `tor_repository`.
pub const TORPROJECT_REPOSITORY: &str = "https://deb.torproject.org/torproject.org";

/// A tor version, `0.4.9` or `0.4.9.11` (missing parts are 0), compared part by part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct TorVersion(pub [u32; 4]);

/// The default `min_tor_version`: tor 0.4.9.12 made the directory authorities reject 0.4.8.
pub const DEFAULT_MIN_TOR_VERSION: TorVersion = TorVersion([0, 4, 9, 0]);

impl Default for TorVersion {
    fn default() -> Self {
        DEFAULT_MIN_TOR_VERSION
    }
}

impl TorVersion {
    /// Parses `0.4.9`, `0.4.9.11`, and the start of what tor and dpkg print: `0.4.9.11-0+deb12u1`,
    /// `0.4.9.11-1~bpo12+1`, `0.4.9.11-dev`, `1:0.4.9.11-1` (an epoch is dropped).
    pub fn parse(s: &str) -> Option<TorVersion> {
        let s = s.trim();
        let s = s.split_once(':').map_or(s, |(_, v)| v);
        let end = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(s.len());
        let parts: Vec<&str> = s[..end].trim_end_matches('.').split('.').collect();
        if parts.len() < 2 || parts.len() > 4 {
            return None;
        }
        let mut v = [0u32; 4];
        for (i, p) in parts.iter().enumerate() {
            v[i] = p.parse().ok()?;
        }
        Some(TorVersion(v))
    }
}

impl std::fmt::Display for TorVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let [a, b, c, d] = self.0;
        if d == 0 {
            write!(f, "{a}.{b}.{c}")
        } else {
            write!(f, "{a}.{b}.{c}.{d}")
        }
    }
}

/// How a host boots, i.e. whether oignon manages its kernel command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Boot {
    Grub,
    None,
}

/// One host, all inheritance applied.
#[derive(Debug, Serialize)]
pub struct HostSpec {
    pub name: String,
    pub hoster: String,
    pub hoster_domain: String,
    pub ssh: String,
    pub host_key: Option<String>,
    pub ipv4: Ipv4Addr,
    pub ipv6: Option<Ipv6Addr>,
    pub uplink_bits: u64,
    pub boot: Boot,
    pub roles: Vec<String>,
    /// Where the roles list was written (None: the built-in default).
    #[serde(skip)]
    pub roles_origin: Option<Origin>,
    pub kernel_params: Vec<String>,
    pub sysctl: BTreeMap<String, String>,
    /// Not serialised into templates' `host` (each relay file gets its own `relay`); host-level
    /// templates see `host.instances`.
    #[serde(skip)]
    pub relays: Vec<RelaySpec>,
    #[serde(skip)]
    pub origin: Origin,
}

/// One tor instance, all inheritance applied.
#[derive(Debug, Serialize)]
pub struct RelaySpec {
    pub nickname: String,
    pub orport: u16,
    pub ipv4: Ipv4Addr,
    pub ipv6: Option<Ipv6Addr>,
    /// Bytes per second.
    pub rate: u64,
    pub burst: u64,
    /// This instance's share of the uplink in whole decimal Mbit/s (CIISS `uplinkbw`).
    pub uplink_mbit: u64,
    pub metrics_port: Option<u16>,
    pub exit: bool,
    pub ipv6_exit: bool,
    pub exit_policy_name: String,
    /// The ExitPolicy lines as rendered (prepends, then the named policy).
    /// Not serialised: templates get `relay.exit_policy_lines`, already rendered as text.
    #[serde(skip)]
    pub exit_policy: Vec<Rule>,
    pub sandbox: bool,
    pub noexec: bool,
    pub dos_defense: DosDefense,
    /// The dos-firewall role's limits on this relay's ORPort.
    pub dos_firewall: DosFirewall,
    pub offline_master_key: bool,
    pub torrc_extra: Vec<String>,
    #[serde(skip)]
    pub origin: Origin,
}

/// A loaded inventory: the fleet, the sources (to locate later findings) and the findings.
pub struct Inventory {
    pub sources: Vec<SourceFile>,
    pub fleet: Option<Fleet>,
    pub diagnostics: Vec<Diagnostic>,
}

impl Inventory {
    /// A diagnostic pointing at `origin` (a value, or its key with `key = true`).
    pub fn locate(&self, d: Diagnostic, origin: &Origin, key: bool) -> Diagnostic {
        locate(&self.sources, d, origin, key)
    }
}

fn locate(sources: &[SourceFile], d: Diagnostic, origin: &Origin, key: bool) -> Diagnostic {
    let Some(src) = sources.get(origin.source) else {
        return d;
    };
    let span = if key {
        src.key_span(&origin.path)
    } else {
        src.span(&origin.path)
    };
    d.at(&src.path, &src.text, span)
}

/// Loads and validates the inventory in `dir`.
pub fn load(dir: &Path) -> Inventory {
    match load::load_dir(dir) {
        Ok(l) => resolve(l),
        Err(d) => Inventory {
            sources: vec![],
            fleet: None,
            diagnostics: vec![*d],
        },
    }
}

/// Loads and validates files given as (path, text), in that order: the same pipeline as [`load`]
/// without reading a directory (`host add` checks an edited inventory before writing it).
pub fn load_texts(files: Vec<(std::path::PathBuf, String)>) -> Inventory {
    let mut loaded = load::Loaded {
        sources: vec![],
        files: vec![],
        diagnostics: vec![],
    };
    for (path, text) in files {
        load::load_text(&mut loaded, path, text);
    }
    resolve(loaded)
}

/// Loads and validates files given as (path, text), for fuzzing: [`load_texts`].
#[cfg(test)]
pub fn from_texts(files: Vec<(std::path::PathBuf, String)>) -> Inventory {
    load_texts(files)
}

fn resolve(loaded: load::Loaded) -> Inventory {
    let mut r = Resolver {
        sources: &loaded.sources,
        diags: loaded.diagnostics.clone(),
    };
    let fleet = r.resolve(&loaded.files);
    let mut diagnostics = r.diags;
    // Inherited values are checked once per relay that inherits them: report each finding once.
    let mut seen = std::collections::HashSet::new();
    diagnostics.retain(|d| seen.insert(d.to_string()));
    Inventory {
        sources: loaded.sources,
        fleet,
        diagnostics,
    }
}

#[cfg(test)]
mod fuzz {
    //! The loader and resolver never panic, whatever the bytes of the files.
    use super::*;
    use proptest::prelude::*;

    fn shipped() -> Vec<(std::path::PathBuf, String)> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("inventory");
        let mut v: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .map(|p| {
                let t = std::fs::read_to_string(&p).unwrap();
                (p, t)
            })
            .collect();
        v.sort();
        v
    }

    fn check_all(inv: &Inventory) {
        for d in &inv.diagnostics {
            let _ = d.to_string();
        }
        if let (Some(fleet), Ok(roles)) = (
            &inv.fleet,
            crate::role::Roles::load(
                &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("roles"),
            ),
        ) {
            let store = crate::secrets::Store::open(
                &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("secrets"),
            );
            let _ = crate::secrets::check::findings(inv, fleet, &store);
            let keys = crate::render::Keys {
                store: &store,
                identity: None,
            };
            let _ = crate::render::render(inv, fleet, &roles, |_| true, &keys);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn mutated_shipped_inventory_never_panics(
            file in 0usize..5,
            edits in proptest::collection::vec((any::<prop::sample::Index>(), 0usize..3, "[ -~\n\t\"=#é]{0,6}"), 1..6)
        ) {
            let mut files = shipped();
            let i = file % files.len();
            let mut text = files[i].1.clone();
            for (at, kind, s) in edits {
                let mut pos = at.index(text.len() + 1);
                while !text.is_char_boundary(pos) { pos -= 1; }
                match kind {
                    0 => text.insert_str(pos, &s),
                    1 => { let end = (pos + s.len()).min(text.len()); let mut end = end; while !text.is_char_boundary(end) { end -= 1; } text.replace_range(pos..end, ""); }
                    _ => { let mut end = (pos + s.len()).min(text.len()); while !text.is_char_boundary(end) { end -= 1; } text.replace_range(pos..end, &s); }
                }
            }
            files[i].1 = text;
            check_all(&from_texts(files));
        }

        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,300}") {
            let mut files = shipped();
            files.push(("inventory/zz.toml".into(), text));
            check_all(&from_texts(files));
        }
    }
}

/// Per-source limits on an ORPort (the dos-firewall role). The defaults are torutils', the
/// reference relay operators use: a tor client or relay holds one or two connections to a relay,
/// so more than 8 new connections a minute (burst 8) or 8 at once from one address (IPv6: one
/// /64) is a flood; it is dropped for a day, which outlasts an attack without punishing an
/// address reused by someone else for long.
///
/// `confirm_seconds` is not a limit but the safety net of loading one: a new ruleset stays only
/// if oignon confirms it over a new SSH connection within that many seconds, otherwise the host
/// puts the previous ruleset back by itself. 60 s (deploy-rs's default for its activations) is
/// ten times what a confirmation takes in the lab (a new connection and one command, under 1 s)
/// and long enough for a slow or lossy uplink's SSH handshake, while a change that locks the
/// operator out costs a minute, not a call to the hoster. One value per host (the relay level
/// cannot set `dos_firewall`): the host has one ruleset and one revert timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DosFirewall {
    /// New connections a minute from one source, beyond the burst.
    pub per_minute: u32,
    pub burst: u32,
    /// Connections one source may hold at once.
    pub concurrent: u32,
    /// How long a source over a limit stays dropped.
    pub block_hours: u32,
    /// Seconds a new ruleset waits for oignon's confirmation before the host reverts it.
    pub confirm_seconds: u32,
}

impl Default for DosFirewall {
    fn default() -> Self {
        DosFirewall {
            per_minute: 8,
            burst: 8,
            concurrent: 8,
            block_hours: 24,
            confirm_seconds: 60,
        }
    }
}

/// How a relay's DoS defences are set. `Auto` (the default) writes tor's own default, `auto`: the
/// consensus parameter decides, so the network team can switch a defence on or off for every relay
/// at once (tor's manual: "in doubt, do not change those values"). `On` and `Off` pin it, overriding
/// that switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DosDefense {
    #[default]
    Auto,
    On,
    Off,
}

impl DosDefense {
    /// The value of `DoS…Enabled` in a torrc.
    pub fn torrc_value(self) -> &'static str {
        match self {
            DosDefense::Auto => "auto",
            DosDefense::On => "1",
            DosDefense::Off => "0",
        }
    }
}

impl serde::Serialize for DosDefense {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.torrc_value())
    }
}
