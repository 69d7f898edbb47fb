//! `oignon status`: how the fleet is right now, one row per relay instance.
//!
//! Facts come from the same single round trip per host as `plan` (gather.sh, with `q` requests
//! for the few facts only status needs); drift and the pending reboot are the plan's own
//! findings, made by [`crate::plan::plan_host`] from those facts. Then, purely: facts → [`Row`]s
//! (each with the reasons it needs attention) → a [`Verdict`], which decides the exit status.

use crate::error::{HostError, Outcome};
use crate::fleet::{load, Loaded, PlanOptions};
use crate::gather::{Gathered, Reach};
use crate::inventory::{HostSpec, RelaySpec};
use crate::observed::{InstanceState, Observed};
use crate::plan::{ChangeKind, HostPlan};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The version of `status --json`. Bumped on any incompatible change. Still 1 with the rows of
/// unmanaged instances: they came as additions only (new rows, and the new fields `managed` and
/// `copy_of` on every row); no field changed name, type or meaning, so a reader of the first
/// rows (which keys rows by host and nickname and judges by `attention`) stays right: an
/// unmanaged row's `attention` is as meaningful as any other's.
pub const SCHEMA: &str = "oignon.status/1";

/// A signing certificate closer than this to its expiry needs attention (as ansible-relayor's
/// TorCertificateExpiryUnder15Days alert): time to run `oignon secrets renew-signing`.
pub const CERT_WARN_DAYS: i64 = 15;

/// The fleet's status: every tor instance of the selected hosts, the inventory's and the others.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub schema: String,
    pub rows: Vec<Row>,
}

/// One tor instance: a relay of the inventory, or one the host has that oignon does not manage.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Row {
    pub host: String,
    pub hoster: String,
    /// The relay's nickname; for an unmanaged instance, its name on the host (tor@NAME).
    pub nickname: String,
    /// Whether the inventory places this instance on this host. An unmanaged one (false) is a tor
    /// instance the host has besides: a leftover, or a relay someone started by hand.
    pub managed: bool,
    /// An unmanaged instance whose identity (ed25519 master public key) is an inventory relay's:
    /// that relay's nickname. A second copy of a relay (after a migration, the old one).
    pub copy_of: Option<String>,
    /// tor@NAME: active, failed, inactive, activating..., `masked`, or `unreachable`/`unknown`.
    pub unit: String,
    /// systemd's UnitFileState (enabled, disabled, masked...), when known.
    pub unit_file: Option<String>,
    /// `0.4.9.11`, from `tor --version` on the host.
    pub tor_version: Option<String>,
    pub fingerprint: Fingerprint,
    /// Managed files (of this instance or of its host) that differ from the inventory's render.
    pub drift: Vec<String>,
    /// Why a reboot is pending, if one is.
    pub reboot: Option<String>,
    /// OfflineMasterKey relays: when keys/ed25519_signing_cert expires (UTC, to the hour).
    pub signing_cert_expires: Option<String>,
    /// Whether the MetricsPort answered (None: the relay has none).
    pub metrics: Option<bool>,
    /// The last apply on the host: when (UTC) and by whom.
    pub last_apply: Option<LastApply>,
    /// Why the host could not be looked at (then the other facts are unknown).
    pub error: Option<String>,
    /// Why this row needs attention; empty when healthy.
    pub attention: Vec<String>,
}

/// Whether the identity tor runs with is the one in secrets/.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Fingerprint {
    /// The host's RSA fingerprint (and ed25519 key, where known) match secrets/.
    Matches,
    /// The host runs another identity than secrets/ holds.
    Differs,
    /// tor has not written its fingerprint on the host (never started there).
    Missing,
    /// The host's `fingerprint` file is not one tor wrote: unreadable as the relay's user (a link
    /// to someone else's file), or not a fingerprint.
    Unreadable,
    /// secrets/ has no identity for the relay (manage_identities = false, or not made yet).
    Unchecked,
    /// The host could not be asked.
    Unknown,
}

impl Fingerprint {
    fn word(self) -> &'static str {
        match self {
            Fingerprint::Matches => "ok",
            Fingerprint::Differs => "DIFFERS",
            Fingerprint::Missing => "missing",
            Fingerprint::Unreadable => "UNREADABLE",
            Fingerprint::Unchecked => "-",
            Fingerprint::Unknown => "?",
        }
    }
}

/// When and by whom the host was last applied.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LastApply {
    pub when: String,
    pub who: String,
}

/// What secrets/ says a relay's identity is: the inputs of the comparison, read beforehand so
/// that making rows stays pure.
#[derive(Debug, Clone, Default)]
pub struct Expected {
    /// RSA fingerprint, 40 hex digits.
    pub fingerprint: Option<String>,
    /// sha256 of the `ed25519_master_id_public_key` file tor writes for this identity.
    pub id_sha256: Option<String>,
}

impl Expected {
    /// Reads a relay's expected identity from the store (public files only: no decryption).
    pub fn read(store: &crate::secrets::Store, nick: &str) -> Expected {
        Expected {
            fingerprint: store.fingerprint(nick),
            id_sha256: crate::secrets::master_public_key(store, nick)
                .ok()
                .map(|k| crate::util::sha256_hex(&k)),
        }
    }
}

/// How the fleet is, all rows together; decides the exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Every row is healthy: exit 0.
    Healthy,
    /// Some row needs attention: exit 2.
    Attention,
    /// Some host could not be looked at: exit 1.
    Error,
}

impl Verdict {
    /// The verdict of a set of rows: an error wins over attention.
    pub fn of(rows: &[Row]) -> Verdict {
        if rows.iter().any(|r| r.error.is_some()) {
            Verdict::Error
        } else if rows.iter().any(|r| !r.attention.is_empty()) {
            Verdict::Attention
        } else {
            Verdict::Healthy
        }
    }

