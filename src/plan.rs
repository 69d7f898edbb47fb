//! The plan: desired state vs observed state → per host, ordered changes with reasons, the handlers
//! they trigger, and notices. Pure: no I/O. The same structure is shown as text, printed as JSON
//! (`--json`, schema [`SCHEMA`]) and saved by `plan --out` for `apply FILE`.

use crate::desired::{DesiredFile, DesiredHost, Handler};
use crate::error::HostError;
use crate::observed::{Observed, ObservedFile};
use crate::role::{HandlerKind, ValidatorKind};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// The version of the plan's JSON form. Bumped on any incompatible change (2: `inputs` and
/// `transport`; a saved plan is checked against a fresh plan, never applied from its own content).
pub const SCHEMA: &str = "oignon.plan/2";

/// A plan for every selected host.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    pub schema: String,
    /// Digests of what the plan was made from: `apply FILE` refuses a plan whose inputs changed.
    pub inputs: crate::saved::Inputs,
    /// How the hosts were reached: `apply FILE` goes the same way.
    pub transport: crate::saved::RunTransport,
    pub hosts: Vec<HostPlan>,
}

/// One host's plan, or why it could not be made.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostPlan {
    pub host: String,
    /// `ssh DEST` or `local DIR`.
    pub transport: String,
    /// Set when the host could not be planned (unreachable, refused key, gather failed). Saved
    /// as its text, so the JSON shape of schema `oignon.plan/2` stays a string or null.
    #[serde(
        serialize_with = "HostError::serialize_text",
        deserialize_with = "HostError::deserialize_text"
    )]
    pub error: Option<HostError>,
    pub changes: Vec<Change>,
    pub handlers: Vec<HandlerRun>,
    /// Things to know that are not changes: reboot required, lock held, unmanaged instances.
    pub notices: Vec<String>,
    /// sha256 (None: absent) of every path as observed, for stale-plan detection by `apply FILE`.
    pub observed: BTreeMap<String, Option<String>>,
}

impl HostPlan {
    /// The plan of a host that could not be planned.
    pub fn failed(transport: &str, error: HostError) -> HostPlan {
        HostPlan {
            host: error.host().to_string(),
            transport: transport.into(),
            error: Some(error),
            changes: vec![],
            handlers: vec![],
            notices: vec![],
            observed: BTreeMap::new(),
        }
    }

    /// Whether applying would change anything on the host.
    pub fn has_changes(&self) -> bool {
        !self.changes.is_empty() || !self.handlers.is_empty()
    }

    pub fn count(&self, kind: ChangeKind) -> usize {
        self.changes.iter().filter(|c| c.kind == kind).count()
    }

    /// Whether the host's kernel command line lacks what the inventory asks (a reboot notice).
    pub fn needs_reboot(&self) -> bool {
        self.notices
            .iter()
            .any(|n| n.starts_with("reboot required"))
    }
}

