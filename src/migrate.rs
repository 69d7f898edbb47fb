//! `oignon migrate NICKNAME --to HOST`: moves a relay, its identity included, to another host of
//! the inventory, in one reviewed plan over the two hosts, never with two copies running:
//!
//! 1. stop, disable and mask `tor@NAME` on the source;
//! 2. move its keys out of the DataDirectory into a root-only quarantine on the source;
//! 3. leave a tombstone on the source (`/var/lib/oignon/moved/NAME`);
//! 4. deploy config and keys to the target and start it: the ordinary pipeline (render, gather,
//!    plan, apply) run on the inventory with the relay moved, for the target alone;
//! 5. verify on the target: the fingerprint tor logs in this run equals secrets/, and the ORPort
//!    listens;
//! 6. only then overwrite and unlink the quarantined keys, archive the old config;
//! 7. write the inventory patch (the relay's `[[host.relay]]` table moves to the target).
//!
//! Each step is recorded in a journal ([`Journal`], `.oignon/migrations/NICK.json` beside the
//! inventory directory) once it is done; a rerun resumes after the last recorded step. The
//! host-side steps (src/remote/migrate.sh) each check the host first, so a controller killed
//! between a step done on the host and its journal entry reruns that step as a no-op.

use crate::fleet::{Loaded, Paths, PlanOptions};
use crate::gather::{Reach, Target};
use crate::inventory::relocate::{self, Edit};
use crate::inventory::HostSpec;
use crate::remote::migrate::{parse_probe, step_answer, Probe, StepAnswer, Verb};
use crate::transport::Transport;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The steps, in their order (the journal's names).
pub const STEPS: [&str; 7] = [
    "stop",
    "quarantine",
    "tombstone",
    "deploy",
    "verify",
    "purge",
    "inventory",
];

/// Test hook: `OIGNON_MIGRATE_EXIT_AFTER=K` ends the process right after step K (1-based) is
/// recorded; `K-unrecorded` right after it is done on the host, before the journal knows.
pub const EXIT_AFTER_ENV: &str = "OIGNON_MIGRATE_EXIT_AFTER";

/// Why a migration or retirement stopped. Its text says what happened and what to do; the
/// journal says which steps are done.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// A precondition does not hold, or the request cannot be done: nothing (more) was changed.
    #[error("{0}")]
    Refused(String),
    /// A step, the deploy or the verification failed partway: rerun to resume, or roll back.
    #[error("{0}")]
    Stopped(String),
    /// SSH setup or a connection failed.
    #[error(transparent)]
    Transport(#[from] crate::transport::TransportError),
    /// Planning the target's deploy could not start.
    #[error(transparent)]
    Plan(#[from] crate::fleet::PlanError),
    /// The async runtime could not start.
    #[error("cannot start the runtime: {0}")]
    Runtime(#[from] std::io::Error),
}

/// What `oignon migrate` was asked.
#[derive(Debug, Clone)]
pub struct MigrateOptions {
    pub paths: Paths,
    /// The identity that decrypts secrets/ (None: the default places).
    pub identity: Option<PathBuf>,
    /// `ssh -F FILE` for every connection.
    pub ssh_config: Option<PathBuf>,
    /// The relay.
    pub nick: String,
    /// The host it moves to.
    pub to: String,
    pub dry_run: bool,
    /// The source is down: its steps are skipped, and the plan says the old copy is unproven.
    pub source_unreachable: bool,
    /// Confirmed beforehand (`--yes`).
    pub yes: bool,
    /// How long to wait for tor on the target to run, log its fingerprint and listen.
    pub verify_seconds: u64,
}

/// One step done.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StepDone {
    pub step: String,
    pub host: String,
    /// UTC, RFC 3339.
    pub at: String,
    /// `done`, `already` (found done on the host), or `skipped` (source unreachable).
    pub how: String,
}

/// The record of one migration: no secret, only names, times and the public fingerprint.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Journal {
    pub schema: String,
    pub relay: String,
    pub from: String,
    pub to: String,
    pub fingerprint: String,
    pub started: String,
    pub source_unreachable: bool,
    pub steps: Vec<StepDone>,
    pub finished: Option<String>,
}

const JOURNAL_SCHEMA: &str = "oignon.migration/1";

impl Journal {
    /// Where the journal of `nick` lives: `.oignon/migrations/NICK.json` in the directory that holds
    /// the inventory directory (the repository), away from secrets/.
    pub fn path(inventory: &Path, nick: &str) -> PathBuf {
        let abs = std::path::absolute(inventory).unwrap_or_else(|_| inventory.to_path_buf());
        let repo = abs
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        repo.join(".oignon")
            .join("migrations")
            .join(format!("{nick}.json"))
    }

    /// Reads a journal; None when there is none.
    pub fn read(path: &Path) -> Result<Option<Journal>, String> {
        match std::fs::read(path) {
            Ok(b) => serde_json::from_slice(&b).map(Some).map_err(|e| {
                format!(
                    "{}: not a migration journal ({e}); move it away if it is not oignon's",
                    path.display()
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    /// Writes it atomically: temp file, fsync, rename, fsync of the directory.
    pub fn write(&self, path: &Path) -> Result<(), String> {
        let dir = path.parent().ok_or("journal path has no directory")?;
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let text = serde_json::to_vec_pretty(self).map_err(|e| e.to_string())?;
        // The rename itself is fsync'd too: the step it records is done.
        crate::util::write_atomic(path, &text, crate::util::Mode::Keep(0o644), false)
            .map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Whether `step` is recorded as done.
    pub fn done(&self, step: &str) -> bool {
        self.steps.iter().any(|s| s.step == step)
    }
}

fn now() -> String {
    // RFC 3339 UTC from the system clock, without a date crate: seconds since the epoch, civil.
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 → (year, month, day) (Howard Hinnant's algorithm).
fn civil(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// How a migrate run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Every step is done (now or before).
    Complete,
    /// `--dry-run`: shown, nothing changed.
    Shown,
    /// The operator did not confirm.
    Cancelled,
}

/// The two hosts, their connections and what was found on them.
struct Hosts {
    reach: Reach,
    source: Target,
    target: Target,
    src: Option<Transport>,
    dst: Option<Transport>,
}

async fn step(t: &Transport, nick: &str, verb: Verb) -> Result<StepAnswer, String> {
    let args = verb.args(nick)?;
    let out = t
        .run(verb.word(), crate::remote::MIGRATE, &args, vec![])
        .await
        .map_err(|e| e.to_string())?;
    step_answer(verb.word(), out.status, &out.stdout, &out.stderr_text())
}

async fn probe(t: &Transport, nick: &str, verb: Verb) -> Result<Probe, String> {
    let args = verb.args(nick)?;
    let out = t
        .run(verb.word(), crate::remote::MIGRATE, &args, vec![])
        .await
        .map_err(|e| e.to_string())?;
    parse_probe(&out.stdout).map_err(|e| {
        let err = out.stderr_text();
        if err.trim().is_empty() {
            e
        } else {
            format!("{e}: {}", err.trim())
        }
    })
}

/// The inventory directory with `edits` applied, in a temporary directory: what the target is
/// deployed from before the real inventory is patched (the last step).
fn moved_inventory(inv: &Path, edits: &[Edit]) -> Result<tempfile::TempDir, String> {
    let tmp = tempfile::Builder::new()
        .prefix("oignon-migrate-")
        .tempdir()
        .map_err(|e| format!("temporary directory: {e}"))?;
    let entries = std::fs::read_dir(inv).map_err(|e| format!("{}: {e}", inv.display()))?;
    for e in entries.flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "toml") {
            let name = p.file_name().ok_or("a file without a name")?;
            let text = match edits.iter().find(|x| x.path == p) {
                Some(x) => x.new.clone().into_bytes(),
                None => std::fs::read(&p).map_err(|e| format!("{}: {e}", p.display()))?,
            };
            std::fs::write(tmp.path().join(name), text)
                .map_err(|e| format!("temporary inventory: {e}"))?;
        }
    }
    Ok(tmp)
}

fn find_relay<'a>(
    loaded: &'a Loaded,
    nick: &str,
) -> Option<(&'a HostSpec, &'a crate::inventory::RelaySpec)> {
    loaded
        .fleet()
        .hosts
        .iter()
        .find_map(|h| h.relays.iter().find(|r| r.nickname == nick).map(|r| (h, r)))
}

fn exit_hook(k: usize, recorded: bool) {
    if let Ok(v) = std::env::var(EXIT_AFTER_ENV) {
        let want = if recorded {
            k.to_string()
        } else {
            format!("{k}-unrecorded")
        };
        if v == want {
            eprintln!(
                "{EXIT_AFTER_ENV}={v}: exiting after step {k} ({})",
                STEPS[k - 1]
            );
            std::process::exit(75);
        }
    }
}

/// Runs (or resumes, or shows) a migration. `confirm` asks the operator (the question given);
/// it is not called with `yes` or `dry_run`. Every failure is an error saying what to do.
pub fn migrate(o: &MigrateOptions, confirm: &dyn Fn(&str) -> bool) -> Result<Ended, MigrateError> {
    let nick = o.nick.as_str();
    let jpath = Journal::path(&o.paths.inventory, nick);
    let journal = Journal::read(&jpath).map_err(MigrateError::Refused)?;
    if let Some(j) = &journal {
        if let Some(at) = &j.finished {
            println!(
                "{nick}: the migration from {} to {} was completed at {at} (journal {}); nothing to do.",
                j.from,
                j.to,
                jpath.display()
            );
            return Ok(Ended::Complete);
        }
        if j.to != o.to {
            return Err(MigrateError::Refused(format!("{nick}: a migration to {} is under way (journal {}); finish it (`oignon migrate {nick} --to {}`) or roll it back (`oignon migrate {nick} --to {} --rollback`) first", j.to, jpath.display(), j.to, j.to)));
        }
    }
    let Some(loaded) = crate::fleet::load(&o.paths, true) else {
        return Err(MigrateError::Refused(
            "the inventory has errors (above); fix them, then migrate".into(),
        ));
    };
    let fleet = loaded.fleet();
    let Some((src_spec, relay)) = find_relay(&loaded, nick) else {
        return Err(MigrateError::Refused(format!(
            "no relay `{nick}` in the inventory; relays: {}",
            fleet
                .hosts
                .iter()
                .flat_map(|h| h.relays.iter().map(|r| r.nickname.as_str()))
                .collect::<Vec<_>>()
                .join(", ")
        )));
    };
    let from = journal
        .as_ref()
        .map(|j| j.from.clone())
        .unwrap_or_else(|| src_spec.name.clone());
    if from == o.to {
        return Err(MigrateError::Refused(format!(
            "{nick} is already on {}: nothing to migrate",
            o.to
        )));
    }
    let Some(to_spec) = fleet.hosts.iter().find(|h| h.name == o.to) else {
        return Err(MigrateError::Refused(format!("no host `{}` in the inventory; add the new VM first (a `[[host]]` table with its name, addresses and uplink), then migrate; hosts: {}", o.to, fleet.hosts.iter().map(|h| h.name.as_str()).collect::<Vec<_>>().join(", "))));
    };
    let Some(src_spec) = fleet.hosts.iter().find(|h| h.name == from) else {
        return Err(MigrateError::Refused(format!(
            "no host `{from}` (the journal's source) in the inventory"
        )));
    };
    // The identity must be in secrets/: the target gets it from there, and nowhere else.
    let fingerprint = match (loaded.store.has_identity(nick), loaded.store.fingerprint(nick)) {
        (true, Some(fp)) => fp,
        _ => return Err(MigrateError::Refused(format!("{nick}'s identity is not in {}: the target could only get a new one. Run `oignon secrets import {from}` first (it reads the keys of the running relay and checks its fingerprint), then migrate", loaded.store.dir.display()))),
    };
    let edits =
        relocate::relocate(&o.paths.inventory, nick, &o.to).map_err(MigrateError::Refused)?;
    let moved = moved_inventory(&o.paths.inventory, &edits).map_err(MigrateError::Refused)?;
    let moved_paths = Paths {
        inventory: moved.path().to_path_buf(),
        ..o.paths.clone()
    };
    let rt = tokio::runtime::Runtime::new()?;
    let reach = Reach::new(None, o.ssh_config.as_deref(), &[src_spec, to_spec], 2)?;
    let mut hosts = Hosts {
        reach,
        source: Target::from(src_spec),
        target: Target::from(to_spec),
        src: None,
        dst: None,
    };
    let ctx = Ctx {
        o,
        rt: &rt,
        jpath: &jpath,
        fingerprint: &fingerprint,
        orport: relay.orport,
        edits: &edits,
        moved_paths: &moved_paths,
    };
    let result = run(&ctx, &mut hosts, journal, confirm);
    rt.block_on(async {
        if let Some(t) = hosts.src.take() {
            t.close().await;
        }
        if let Some(t) = hosts.dst.take() {
            t.close().await;
        }
    });
    drop(moved);
    result
}

/// What one migration run works with: the options, and what `migrate` found before connecting.
struct Ctx<'a> {
    o: &'a MigrateOptions,
    rt: &'a tokio::runtime::Runtime,
    jpath: &'a Path,
    /// The relay's RSA fingerprint, from secrets/.
    fingerprint: &'a str,
    orport: u16,
    /// The inventory patch (moving the relay's table).
    edits: &'a [Edit],
    /// The inventory with the relay moved (a temporary directory).
    moved_paths: &'a Paths,
}

/// Connects, checks (a fresh migration), shows the plan, asks, then runs the steps not done yet.
fn run(
    c: &Ctx,
    h: &mut Hosts,
    journal: Option<Journal>,
    confirm: &dyn Fn(&str) -> bool,
) -> Result<Ended, MigrateError> {
    let (o, nick) = (c.o, c.o.nick.as_str());
    let (from, to) = (h.source.name.clone(), h.target.name.clone());
    let source_unreachable =
        o.source_unreachable || journal.as_ref().is_some_and(|j| j.source_unreachable);
    let (tprobe, sprobe) = connect(c, h, source_unreachable)?;
    // Preconditions, all before anything changes (a resumed migration checked them when it began).
    if journal.is_none() {
        preconditions(c, h, &tprobe, sprobe.as_ref())?;
    }
    show(c, h, journal.as_ref(), source_unreachable)?;
    if o.dry_run {
        println!("Dry run: nothing was changed.");
        return Ok(Ended::Shown);
    }
    if !o.yes {
        let q = if source_unreachable {
            format!("{from} is unreachable: the old copy of {nick} cannot be proven stopped. Migrate anyway?")
        } else {
            format!("Migrate {nick} from {from} to {to}?")
        };
        if !confirm(&q) {
            return Ok(Ended::Cancelled);
        }
    }
    let j = journal.unwrap_or_else(|| Journal {
        schema: JOURNAL_SCHEMA.into(),
        relay: nick.into(),
        from: from.clone(),
        to: to.clone(),
        fingerprint: c.fingerprint.into(),
        started: now(),
        source_unreachable,
        steps: vec![],
        finished: None,
    });
    run_steps(c, h, j)
}

/// Opens both hosts (the source may be down only when the operator said so) and probes them.
fn connect(
    c: &Ctx,
    h: &mut Hosts,
    source_unreachable: bool,
) -> Result<(Probe, Option<Probe>), MigrateError> {
    let (rt, nick, orport) = (c.rt, c.o.nick.as_str(), c.orport);
    let (from, to) = (h.source.name.clone(), h.target.name.clone());
    h.dst = Some(rt.block_on(h.reach.open(&h.target)).map_err(|e| {
        MigrateError::Refused(format!(
            "target {to} is unreachable: {e}; migrate needs it up"
        ))
    })?);
    match rt.block_on(h.reach.open(&h.source)) {
        Ok(t) => h.src = Some(t),
        Err(e) if source_unreachable => {
            eprintln!("warning: source {from} is unreachable ({e}); going on as --source-unreachable says");
        }
        Err(e) => return Err(MigrateError::Refused(format!("source {from} is unreachable: {e}. If it is dead for good, rerun with --source-unreachable: the old copy then cannot be proven stopped, and you must make sure it never starts again"))),
    }
    let dst = h
        .dst
        .as_ref()
        .ok_or_else(|| MigrateError::Refused("no target connection".into()))?;
    let tprobe = rt
        .block_on(probe(dst, nick, Verb::Probe { port: orport }))
        .map_err(|e| MigrateError::Refused(format!("{to}: {e}")))?;
    let sprobe = match &h.src {
        Some(t) => Some(
            rt.block_on(probe(t, nick, Verb::Probe { port: orport }))
                .map_err(|e| MigrateError::Refused(format!("{from}: {e}")))?,
        ),
        None => None,
    };
    Ok((tprobe, sprobe))
}

/// The preconditions of a fresh migration, all reported at once; any one refuses the run.
fn preconditions(
    c: &Ctx,
    h: &Hosts,
    tprobe: &Probe,
    sprobe: Option<&Probe>,
) -> Result<(), MigrateError> {
    let (nick, fingerprint, orport, moved_paths) =
        (c.o.nick.as_str(), c.fingerprint, c.orport, c.moved_paths);
    let (from, to) = (h.source.name.clone(), h.target.name.clone());
    let mut bad: Vec<String> = vec![];
    if let Some(s) = &sprobe {
        if s.running() || s.keys {
            match &s.fingerprint_file {
                Some(fp) if fp == fingerprint => {}
                Some(fp) => bad.push(format!("{from}: the relay there reports fingerprint {fp}, secrets/ holds {fingerprint}: they are not the same relay; import the running one (`oignon secrets import {from}`) or fix secrets/")),
                None => bad.push(format!("{from}: {nick} has not written its fingerprint (/var/lib/tor-instances/{nick}/fingerprint): start it once, or check it by hand, then migrate")),
            }
        } else {
            bad.push(format!("{from}: no running {nick} and no keys in its DataDirectory: nothing to migrate from there (if it is dead for good, use --source-unreachable)"));
        }
    }
    if !tprobe.tor_installed {
        bad.push(format!(
            "{to}: tor is not installed: `apt-get install tor tor-geoipdb` there, then migrate"
        ));
    }
    // A DataDirectory without keys is what a relay that left this host once leaves behind
    // (its tombstone says so): coming back is allowed. Keys, a config or a running unit are
    // another copy.
    if tprobe.running() || tprobe.config_dir || tprobe.keys {
        bad.push(format!("{to}: an instance {nick} exists there already (tor@{nick} {}, /etc/tor/instances/{nick}: {}, keys in its DataDirectory: {}): remove it by hand, then migrate", tprobe.active_state, yes_no(tprobe.config_dir), yes_no(tprobe.keys)));
    }
    if !tprobe.listening.is_empty() {
        bad.push(format!("{to}: the ORPort {orport} is taken ({} listening): free it, or give the relay another orport in the inventory", tprobe.listening.join(", ")));
    }
    if let Some(r) = moved_relay(moved_paths, nick) {
        for a in r {
            if !tprobe.addresses.contains(&a) {
                bad.push(format!("{to}: the relay will announce {a} (the host's inventory address), which the host does not have (it has {}): fix the host's ipv4/ipv6 in the inventory or its network", if tprobe.addresses.is_empty() { "none".to_string() } else { tprobe.addresses.join(", ") }));
            }
        }
    }
    if !bad.is_empty() {
        for b in &bad {
            eprintln!("error: {b}");
        }
        return Err(MigrateError::Stopped(format!(
            "{} precondition{} failed; nothing was changed",
            bad.len(),
            crate::text::plural(bad.len())
        )));
    }
    Ok(())
}

/// The plan over the two hosts: the steps (those done marked), the target's deploy as `plan`
/// shows it, and the inventory patch.
fn show(
    c: &Ctx,
    h: &Hosts,
    journal: Option<&Journal>,
    source_unreachable: bool,
) -> Result<(), MigrateError> {
    let (o, rt, nick) = (c.o, c.rt, c.o.nick.as_str());
    let (fingerprint, orport, jpath, edits, moved_paths) =
        (c.fingerprint, c.orport, c.jpath, c.edits, c.moved_paths);
    let (from, to) = (h.source.name.clone(), h.target.name.clone());
    let done = |s: &str| journal.as_ref().is_some_and(|j| j.done(s));
    println!("Migration of {nick} ({fingerprint}) from {from} to {to}:");
    let lines = [
        format!("{from}: stop, disable and mask tor@{nick} (it cannot start again, not even at boot)"),
        format!("{from}: move /var/lib/tor-instances/{nick}/keys to /var/lib/oignon/quarantine/{nick} (root only)"),
        format!("{from}: tombstone /var/lib/oignon/moved/{nick} (to {to}, fingerprint {fingerprint}): plan and apply refuse to start {nick} there again"),
        format!("{to}: deploy {nick}'s config and keys from secrets/ and start it (the plan below)"),
        format!("{to}: verify: tor@{nick} logs fingerprint {fingerprint} and listens on its ORPort {orport}; mark its arrival (/var/lib/oignon/arrived/{nick})"),
        format!("{from}: overwrite and remove the quarantined keys; archive /etc/tor/instances/{nick} under /var/backups/oignon"),
        format!("inventory: move {nick}'s [[host.relay]] from {from} to {to} (the patch below)"),
    ];
    for (i, l) in lines.iter().enumerate() {
        let mark = if done(STEPS[i]) { "done" } else { "    " };
        println!("  {}. [{mark}] {l}", i + 1);
    }
    println!("  At no step do both hosts run {nick}. If the target fails verification, nothing is removed from {from}: `oignon migrate {nick} --to {to} --rollback` unmasks and restores it there.");
    if source_unreachable {
        println!("  WARNING: {from} is unreachable: oignon cannot prove the old copy is stopped. Its steps are skipped; make sure it never starts again (destroy the VM or its disk).");
    }
    if let Some(j) = &journal {
        let names: Vec<&str> = j.steps.iter().map(|s| s.step.as_str()).collect();
        let names = if names.is_empty() {
            "no step yet".to_string()
        } else {
            names.join(", ")
        };
        println!(
            "Resuming (journal {}): already done: {names}.",
            jpath.display()
        );
    }
    // The target's deploy, as `plan` shows it (from the inventory with the relay moved).
    if !done("deploy") {
        let popts = target_plan_options(o, moved_paths);
        if let Some(planned) = crate::fleet::plan(&popts, rt, &|_| Ok(()))? {
            print!("{}", crate::show::plan_text(&planned.plan, false));
            crate::fleet::close_all(rt, planned.hosts);
        }
    }
    if !done("inventory") {
        let p = relocate::patch(edits);
        if !p.is_empty() {
            println!("Inventory patch:\n{p}");
        }
    }
    Ok(())
}

/// Runs each step not done yet, recording it in the journal as it completes.
fn run_steps(c: &Ctx, h: &Hosts, mut j: Journal) -> Result<Ended, MigrateError> {
    let (o, rt, nick) = (c.o, c.rt, c.o.nick.as_str());
    let (fingerprint, orport, jpath, edits, moved_paths) =
        (c.fingerprint, c.orport, c.jpath, c.edits, c.moved_paths);
    let (from, to) = (h.source.name.clone(), h.target.name.clone());
    if j.steps.is_empty() {
        j.write(jpath).map_err(MigrateError::Stopped)?;
    }
    for (k, name) in STEPS.iter().enumerate() {
        let k = k + 1;
        if j.done(name) {
            println!("{k}. {name}: already done");
            continue;
        }
        let on_source = matches!(*name, "stop" | "quarantine" | "tombstone" | "purge");
        let host = if on_source {
            from.clone()
        } else if *name == "inventory" {
            "-".into()
        } else {
            to.clone()
        };
        let how = if on_source && h.src.is_none() {
            "skipped".to_string()
        } else {
            match *name {
                "stop" | "quarantine" | "purge" => {
                    let verb = match *name {
                        "stop" => Verb::Stop,
                        "quarantine" => Verb::Quarantine,
                        _ => Verb::Purge,
                    };
                    host_step(rt, h.src.as_ref(), &from, nick, verb)?
                }
                "tombstone" => host_step(
                    rt,
                    h.src.as_ref(),
                    &from,
                    nick,
                    Verb::Tombstone {
                        to: to.clone(),
                        when: now(),
                        fingerprint: fingerprint.into(),
                    },
                )?,
                "deploy" => deploy(o, rt, moved_paths, &to)?,
                "verify" => verify(
                    rt,
                    h.dst.as_ref(),
                    &to,
                    &from,
                    nick,
                    fingerprint,
                    orport,
                    o.verify_seconds,
                )?,
                _ => {
                    relocate::write(edits).map_err(MigrateError::Stopped)?;
                    "done".into()
                }
            }
        };
        println!("{k}. {name} ({host}): {how}");
        exit_hook(k, false);
        j.steps.push(StepDone {
            step: name.to_string(),
            host,
            at: now(),
            how,
        });
        if k == STEPS.len() {
            j.finished = Some(now());
        }
        j.write(jpath).map_err(MigrateError::Stopped)?;
        exit_hook(k, true);
    }
    println!("{nick} now runs on {to} with fingerprint {fingerprint}; {from} keeps only its tombstone. Journal: {}", jpath.display());
    Ok(Ended::Complete)
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// The addresses the moved relay will announce (from the inventory with the relay moved).
fn moved_relay(paths: &Paths, nick: &str) -> Option<Vec<String>> {
    let inv = crate::inventory::load(&paths.inventory);
    let fleet = inv.fleet?;
    fleet
        .hosts
        .iter()
        .flat_map(|h| h.relays.iter())
        .find(|r| r.nickname == nick)
        .map(|r| {
            let mut v = vec![r.ipv4.to_string()];
            v.extend(r.ipv6.map(|a| a.to_string()));
            v
        })
}

fn target_plan_options(o: &MigrateOptions, moved: &Paths) -> PlanOptions {
    PlanOptions {
        paths: moved.clone(),
        identity: o.identity.clone(),
        ssh_config: o.ssh_config.clone(),
        local: None,
        hosts: vec![o.to.clone()],
        hosters: vec![],
        parallel: 1,
        // A tombstone of this relay on the target (it left it once) does not stop it coming back.
        resurrect: vec![o.nick.clone()],
    }
}

fn host_step(
    rt: &tokio::runtime::Runtime,
    t: Option<&Transport>,
    host: &str,
    nick: &str,
    verb: Verb,
) -> Result<String, MigrateError> {
    let t = t.ok_or_else(|| MigrateError::Stopped(format!("{host}: not connected")))?;
    let word = verb.word();
    run_step(rt, t, nick, verb).map_err(|e| MigrateError::Stopped(format!("{host}: step `{word}` failed: {e}. Nothing after it was done; fix the cause and run migrate again (it resumes here)")))
}

/// One host step; how it ended (`done`, or found done already), or why it failed.
fn run_step(
    rt: &tokio::runtime::Runtime,
    t: &Transport,
    nick: &str,
    verb: Verb,
) -> Result<String, String> {
    match rt.block_on(step(t, nick, verb))? {
        StepAnswer::Done => Ok("done".into()),
        StepAnswer::Already => Ok("already done on the host".into()),
    }
}

/// Step 4: the ordinary pipeline for the target alone, from the inventory with the relay moved.
fn deploy(
    o: &MigrateOptions,
    rt: &tokio::runtime::Runtime,
    moved: &Paths,
    to: &str,
) -> Result<String, MigrateError> {
    let popts = target_plan_options(o, moved);
    let Some(planned) = crate::fleet::plan(&popts, rt, &|_| Ok(()))? else {
        return Err(MigrateError::Stopped(format!(
            "{to}: planning the deploy failed (above)"
        )));
    };
    let crate::fleet::Planned {
        mut plan,
        hosts,
        reach,
        targets,
    } = planned;
    crate::plan::refuse_identity_changes(&mut plan, &[]);
    if let Some(e) = plan.hosts.iter().find_map(|h| h.error.as_ref()) {
        crate::fleet::close_all(rt, hosts);
        return Err(MigrateError::Stopped(format!("{to}: {e}")));
    }
    // A tombstone of this relay on the target (it once left it): lifted, as the plan allowed.
    for (d, g) in &hosts {
        if let (Ok(obs), Some(t)) = (&g.observed, &g.transport) {
            if !crate::plan::resurrected(obs, d, &popts.resurrect).is_empty() {
                rt.block_on(step(t, &o.nick, Verb::Resurrect))
                    .map_err(|e| {
                        MigrateError::Stopped(format!(
                            "{to}: lifting the old tombstone of {}: {e}",
                            o.nick
                        ))
                    })?;
            }
        }
    }
    let todo = crate::apply::todo(&plan, false);
    if todo.is_empty() {
        crate::fleet::close_all(rt, hosts);
        return Ok("already done on the host (nothing to change)".into());
    }
    let again = crate::apply::Reconnect { reach, targets };
    let rollout = crate::apply::RolloutOptions {
        serial: None,
        max_fail: 0,
        reboot: false,
        reboot_timeout: std::time::Duration::from_secs(600),
        parallel: 1,
    };
    let done = crate::apply::rollout(rt, &plan, hosts, &again, &todo, &rollout);
    if let Some(r) = done.results.iter().find(|r| !r.ok || r.error.is_some()) {
        let why = r
            .error
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_else(|| "failed".into());
        return Err(MigrateError::Stopped(format!("{to}: deploying failed: {why}. The source stays stopped with its keys in quarantine: fix the cause and run migrate again, or roll back with --rollback")));
    }
    Ok(format!(
        "done ({} changes applied)",
        plan.hosts.iter().map(|h| h.changes.len()).sum::<usize>()
    ))
}

/// Step 5: tor's own word on the target.
#[allow(clippy::too_many_arguments)]
fn verify(
    rt: &tokio::runtime::Runtime,
    t: Option<&Transport>,
    to: &str,
    from: &str,
    nick: &str,
    fingerprint: &str,
    orport: u16,
    seconds: u64,
) -> Result<String, MigrateError> {
    let t = t.ok_or_else(|| MigrateError::Stopped(format!("{to}: not connected")))?;
    let p = rt
        .block_on(probe(
            t,
            nick,
            Verb::Verify {
                port: orport,
                seconds,
            },
        ))
        .map_err(|e| MigrateError::Stopped(format!("{to}: verifying: {e}")))?;
    let rollback = format!("nothing was removed from {from}; roll back with `oignon migrate {nick} --to {to} --rollback`, or fix {to} and run migrate again");
    if !p.running() {
        return Err(MigrateError::Stopped(format!("{to}: verification failed: tor@{nick} is {} (see `journalctl -u tor@{nick}` there); {rollback}", p.active_state)));
    }
    match &p.journal_fingerprint {
        Some(fp) if fp == fingerprint => {}
        Some(fp) => return Err(MigrateError::Stopped(format!("{to}: verification failed: tor@{nick} runs with fingerprint {fp}, not {fingerprint} (secrets/): another identity; {rollback}"))),
        None => return Err(MigrateError::Stopped(format!("{to}: verification failed: tor@{nick} logged no fingerprint within {seconds}s; {rollback}"))),
    }
    if p.listening.is_empty() {
        return Err(MigrateError::Stopped(format!(
            "{to}: verification failed: nothing listens on the ORPort {orport}; {rollback}"
        )));
    }
    // Proven: the relay lives here now. The mark makes an older inventory (without it here)
    // refused on this host instead of taking it down.
    rt.block_on(step(
        t,
        nick,
        Verb::Arrive {
            from: from.to_string(),
            when: now(),
            fingerprint: fingerprint.to_string(),
        },
    ))
    .map_err(|e| MigrateError::Stopped(format!("{to}: marking the arrival: {e}")))?;
    Ok(format!(
        "tor logs fingerprint {fingerprint}; listening on {}",
        p.listening.join(", ")
    ))
}

/// `migrate --rollback`: the target stopped (masked, its keys quarantined and removed, a tombstone
/// naming the source), then the source restored and started; the journal is removed. Refused
/// once the source's keys are gone.
pub fn rollback(o: &MigrateOptions) -> Result<(), MigrateError> {
    let nick = o.nick.as_str();
    let jpath = Journal::path(&o.paths.inventory, nick);
    let Some(j) = Journal::read(&jpath).map_err(MigrateError::Refused)? else {
        return Err(MigrateError::Refused(format!(
            "no migration of {nick} under way (no journal {}): nothing to roll back",
            jpath.display()
        )));
    };
    if j.done("purge") {
        return Err(MigrateError::Refused(format!("{nick}: the source's keys were already removed (step purge done at {}): the relay lives on {}; to move it back, `oignon migrate {nick} --to {}`", j.steps.iter().find(|s| s.step == "purge").map(|s| s.at.as_str()).unwrap_or("?"), j.to, j.from)));
    }
    let Some(loaded) = crate::fleet::load(&o.paths, false) else {
        return Err(MigrateError::Refused(
            "the inventory has errors (above)".into(),
        ));
    };
    let fleet = loaded.fleet();
    let spec = |n: &str| {
        fleet
            .hosts
            .iter()
            .find(|h| h.name == n)
            .ok_or_else(|| MigrateError::Refused(format!("no host `{n}` in the inventory")))
    };
    let (src, dst) = (spec(&j.from)?, spec(&j.to)?);
    let rt = tokio::runtime::Runtime::new()?;
    let reach = Reach::new(None, o.ssh_config.as_deref(), &[src, dst], 2)?;
    rt.block_on(async {
        // The target first: whatever deploy did there stops before the source starts again.
        let t = reach.open(&Target::from(dst)).await.map_err(|e| MigrateError::Stopped(format!("target {}: {e}", j.to)))?;
        // Its tombstone there names the source: an inventory still placing the relay on the
        // target is refused there, and a later migrate to it lifts the tombstone on purpose.
        let tomb = Verb::Tombstone {
            to: j.from.clone(),
            when: now(),
            fingerprint: j.fingerprint.clone(),
        };
        for verb in [Verb::Stop, Verb::Quarantine, tomb, Verb::Purge] {
            let w = verb.word();
            let p = probe(&t, nick, Verb::Probe { port: 1 }).await.map_err(|e| MigrateError::Stopped(format!("{}: {e}", j.to)))?;
            // Nothing of the relay there (deploy never ran, or this is done): nothing to undo.
            if !p.config_dir && !p.keys && !p.quarantined && !p.running() {
                break;
            }
            if w == "quarantine" && !p.keys {
                continue;
            }
            match step(&t, nick, verb).await {
                Ok(a) => println!("{}: {w}: {}", j.to, if a == StepAnswer::Done { "done" } else { "already done" }),
                Err(e) => {
                    t.close().await;
                    return Err(MigrateError::Stopped(format!("{}: {w} failed: {e}; the source was left as it is (stopped, keys in quarantine)", j.to)));
                }
            }
        }
        t.close().await;
        let s = reach.open(&Target::from(src)).await.map_err(|e| MigrateError::Stopped(format!("source {}: {e}; nothing restored there", j.from)))?;
        let r = step(&s, nick, Verb::Rollback).await;
        s.close().await;
        match r {
            Ok(_) => println!("{}: keys restored, tombstone removed, tor@{nick} unmasked and started", j.from),
            Err(e) => return Err(MigrateError::Stopped(format!("{}: rollback failed: {e}", j.from))),
        }
        Ok(())
    })?;
    std::fs::remove_file(&jpath)
        .map_err(|e| MigrateError::Stopped(format!("{}: {e}", jpath.display())))?;
    println!(
        "Rolled back: {nick} runs on {} again; the inventory was not changed.",
        j.from
    );
    Ok(())
}

/// `apply --resurrect NICKNAME`: on each host whose plan brings back a tombstoned relay, removes
/// the tombstone and unmasks the unit first (the apply then starts it). Errors name the host.
pub fn lift_tombstones(
    rt: &tokio::runtime::Runtime,
    hosts: &[(crate::desired::DesiredHost, crate::gather::Gathered)],
    names: &[String],
) -> Result<(), String> {
    if names.is_empty() {
        return Ok(());
    }
    for (d, g) in hosts {
        let (Ok(obs), Some(t)) = (&g.observed, &g.transport) else {
            continue;
        };
        for nick in crate::plan::resurrected(obs, d, names) {
            rt.block_on(step(t, &nick, Verb::Resurrect))
                .map_err(|e| format!("{}: lifting the tombstone of {nick}: {e}", d.name))?;
            println!(
                "{}: tombstone of {nick} removed, tor@{nick} unmasked (--resurrect)",
                d.name
            );
        }
    }
    Ok(())
}

/// What `oignon retire` was asked.
#[derive(Debug, Clone)]
pub struct RetireOptions {
    pub paths: Paths,
    pub ssh_config: Option<PathBuf>,
    pub nick: String,
    pub dry_run: bool,
    pub yes: bool,
}

/// What `oignon host retire` was asked.
#[derive(Debug, Clone)]
pub struct RetireHostOptions {
    pub paths: Paths,
    pub ssh_config: Option<PathBuf>,
    /// The host, as named in the inventory.
    pub host: String,
    pub dry_run: bool,
    pub yes: bool,
}

/// One relay's retirement on its host, as found before anything changes.
struct Retiring {
    nick: String,
    /// The identity that retires (the tombstone names it).
    fingerprint: String,
    /// Whether its DataDirectory still holds keys (none: never started, or a rerun after the
    /// quarantine).
    keys: bool,
}

/// `oignon retire NICKNAME`: the relay's end on its host (stop, disable, mask; keys quarantined
/// then overwritten and removed; a tombstone; config archived), then its `[[host.relay]]` table
/// removed from the inventory. Every host step is idempotent: a rerun after a failure resumes.
pub fn retire(o: &RetireOptions, confirm: &dyn Fn(&str) -> bool) -> Result<Ended, MigrateError> {
    let nick = o.nick.as_str();
    let Some(loaded) = crate::fleet::load(&o.paths, false) else {
        return Err(MigrateError::Refused(
            "the inventory has errors (above); fix them, then retire".into(),
        ));
    };
    let Some((spec, _)) = find_relay(&loaded, nick) else {
        return Err(MigrateError::Refused(format!(
            "no relay `{nick}` in the inventory (already retired?); relays: {}",
            loaded
                .fleet()
                .hosts
                .iter()
                .flat_map(|h| h.relays.iter().map(|r| r.nickname.as_str()))
                .collect::<Vec<_>>()
                .join(", ")
        )));
    };
    let edits = relocate::remove(&o.paths.inventory, nick).map_err(MigrateError::Refused)?;
    let unreachable =
        "retire needs it up (a dead host: remove the relay from the inventory by hand)";
    on_host(o.ssh_config.as_deref(), spec, unreachable, |rt, t| {
        let relays: Vec<_> = spec.relays.iter().filter(|r| r.nickname == nick).collect();
        let found = find_out(rt, t, &spec.name, &relays, &loaded)?;
        let what = Retirement {
            host: &spec.name,
            relays: &found,
            edits: &edits,
            whole_host: false,
        };
        what.show();
        if o.dry_run {
            println!("Dry run: nothing was changed.");
            return Ok(Ended::Shown);
        }
        if !o.yes
            && !confirm(&format!(
                "Retire {nick} on {}? Its keys there are destroyed.",
                spec.name
            ))
        {
            return Ok(Ended::Cancelled);
        }
        what.run(rt, t, "retire")
    })
}

/// `oignon host retire HOST`: every relay of the host retired as `oignon retire` does, over one
/// connection, then the host's `[[host]]` table (its relays with it) removed from the inventory.
/// Each relay's identity is found out before anything changes: one without any refuses the whole
/// host. A rerun after a failure resumes (every host step is idempotent; the inventory is
/// written last).
pub fn retire_host(
    o: &RetireHostOptions,
    confirm: &dyn Fn(&str) -> bool,
) -> Result<Ended, MigrateError> {
    let name = o.host.as_str();
    let Some(loaded) = crate::fleet::load(&o.paths, false) else {
        return Err(MigrateError::Refused(
            "the inventory has errors (above); fix them, then retire the host".into(),
        ));
    };
    let Some(spec) = loaded.fleet().hosts.iter().find(|h| h.name == name) else {
        return Err(MigrateError::Refused(format!(
            "no host `{name}` in the inventory (already retired?); hosts: {}",
            loaded
                .fleet()
                .hosts
                .iter()
                .map(|h| h.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    };
    let edits = relocate::remove_host(&o.paths.inventory, name).map_err(MigrateError::Refused)?;
    let unreachable = "host retire needs it up to stop its relays and destroy their keys there. A host gone for good: remove its [[host]] from the inventory by hand; one that may come back still has its relays enabled: retire it once it answers";
    on_host(o.ssh_config.as_deref(), spec, unreachable, |rt, t| {
        let relays: Vec<_> = spec.relays.iter().collect();
        let found = find_out(rt, t, name, &relays, &loaded)?;
        let what = Retirement {
            host: name,
            relays: &found,
            edits: &edits,
            whole_host: true,
        };
        what.show();
        if o.dry_run {
            println!("Dry run: nothing was changed.");
            return Ok(Ended::Shown);
        }
        let nicks: Vec<&str> = found.iter().map(|r| r.nick.as_str()).collect();
        if !o.yes
            && !confirm(&format!(
                "Retire host {name} and its relays ({})? Their keys there are destroyed.",
                nicks.join(", ")
            ))
        {
            return Ok(Ended::Cancelled);
        }
        what.run(rt, t, "host retire")
    })
}

/// Opens one connection to the host, runs `f` over it, closes it. An unreachable host is refused
/// with `unreachable` (what to do).
fn on_host(
    ssh_config: Option<&Path>,
    spec: &HostSpec,
    unreachable: &str,
    f: impl FnOnce(&tokio::runtime::Runtime, &Transport) -> Result<Ended, MigrateError>,
) -> Result<Ended, MigrateError> {
    let rt = tokio::runtime::Runtime::new()?;
    let reach = Reach::new(None, ssh_config, &[spec], 1)?;
    let t = rt.block_on(reach.open(&Target::from(spec))).map_err(|e| {
        MigrateError::Refused(format!("{} is unreachable: {e}; {unreachable}", spec.name))
    })?;
    let r = f(&rt, &t);
    rt.block_on(t.close());
    r
}

/// Probes each relay on the host and finds the identity that retires: secrets/ first, else the
/// fingerprint file tor wrote there, else a tombstone already left (a rerun). A relay with none
/// refuses the whole retirement before anything changes.
fn find_out(
    rt: &tokio::runtime::Runtime,
    t: &Transport,
    host: &str,
    relays: &[&crate::inventory::RelaySpec],
    loaded: &Loaded,
) -> Result<Vec<Retiring>, MigrateError> {
    let mut found = vec![];
    for r in relays {
        let nick = r.nickname.as_str();
        let p = rt
            .block_on(probe(t, nick, Verb::Probe { port: r.orport }))
            .map_err(|e| MigrateError::Stopped(format!("{host}: {e}")))?;
        let Some(fingerprint) = loaded
            .store
            .fingerprint(nick)
            .or_else(|| p.fingerprint_file.clone())
            .or_else(|| p.tombstone.as_ref().map(|t| t.fingerprint.clone()))
        else {
            return Err(MigrateError::Stopped(format!("{nick}: no fingerprint in secrets/ nor on {host}: nothing says which identity retires; check the host by hand. Nothing was changed")));
        };
        found.push(Retiring {
            nick: nick.to_string(),
            fingerprint,
            keys: p.keys,
        });
    }
    Ok(found)
}

/// The relays to retire on one host and the inventory edits that follow.
struct Retirement<'a> {
    host: &'a str,
    relays: &'a [Retiring],
    edits: &'a [Edit],
    /// `host retire`: the edits remove the host's table.
    whole_host: bool,
}

impl Retirement<'_> {
    /// The plan: each relay's steps on the host, the inventory step, the patch.
    fn show(&self) {
        let host = self.host;
        if self.whole_host {
            println!(
                "Retirement of host {host} and its {} relay{}:",
                self.relays.len(),
                if self.relays.len() == 1 { "" } else { "s" }
            );
        }
        let indent = if self.whole_host { "  " } else { "" };
        for r in self.relays {
            let (nick, fingerprint) = (&r.nick, &r.fingerprint);
            if self.whole_host {
                println!("  {nick} ({fingerprint}):");
            } else {
                println!("Retirement of {nick} ({fingerprint}) on {host}:");
            }
            println!("{indent}  1. {host}: stop, disable and mask tor@{nick}");
            println!("{indent}  2. {host}: move its keys to /var/lib/oignon/quarantine/{nick} (root only)");
            println!("{indent}  3. {host}: tombstone /var/lib/oignon/moved/{nick} (retired): plan and apply refuse to start it there again");
            println!("{indent}  4. {host}: overwrite and remove the quarantined keys; archive /etc/tor/instances/{nick} under /var/backups/oignon");
        }
        if self.whole_host {
            println!("  inventory: remove host {host} and its [[host.relay]] tables (the relays' identities stay in secrets/ until you remove them)");
        } else {
            for r in self.relays {
                let nick = &r.nick;
                println!("  5. inventory: remove {nick}'s [[host.relay]] (its identity stays in secrets/ until you remove it)");
            }
        }
        let patch = relocate::patch(self.edits);
        if !patch.is_empty() {
            println!("Inventory patch:\n{patch}");
        }
    }

    /// The host steps, then the inventory. Every relay is stopped first, all at once (each stop
    /// waits tor's ShutdownWaitLength, 30 s by default: one by one, a host of four relays would
    /// take two minutes); then, relay by relay, its keys, tombstone and purge. `command` is what
    /// to rerun.
    fn run(
        &self,
        rt: &tokio::runtime::Runtime,
        t: &Transport,
        command: &str,
    ) -> Result<Ended, MigrateError> {
        let host = self.host;
        let report = |nick: &str, w: &str, how: Result<String, String>| {
            let how = how.map_err(|e| {
                MigrateError::Stopped(format!("{host}: {nick}: step `{w}` failed: {e}. Nothing after it was done; fix the cause and run `oignon {command}` again (it resumes: every step checks the host first)"))
            })?;
            if self.whole_host {
                println!("{host}: {nick}: {w}: {how}");
            } else {
                println!("{host}: {w}: {how}");
            }
            Ok::<(), MigrateError>(())
        };
        let stops: Vec<Result<String, String>> = std::thread::scope(|s| {
            let running: Vec<_> = self
                .relays
                .iter()
                .map(|r| s.spawn(|| run_step(rt, t, &r.nick, Verb::Stop)))
                .collect();
            running
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err("the step's thread panicked".into()))
                })
                .collect()
        });
        // Every stop is reported, then the first failure (if any) ends the run.
        let stops: Vec<_> = self
            .relays
            .iter()
            .zip(stops)
            .map(|(r, how)| report(&r.nick, Verb::Stop.word(), how))
            .collect();
        stops.into_iter().collect::<Result<Vec<()>, _>>()?;
        for r in self.relays {
            let nick = r.nick.as_str();
            let mut verbs = vec![];
            if r.keys {
                verbs.push(Verb::Quarantine);
            }
            verbs.push(Verb::Tombstone {
                to: "-".into(),
                when: now(),
                fingerprint: r.fingerprint.clone(),
            });
            verbs.push(Verb::Purge);
            for verb in verbs {
                let w = verb.word();
                report(nick, w, run_step(rt, t, nick, verb))?;
            }
        }
        relocate::write(self.edits).map_err(MigrateError::Stopped)?;
        if self.whole_host {
            println!("inventory: host {host} removed. Its relays are retired; their tombstones stay on {host}.");
        } else {
            for r in self.relays {
                let nick = &r.nick;
                println!(
                    "inventory: {nick} removed. {nick} is retired; its tombstone stays on {host}."
                );
            }
        }
        Ok(Ended::Complete)
    }
}