    /// How the run ended, for [`crate::error::exit_code`], the one place that maps endings to
    /// numbers: an unreachable host fails the run (1); attention is the "something to look at" of
    /// `plan --detailed-exitcode` (2).
    pub fn outcome(self) -> Outcome {
        match self {
            Verdict::Healthy => Outcome::Clean,
            Verdict::Attention => Outcome::Changes,
            Verdict::Error => Outcome::Failed,
        }
    }

    /// The exit status of this verdict (0, 2 or 1), as [`crate::error::exit_code`] decides it.
    pub fn exit_code(self) -> u8 {
        crate::error::exit_code([], self.outcome())
    }
}

/// Every inventory relay's identity, keyed by the sha256 (lowercase hex) of its ed25519 master
/// public key: its nickname and the host the inventory places it on. Lets a row of an unmanaged
/// instance say whose identity it runs.
pub type Identities = BTreeMap<String, (String, String)>;

/// The index of identities of `relays` (nickname, host, what secrets/ says its identity is).
pub fn identities<'a>(
    relays: impl IntoIterator<Item = (&'a str, &'a str, &'a Expected)>,
) -> Identities {
    relays
        .into_iter()
        .filter_map(|(nick, host, e)| {
            let sha = e.id_sha256.as_ref()?.to_ascii_lowercase();
            Some((sha, (nick.to_string(), host.to_string())))
        })
        .collect()
}

/// The rows of one host, from what was gathered there (or why it could not be) and its plan:
/// one per relay the inventory places there, then one per other tor instance the host has.
/// `expected` holds the host's relays' identities, `known` every inventory relay's; `now` is the
/// current time in seconds since the epoch (for the certificate's days left).
pub fn host_rows(
    spec: &HostSpec,
    gathered: Result<(&Observed, &HostPlan), &HostError>,
    expected: &BTreeMap<String, Expected>,
    known: &Identities,
    now: i64,
) -> Vec<Row> {
    let blank = |nickname: &str, managed: bool| Row {
        host: spec.name.clone(),
        hoster: spec.hoster.clone(),
        nickname: nickname.to_string(),
        managed,
        copy_of: None,
        unit: "unknown".into(),
        unit_file: None,
        tor_version: None,
        fingerprint: Fingerprint::Unknown,
        drift: vec![],
        reboot: None,
        signing_cert_expires: None,
        metrics: None,
        last_apply: None,
        error: None,
        attention: vec![],
    };
    let mut rows: Vec<Row> = spec
        .relays
        .iter()
        .map(|relay| {
            let blank = blank(&relay.nickname, true);
            match gathered {
                Err(e) => {
                    // Not reached at all, or reached but its facts could not be read.
                    let (unit, what) = match e {
                        HostError::Unreachable { .. } => ("unreachable", "host not reached"),
                        _ => ("error", "host not looked at"),
                    };
                    Row {
                        unit: unit.into(),
                        error: Some(e.to_string()),
                        attention: vec![format!("{what}: {e}")],
                        ..blank
                    }
                }
                Ok((observed, plan)) => relay_row(
                    blank,
                    relay,
                    observed,
                    plan,
                    expected.get(&relay.nickname),
                    now,
                ),
            }
        })
        .collect();
    if let Ok((observed, plan)) = gathered {
        // Names are exact: tor@Marcuse1 is another unit than tor@marcuse1.
        for state in observed
            .instance_states
            .values()
            .filter(|st| !spec.relays.iter().any(|r| r.nickname == st.name))
        {
            rows.push(unmanaged_row(
                blank(&state.name, false),
                spec,
                state,
                observed,
                plan,
                known,
            ));
        }
    }
    rows
}

/// `tor@NAME`'s state in one word: `masked` wins (it cannot start whatever else it says), then
/// systemd's ActiveState; `absent` when the host reported no such instance.
fn unit_word(state: Option<&InstanceState>) -> (String, Option<String>) {
    // `-`: systemd could not say (gather.sh's word for unknown).
    let known = |v: &String| (v != "-").then(|| v.clone());
    let active = state.and_then(|s| known(&s.active_state));
    let unit_file = state.and_then(|s| known(&s.unit_file_state));
    let unit = match (unit_file.as_deref(), active.as_deref()) {
        (Some("masked"), _) => "masked".into(),
        (_, Some(a)) => a.into(),
        (_, None) if state.is_none() => "absent".into(),
        _ => "unknown".into(),
    };
    (unit, unit_file)
}