/// A relay's identity is never overwritten by accident: that is how relays are lost. Each host
/// whose plan would replace an instance's identity keys (a conflict) is refused, unless that
/// instance is in `replace` (`--replace-identity`, any case); nothing is written to it.
pub fn refuse_identity_changes(plan: &mut Plan, replace: &[String]) {
    for h in plan.hosts.iter_mut().filter(|h| h.error.is_none()) {
        let refused: Vec<String> = h
            .changes
            .iter()
            .filter(|c| c.conflict)
            .filter_map(|c| c.instance.clone())
            .filter(|i| !replace.iter().any(|r| r.eq_ignore_ascii_case(i)))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if !refused.is_empty() {
            h.error = Some(HostError::IdentityConflict {
                host: h.host.clone(),
                instances: refused,
            });
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChangeKind {
    /// A file to create.
    Create,
    /// A file whose content changes (maybe its metadata too).
    Update,
    /// Only owner, group or mode change.
    Metadata,
    /// A managed file that left the inventory: archived, then removed.
    Remove,
    /// A relay instance to create (user, group, DataDirectory, config dir).
    CreateInstance,
    /// A relay instance that left the inventory: stopped, disabled, config archived.
    RemoveInstance,
}

/// One change on a host.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Change {
    pub kind: ChangeKind,
    /// The file's path, or the instance name for instance changes.
    pub target: String,
    pub reason: String,
    /// The file was edited on the host since oignon last wrote it.
    pub drift: bool,
    /// A relay identity key on the host differs from the one in secrets/: apply refuses it unless
    /// told `--replace-identity NICKNAME` (overwriting a live relay's identity loses the relay).
    #[serde(default)]
    pub conflict: bool,
    pub secret: bool,
    pub old_sha256: Option<String>,
    pub new_sha256: Option<String>,
    pub owner: Option<String>,
    pub group: Option<String>,
    pub mode: Option<u32>,
    /// Unified diff, for non-secret files.
    pub diff: Option<String>,
    /// The desired content, base64, for non-secret files, for review. Never secrets. `apply FILE`
    /// never writes it: it applies a fresh render, after checking this plan matches it.
    pub content_base64: Option<String>,
    pub validate: Option<ValidatorKind>,
    pub instance: Option<String>,
    /// The role that manages the file (`tor`, `kernel`, `hardening`, `secrets`...).
    #[serde(default)]
    pub role: Option<String>,
}

/// A handler to run after the changes, with the command and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandlerRun {
    /// The command, as argv.
    pub command: Vec<String>,
    pub reason: String,
}

/// torrc options tor cannot take on a reload (SIGHUP) while running, or that touch its listeners,
/// identity or sandbox: a change to any of them restarts the instance; anything else reloads it.
pub const RESTART_OPTIONS: &[&str] = &[
    "address",
    "controlport",
    "datadirectory",
    "familyid",
    "keydirectory",
    "metricsport",
    "noexec",
    "orport",
    "outboundbindaddress",
    "sandbox",
    "socksport",
    "user",
];

/// The handler that loads the host's nftables rulesets with confirm-or-revert (apply.sh).
pub const NFT_LOAD: &str = "oignon-nft-load";

/// Seconds a new firewall ruleset of `desired` waits for oignon's confirmation before the host
/// restores the old one: the inventory's `dos_firewall.confirm_seconds` (60 by default, 10 to
/// 3600, checked where the inventory is read).
pub fn firewall_window(desired: &DesiredHost) -> u64 {
    desired.firewall_window
}

/// Plans one host.
pub fn plan_host(desired: &DesiredHost, observed: &Observed, transport: &str) -> HostPlan {
    let mut p = HostPlan {
        host: desired.name.clone(),
        transport: transport.into(),
        error: None,
        changes: vec![],
        handlers: vec![],
        notices: vec![],
        observed: observed
            .files
            .iter()
            .map(|(k, v)| (k.clone(), v.sha256().map(str::to_string)))
            .collect(),
    };
    let new_instances = instance_creations(&mut p, desired, observed);
    let triggered = file_changes(&mut p, desired, observed);
    removals(&mut p, desired, observed);
    instance_removals(&mut p, desired, observed);
    p.handlers = handlers(desired, observed, &triggered, &new_instances);
    for c in p
        .changes
        .iter()
        .filter(|c| c.kind == ChangeKind::RemoveInstance)
    {
        p.handlers.push(HandlerRun {
            command: vec![
                "systemctl".into(),
                "disable".into(),
                "--now".into(),
                format!("tor@{}", c.target),
            ],
            reason: format!("instance {} left the inventory", c.target),
        });
    }
    notices(&mut p, desired, observed, transport);
    refuse_tombstoned(&mut p, desired, observed);
    p
}

/// One identity, one running place: a relay whose tombstone is on this host (it was migrated or
/// retired from here) is never created or started here again by a plan, whatever the inventory
/// says (an older checkout's, a colleague's), unless the operator says `--resurrect NICKNAME`
/// ([`allow_resurrect`]).
fn refuse_tombstoned(p: &mut HostPlan, desired: &DesiredHost, observed: &Observed) {
    let mut instances = vec![];
    let mut why = vec![];
    for i in &desired.instances {
        if let Some(t) = observed.tombstones.get(i) {
            instances.push(i.clone());
            why.push(if t.to == "-" {
                format!("{i} was retired at {}", t.when)
            } else {
                format!(
                    "{i} moved to host {} at {}, fingerprint {}",
                    t.to, t.when, t.fingerprint
                )
            });
        }
    }
    if !instances.is_empty() {
        p.error = Some(HostError::Tombstoned {
            host: p.host.clone(),
            instances,
            why,
        });
    }
}

/// Lifts the tombstone refusal for the relays named (`--resurrect NICKNAME`, any case).
pub fn allow_resurrect(plan: &mut Plan, names: &[String]) {
    for h in &mut plan.hosts {
        if let Some(HostError::Tombstoned { instances, why, .. }) = &mut h.error {
            let keep: Vec<bool> = instances
                .iter()
                .map(|i| !names.iter().any(|n| n.eq_ignore_ascii_case(i)))
                .collect();
            let mut k = keep.iter();
            instances.retain(|_| *k.next().unwrap_or(&true));
            let mut k = keep.iter();
            why.retain(|_| *k.next().unwrap_or(&true));
            if instances.is_empty() {
                h.error = None;
            }
        }
    }
}

/// The relays `--resurrect` lets this host's plan bring back (their tombstones are here).
pub fn resurrected(observed: &Observed, desired: &DesiredHost, names: &[String]) -> Vec<String> {
    desired
        .instances
        .iter()
        .filter(|i| observed.tombstones.contains_key(*i))
        .filter(|i| names.iter().any(|n| n.eq_ignore_ascii_case(i)))
        .cloned()
        .collect()
}

/// Across the hosts gathered: one relay identity (the sha256 of its ed25519 master public key)
/// active on two hosts refuses both hosts' plans, each naming the other.
pub fn refuse_duplicate_identities(plan: &mut Plan, observed: &[(&str, &Observed)]) {
    let mut active: BTreeMap<&str, Vec<(&str, &str)>> = BTreeMap::new();
    for (host, o) in observed {
        for st in o.instance_states.values().filter(|s| s.is_active()) {
            if let Some(sha) = &st.id_sha {
                active.entry(sha).or_default().push((host, &st.name));
            }
        }
    }
    for (sha, places) in active.iter().filter(|(_, v)| v.len() > 1) {
        for (i, (host, inst)) in places.iter().enumerate() {
            let (other, other_inst) = places[(i + 1) % places.len()];
            if let Some(h) = plan.hosts.iter_mut().find(|h| h.host == *host) {
                h.error = Some(HostError::DuplicateIdentity {
                    host: host.to_string(),
                    instance: inst.to_string(),
                    other: other.to_string(),
                    other_instance: other_inst.to_string(),
                    id_sha: sha.to_string(),
                });
            }
        }
    }
}

/// One identity, one running place, before it starts: a host whose plan would run an instance
/// (create it, start it, or restart it with other keys) with an identity that is active on another
/// gathered host is refused, naming that host, and nothing is written to it. The identity is the
/// sha256 of the ed25519 master public key the instance would run with: the one the plan deploys
/// (made from secrets/ by `secrets::master_public_key`), else the one already in its
/// DataDirectory. An instance already running here with it is [`refuse_duplicate_identities`]'
/// case, which refuses both hosts. A host already refused keeps its first reason.
pub fn refuse_starting_elsewhere(plan: &mut Plan, gathered: &[(&DesiredHost, &Observed)]) {
    // Instances a host's plan stops (they left the inventory there): host, instance.
    let leaving: BTreeSet<(String, String)> = plan
        .hosts
        .iter()
        .flat_map(|h| {
            h.changes
                .iter()
                .filter(|c| c.kind == ChangeKind::RemoveInstance)
                .map(|c| (h.host.clone(), c.target.clone()))
        })
        .collect();
    for (desired, observed) in gathered {
        let Some(h) = plan
            .hosts
            .iter_mut()
            .find(|h| h.host == desired.name && h.error.is_none())
        else {
            continue;
        };
        for inst in &desired.instances {
            let Some(sha) = identity_after(desired, observed, inst) else {
                continue;
            };
            let here = observed.instance_states.get(inst);
            if here.is_some_and(|s| s.is_active() && s.id_sha.as_deref() == Some(sha.as_str())) {
                continue;
            }
            let elsewhere = gathered
                .iter()
                .filter(|(d, _)| d.name != desired.name)
                .find_map(|(d, o)| {
                    o.instance_states
                        .values()
                        .find(|s| s.is_active() && s.id_sha.as_deref() == Some(sha.as_str()))
                        .map(|s| (d.name.clone(), s.name.clone()))
                });
            if let Some((other, other_instance)) = elsewhere {
                let stopped_there = leaving.contains(&(other.clone(), other_instance.clone()));
                h.error = Some(HostError::StartsElsewhereActive {
                    stopped_there,
                    host: desired.name.clone(),
                    instance: inst.clone(),
                    other,
                    other_instance,
                    id_sha: sha,
                });
                break;
            }
        }
    }
}

/// The sha256 of the ed25519 master public key instance `inst` runs with once the plan is
/// applied: the file the plan deploys (render.rs's path), else the one on the host (gather's
/// IDSHA); None when neither is known.
fn identity_after(desired: &DesiredHost, observed: &Observed, inst: &str) -> Option<String> {
    let path = format!("/var/lib/tor-instances/{inst}/keys/ed25519_master_id_public_key");
    desired
        .files
        .iter()
        .find(|f| f.path == path)
        .map(|f| f.sha256().to_string())
        .or_else(|| {
            observed
                .instance_states
                .get(inst)
                .and_then(|s| s.id_sha.clone())
        })
}

/// Relay instances the host lacks (no user or no DataDirectory yet): one change each.
fn instance_creations<'a>(
    p: &mut HostPlan,
    desired: &'a DesiredHost,
    observed: &Observed,
) -> BTreeSet<&'a str> {
    let new_instances: BTreeSet<&str> = desired
        .instances
        .iter()
        .filter(|i| {
            observed
                .instances
                .get(*i)
                .is_none_or(|o| !o.user_exists || !o.data_dir_exists)
        })
        .map(String::as_str)
        .collect();
    for i in &new_instances {
        p.changes.push(Change {
            kind: ChangeKind::CreateInstance,
            target: i.to_string(),
            reason: format!("new relay instance: user and group _tor-{i}, /var/lib/tor-instances/{i} (02700), /etc/tor/instances/{i}/"),
            instance: Some(i.to_string()),
            ..blank()
        });
    }
    new_instances
}

