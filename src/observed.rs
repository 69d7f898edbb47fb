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
    /// Every relay directory on the host, with its unit's states and identity (`I` records).
    pub instance_states: BTreeMap<String, InstanceState>,
    /// What `oignon status` asked beyond the plan's facts (`q` requests), if it asked.
    pub status: Option<StatusFacts>,
}

/// One relay directory on the host (`I NAME ACTIVESTATE UNITFILESTATE IDSHA`): found under
/// /etc/tor/instances/ or /var/lib/tor-instances/, whether or not the inventory has it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InstanceState {
    /// systemd's ActiveState of tor@NAME (active, failed, inactive...); None when unknown.
    pub active_state: Option<String>,
    /// systemd's UnitFileState (enabled, disabled, masked...); None when unknown.
    pub unit_file_state: Option<String>,
    /// sha256 of keys/ed25519_master_id_public_key, read as _tor-NAME; None when absent.
    pub id_sha256: Option<String>,
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