/// A tor instance the host has that the inventory does not place there. It needs attention when
/// it runs or will run at boot (active, or enabled): a relay oignon does not manage is on the
/// network from this host, often the old copy of a migrated relay. A masked or merely inactive
/// leftover is shown, and healthy: its directories are kept on purpose (the keys stay).
fn unmanaged_row(
    mut row: Row,
    spec: &HostSpec,
    state: &InstanceState,
    observed: &Observed,
    plan: &HostPlan,
    known: &Identities,
) -> Row {
    let name = state.name.as_str();
    row.fingerprint = Fingerprint::Unchecked;
    row.drift = plan
        .changes
        .iter()
        .filter(|c| c.instance.as_deref() == Some(name))
        .map(|c| match c.kind {
            ChangeKind::RemoveInstance => format!("instance {} to remove", c.target),
            _ => c.target.clone(),
        })
        .collect();
    row.last_apply = observed
        .status
        .as_ref()
        .and_then(|s| s.last_apply.clone())
        .map(|(when, who)| LastApply { when, who });
    let copy = state
        .id_sha
        .as_ref()
        .and_then(|sha| known.get(&sha.to_ascii_lowercase()));
    row.copy_of = copy.map(|(nick, _)| nick.clone());
    // A local image is files: nothing runs there, nothing to judge but what it holds.
    if observed.cmdline.is_none() {
        row.unit = "image".into();
        return row;
    }
    (row.unit, row.unit_file) = unit_word(Some(state));
    row.tor_version = observed.tor_version.as_deref().map(tor_version);
    // The host's reboot is shown, but judged on the inventory's rows only (once is enough).
    row.reboot = reboot(observed, plan);
    // Masked after it started, it still runs: masking stops nothing.
    let runs = state.is_active();
    let at_boot = matches!(
        row.unit_file.as_deref(),
        Some("enabled" | "enabled-runtime")
    );
    if !(runs || at_boot) {
        return row;
    }
    let what = match (runs, at_boot) {
        (true, true) => format!("tor@{name} runs and is enabled"),
        (true, false) => format!("tor@{name} runs"),
        _ => format!("tor@{name} is enabled: it starts at boot"),
    };
    let whose = match copy {
        Some((nick, host)) if host == &spec.name => format!(
            " with the identity of {nick} (second copy of {nick}, which the inventory places on this host too)"
        ),
        Some((nick, host)) => format!(
            " with the identity of {nick} (second copy of {nick}, which the inventory places on {host}: after a migration, the old copy)"
        ),
        None => String::new(),
    };
    let fix = if row.drift.iter().any(|d| d.starts_with("instance ")) {
        "; the next apply stops it (it left the inventory)".to_string()
    } else {
        format!(
            "; stop it if it is not wanted: `systemctl disable --now tor@{name} && systemctl mask tor@{name}`, or add it to the inventory"
        )
    };
    row.attention.push(format!(
        "{what}{whose}, but oignon does not manage it (the inventory has no relay {name} on {}){fix}",
        spec.name
    ));
    row
}

fn relay_row(
    mut row: Row,
    relay: &RelaySpec,
    observed: &Observed,
    plan: &HostPlan,
    expected: Option<&Expected>,
    now: i64,
) -> Row {
    let nick = relay.nickname.as_str();
    let mut why = vec![];
    // Where the plan itself failed (a managed path is a directory...), say so: its drift is unknown.
    if let Some(e) = &plan.error {
        why.push(format!("cannot be planned: {e}"));
    }
    let state = observed.instance_states.get(nick);
    // A local image (`--local`) is files, not a running system: its units, tor, fingerprint and
    // MetricsPort cannot be looked at (gather reports the kernel command line only of a live one).
    if observed.cmdline.is_none() {
        row.unit = "image".into();
        row.fingerprint = Fingerprint::Unknown;
        row.tor_version = None;
        row.drift = drift(plan, nick);
        if !row.drift.is_empty() {
            why.push(drift_text(&row.drift));
        }
        row.last_apply = observed
            .status
            .as_ref()
            .and_then(|s| s.last_apply.clone())
            .map(|(when, who)| LastApply { when, who });
        row.attention = why;
        return row;
    }
    (row.unit, row.unit_file) = unit_word(state);
    if row.unit != "active" {
        why.push(format!("tor@{nick} is {}", row.unit));
    } else if row.unit_file.as_deref() != Some("enabled") {
        why.push(format!(
            "tor@{nick} is not enabled ({}): it will not start at boot",
            row.unit_file.as_deref().unwrap_or("unknown")
        ));
    }
    row.tor_version = observed.tor_version.as_deref().map(tor_version);
    if row.tor_version.is_none() {
        why.push("tor --version gave nothing: is tor installed?".into());
    }
    let facts = observed.status.as_ref().and_then(|s| s.instances.get(nick));
    row.fingerprint = if facts.is_some_and(|f| f.fingerprint_unreadable) {
        Fingerprint::Unreadable
    } else {
        fingerprint(
            facts.and_then(|f| f.fingerprint.as_deref()),
            state.and_then(|s| s.id_sha.as_deref()),
            expected,
        )
    };
    match row.fingerprint {
        Fingerprint::Differs => why.push(format!(
            "{nick} runs another identity than secrets/relays/{nick} (fingerprint or ed25519 key differs)"
        )),
        Fingerprint::Missing => why.push(format!(
            "tor wrote no fingerprint in /var/lib/tor-instances/{nick}: has it ever started?"
        )),
        Fingerprint::Unreadable => why.push(format!(
            "/var/lib/tor-instances/{nick}/fingerprint is not one tor wrote (unreadable as _tor-{nick}, or not a fingerprint): look at who made it"
        )),
        _ => {}
    }
    row.drift = drift(plan, nick);
    if !row.drift.is_empty() {
        why.push(drift_text(&row.drift));
    }
    let status = observed.status.as_ref();
    row.reboot = reboot(observed, plan);
    if let Some(r) = &row.reboot {
        why.push(format!("reboot pending: {r}"));
    }
    if relay.offline_master_key {
        match facts
            .and_then(|f| f.signing_cert.as_deref())
            .and_then(cert_expiry_hours)
        {
            Some(hours) => {
                row.signing_cert_expires = Some(hour_text(hours));
                let left = hours * 3600 - now;
                if left < CERT_WARN_DAYS * 86_400 {
                    why.push(format!(
                        "the signing certificate expires in {} (under {CERT_WARN_DAYS} days): run `oignon secrets renew-signing {nick}` and apply",
                        duration_text(left)
                    ));
                }
            }
            None => why.push(format!(
                "OfflineMasterKey: no readable keys/ed25519_signing_cert for {nick} on the host"
            )),
        }
    }
    if let Some(port) = relay.metrics_port {
        row.metrics = facts.and_then(|f| f.metrics_up);
        if row.metrics != Some(true) {
            why.push(format!("MetricsPort 127.0.0.1:{port} does not answer"));
        }
    }
    row.last_apply = status
        .and_then(|s| s.last_apply.clone())
        .map(|(when, who)| LastApply { when, who });
    row.attention = why;
    row
}

/// Why the host needs a reboot, if it does (a host's fact, shown on each of its rows).
fn reboot(observed: &Observed, plan: &HostPlan) -> Option<String> {
    if plan.needs_reboot() {
        Some("the running kernel's command line lacks the inventory's parameters".into())
    } else if observed.status.as_ref().is_some_and(|s| s.reboot_required) {
        Some("/run/reboot-required".into())
    } else {
        None
    }
}