/// Each desired file against what the host has: create, update (with drift and identity
/// conflicts), metadata; and the handlers each change triggers.
fn file_changes<'a>(
    p: &mut HostPlan,
    desired: &'a DesiredHost,
    observed: &'a Observed,
) -> Vec<Trigger<'a>> {
    use base64::Engine as _;
    let mut triggered: Vec<Trigger> = vec![];
    for f in &desired.files {
        let new_sha = f.sha256();
        // By reference: an observed file holds its content, which the plan reads but never keeps.
        let obs = observed.files.get(&f.path).unwrap_or(&ObservedFile::Absent);
        let content_base64 = (!f.content.is_secret())
            .then(|| base64::engine::general_purpose::STANDARD.encode(f.content.bytes()));
        let base = Change {
            target: f.path.clone(),
            secret: f.content.is_secret(),
            new_sha256: Some(new_sha.to_string()),
            owner: Some(f.owner.clone()),
            group: Some(f.group.clone()),
            mode: Some(f.mode),
            content_base64,
            validate: f.validate,
            instance: f.instance.clone(),
            role: Some(f.role.clone()),
            ..blank()
        };
        match obs {
            ObservedFile::Other(kind) => {
                p.error = Some(HostError::NotAFile {
                    host: p.host.clone(),
                    path: f.path.clone(),
                    kind: kind.clone(),
                });
            }
            ObservedFile::Absent => {
                let diff = (!f.content.is_secret())
                    .then(|| crate::diff::unified(&f.path, b"", f.content.bytes()));
                let reason = if observed.managed.contains_key(&f.path) {
                    "deleted on the host since the last apply"
                } else {
                    "new file"
                };
                p.changes.push(Change {
                    kind: ChangeKind::Create,
                    reason: reason.into(),
                    drift: observed.managed.contains_key(&f.path),
                    diff,
                    ..base
                });
                if let Some(h) = &f.handler {
                    triggered.push((h.clone(), format!("{} created", f.path), Some(f), None));
                }
            }
            ObservedFile::Present {
                owner,
                group,
                mode,
                sha256,
                content,
            } => {
                let meta_differs = *owner != f.owner || *group != f.group || *mode != f.mode;
                let recorded = observed.managed.get(&f.path);
                let drift = recorded.is_some_and(|r| r != sha256);
                if sha256 != new_sha {
                    let reason = match recorded {
                        _ if drift && recorded.is_some_and(|r| *r == new_sha) => "drift: edited on the host since the last apply".to_string(),
                        _ if drift => "drift: edited on the host since the last apply, and the inventory changed".to_string(),
                        Some(_) => "the inventory changed".to_string(),
                        None => "exists on the host, not yet managed by oignon".to_string(),
                    };
                    let diff = match (&content, f.content.is_secret()) {
                        (Some(old), false) => {
                            Some(crate::diff::unified(&f.path, old, f.content.bytes()))
                        }
                        _ => None,
                    };
                    let reason = if meta_differs {
                        format!("{reason}; {}", meta_change(owner, group, *mode, f))
                    } else {
                        reason
                    };
                    let conflict = is_identity_key(&f.path);
                    let reason = if conflict {
                        format!(
                            "CONFLICT: the relay identity on the host differs from the one in secrets/; apply refuses to overwrite it without --replace-identity {}",
                            f.instance.as_deref().unwrap_or("NICKNAME")
                        )
                    } else {
                        reason
                    };
                    p.changes.push(Change {
                        kind: ChangeKind::Update,
                        reason,
                        drift,
                        conflict,
                        old_sha256: Some(sha256.clone()),
                        diff,
                        ..base
                    });
                    if let Some(h) = &f.handler {
                        triggered.push((
                            h.clone(),
                            format!("{} changed", f.path),
                            Some(f),
                            content.as_deref(),
                        ));
                    }
                } else if meta_differs {
                    p.changes.push(Change {
                        kind: ChangeKind::Metadata,
                        reason: meta_change(owner, group, *mode, f),
                        drift,
                        old_sha256: Some(sha256.clone()),
                        content_base64: None,
                        ..base
                    });
                    // Metadata changes tor cares about (key files) restart through their handler.
                    if let Some(h) = &f.handler {
                        if f.content.is_secret() {
                            triggered.push((
                                h.clone(),
                                format!("{} owner or mode changed", f.path),
                                Some(f),
                                None,
                            ));
                        }
                    }
                }
            }
        }
    }
    triggered
}

