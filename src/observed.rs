//! What a host looks like now, as gathered in one round trip by `src/remote/gather.sh` (whose
//! answer `src/remote/gather.rs` reads into these types).

use std::collections::BTreeMap;

/// A managed path on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObservedFile {
    Absent,
    /// Something that is not a regular file (a directory, a symlink...): oignon will not touch it.
    Other(String),
    Present {
        owner: String,
        group: String,
        mode: u32,
        sha256: String,
        /// The content, for non-secret files.
        content: Option<Vec<u8>>,
    },
}

impl ObservedFile {
    pub fn sha256(&self) -> Option<&str> {
        match self {
            ObservedFile::Present { sha256, .. } => Some(sha256),
            _ => None,
        }
    }
}

/// A relay instance's system-level state.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObservedInstance {
    pub user_exists: bool,
    pub data_dir_exists: bool,
    /// `systemctl is-active`: active, inactive, failed, unknown...
    pub active: String,
}

/// Everything gathered from one host.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    pub files: BTreeMap<String, ObservedFile>,
    pub instances: BTreeMap<String, ObservedInstance>,
    /// Every tor instance found on the host (`I` records), by name.
    pub instance_states: BTreeMap<String, InstanceState>,
    /// Tombstones of relays that left this host (`X` records), by name.
    pub tombstones: BTreeMap<String, Tombstone>,
    /// Relays migrated to this host (`N` records), by name; `to` holds the host they came from.
    pub arrivals: BTreeMap<String, Tombstone>,
    /// Directories under /etc/tor/instances.
    pub instance_dirs: Vec<String>,
    /// Path → sha256 of what the last apply wrote.
    pub managed: BTreeMap<String, String>,
    /// Handler commands an interrupted apply left pending.
    pub pending: Vec<String>,
    /// The running kernel's command line (absent for the local transport).
    pub cmdline: Option<String>,
    pub tor_version: Option<String>,
    pub os: Option<String>,
    /// Who holds the apply lock, if anyone.
    pub lock: Option<String>,
    /// The name a dead apply left in the lock file (the lock itself died with it).
    pub lock_left: Option<String>,
    /// What `oignon status` asked beyond the plan's facts (`q` requests), if it asked.
    pub status: Option<StatusFacts>,
}

/// What `oignon status` asks beyond the plan (`q` requests), per instance and for the host.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StatusFacts {
    pub instances: BTreeMap<String, InstanceFacts>,
    /// `/var/lib/oignon/last-apply`: when (UTC) and by whom, if an apply recorded it.
    pub last_apply: Option<(String, String)>,
    /// `/run/reboot-required` exists (Debian's packages ask for a reboot).
    pub reboot_required: bool,
}

/// One instance's facts for `oignon status` (an `S` record).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InstanceFacts {
    /// The RSA fingerprint tor wrote in its DataDirectory's `fingerprint`.
    pub fingerprint: Option<String>,
    /// A `fingerprint` file is there but is not one tor wrote (unreadable, or not a fingerprint).
    pub fingerprint_unreadable: bool,
    /// keys/ed25519_signing_cert's bytes (OfflineMasterKey relays).
    pub signing_cert: Option<Vec<u8>>,
    /// Whether its MetricsPort answered: None when none was asked.
    pub metrics_up: Option<bool>,
}

/// A tor instance found on a host (the `I` record): systemd's view of `tor@NAME` and the hash of
/// the identity it would run with. Every instance is reported, managed or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceState {
    pub name: String,
    /// systemd's ActiveState (`active`, `inactive`, `failed`...), `-` when unknown.
    pub active_state: String,
    /// systemd's UnitFileState (`enabled`, `disabled`, `masked`...), `-` when unknown.
    pub unit_file_state: String,
    /// sha256 of keys/ed25519_master_id_public_key, read as `_tor-NAME`; None when absent.
    pub id_sha: Option<String>,
}

impl InstanceState {
    /// From the record's fields, each checked (a host's answer is data): None when one is not
    /// what gather.sh sends.
    pub fn parse(name: &str, active: &str, unit_file: &str, id_sha: &str) -> Option<InstanceState> {
        let word = |s: &str| {
            !s.is_empty() && s.len() <= 40 && s.chars().all(|c| c.is_ascii_lowercase() || c == '-')
        };
        let sha = match id_sha {
            "-" => None,
            s if s.len() == 64 && s.chars().all(|c| c.is_ascii_hexdigit()) => Some(s.to_string()),
            _ => return None,
        };
        (is_nickname(name) && word(active) && word(unit_file)).then(|| InstanceState {
            name: name.to_string(),
            active_state: active.to_string(),
            unit_file_state: unit_file.to_string(),
            id_sha: sha,
        })
    }

    /// Whether systemd runs it (or is bringing it up).
    pub fn is_active(&self) -> bool {
        matches!(
            self.active_state.as_str(),
            "active" | "activating" | "reloading"
        )
    }
}

/// A tombstone (`X NAME TO WHEN FINGERPRINT`, from /var/lib/oignon/moved/NAME): the relay left this
/// host, for host TO (`-`: retired), at WHEN, with identity FINGERPRINT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tombstone {
    pub name: String,
    pub to: String,
    pub when: String,
    pub fingerprint: String,
}

impl Tombstone {
    /// From the record's fields (`["X" or "N", name, to, when, fp]`), each checked; None
    /// otherwise.
    pub fn parse(f: &[&str]) -> Option<Tombstone> {
        let ["X" | "N", name, to, when, fp] = f else {
            return None;
        };
        let ok = |s: &str, extra: &str| {
            !s.is_empty()
                && s.len() <= 253
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || extra.contains(c))
        };
        (is_nickname(name) && ok(to, ".-") && ok(when, ":.+-") && ok(fp, "-")).then(|| Tombstone {
            name: name.to_string(),
            to: to.to_string(),
            when: when.to_string(),
            fingerprint: fp.to_string(),
        })
    }
}

/// tor's nickname rule: 1–19 ASCII letters and digits.
fn is_nickname(s: &str) -> bool {
    !s.is_empty() && s.len() <= 19 && s.chars().all(|c| c.is_ascii_alphanumeric())
}