/// The plan's changes that concern relay `nick`: its own files and its host's.
fn drift(plan: &HostPlan, nick: &str) -> Vec<String> {
    plan.changes
        .iter()
        .filter(|c| c.instance.as_deref().is_none_or(|i| i == nick))
        .map(|c| match c.kind {
            ChangeKind::CreateInstance => format!("instance {} not created", c.target),
            ChangeKind::RemoveInstance => format!("instance {} to remove", c.target),
            _ => c.target.clone(),
        })
        .collect()
}

fn drift_text(drift: &[String]) -> String {
    format!(
        "{} managed file{} differ{} from the inventory: {}",
        drift.len(),
        crate::text::plural(drift.len()),
        if drift.len() == 1 { "s" } else { "" },
        drift.join(", ")
    )
}

/// `Tor version 0.4.9.11.` → `0.4.9.11`.
fn tor_version(v: &str) -> String {
    v.trim()
        .strip_prefix("Tor version ")
        .unwrap_or(v)
        .trim_end_matches('.')
        .split_whitespace()
        .next()
        .unwrap_or(v)
        .to_string()
}

/// Compares what the host shows with secrets/: the RSA fingerprint tor wrote, and the sha256 of
/// the ed25519 master public key (either differing is another identity).
fn fingerprint(
    host_fpr: Option<&str>,
    host_id_sha: Option<&str>,
    expected: Option<&Expected>,
) -> Fingerprint {
    let Some(exp) = expected.filter(|e| e.fingerprint.is_some() || e.id_sha256.is_some()) else {
        return Fingerprint::Unchecked;
    };
    let rsa_differs =
        matches!((host_fpr, &exp.fingerprint), (Some(h), Some(e)) if !h.eq_ignore_ascii_case(e));
    let ed_differs =
        matches!((host_id_sha, &exp.id_sha256), (Some(h), Some(e)) if !h.eq_ignore_ascii_case(e));
    if rsa_differs || ed_differs {
        Fingerprint::Differs
    } else if host_fpr.is_none() {
        Fingerprint::Missing
    } else {
        Fingerprint::Matches
    }
}

/// The expiry of an `ed25519_signing_cert` file in hours since the epoch: after the 32-byte
/// header, version (1 byte), type (1 byte), then the expiry (4 bytes, big-endian), as tor's
/// cert-spec.txt says; None when the file is too short or is not a version 1 certificate.
pub fn cert_expiry_hours(file: &[u8]) -> Option<i64> {
    let c = file.get(32..38)?;
    if c[0] != 1 {
        return None;
    }
    Some(i64::from(u32::from_be_bytes([c[2], c[3], c[4], c[5]])))
}

/// Hours since the epoch as `YYYY-MM-DDTHH:00Z` (as `secrets renew-signing` records it).
fn hour_text(hours: i64) -> String {
    let mut f = vec![0u8; 32];
    f.extend_from_slice(&[1, 4]);
    f.extend_from_slice(&(hours.clamp(0, i64::from(u32::MAX)) as u32).to_be_bytes());
    crate::secrets::tor_keys::cert_expiry(&f).unwrap_or_else(|| format!("{hours}h"))
}

fn duration_text(secs: i64) -> String {
    if secs <= 0 {
        "no time: it has expired".into()
    } else if secs < 86_400 {
        format!("{} hours", secs / 3600)
    } else {
        format!("{} days", secs / 86_400)
    }
}

/// The table: one line per row, attention rows marked `!` (and in colour where colours are on),
/// then each attention row's reasons, then one summary line.
pub fn text(status: &Status) -> String {
    use std::fmt::Write as _;
    let header = [
        "",
        "HOST",
        "HOSTER",
        "NICKNAME",
        "UNIT",
        "TOR",
        "FPR",
        "DRIFT",
        "REBOOT",
        "CERT",
        "METRICS",
        "LAST APPLY",
    ];
    let mut lines: Vec<[String; 12]> = vec![header.map(String::from)];
    for r in &status.rows {
        lines.push([
            if r.attention.is_empty() { " " } else { "!" }.into(),
            r.host.clone(),
            r.hoster.clone(),
            if r.managed {
                r.nickname.clone()
            } else {
                format!("{} (unmanaged)", r.nickname)
            },
            r.unit.clone(),
            r.tor_version.clone().unwrap_or_else(|| "?".into()),
            match &r.copy_of {
                Some(nick) => format!("copy of {nick}"),
                None => r.fingerprint.word().into(),
            },
            match r.drift.len() {
                _ if r.error.is_some() => "?".into(),
                0 => "-".into(),
                n => format!("{n} file{}", crate::text::plural(n)),
            },
            match (&r.reboot, &r.error) {
                (_, Some(_)) => "?".into(),
                (Some(_), _) => "yes".into(),
                (None, _) => "no".into(),
            },
            r.signing_cert_expires
                .as_deref()
                .map(|d| d.get(..10).unwrap_or(d).to_string())
                .unwrap_or_else(|| "-".into()),
            match r.metrics {
                Some(true) => "up".into(),
                Some(false) => "DOWN".into(),
                None => "-".into(),
            },
            match (&r.last_apply, &r.error) {
                (_, Some(_)) => "?".into(),
                (Some(a), _) => format!("{} by {}", a.when, a.who),
                (None, _) => "never".into(),
            },
        ]);
    }
    let mut widths = [0usize; 12];
    for l in &lines {
        for (w, c) in widths.iter_mut().zip(l.iter()) {
            *w = (*w).max(console::measure_text_width(c));
        }
    }
    let mut out = String::new();
    for (i, l) in lines.iter().enumerate() {
        let mut line = String::new();
        for (j, (c, w)) in l.iter().zip(widths).enumerate() {
            if j == 11 {
                line.push_str(c);
            } else {
                let _ = write!(line, "{c:<w$}  ");
            }
        }
        let line = line.trim_end().to_string();
        let styled = match status.rows.get(i.wrapping_sub(1)) {
            _ if i == 0 => console::style(line).bold().to_string(),
            Some(r) if r.error.is_some() => console::style(line).red().to_string(),
            Some(r) if !r.attention.is_empty() => console::style(line).yellow().to_string(),
            _ => line,
        };
        let _ = writeln!(out, "{styled}");
    }
    let attention: Vec<&Row> = status
        .rows
        .iter()
        .filter(|r| !r.attention.is_empty())
        .collect();
    if !attention.is_empty() {
        out.push('\n');
        for r in &attention {
            for why in &r.attention {
                let _ = writeln!(out, "! {}/{}: {why}", r.host, r.nickname);
            }
        }
    }
    let hosts: std::collections::BTreeSet<&str> =
        status.rows.iter().map(|r| r.host.as_str()).collect();
    let unreachable: std::collections::BTreeSet<&str> = status
        .rows
        .iter()
        .filter(|r| r.error.is_some())
        .map(|r| r.host.as_str())
        .collect();
    let healthy = status.rows.len() - attention.len();
    let relays = status.rows.iter().filter(|r| r.managed).count();
    let unmanaged = status.rows.len() - relays;
    let _ = writeln!(
        out,
        "\nStatus: {relays} relay{}{} on {} host{}: {healthy} healthy, {} need{} attention{}",
        crate::text::plural(relays),
        match unmanaged {
            0 => String::new(),
            n => format!(" and {n} unmanaged instance{}", crate::text::plural(n)),
        },
        hosts.len(),
        crate::text::plural(hosts.len()),
        attention.len(),
        if attention.len() == 1 { "s" } else { "" },
        if unreachable.is_empty() {
            String::new()
        } else {
            format!(
                " ({} host{} unreachable: {})",
                unreachable.len(),
                crate::text::plural(unreachable.len()),
                unreachable.into_iter().collect::<Vec<_>>().join(", ")
            )
        }
    );
    out
}