/// What the last apply wrote that is no longer desired (tor's DataDirectory excepted: a notice).
fn removals(p: &mut HostPlan, desired: &DesiredHost, observed: &Observed) {
    // Removals: what the last apply wrote that is no longer desired.
    let desired_paths: BTreeSet<&str> = desired.files.iter().map(|f| f.path.as_str()).collect();
    for (path, recorded) in &observed.managed {
        if desired_paths.contains(path.as_str()) {
            continue;
        }
        if in_data_dir(path) {
            if observed
                .files
                .get(path)
                .is_some_and(|f| f.sha256().is_some())
            {
                p.notices.push(format!("{path} is no longer in the inventory; oignon leaves tor's DataDirectory alone: remove it by hand once the relay is retired for good"));
            }
            continue;
        }
        if let Some(ObservedFile::Present { sha256, .. }) = observed.files.get(path) {
            let drift = sha256 != recorded;
            p.changes.push(Change {
                kind: ChangeKind::Remove,
                target: path.clone(),
                reason: "no longer in the inventory (archived under /var/backups/oignon/ first)"
                    .into(),
                drift,
                old_sha256: Some(sha256.clone()),
                ..blank()
            });
        }
    }
}

/// Instances oignon configured that left the inventory; unmanaged ones get a notice.
fn instance_removals(p: &mut HostPlan, desired: &DesiredHost, observed: &Observed) {
    // Instances oignon configured that left the inventory.
    let desired_instances: BTreeSet<&str> = desired.instances.iter().map(String::as_str).collect();
    for d in &observed.instance_dirs {
        if desired_instances.contains(d.as_str()) {
            continue;
        }
        let torrc = format!("/etc/tor/instances/{d}/torrc");
        if let Some(a) = observed.arrivals.get(d) {
            // Migrated here: an inventory without it here is older than the move (a colleague's
            // checkout), and would take the relay down. Its end here is `oignon retire`.
            p.error = Some(HostError::Arrived {
                host: p.host.clone(),
                instance: d.clone(),
                from: a.to.clone(),
                when: a.when.clone(),
            });
        } else if observed.managed.contains_key(&torrc) {
            p.changes.push(Change {
                kind: ChangeKind::RemoveInstance,
                target: d.clone(),
                reason: "relay left the inventory: stop and disable tor@".to_string()
                    + d
                    + ", archive its config (its keys stay in /var/lib/tor-instances)",
                instance: Some(d.clone()),
                ..blank()
            });
        } else {
            p.notices.push(format!(
                "tor instance `{d}` exists on the host but is not managed by oignon; left alone"
            ));
        }
    }
}