/// Why `status` could not start (a host it could not reach is a row, not this).
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// The SSH setup failed (`--ssh-config`, a pinned key).
    #[error(transparent)]
    Reach(#[from] crate::transport::TransportError),
    /// A status request for a host could not be encoded (a name holding a control character).
    #[error("host {host}: {source}")]
    Request {
        host: String,
        #[source]
        source: crate::remote::record::RecordError,
    },
}

/// Loads the fleet, gathers the selected hosts (one connection, one round trip each, with the
/// status requests), plans each from those facts, and makes the rows; None when the inventory or
/// the selection had errors (reported). Relay keys are never decrypted: identities are compared
/// through their public halves in secrets/.
pub fn status(
    o: &PlanOptions,
    rt: &tokio::runtime::Runtime,
) -> Result<Option<Status>, StatusError> {
    let Some(loaded) = load(&o.paths, false) else {
        return Ok(None);
    };
    let fleet = loaded.fleet();
    let filter = o.filter();
    if let Err(msg) = filter.check(fleet) {
        eprintln!("error: {msg}");
        return Ok(None);
    }
    let Some(desired) = loaded.render(|h| filter.matches(h), &loaded.public_keys()) else {
        return Ok(None);
    };
    let specs: Vec<&HostSpec> = fleet.hosts.iter().filter(|h| filter.matches(h)).collect();
    let reach = Reach::new(o.local.clone(), o.ssh_config.as_deref(), &specs, o.parallel)
        .map_err(StatusError::Reach)?;
    let mut asks = vec![];
    for (spec, d) in specs.iter().copied().zip(desired.hosts) {
        let wanted: Vec<(String, Option<u16>)> = spec
            .relays
            .iter()
            .map(|r| (r.nickname.clone(), r.metrics_port))
            .collect();
        let extra = crate::remote::gather::status_requests(&wanted).map_err(|source| {
            StatusError::Request {
                host: spec.name.clone(),
                source,
            }
        })?;
        asks.push((spec, d, extra));
    }
    let progress = crate::progress::Progress::new(false);
    let gathered = rt.block_on(crate::gather::gather_all_asking(
        Arc::new(reach),
        asks,
        &progress,
    ));
    progress.finish();
    let rows = rows(&loaded, &specs, &gathered);
    crate::fleet::close_all(rt, gathered);
    Ok(Some(Status {
        schema: SCHEMA.into(),
        rows,
    }))
}

fn rows(
    loaded: &Loaded,
    specs: &[&HostSpec],
    gathered: &[(crate::desired::DesiredHost, Gathered)],
) -> Vec<Row> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    // Every inventory relay's identity, selected or not: an unmanaged instance on a selected host
    // may run a relay the inventory places on any host.
    let fleet = loaded.fleet();
    let expected: BTreeMap<String, Expected> = fleet
        .hosts
        .iter()
        .flat_map(|h| &h.relays)
        .map(|r| {
            (
                r.nickname.clone(),
                Expected::read(&loaded.store, &r.nickname),
            )
        })
        .collect();
    let known = identities(fleet.hosts.iter().flat_map(|h| {
        h.relays.iter().filter_map(|r| {
            expected
                .get(&r.nickname)
                .map(|e| (r.nickname.as_str(), h.name.as_str(), e))
        })
    }));
    let mut out = vec![];
    for (spec, (desired, g)) in specs.iter().zip(gathered) {
        match &g.observed {
            Ok(observed) => {
                let plan = crate::plan::plan_host(desired, observed, &g.transport_name);
                out.extend(host_rows(
                    spec,
                    Ok((observed, &plan)),
                    &expected,
                    &known,
                    now,
                ));
            }
            Err(e) => out.extend(host_rows(spec, Err(e), &expected, &known, now)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::gather::{InstanceFacts, InstanceState, StatusFacts};

    const NOW: i64 = 1_780_000_000; // 2026-05-28

    /// The shipped inventory's marcuse (marcuse1, marcuse2; MetricsPort 9035 and 9036).
    fn fleet() -> crate::inventory::Fleet {
        let inv = crate::inventory::load(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("inventory"),
        );
        inv.fleet.expect("the shipped inventory loads")
    }

    fn healthy_observed(spec: &HostSpec) -> Observed {
        let mut o = Observed {
            tor_version: Some("Tor version 0.4.9.11.".into()),
            cmdline: Some("ro quiet".into()),
            ..Observed::default()
        };
        let mut facts = StatusFacts {
            last_apply: Some(("2026-05-27T10:00:00Z".into(), "ops@ctl".into())),
            ..Default::default()
        };
        for r in &spec.relays {
            o.instance_states.insert(
                r.nickname.clone(),
                InstanceState {
                    name: r.nickname.clone(),
                    active_state: "active".into(),
                    unit_file_state: "enabled".into(),
                    id_sha: Some(format!("sha-{}", r.nickname)),
                },
            );
            facts.instances.insert(
                r.nickname.clone(),
                InstanceFacts {
                    fingerprint: Some(format!("FPR{}", r.nickname.to_uppercase())),
                    fingerprint_unreadable: false,
                    signing_cert: None,
                    metrics_up: Some(true),
                },
            );
        }
        o.status = Some(facts);
        o
    }

    fn expected(spec: &HostSpec) -> BTreeMap<String, Expected> {
        spec.relays
            .iter()
            .map(|r| {
                (
                    r.nickname.clone(),
                    Expected {
                        fingerprint: Some(format!("FPR{}", r.nickname.to_uppercase())),
                        id_sha256: Some(format!("sha-{}", r.nickname)),
                    },
                )
            })
            .collect()
    }

    /// Every relay of the fleet, its identity hash as `expected` makes it.
    fn known(fl: &crate::inventory::Fleet) -> Identities {
        let all: Vec<(String, String, Expected)> = fl
            .hosts
            .iter()
            .flat_map(|h| expected(h).into_iter().map(|(n, e)| (n, h.name.clone(), e)))
            .collect();
        identities(all.iter().map(|(n, h, e)| (n.as_str(), h.as_str(), e)))
    }

    fn empty_plan(host: &str) -> HostPlan {
        HostPlan {
            host: host.into(),
            transport: "ssh x".into(),
            error: None,
            changes: vec![],
            handlers: vec![],
            notices: vec![],
            observed: Default::default(),
        }
    }

    fn rows_for(o: &Observed, plan: &HostPlan) -> Vec<Row> {
        let fl = fleet();
        let spec = fl.hosts.iter().find(|h| h.name == "marcuse").unwrap();
        host_rows(spec, Ok((o, plan)), &expected(spec), &known(&fl), NOW)
    }

    fn marcuse() -> (crate::inventory::Fleet, usize) {
        let fl = fleet();
        let i = fl.hosts.iter().position(|h| h.name == "marcuse").unwrap();
        (fl, i)
    }

    #[test]
    fn a_healthy_host_gives_healthy_rows_and_exit_0() {
        let (fl, i) = marcuse();
        let o = healthy_observed(&fl.hosts[i]);
        let rows = rows_for(&o, &empty_plan("marcuse"));
        assert_eq!(rows.len(), 2);
        for r in &rows {
            assert!(r.attention.is_empty(), "{r:?}");
            assert_eq!(r.unit, "active");
            assert_eq!(r.tor_version.as_deref(), Some("0.4.9.11"));
            assert_eq!(r.fingerprint, Fingerprint::Matches);
            assert_eq!(r.metrics, Some(true));
            assert_eq!(r.last_apply.as_ref().unwrap().who, "ops@ctl");
        }
        assert_eq!(Verdict::of(&rows), Verdict::Healthy);
        assert_eq!(Verdict::of(&rows).exit_code(), 0);
    }

    #[test]
    fn a_failed_or_masked_unit_needs_attention_and_exits_2() {
        let (fl, i) = marcuse();
        let mut o = healthy_observed(&fl.hosts[i]);
        o.instance_states.get_mut("marcuse1").unwrap().active_state = "failed".into();
        o.instance_states
            .get_mut("marcuse2")
            .unwrap()
            .unit_file_state = "masked".into();
        let rows = rows_for(&o, &empty_plan("marcuse"));
        assert_eq!(rows[0].unit, "failed");
        assert_eq!(rows[0].attention, ["tor@marcuse1 is failed"]);
        assert_eq!(rows[1].unit, "masked");
        assert_eq!(Verdict::of(&rows).exit_code(), 2);
    }

    #[test]
    fn another_identity_on_the_host_is_flagged_by_fingerprint_or_ed25519_key() {
        let (fl, i) = marcuse();
        let mut o = healthy_observed(&fl.hosts[i]);
        let facts = o.status.as_mut().unwrap();
        facts.instances.get_mut("marcuse1").unwrap().fingerprint = Some("0000".into());
        o.instance_states.get_mut("marcuse2").unwrap().id_sha = Some("other".into());
        let rows = rows_for(&o, &empty_plan("marcuse"));
        assert_eq!(rows[0].fingerprint, Fingerprint::Differs);
        assert_eq!(rows[1].fingerprint, Fingerprint::Differs);
        assert!(rows[0].attention[0].contains("runs another identity than secrets/relays/marcuse1"));
    }

    #[test]
    fn drift_and_a_pending_reboot_show_on_the_rows_they_concern() {
        let (fl, i) = marcuse();
        let o = healthy_observed(&fl.hosts[i]);
        let mut plan = empty_plan("marcuse");
        let change = |target: &str, instance: Option<&str>| crate::plan::Change {
            kind: ChangeKind::Update,
            target: target.into(),
            reason: "drift".into(),
            drift: true,
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
            instance: instance.map(String::from),
            role: None,
        };
        plan.changes.push(change(
            "/etc/tor/instances/marcuse2/torrc",
            Some("marcuse2"),
        ));
        plan.changes
            .push(change("/etc/sysctl.d/90-oignon.conf", None));
        plan.notices
            .push("reboot required: the running kernel's command line lacks pti=on".into());
        let rows = rows_for(&o, &plan);
        assert_eq!(rows[0].drift, ["/etc/sysctl.d/90-oignon.conf"]);
        assert_eq!(
            rows[1].drift,
            [
                "/etc/tor/instances/marcuse2/torrc",
                "/etc/sysctl.d/90-oignon.conf"
            ]
        );
        assert!(rows[0].reboot.is_some());
        assert!(rows[1]
            .attention
            .iter()
            .any(|a| a.starts_with("2 managed files differ")));
    }

    #[test]
    fn a_metrics_port_that_does_not_answer_needs_attention() {
        let (fl, i) = marcuse();
        let mut o = healthy_observed(&fl.hosts[i]);
        let facts = o.status.as_mut().unwrap();
        facts.instances.get_mut("marcuse2").unwrap().metrics_up = Some(false);
        let rows = rows_for(&o, &empty_plan("marcuse"));
        assert_eq!(rows[1].metrics, Some(false));
        assert_eq!(
            rows[1].attention,
            ["MetricsPort 127.0.0.1:9036 does not answer"]
        );
        assert!(text(&Status {
            schema: SCHEMA.into(),
            rows
        })
        .contains("DOWN"));
    }

    #[test]
    fn a_host_that_cannot_be_looked_at_is_an_error_row_and_exits_1() {
        let (fl, i) = marcuse();
        // Any host error makes the host's rows errors (the real-host test uses a stopped host).
        let e = HostError::NotConnected {
            host: "marcuse".into(),
        };
        let rows = host_rows(
            &fl.hosts[i],
            Err(&e),
            &expected(&fl.hosts[i]),
            &known(&fl),
            NOW,
        );
        assert_eq!(rows[0].unit, "error");
        assert_eq!(rows[0].error.as_deref(), Some("not connected"));
        assert_eq!(Verdict::of(&rows), Verdict::Error);
        assert_eq!(Verdict::of(&rows).exit_code(), 1);
        let t = text(&Status {
            schema: SCHEMA.into(),
            rows,
        });
        assert!(t.contains("(1 host unreachable: marcuse)"), "{t}");
        assert!(
            t.contains("! marcuse/marcuse1: host not looked at: not connected"),
            "{t}"
        );
    }

    #[test]
    fn the_signing_cert_expiry_is_read_from_the_cert_bytes() {
        let mut f = vec![0u8; 32];
        let hours: u32 = 20_812 * 24 + 7; // 2026-12-25T07:00Z
        f.extend_from_slice(&[1, 4]);
        f.extend_from_slice(&hours.to_be_bytes());
        assert_eq!(cert_expiry_hours(&f), Some(i64::from(hours)));
        assert_eq!(hour_text(i64::from(hours)), "2026-12-25T07:00Z");
        assert_eq!(cert_expiry_hours(&f[..20]), None);
        f[32] = 2;
        assert_eq!(cert_expiry_hours(&f), None, "only version 1 is read");
    }

    #[test]
    fn a_signing_cert_under_15_days_needs_attention() {
        let (mut fl, i) = marcuse();
        fl.hosts[i].relays[0].offline_master_key = true;
        let spec = &fl.hosts[i];
        let mut o = healthy_observed(spec);
        let mut cert = vec![0u8; 32];
        let hours = ((NOW + 3 * 86_400) / 3600) as u32;
        cert.extend_from_slice(&[1, 4]);
        cert.extend_from_slice(&hours.to_be_bytes());
        let facts = o.status.as_mut().unwrap();
        facts.instances.get_mut("marcuse1").unwrap().signing_cert = Some(cert);
        let rows = host_rows(
            spec,
            Ok((&o, &empty_plan("marcuse"))),
            &expected(spec),
            &known(&fl),
            NOW,
        );
        assert!(
            rows[0].attention[0].starts_with("the signing certificate expires in 2 days"),
            "{:?}",
            rows[0].attention
        );
        assert!(rows[0].signing_cert_expires.is_some());
        assert!(rows[1].attention.is_empty(), "not an offline-master relay");
    }

    #[test]
    fn a_local_image_shows_its_files_not_a_running_relay() {
        let (fl, i) = marcuse();
        let mut o = healthy_observed(&fl.hosts[i]);
        // gather.sh reports the kernel command line only of a live system.
        o.cmdline = None;
        o.instance_states.clear();
        let rows = rows_for(&o, &empty_plan("marcuse"));
        assert_eq!(rows[0].unit, "image");
        assert!(rows[0].attention.is_empty(), "{:?}", rows[0].attention);
        assert_eq!(Verdict::of(&rows), Verdict::Healthy);
    }

    fn plant(o: &mut Observed, name: &str, active: &str, unit_file: &str, id_sha: Option<&str>) {
        o.instance_states.insert(
            name.into(),
            InstanceState {
                name: name.into(),
                active_state: active.into(),
                unit_file_state: unit_file.into(),
                id_sha: id_sha.map(String::from),
            },
        );
    }

    #[test]
    fn an_instance_the_inventory_does_not_place_on_the_host_is_an_unmanaged_row_needing_attention()
    {
        let (fl, i) = marcuse();
        let mut o = healthy_observed(&fl.hosts[i]);
        plant(
            &mut o,
            "handmade",
            "active",
            "enabled",
            Some(&"ab".repeat(32)),
        );
        let rows = rows_for(&o, &empty_plan("marcuse"));
        assert_eq!(rows.len(), 3, "{rows:?}");
        assert!(rows[0].managed && rows[1].managed);
        let u = &rows[2];
        assert_eq!((u.nickname.as_str(), u.managed), ("handmade", false));
        assert_eq!(u.unit, "active");
        assert_eq!(u.copy_of, None);
        assert_eq!(u.attention.len(), 1, "{u:?}");
        assert!(
            u.attention[0].starts_with(
                "tor@handmade runs and is enabled, but oignon does not manage it (the inventory has no relay handmade on marcuse)"
            ),
            "{}",
            u.attention[0]
        );
        assert!(u.attention[0].contains("systemctl disable --now tor@handmade"));
        assert_eq!(Verdict::of(&rows).exit_code(), 2);
        let t = text(&Status {
            schema: SCHEMA.into(),
            rows,
        });
        let line = t
            .lines()
            .find(|l| l.contains("handmade (unmanaged)"))
            .unwrap();
        assert!(line.starts_with('!'), "{t}");
        assert!(
            t.contains(
                "Status: 2 relays and 1 unmanaged instance on 1 host: 2 healthy, 1 needs attention"
            ),
            "{t}"
        );
    }

    #[test]
    fn an_unmanaged_instance_running_a_relays_identity_is_named_its_second_copy() {
        let (fl, i) = marcuse();
        let mut o = healthy_observed(&fl.hosts[i]);
        // ekumen's identity, on marcuse, under another name: the copy a migration left behind.
        plant(
            &mut o,
            "oldekumen",
            "active",
            "disabled",
            Some("SHA-EKUMEN"),
        );
        // marcuse1's own identity on its own host, twice.
        plant(&mut o, "twin", "inactive", "enabled", Some("sha-marcuse1"));
        let rows = rows_for(&o, &empty_plan("marcuse"));
        let old = rows.iter().find(|r| r.nickname == "oldekumen").unwrap();
        assert_eq!(old.copy_of.as_deref(), Some("ekumen"));
        assert!(
            old.attention[0].starts_with(
                "tor@oldekumen runs with the identity of ekumen (second copy of ekumen, which the inventory places on ekumen: after a migration, the old copy)"
            ),
            "{:?}",
            old.attention
        );
        let twin = rows.iter().find(|r| r.nickname == "twin").unwrap();
        assert_eq!(twin.copy_of.as_deref(), Some("marcuse1"));
        assert!(
            twin.attention[0].starts_with(
                "tor@twin is enabled: it starts at boot with the identity of marcuse1 (second copy of marcuse1, which the inventory places on this host too)"
            ),
            "{:?}",
            twin.attention
        );
        let t = text(&Status {
            schema: SCHEMA.into(),
            rows,
        });
        assert!(t.contains("copy of ekumen"), "{t}");
    }

    #[test]
    fn a_masked_inactive_leftover_is_shown_and_healthy() {
        let (fl, i) = marcuse();
        let mut o = healthy_observed(&fl.hosts[i]);
        plant(&mut o, "leftover", "inactive", "masked", Some("sha-ekumen"));
        // Inactive and disabled: not running, not starting at boot either.
        plant(&mut o, "idle", "inactive", "disabled", None);
        let rows = rows_for(&o, &empty_plan("marcuse"));
        let left = rows.iter().find(|r| r.nickname == "leftover").unwrap();
        assert_eq!(left.unit, "masked");
        assert_eq!(left.copy_of.as_deref(), Some("ekumen"));
        assert!(left.attention.is_empty(), "{left:?}");
        let idle = rows.iter().find(|r| r.nickname == "idle").unwrap();
        assert!(!idle.managed && idle.attention.is_empty(), "{idle:?}");
        assert_eq!(Verdict::of(&rows).exit_code(), 0);
        // A masked unit that still runs (masked after it started) is running all the same.
        let mut o = healthy_observed(&fl.hosts[i]);
        plant(&mut o, "leftover", "active", "masked", None);
        let rows = rows_for(&o, &empty_plan("marcuse"));
        assert_eq!(Verdict::of(&rows).exit_code(), 2, "{rows:?}");
    }

    #[test]
    fn an_unmanaged_instance_the_next_apply_removes_says_so() {
        let (fl, i) = marcuse();
        let mut o = healthy_observed(&fl.hosts[i]);
        plant(&mut o, "gone", "active", "enabled", None);
        let mut plan = empty_plan("marcuse");
        plan.changes.push(crate::plan::Change {
            kind: ChangeKind::RemoveInstance,
            target: "gone".into(),
            reason: "relay left the inventory".into(),
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
            instance: Some("gone".into()),
            role: None,
        });
        let rows = rows_for(&o, &plan);
        let gone = rows.iter().find(|r| r.nickname == "gone").unwrap();
        assert_eq!(gone.drift, ["instance gone to remove"]);
        assert!(
            gone.attention[0].ends_with("; the next apply stops it (it left the inventory)"),
            "{:?}",
            gone.attention
        );
        // The inventory's rows do not carry another instance's removal.
        assert!(rows[0].drift.is_empty() && rows[1].drift.is_empty());
    }

    #[test]
    fn json_is_versioned() {
        let s = Status {
            schema: SCHEMA.into(),
            rows: vec![],
        };
        let j = serde_json::to_value(&s).unwrap();
        assert_eq!(j["schema"], "oignon.status/1");
        // The unmanaged rows' fields are additions to /1 (see SCHEMA).
        let (fl, i) = marcuse();
        let mut o = healthy_observed(&fl.hosts[i]);
        plant(&mut o, "handmade", "active", "enabled", Some("sha-ekumen"));
        let j = serde_json::to_value(rows_for(&o, &empty_plan("marcuse"))).unwrap();
        assert_eq!(j[0]["managed"], true);
        assert_eq!(j[0]["copy_of"], serde_json::Value::Null);
        assert_eq!(j[2]["managed"], false);
        assert_eq!(j[2]["copy_of"], "ekumen");
    }
}