/// What the plan says besides changes: reboots, local-image limits, the render's notices, locks.
fn notices(p: &mut HostPlan, desired: &DesiredHost, observed: &Observed, transport: &str) {
    if let (Some(want), Some(cmdline)) = (&desired.kernel_params, &observed.cmdline) {
        let have: BTreeSet<&str> = cmdline.split_whitespace().collect();
        let missing: Vec<&str> = want
            .iter()
            .map(String::as_str)
            .filter(|w| !have.contains(w))
            .collect();
        if !missing.is_empty() {
            p.notices.push(format!(
                "reboot required: the running kernel's command line (/proc/cmdline) lacks {}{}",
                missing.join(" "),
                if p.changes
                    .iter()
                    .any(|c| c.target.starts_with("/etc/default/grub"))
                {
                    " (live after this apply, update-grub and a reboot)"
                } else {
                    " (run `oignon apply --reboot` or reboot the host)"
                }
            ));
        }
    }
    if transport.starts_with("local ") && p.handlers.iter().any(|h| h.command == ["update-grub"]) {
        p.notices.push("local image: update-grub does not run here; the new kernel command line is pending until update-grub runs in the image (chroot) or on its first boot".into());
    }
    p.notices.extend(desired.notices.iter().cloned());
    if let Some(lock) = &observed.lock {
        p.notices
            .push(format!("an apply holds the lock on this host: {lock}"));
    }
    if let Some(left) = &observed.lock_left {
        p.notices.push(format!(
            "an apply was interrupted on this host ({left}); its lock died with it, and the next apply takes over"
        ));
    }
}

/// A handler triggered by a file change: why, the desired file, and the old content if known.
type Trigger<'a> = (Handler, String, Option<&'a DesiredFile>, Option<&'a [u8]>);

/// The key files that make a relay's identity (RSA and ed25519 master); with OfflineMasterKey the
/// signing key and certificate are renewable and not identity.
pub fn is_identity_key(path: &str) -> bool {
    path.starts_with("/var/lib/tor-instances/")
        && (path.ends_with("/keys/secret_id_key")
            || path.ends_with("/keys/ed25519_master_id_secret_key"))
}

/// Tor's DataDirectory belongs to tor: oignon writes the keys it manages there but never archives
/// or removes anything in it (a retired relay's keys stay until removed by hand).
pub fn in_data_dir(path: &str) -> bool {
    path.starts_with("/var/lib/tor-instances/")
}

fn blank() -> Change {
    Change {
        kind: ChangeKind::Create,
        target: String::new(),
        reason: String::new(),
        drift: false,
        conflict: false,
        secret: false,
        old_sha256: None,
        new_sha256: None,
        owner: None,
        group: None,
        mode: None,
        diff: None,
        content_base64: None,
        validate: None,
        instance: None,
        role: None,
    }
}

fn meta_change(owner: &str, group: &str, mode: u32, f: &DesiredFile) -> String {
    let mut parts = vec![];
    if owner != f.owner || group != f.group {
        parts.push(format!("owner {owner}:{group} → {}:{}", f.owner, f.group));
    }
    if mode != f.mode {
        parts.push(format!("mode {mode:04o} → {:04o}", f.mode));
    }
    parts.join(", ")
}

/// The option names whose lines differ between two torrc files.
fn changed_options(old: &[u8], new: &[u8]) -> BTreeSet<String> {
    let lines = |b: &[u8]| -> BTreeSet<String> {
        String::from_utf8_lossy(b)
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_string)
            .collect()
    };
    let (a, b) = (lines(old), lines(new));
    a.symmetric_difference(&b)
        .filter_map(|l| l.split_whitespace().next())
        .map(|k| k.to_ascii_lowercase())
        .collect()
}

/// Handlers, each once, in a safe order: unit reloads first, then kernel settings, then tor.
fn handlers(
    desired: &DesiredHost,
    observed: &Observed,
    triggered: &[Trigger],
    new_instances: &BTreeSet<&str>,
) -> Vec<HandlerRun> {
    let mut reasons: BTreeMap<Handler, Vec<String>> = BTreeMap::new();
    let mut restart: BTreeSet<String> = BTreeSet::new();
    for (h, why, file, old) in triggered {
        reasons.entry(h.clone()).or_default().push(why.clone());
        if let (HandlerKind::TorReload, Some(inst), Some(f)) = (&h.kind, &h.instance, file) {
            let needs_restart = f.content.is_secret()
                || match old {
                    Some(old) => changed_options(old, f.content.bytes())
                        .iter()
                        .any(|k| RESTART_OPTIONS.contains(&k.as_str())),
                    None => true,
                };
            if needs_restart {
                restart.insert(inst.clone());
            }
        }
    }
    let mut out = vec![];
    let restart_all = reasons.keys().any(|h| h.kind == HandlerKind::TorRestartAll);
    if let Some(why) = reasons
        .iter()
        .find(|(h, _)| h.kind == HandlerKind::TorRestartAll)
        .map(|(_, w)| w.join("; "))
    {
        out.push(HandlerRun {
            command: vec!["systemctl".into(), "daemon-reload".into()],
            reason: why,
        });
    }
    if let Some(why) = reasons
        .iter()
        .find(|(h, _)| h.kind == HandlerKind::Sysctl)
        .map(|(_, w)| w.join("; "))
    {
        out.push(HandlerRun {
            command: vec!["sysctl".into(), "--system".into()],
            reason: why,
        });
    }
    if let Some(why) = reasons
        .iter()
        .find(|(h, _)| h.kind == HandlerKind::UpdateGrub)
        .map(|(_, w)| w.join("; "))
    {
        out.push(HandlerRun {
            command: vec!["update-grub".into()],
            reason: why,
        });
    }
    for (kind, argv) in [
        (
            HandlerKind::NodeExporterRestart,
            ["systemctl", "restart", "prometheus-node-exporter"],
        ),
        (
            HandlerKind::NginxReload,
            ["systemctl", "reload-or-restart", "nginx"],
        ),
    ] {
        let why: Vec<String> = reasons
            .iter()
            .filter(|(h, _)| h.kind == kind)
            .flat_map(|(_, w)| w.iter().cloned())
            .collect();
        if !why.is_empty() {
            out.push(HandlerRun {
                command: argv.map(String::from).to_vec(),
                reason: why.join("; "),
            });
        }
    }
    let nft: Vec<String> = reasons
        .iter()
        .filter(|(h, _)| h.kind == HandlerKind::NftLoad)
        .flat_map(|(_, w)| w.iter().cloned())
        .collect();
    if !nft.is_empty() {
        let window = firewall_window(desired);
        out.push(HandlerRun {
            command: vec![NFT_LOAD.into(), window.to_string()],
            reason: format!(
                "{}; confirm-or-revert: the host saves its running ruleset, loads the new one and puts the old one back by itself after {window} s unless oignon confirms over a new SSH connection",
                nft.join("; ")
            ),
        });
    }
    for inst in &desired.instances {
        let unit = format!("tor@{inst}");
        let own: Vec<String> = reasons
            .iter()
            .filter(|(h, _)| {
                h.kind == HandlerKind::TorReload && h.instance.as_deref() == Some(inst.as_str())
            })
            .flat_map(|(_, w)| w.clone())
            .collect();
        // A relay of the inventory runs: one found stopped or failed is started, changed or not.
        let stopped = observed
            .instances
            .get(inst)
            .map(|o| o.active.as_str())
            .filter(|a| !matches!(*a, "active" | "activating" | "reloading" | "unknown"));
        if new_instances.contains(inst.as_str()) || stopped.is_some() {
            let why = match stopped {
                _ if new_instances.contains(inst.as_str()) => "new instance".to_string(),
                Some(state) if own.is_empty() => format!("tor@{inst} is {state} on the host"),
                Some(state) => format!("{} (tor@{inst} is {state} on the host)", own.join("; ")),
                None => own.join("; "),
            };
            out.push(HandlerRun {
                command: vec!["systemctl".into(), "enable".into(), "--now".into(), unit],
                reason: why,
            });
        } else if restart_all {
            let why = reasons
                .iter()
                .find(|(h, _)| h.kind == HandlerKind::TorRestartAll)
                .map(|(_, w)| w.join("; "))
                .unwrap_or_default();
            out.push(HandlerRun {
                command: vec!["systemctl".into(), "restart".into(), unit],
                reason: why,
            });
        } else if restart.contains(inst) {
            out.push(HandlerRun {
                command: vec!["systemctl".into(), "restart".into(), unit],
                reason: format!(
                    "{} (an option tor reads only at start changed)",
                    own.join("; ")
                ),
            });
        } else if !own.is_empty() {
            out.push(HandlerRun {
                command: vec!["systemctl".into(), "reload".into(), unit],
                reason: own.join("; "),
            });
        }
    }
    // Handlers an interrupted apply left pending run now, once, even if nothing else changed.
    for cmd in &observed.pending {
        let argv: Vec<String> = cmd.split_whitespace().map(str::to_string).collect();
        match out.iter_mut().find(|r| r.command == argv) {
            Some(r) => r.reason.push_str("; left pending by an interrupted apply"),
            None => out.push(HandlerRun {
                command: argv,
                reason: "left pending by an interrupted apply".into(),
            }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observed::ObservedInstance;

    fn torrc(body: &str) -> DesiredFile {
        DesiredFile {
            role: "tor".into(),
            handler: Some(Handler {
                kind: HandlerKind::TorReload,
                instance: Some("r1".into()),
            }),
            validate: Some(ValidatorKind::Torrc),
            instance: Some("r1".into()),
            ..DesiredFile::for_test("/etc/tor/instances/r1/torrc", body.as_bytes())
        }
    }

    fn host(files: Vec<DesiredFile>) -> DesiredHost {
        DesiredHost {
            name: "h".into(),
            files,
            instances: vec!["r1".into()],
            kernel_params: Some(vec!["pti=on".into()]),
            notices: vec![],
            firewall_window: 60,
        }
    }

    fn running(body: &str, managed: bool) -> Observed {
        let mut o = Observed::default();
        let sha = crate::util::sha256_hex(body.as_bytes());
        o.files.insert(
            "/etc/tor/instances/r1/torrc".into(),
            ObservedFile::Present {
                owner: "root".into(),
                group: "root".into(),
                mode: 0o644,
                sha256: sha.clone(),
                content: Some(body.as_bytes().to_vec()),
            },
        );
        if managed {
            o.managed.insert("/etc/tor/instances/r1/torrc".into(), sha);
        }
        o.instances.insert(
            "r1".into(),
            ObservedInstance {
                user_exists: true,
                data_dir_exists: true,
                active: "active".into(),
            },
        );
        o.cmdline = Some("ro pti=on".into());
        o
    }

    #[test]
    fn converged_host_has_no_changes_and_no_handlers() {
        let p = plan_host(
            &host(vec![torrc("Nickname r1\n")]),
            &running("Nickname r1\n", true),
            "t",
        );
        assert!(!p.has_changes(), "{p:?}");
        assert!(p.notices.is_empty(), "{p:?}");
    }

    #[test]
    fn contact_change_reloads_and_orport_change_restarts() {
        let p = plan_host(
            &host(vec![torrc("ContactInfo b\nORPort 1\n")]),
            &running("ContactInfo a\nORPort 1\n", true),
            "t",
        );
        assert_eq!(p.handlers[0].command, ["systemctl", "reload", "tor@r1"]);
        let p = plan_host(
            &host(vec![torrc("ORPort 2\n")]),
            &running("ORPort 1\n", true),
            "t",
        );
        assert_eq!(p.handlers[0].command, ["systemctl", "restart", "tor@r1"]);
    }

    #[test]
    fn manual_edit_is_drift() {
        let mut o = running("edited\n", false);
        o.managed.insert(
            "/etc/tor/instances/r1/torrc".into(),
            crate::util::sha256_hex(b"Nickname r1\n"),
        );
        let p = plan_host(&host(vec![torrc("Nickname r1\n")]), &o, "t");
        assert!(
            p.changes[0].drift && p.changes[0].reason.starts_with("drift"),
            "{p:?}"
        );
        assert!(p.changes[0]
            .diff
            .as_deref()
            .unwrap()
            .contains("-edited\n+Nickname r1\n"));
    }

    #[test]
    fn a_stopped_relay_is_started_even_when_nothing_changed() {
        let mut o = running("x\n", true);
        o.instances.get_mut("r1").unwrap().active = "failed".into();
        let p = plan_host(&host(vec![torrc("x\n")]), &o, "t");
        assert_eq!(p.handlers.len(), 1);
        assert_eq!(
            p.handlers[0].command,
            ["systemctl", "enable", "--now", "tor@r1"]
        );
        assert_eq!(p.handlers[0].reason, "tor@r1 is failed on the host");
    }

    fn a_plan(hosts: Vec<HostPlan>) -> Plan {
        Plan {
            schema: SCHEMA.into(),
            inputs: {
                let set = || crate::saved::InputSet {
                    digest: String::new(),
                    files: BTreeMap::new(),
                };
                crate::saved::Inputs {
                    digest: String::new(),
                    inventory: set(),
                    roles: set(),
                    secrets: set(),
                }
            },
            transport: crate::saved::RunTransport::new(None, None).expect("no paths to resolve"),
            hosts,
        }
    }

    #[test]
    fn a_tombstoned_relay_is_refused_unless_resurrected() {
        let mut o = running("x\n", true);
        o.instances.get_mut("r1").unwrap().active = "inactive".into();
        o.tombstones.insert(
            "r1".into(),
            crate::observed::Tombstone {
                name: "r1".into(),
                to: "h2".into(),
                when: "2026-12-02T17:00:00Z".into(),
                fingerprint: "AB".into(),
            },
        );
        let p = plan_host(&host(vec![torrc("x\n")]), &o, "t");
        let e = p.error.as_ref().expect("refused").to_string();
        assert!(
            e.contains("refused: r1 left this host (r1 moved to host h2 at 2026-12-02T17:00:00Z"),
            "{e}"
        );
        assert!(e.contains("--resurrect r1"), "{e}");
        let mut plan = a_plan(vec![p]);
        allow_resurrect(&mut plan, &["other".into()]);
        assert!(plan.hosts[0].error.is_some());
        allow_resurrect(&mut plan, &["R1".into()]);
        assert!(plan.hosts[0].error.is_none());
        assert_eq!(
            plan.hosts[0].handlers[0].command,
            ["systemctl", "enable", "--now", "tor@r1"]
        );
    }

    #[test]
    fn a_relay_migrated_here_is_not_removed_by_an_older_inventory() {
        let mut o = running("x\n", true);
        o.instance_dirs.push("r1".into());
        o.arrivals.insert(
            "r1".into(),
            crate::observed::Tombstone {
                name: "r1".into(),
                to: "old".into(),
                when: "2026-12-02T17:00:00Z".into(),
                fingerprint: "AB".into(),
            },
        );
        let mut d = host(vec![]);
        d.instances.clear();
        let p = plan_host(&d, &o, "t");
        let e = p.error.as_ref().expect("refused").to_string();
        assert!(
            e.contains("refused: r1 was migrated to this host from old at 2026-12-02T17:00:00Z"),
            "{e}"
        );
        assert!(e.contains("`oignon retire r1`"), "{e}");
        // Without the mark, the instance that left the inventory is removed as before.
        o.arrivals.clear();
        let p = plan_host(&d, &o, "t");
        assert!(
            p.error.is_none() && p.count(ChangeKind::RemoveInstance) == 1,
            "{p:?}"
        );
    }

    #[test]
    fn one_identity_active_on_two_hosts_refuses_both_naming_the_other() {
        let state = |active: &str, sha: &str| crate::observed::InstanceState {
            name: "r1".into(),
            active_state: active.into(),
            unit_file_state: "enabled".into(),
            id_sha: Some(sha.into()),
        };
        let (mut a, mut b, mut c) = (
            Observed::default(),
            Observed::default(),
            Observed::default(),
        );
        a.instance_states.insert("r1".into(), state("active", "s1"));
        b.instance_states.insert("r1".into(), state("active", "s1"));
        c.instance_states
            .insert("r1".into(), state("inactive", "s1"));
        let hp = |n: &str| HostPlan {
            host: n.into(),
            ..HostPlan::failed("t", HostError::NotConnected { host: n.into() })
        };
        let mut plan = a_plan(vec![hp("a"), hp("b"), hp("c")]);
        for h in &mut plan.hosts {
            h.error = None;
        }
        refuse_duplicate_identities(&mut plan, &[("a", &a), ("b", &b), ("c", &c)]);
        let e = plan.hosts[0].error.as_ref().expect("a refused").to_string();
        assert!(e.contains("is also active on host b (as r1)"), "{e}");
        let e = plan.hosts[1].error.as_ref().expect("b refused").to_string();
        assert!(e.contains("is also active on host a (as r1)"), "{e}");
        assert!(
            plan.hosts[2].error.is_none(),
            "a stopped copy is no second copy"
        );
    }

    #[test]
    fn a_relay_whose_identity_runs_on_another_host_is_not_started_here() {
        let key = b"== ed25519v1-public: type0 ==\0\0\0k".to_vec();
        let sha = crate::util::sha256_hex(&key);
        let state = |active: &str, sha: &str| crate::observed::InstanceState {
            name: "r1".into(),
            active_state: active.into(),
            unit_file_state: "enabled".into(),
            id_sha: Some(sha.into()),
        };
        let pubkey = DesiredFile::for_test(
            "/var/lib/tor-instances/r1/keys/ed25519_master_id_public_key",
            &key,
        );
        let named = |name: &str, files: Vec<DesiredFile>| DesiredHost {
            name: name.into(),
            ..host(files)
        };
        // `old` runs r1's identity; `new` would create r1 and deploy that same key.
        let (old, new) = (named("old", vec![]), named("new", vec![pubkey.clone()]));
        let mut o_old = Observed::default();
        o_old
            .instance_states
            .insert("r1".into(), state("active", &sha));
        let o_new = Observed::default();
        let plan_of = |o_old: &Observed, o_new: &Observed, new: &DesiredHost| {
            let mut plan = a_plan(vec![
                plan_host(&old, o_old, "t"),
                plan_host(new, o_new, "t"),
            ]);
            refuse_starting_elsewhere(&mut plan, &[(&old, o_old), (new, o_new)]);
            plan
        };
        let plan = plan_of(&o_old, &o_new, &new);
        assert!(
            plan.hosts[0].error.is_none(),
            "the running copy is left alone"
        );
        let e = plan.hosts[1]
            .error
            .as_ref()
            .expect("new refused")
            .to_string();
        assert!(
            e.contains("refused: r1 would start here with the identity (ed25519 master key sha256")
                && e.contains("that is active on host old (as r1); nothing was written")
                && e.contains("stop it on old first, then plan again"),
            "{e}"
        );
        // `old`'s plan removes r1 (the relay moved by hand in the inventory): apply old first.
        let mut gone = old.clone();
        gone.instances.clear();
        let mut o_gone = o_old.clone();
        o_gone.instance_dirs.push("r1".into());
        o_gone
            .managed
            .insert("/etc/tor/instances/r1/torrc".into(), "sha".into());
        let mut plan = a_plan(vec![
            plan_host(&gone, &o_gone, "t"),
            plan_host(&new, &o_new, "t"),
        ]);
        refuse_starting_elsewhere(&mut plan, &[(&gone, &o_gone), (&new, &o_new)]);
        let e = plan.hosts[1]
            .error
            .as_ref()
            .expect("new refused")
            .to_string();
        assert!(
            e.contains("this plan stops it on old (it left the inventory there): apply old first (`oignon apply --host old`), then new"),
            "{e}"
        );
        // Stopped there, it may start here.
        let mut stopped = o_old.clone();
        stopped
            .instance_states
            .insert("r1".into(), state("inactive", &sha));
        assert!(plan_of(&stopped, &o_new, &new).hosts[1].error.is_none());
        // Another identity deployed here is no second copy.
        let other = named(
            "new",
            vec![DesiredFile::for_test(
                "/var/lib/tor-instances/r1/keys/ed25519_master_id_public_key",
                b"other",
            )],
        );
        assert!(plan_of(&o_old, &o_new, &other).hosts[1].error.is_none());
        // Nothing deployed (identities not managed): the key already here is the one it runs.
        let bare = named("new", vec![]);
        let mut o_bare = Observed::default();
        o_bare
            .instance_states
            .insert("r1".into(), state("failed", &sha));
        let e = plan_of(&o_old, &o_bare, &bare).hosts[1].error.clone();
        assert!(
            matches!(e, Some(HostError::StartsElsewhereActive { ref other, .. }) if other == "old"),
            "{e:?}"
        );
        // Already running here too: the duplicate guard's case (both refused), not this one.
        let mut o_both = Observed::default();
        o_both
            .instance_states
            .insert("r1".into(), state("active", &sha));
        assert!(plan_of(&o_old, &o_both, &new).hosts[1].error.is_none());
    }

    #[test]
    fn missing_kernel_param_is_a_notice_not_a_change() {
        let mut o = running("x\n", true);
        o.cmdline = Some("ro".into());
        let p = plan_host(&host(vec![torrc("x\n")]), &o, "t");
        assert!(!p.has_changes());
        assert!(
            p.notices[0].contains("reboot required") && p.notices[0].contains("pti=on"),
            "{p:?}"
        );
    }

    #[test]
    fn retired_managed_file_is_removed() {
        let mut o = running("x\n", true);
        o.managed.insert("/etc/old".into(), "aa".into());
        o.files.insert(
            "/etc/old".into(),
            ObservedFile::Present {
                owner: String::new(),
                group: String::new(),
                mode: 0,
                sha256: "aa".into(),
                content: None,
            },
        );
        let p = plan_host(&host(vec![torrc("x\n")]), &o, "t");
        assert_eq!(p.changes.len(), 1);
        assert_eq!(
            (p.changes[0].kind, p.changes[0].target.as_str()),
            (ChangeKind::Remove, "/etc/old")
        );
    }
}
