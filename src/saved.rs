//! Saved plans (`plan --out FILE`, `apply FILE`).
//!
//! A saved plan is a review artefact, not a program. `apply FILE` renders the desired state again
//! from the inventory, roles and secrets, gathers and plans afresh, and applies the FRESH plan, only
//! when the saved one is exactly it: same inputs ([`Inputs`]), same transport ([`RunTransport`]),
//! and per host the same changes and handlers ([`differences`]). No byte and no command of the file
//! ever reaches a host: a file edited after it was saved is refused, naming the host and the first
//! differences, and a host that moved since it was planned is refused as a stale plan ([`moved`]).
//!
//! A saved plan holds hashes and non-secret content only.

use crate::error::HostError;
use crate::fleet::{HostFilter, Paths, PlanOptions};
use crate::inventory::Fleet;
use crate::plan::{Change, ChangeKind, HostPlan, Plan, SCHEMA};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Why a plan could not be saved or read back. Each names the file and says what to do.
#[derive(Debug, thiserror::Error)]
pub enum SavedError {
    /// Writing the plan failed; the old file (if any) is untouched.
    #[error("cannot save the plan to {}: {source}", .path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The plan could not be turned into JSON (a bug).
    #[error("cannot encode the plan for {}: {source}", .path.display())]
    Encode {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// The file could not be read.
    #[error("cannot read the saved plan {}: {source}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Larger than any plan oignon writes.
    #[error("{} is larger than {} MiB: not a saved oignon plan; make one with `oignon plan --out FILE`", .path.display(), MAX_PLAN_BYTES >> 20)]
    TooLarge { path: PathBuf },
    /// Not JSON, no schema, or fields that do not fit.
    #[error("{} is not a saved oignon plan ({why}); make one with `oignon plan --out FILE`", .path.display())]
    NotAPlan { path: PathBuf, why: String },
    /// A plan that plans no host.
    #[error("{} plans no host; nothing to apply", .path.display())]
    Empty { path: PathBuf },
    /// The plan's transport contradicts this run's options.
    #[error("{}: {why}", .path.display())]
    Transport { path: PathBuf, why: String },
    /// The inputs changed since the plan was saved, or cannot be read now.
    #[error("{0}")]
    Inputs(String),
    /// A plan of another schema version.
    #[error("{} is a plan of schema `{schema}`, this oignon reads `{SCHEMA}` (saved plans now record their inputs and transport, and are checked against a fresh plan); plan again with this version: `oignon plan --out FILE`", .path.display())]
    OtherSchema { path: PathBuf, schema: String },
}

/// Writes the plan to `path` (temp file + rename: a crash never leaves half a plan).
pub fn save(plan: &Plan, path: &Path) -> Result<(), SavedError> {
    let write = |source| SavedError::Write {
        path: path.to_path_buf(),
        source,
    };
    let json = serde_json::to_vec_pretty(plan).map_err(|source| SavedError::Encode {
        path: path.to_path_buf(),
        source,
    })?;
    // 0600 for a new plan: it names every managed file and handler of the fleet.
    crate::util::write_atomic(path, &json, crate::util::Mode::Keep(0o600), false).map_err(write)
}

/// The largest saved plan `apply` reads.
const MAX_PLAN_BYTES: u64 = 256 << 20;

/// Reads a saved plan; a wrong schema or a damaged file is refused with what to do.
pub fn load(path: &Path) -> Result<Plan, SavedError> {
    use std::io::Read as _;
    let cannot = |source| SavedError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut text = vec![];
    // Bounded: a plan of a thousand hosts is tens of MB; /dev/zero is not a plan.
    std::fs::File::open(path)
        .map_err(cannot)?
        .take(MAX_PLAN_BYTES + 1)
        .read_to_end(&mut text)
        .map_err(cannot)?;
    if text.len() as u64 > MAX_PLAN_BYTES {
        return Err(SavedError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    let not_a_plan = |e: &dyn std::fmt::Display| SavedError::NotAPlan {
        path: path.to_path_buf(),
        why: e.to_string(),
    };
    // The schema first, on its own: an older plan gets "plan again", not a missing-field error.
    let value: serde_json::Value = serde_json::from_slice(&text).map_err(|e| not_a_plan(&e))?;
    match value.get("schema").and_then(|s| s.as_str()) {
        Some(SCHEMA) => {}
        Some(other) => {
            return Err(SavedError::OtherSchema {
                path: path.to_path_buf(),
                schema: clean(other, 40),
            })
        }
        None => return Err(not_a_plan(&"no `schema` field")),
    }
    let mut plan: Plan = serde_json::from_value(value).map_err(|e| not_a_plan(&e))?;
    // An error's JSON is its text; the host it belongs to is the one beside it.
    for h in &mut plan.hosts {
        if let Some(e) = &mut h.error {
            e.owned_by(&h.host);
        }
    }
    Ok(plan)
}

/// The digests of what a plan was made from: the inventory, the roles and the secrets store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inputs {
    /// sha256 over the three parts' digests below, framed: one value to compare plans by.
    pub digest: String,
    /// The `*.toml` files of the inventory directory.
    pub inventory: InputSet,
    /// Every role's `role.toml` and templates.
    pub roles: InputSet,
    /// The secrets directory's public parts: every file's name; the bytes of the `.age` files,
    /// `recipients.txt` and the clear public files (fingerprints, FamilyId). Never an identity.
    pub secrets: InputSet,
}

/// One input directory: its files and their digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSet {
    /// sha256 over `files` in path order, each path and value length-prefixed (no two different
    /// sets frame to the same bytes).
    pub digest: String,
    /// Path relative to the directory → sha256 of the file's bytes, or [`NAME_ONLY`].
    pub files: BTreeMap<String, String>,
}

/// The value of a file whose name is digested but whose content is not (it may be private, such
/// as the demo store's identity, or is not a regular file).
pub const NAME_ONLY: &str = "name-only";

/// How deep the secrets directory is walked (it has two levels; the bound stops link loops).
const MAX_DEPTH: usize = 8;

impl Inputs {
    /// Reads and digests the inputs of a plan.
    pub fn read(inventory: &Path, roles: &Path, secrets: &Path) -> Result<Inputs, String> {
        let inventory = InputSet::new(inventory_files(inventory)?);
        let roles = InputSet::new(role_files(roles)?);
        let secrets = InputSet::new(secret_files(secrets)?);
        let mut h = Sha256::new();
        frame(&mut h, b"oignon.inputs/1");
        for (name, set) in [
            ("inventory", &inventory),
            ("roles", &roles),
            ("secrets", &secrets),
        ] {
            frame(&mut h, name.as_bytes());
            frame(&mut h, set.digest.as_bytes());
        }
        Ok(Inputs {
            digest: hex::encode(h.finalize()),
            inventory,
            roles,
            secrets,
        })
    }

    /// What changed from these (saved) inputs to `now`, one line per changed directory, naming its
    /// files; empty when nothing did. `dirs`: the inventory, roles and secrets directories.
    pub fn changes_since(&self, now: &Inputs, dirs: [&Path; 3]) -> Vec<String> {
        let mut out = vec![];
        let parts = [
            ("inventory", &self.inventory, &now.inventory, dirs[0]),
            ("roles", &self.roles, &now.roles, dirs[1]),
            ("secrets", &self.secrets, &now.secrets, dirs[2]),
        ];
        for (what, then, now, dir) in parts {
            if then == now {
                continue;
            }
            let at = |p: &str| clean(&dir.join(p).display().to_string(), 200);
            let mut files = vec![];
            for (p, v) in &now.files {
                match then.files.get(p) {
                    None => files.push(format!("{} added", at(p))),
                    Some(old) if old != v => files.push(format!("{} edited", at(p))),
                    Some(_) => {}
                }
            }
            for p in then.files.keys().filter(|p| !now.files.contains_key(*p)) {
                files.push(format!("{} removed", at(p)));
            }
            if files.is_empty() {
                // Same files, another digest: the digest in the file was edited.
                files.push("the recorded digest is not the one of the recorded files".into());
            }
            out.push(format!(
                "the {what} changed since the plan was saved: {}",
                first(&files, 6)
            ));
        }
        if out.is_empty() && self.digest != now.digest {
            out.push("the plan's input digest is not the one of its recorded inputs: the file was edited after it was saved".into());
        }
        out
    }
}

impl InputSet {
    fn new(files: BTreeMap<String, String>) -> InputSet {
        let mut h = Sha256::new();
        frame(&mut h, b"oignon.input-set/1");
        for (path, value) in &files {
            frame(&mut h, path.as_bytes());
            frame(&mut h, value.as_bytes());
        }
        InputSet {
            digest: hex::encode(h.finalize()),
            files,
        }
    }
}

/// Length-prefixed bytes: `a`,`bc` and `ab`,`c` frame differently.
fn frame(h: &mut Sha256, bytes: &[u8]) {
    h.update((bytes.len() as u64).to_be_bytes());
    h.update(bytes);
}

/// A file name as text; bytes that are not UTF-8 become `\xNN` (and a literal backslash `\\`),
/// so two different names never read the same.
fn name_of(n: &std::ffi::OsStr) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut out = String::new();
    for chunk in n.as_bytes().utf8_chunks() {
        out.push_str(&chunk.valid().replace('\\', "\\\\"));
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

fn read_dir_sorted(dir: &Path, what: &str) -> Result<Vec<std::fs::DirEntry>, String> {
    let rd = std::fs::read_dir(dir).map_err(|e| {
        format!(
            "cannot read the {what} directory {} to digest it: {e} (see --inventory, --roles, --secrets)",
            dir.display()
        )
    })?;
    let mut entries: Vec<_> = rd
        .collect::<Result<_, _>>()
        .map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    entries.sort_by_key(|e| e.file_name());
    Ok(entries)
}

fn sha_of(path: &Path) -> Result<String, String> {
    std::fs::read(path)
        .map(|b| crate::util::sha256_hex(&b))
        .map_err(|e| format!("cannot read {} to digest it: {e}", path.display()))
}

/// The files the inventory loader reads: `*.toml` directly in the directory.
fn inventory_files(dir: &Path) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for e in read_dir_sorted(dir, "inventory")? {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "toml") {
            let value = if p.is_file() {
                sha_of(&p)?
            } else {
                NAME_ONLY.to_string()
            };
            out.insert(name_of(&e.file_name()), value);
        }
    }
    Ok(out)
}

/// The files the roles loader reads: `ROLE/role.toml` and `ROLE/templates/*`.
fn role_files(dir: &Path) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for role in read_dir_sorted(dir, "roles")? {
        let rp = role.path();
        if !rp.is_dir() {
            continue;
        }
        let rname = name_of(&role.file_name());
        let manifest = rp.join("role.toml");
        if manifest.is_file() {
            out.insert(format!("{rname}/role.toml"), sha_of(&manifest)?);
        }
        let tdir = rp.join("templates");
        if tdir.is_dir() {
            for t in read_dir_sorted(&tdir, "templates")? {
                let value = if t.path().is_file() {
                    sha_of(&t.path())?
                } else {
                    NAME_ONLY.to_string()
                };
                out.insert(
                    format!("{rname}/templates/{}", name_of(&t.file_name())),
                    value,
                );
            }
        }
    }
    Ok(out)
}

/// Files of the secrets directory whose bytes are public and go into the digest: encrypted files,
/// the recipients, and what `secrets` writes in clear (fingerprints, ids, the FamilyId, markers).
fn public_secret_file(name: &str) -> bool {
    name.ends_with(".age")
        || name.ends_with(".public_family_id")
        || matches!(
            name,
            "recipients.txt" | "fingerprint" | "ed25519_id" | "signing_cert_expires" | "DEMO"
        )
}

/// The secrets directory, recursively; an absent directory is an empty store (no identities managed).
fn secret_files(dir: &Path) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    if !dir.exists() {
        return Ok(out);
    }
    let mut stack = vec![(dir.to_path_buf(), String::new(), 0)];
    while let Some((d, prefix, depth)) = stack.pop() {
        for e in read_dir_sorted(&d, "secrets")? {
            let name = format!("{prefix}{}", name_of(&e.file_name()));
            let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
            if is_dir && depth < MAX_DEPTH {
                stack.push((e.path(), format!("{name}/"), depth + 1));
            } else if !is_dir
                && e.path().is_file()
                && public_secret_file(&e.file_name().to_string_lossy())
            {
                out.insert(name, sha_of(&e.path())?);
            } else {
                out.insert(name, NAME_ONLY.to_string());
            }
        }
    }
    Ok(out)
}

/// How a plan's hosts were reached. `apply FILE` goes the same way: a plan made with `--local DIR`
/// is applied to DIR, never over SSH, and the other way round.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunTransport {
    /// `--local DIR`, absolute (host H is the directory DIR/H); null: the hosts were reached over SSH.
    pub local: Option<PathBuf>,
    /// `--ssh-config FILE`, absolute; null: ssh's own configuration (`~/.ssh/config`).
    pub ssh_config: Option<PathBuf>,
}

impl RunTransport {
    /// The transport of a run with these options; paths made absolute, so that the plan means the
    /// same directory wherever `apply` runs from.
    pub fn new(local: Option<&Path>, ssh_config: Option<&Path>) -> Result<RunTransport, String> {
        let abs = |p: &Path| {
            std::path::absolute(p).map_err(|e| format!("cannot resolve {}: {e}", p.display()))
        };
        Ok(RunTransport {
            local: local.map(abs).transpose()?,
            ssh_config: ssh_config.map(abs).transpose()?,
        })
    }

    /// The transport `apply FILE` uses: the one the plan was made with. An option given to `apply`
    /// that says otherwise (`--local` where the plan went over SSH, another DIR, another ssh
    /// config) is refused. The file is never trusted with where secrets go or what runs here:
    /// - its `--local DIR` is used without `--local` only when DIR is a directory that only root
    ///   or this user could have prepared ([`trusted_dir`]); else `--local DIR` must be given;
    /// - its `--ssh-config` is never used (a `ProxyCommand` runs commands): `apply` must be given
    ///   the same one, or none when the plan had none.
    pub fn resolve(
        &self,
        local: Option<&Path>,
        ssh_config: Option<&Path>,
    ) -> Result<RunTransport, String> {
        match (&self.local, local) {
            (None, Some(given)) => {
                return Err(format!(
                    "this plan was made over SSH, and apply was given --local {}: a saved plan is applied the way it was planned. Apply it without --local, or plan again with --local",
                    given.display()
                ))
            }
            (Some(saved), Some(given)) if !same_path(saved, given) => {
                return Err(format!(
                    "this plan was made with --local {}, and apply was given --local {}: a saved plan is applied the way it was planned. Apply it with the same --local, or plan again",
                    saved.display(),
                    given.display()
                ))
            }
            (Some(saved), None) => {
                if let Err(why) = trusted_dir(saved) {
                    return Err(format!(
                        "this plan was made with --local {dir}, and {why}: a directory named by a plan file must be one only root or you could have prepared. If it is the right one, say so: apply it with --local {dir}",
                        dir = saved.display()
                    ));
                }
                return Ok(self.clone());
            }
            (Some(_), Some(_)) => return Ok(self.clone()),
            (None, None) => {}
        }
        match (&self.ssh_config, ssh_config) {
            (None, Some(given)) => Err(format!(
                "this plan was made with ssh's own configuration, and apply was given --ssh-config {} (or OIGNON_SSH_CONFIG): it may send a host elsewhere. Apply it without --ssh-config, or plan again with it",
                given.display()
            )),
            (Some(saved), None) => Err(format!(
                "this plan was made with --ssh-config {}: apply it with the same --ssh-config (an ssh configuration is never taken from a plan file: it can run commands and send a host elsewhere)",
                saved.display()
            )),
            (Some(saved), Some(given)) if !same_path(saved, given) => Err(format!(
                "this plan was made with --ssh-config {}, and apply was given --ssh-config {}: it may send a host elsewhere. Apply it with the same --ssh-config, or plan again",
                saved.display(),
                given.display()
            )),
            _ => Ok(self.clone()),
        }
    }
}

/// Whether `dir` could only have been prepared by root or this user: it exists, is a directory,
/// and it and every directory above it belong to root or this user and are writable by no one
/// else (a sticky directory such as /tmp is fine above it: others cannot move what is ours).
pub fn trusted_dir(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let me = euid().ok_or("this user's id cannot be read (/proc/self/status)")?;
    let real = dir
        .canonicalize()
        .map_err(|e| format!("{} cannot be resolved ({e})", dir.display()))?;
    let mut at = Some(real.as_path());
    let mut first = true;
    while let Some(d) = at {
        let m =
            std::fs::metadata(d).map_err(|e| format!("{} cannot be read ({e})", d.display()))?;
        if !m.is_dir() {
            return Err(format!("{} is not a directory", d.display()));
        }
        if m.uid() != 0 && m.uid() != me {
            return Err(format!(
                "{} belongs to uid {}, neither root nor you",
                d.display(),
                m.uid()
            ));
        }
        let sticky = m.mode() & 0o1000 != 0;
        if m.mode() & 0o022 != 0 && (first || !sticky) {
            return Err(format!(
                "{} is writable by others (mode {:04o})",
                d.display(),
                m.mode() & 0o7777
            ));
        }
        first = false;
        at = d.parent();
    }
    Ok(())
}

/// The effective user id, from /proc (no libc binding needed for one number).
fn euid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// Whether two paths name the same file or directory (as written, or once links are resolved).
fn same_path(saved: &Path, given: &Path) -> bool {
    let abs = std::path::absolute(given).ok();
    abs.as_deref() == Some(saved)
        || matches!(
            (saved.canonicalize(), given.canonicalize()),
            (Ok(a), Ok(b)) if a == b
        )
}

/// The paths whose observed state differs between the saved plan and now: the host moved since
/// the plan was saved. A path gathered on one side only counts too.
pub fn moved(saved: &HostPlan, fresh: &HostPlan) -> Vec<String> {
    let mut paths: Vec<&String> = saved.observed.keys().collect();
    paths.extend(
        fresh
            .observed
            .keys()
            .filter(|p| !saved.observed.contains_key(*p)),
    );
    paths.sort();
    paths
        .into_iter()
        .filter(|p| saved.observed.get(*p) != fresh.observed.get(*p))
        .map(|p| clean(p, 200))
        .collect()
}

/// How the saved plan of one host differs from a fresh plan of it, in words, file order first.
/// Empty when they are the same: then applying the fresh plan is applying what was reviewed.
pub fn differences(saved: &HostPlan, fresh: &HostPlan) -> Vec<String> {
    let mut out = vec![];
    if saved.transport != fresh.transport {
        out.push(format!(
            "transport `{}` in the saved plan, `{}` now",
            clean(&saved.transport, 200),
            clean(&fresh.transport, 200)
        ));
    }
    let fresh_by: BTreeMap<&str, &Change> = fresh
        .changes
        .iter()
        .map(|c| (c.target.as_str(), c))
        .collect();
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for s in &saved.changes {
        let n = seen.entry(s.target.as_str()).or_default();
        *n += 1;
        if *n == 2 {
            out.push(format!(
                "{} appears more than once in the saved plan",
                clean(&s.target, 200)
            ));
        }
        match fresh_by.get(s.target.as_str()) {
            None => out.push(format!(
                "`{} {}` is in the saved plan, not in a fresh plan",
                kind_name(s.kind),
                clean(&s.target, 200)
            )),
            Some(f) => {
                for (field, was, now) in change_fields(s)
                    .into_iter()
                    .zip(change_fields(f))
                    .filter_map(|((field, was), (_, now))| {
                        (was != now).then_some((field, was, now))
                    })
                {
                    out.push(match field {
                        "reason" | "diff" | "content_base64" => format!(
                            "{}: the {field} differs from a fresh plan's",
                            clean(&s.target, 200)
                        ),
                        _ => format!(
                            "{}: {field} `{}` in the saved plan, `{}` in a fresh plan",
                            clean(&s.target, 200),
                            clean(&was, 80),
                            clean(&now, 80)
                        ),
                    });
                }
            }
        }
    }
    for f in fresh
        .changes
        .iter()
        .filter(|f| !seen.contains_key(f.target.as_str()))
    {
        out.push(format!(
            "`{} {}` is in a fresh plan, not in the saved one",
            kind_name(f.kind),
            clean(&f.target, 200)
        ));
    }
    if out.is_empty() {
        let order = |cs: &[Change]| cs.iter().map(|c| c.target.clone()).collect::<Vec<_>>();
        if order(&saved.changes) != order(&fresh.changes) {
            out.push("the changes are not in a fresh plan's order".into());
        }
    }
    let cmd = |argv: &[String]| clean(&argv.join(" "), 200);
    for s in &saved.handlers {
        match fresh.handlers.iter().find(|f| f.command == s.command) {
            None => out.push(format!(
                "handler `{}` is in the saved plan, not in a fresh plan",
                cmd(&s.command)
            )),
            Some(f) if f.reason != s.reason => out.push(format!(
                "handler `{}`: the reason differs from a fresh plan's",
                cmd(&s.command)
            )),
            Some(_) => {}
        }
    }
    for f in fresh
        .handlers
        .iter()
        .filter(|f| !saved.handlers.iter().any(|s| s.command == f.command))
    {
        out.push(format!(
            "handler `{}` is in a fresh plan, not in the saved one",
            cmd(&f.command)
        ));
    }
    if saved.handlers.len() == fresh.handlers.len()
        && saved.handlers != fresh.handlers
        && out.iter().all(|l| !l.starts_with("handler "))
    {
        out.push("the handlers are not in a fresh plan's order (or one is repeated)".into());
    }
    // `apply --reboot` acts on these notices: they must be the ones a fresh plan gives.
    let reboot = |h: &HostPlan| -> Vec<String> {
        h.notices
            .iter()
            .filter(|n| n.starts_with("reboot required"))
            .cloned()
            .collect()
    };
    if reboot(saved) != reboot(fresh) {
        out.push("its `reboot required` notice differs from a fresh plan's".into());
    }
    out
}

/// Every field of a change that a reviewer reads or apply acts on, as text.
fn change_fields(c: &Change) -> Vec<(&'static str, String)> {
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "none".into());
    vec![
        ("kind", kind_name(c.kind).to_string()),
        ("secret", c.secret.to_string()),
        ("conflict", c.conflict.to_string()),
        ("drift", c.drift.to_string()),
        ("owner", opt(&c.owner)),
        ("group", opt(&c.group)),
        (
            "mode",
            c.mode
                .map(|m| format!("{m:04o}"))
                .unwrap_or_else(|| "none".into()),
        ),
        ("old sha256", opt(&c.old_sha256)),
        ("new sha256", opt(&c.new_sha256)),
        (
            "validator",
            c.validate
                .and_then(|v| serde_json::to_value(v).ok())
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_else(|| "none".into()),
        ),
        ("instance", opt(&c.instance)),
        ("role", opt(&c.role)),
        ("reason", c.reason.clone()),
        ("diff", opt(&c.diff)),
        ("content_base64", opt(&c.content_base64)),
    ]
}

fn kind_name(k: ChangeKind) -> &'static str {
    match k {
        ChangeKind::Create => "create",
        ChangeKind::Update => "update",
        ChangeKind::Metadata => "metadata",
        ChangeKind::Remove => "remove",
        ChangeKind::CreateInstance => "create-instance",
        ChangeKind::RemoveInstance => "remove-instance",
    }
}

/// Text from the file, safe to print: control characters escaped, at most `max` characters.
pub fn clean(s: &str, max: usize) -> String {
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i == max {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    out
}

/// The first `n` items joined, and how many more.
pub fn first(items: &[String], n: usize) -> String {
    let mut s = items.iter().take(n).cloned().collect::<Vec<_>>().join("; ");
    if items.len() > n {
        s.push_str(&format!("; and {} more", items.len() - n));
    }
    s
}

/// Reads a saved plan and decides how to apply it, before any host is contacted: the way it
/// went (an apply option contradicting it is refused) and its inputs (a change to the inventory,
/// roles or secrets since is refused, naming the files). Returns the options to plan afresh with,
/// and the saved plan to compare the fresh one with ([`check`]).
pub fn prepare(o: &PlanOptions, path: &Path) -> Result<(PlanOptions, Plan), SavedError> {
    let saved = load(path)?;
    if saved.hosts.is_empty() {
        return Err(SavedError::Empty {
            path: path.to_path_buf(),
        });
    }
    let transport = saved
        .transport
        .resolve(o.local.as_deref(), o.ssh_config.as_deref())
        .map_err(|why| SavedError::Transport {
            path: path.to_path_buf(),
            why,
        })?;
    let now = Inputs::read(&o.paths.inventory, &o.paths.roles, &o.paths.secrets)
        .map_err(SavedError::Inputs)?;
    inputs_unchanged(&o.paths, path, &saved, &now).map_err(SavedError::Inputs)?;
    let mut fresh = o.clone();
    fresh.ssh_config = transport.ssh_config.clone();
    fresh.local = transport.local.clone();
    if fresh.hosts.is_empty() && fresh.hosters.is_empty() {
        // Exact names: a host name is never taken as a glob here.
        fresh.hosts = saved
            .hosts
            .iter()
            .map(|h| glob::Pattern::escape(&h.host))
            .collect();
    }
    Ok((fresh, saved))
}

/// The inventory, roles and secrets are the ones the plan was made from.
pub fn inputs_unchanged(
    paths: &Paths,
    path: &Path,
    saved: &Plan,
    now: &Inputs,
) -> Result<(), String> {
    let changed = saved.inputs.changes_since(
        now,
        [
            paths.inventory.as_path(),
            paths.roles.as_path(),
            paths.secrets.as_path(),
        ],
    );
    if changed.is_empty() {
        return Ok(());
    }
    Err(format!(
        "{} cannot be applied, nothing was done: {}\n  = help: a saved plan is applied only while the inventory, roles and secrets are the ones it was made from; plan again (`oignon plan --out {}`) and review the new plan",
        path.display(),
        changed.join("; "),
        path.display()
    ))
}

/// Before gathering: every host of the saved plan is in the inventory, once, and a selection
/// (`--host`/`--hoster` may narrow a saved plan; `filter` is what the user gave, not the plan's
/// own host list) picks only hosts the plan has.
pub fn hosts_selected(
    fleet: &Fleet,
    filter: &HostFilter,
    path: &Path,
    saved: &Plan,
) -> Result<(), String> {
    let mut names = std::collections::BTreeSet::new();
    for h in &saved.hosts {
        if !names.insert(h.host.as_str()) {
            return Err(format!(
                "{}: host `{}` appears twice in the saved plan; plan again",
                path.display(),
                clean(&h.host, 80)
            ));
        }
        if !fleet.hosts.iter().any(|x| x.name == h.host) {
            return Err(format!(
                "{}: host `{}` of the saved plan is not in the inventory; plan again",
                path.display(),
                clean(&h.host, 80)
            ));
        }
    }
    if !filter.is_everything() {
        let extra: Vec<&str> = fleet
            .hosts
            .iter()
            .filter(|h| filter.matches(h) && !names.contains(h.name.as_str()))
            .map(|h| h.name.as_str())
            .collect();
        if !extra.is_empty() {
            return Err(format!(
                "{}: --host/--hoster selects {}, which the saved plan does not plan; apply it without that host, or plan it (`oignon plan --out FILE`) and review",
                path.display(),
                extra.join(", ")
            ));
        }
    }
    Ok(())
}

/// After gathering: the fresh plan must be the saved one. A host that moved since it was planned
/// (its observed state differs) is refused on its own, as a stale plan, and the others proceed.
/// Any other difference means the file was edited after it was saved (or the inputs changed
/// while gathering): the whole apply is refused before anything is written.
pub fn check(paths: &Paths, path: &Path, saved: &Plan, plan: &mut Plan) -> Result<(), String> {
    inputs_unchanged(paths, path, saved, &plan.inputs)?;
    let mut wrong: Vec<String> = vec![];
    for fresh in plan.hosts.iter_mut() {
        let Some(old) = saved.hosts.iter().find(|h| h.host == fresh.host) else {
            // The selection is checked before gathering; a host the file does not plan never runs.
            fresh.error = Some(HostError::NotInSavedPlan {
                host: fresh.host.clone(),
            });
            continue;
        };
        if fresh.error.is_some() {
            continue;
        }
        if let Some(e) = &old.error {
            fresh.error = Some(HostError::UnplannedWhenSaved {
                host: fresh.host.clone(),
                saved: clean(&e.to_string(), 300),
            });
            continue;
        }
        let paths = moved(old, fresh);
        if !paths.is_empty() {
            let mut shown: Vec<String> = paths.iter().take(6).cloned().collect();
            if paths.len() > 6 {
                shown.push(format!("and {} more", paths.len() - 6));
            }
            fresh.error = Some(HostError::Stale {
                host: fresh.host.clone(),
                paths: shown,
                by_script: false,
            });
            continue;
        }
        let d = differences(old, fresh);
        for line in d.iter().take(5) {
            wrong.push(format!("  {}: {line}", fresh.host));
        }
        if d.len() > 5 {
            wrong.push(format!(
                "  {}: and {} more differences",
                fresh.host,
                d.len() - 5
            ));
        }
    }
    if wrong.is_empty() {
        return Ok(());
    }
    Err(format!(
        "{} is not what oignon plans now from the inventory, roles, secrets and hosts; nothing was applied:\n{}\n  = help: a saved plan is a record to review, not a program: apply runs a fresh plan and refuses a saved one that differs from it (the file was edited after `oignon plan --out`, or the host changed in a way the stale-plan check does not see: a unit stopped, a handler left pending). Plan again and review the new plan",
        path.display(),
        wrong.join("\n")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::HandlerRun;

    fn change(target: &str) -> Change {
        serde_json::from_value(serde_json::json!({
            "kind": "create", "target": target, "reason": "new file", "drift": false,
            "secret": false, "old_sha256": null, "new_sha256": "aa", "owner": "root",
            "group": "root", "mode": 420, "diff": null, "content_base64": "aGkK",
            "validate": null, "instance": null
        }))
        .unwrap()
    }

    fn host(changes: Vec<Change>, handlers: Vec<&[&str]>) -> HostPlan {
        HostPlan {
            host: "h".into(),
            transport: "ssh h".into(),
            error: None,
            changes,
            handlers: handlers
                .into_iter()
                .map(|c| HandlerRun {
                    command: c.iter().map(|s| s.to_string()).collect(),
                    reason: "r".into(),
                })
                .collect(),
            notices: vec![],
            observed: BTreeMap::new(),
        }
    }

    #[test]
    fn identical_host_plans_have_no_differences() {
        let a = host(vec![change("/etc/x")], vec![&["sysctl", "--system"]]);
        assert!(differences(&a, &a.clone()).is_empty());
    }

    #[test]
    fn an_added_handler_an_added_file_and_a_changed_mode_are_each_named() {
        let fresh = host(vec![change("/etc/x")], vec![]);
        let mut saved = fresh.clone();
        saved.handlers.push(HandlerRun {
            command: vec!["touch".into(), "/root/PWNED".into()],
            reason: "x".into(),
        });
        saved.changes.push(change("/root/.ssh/authorized_keys"));
        saved.changes[0].mode = Some(0o4755);
        let d = differences(&saved, &fresh);
        assert_eq!(
            d,
            [
                "/etc/x: mode `4755` in the saved plan, `0644` in a fresh plan",
                "`create /root/.ssh/authorized_keys` is in the saved plan, not in a fresh plan",
                "handler `touch /root/PWNED` is in the saved plan, not in a fresh plan",
            ]
        );
    }

    #[test]
    fn a_removed_change_and_tampered_content_are_named() {
        let fresh = host(vec![change("/etc/x"), change("/etc/y")], vec![]);
        let mut saved = host(vec![change("/etc/x")], vec![]);
        saved.changes[0].content_base64 = Some("cHduZWQK".into());
        assert_eq!(
            differences(&saved, &fresh),
            [
                "/etc/x: the content_base64 differs from a fresh plan's",
                "`create /etc/y` is in a fresh plan, not in the saved one",
            ]
        );
    }

    #[test]
    fn control_characters_from_the_file_are_escaped_in_messages() {
        let fresh = host(vec![], vec![]);
        let saved = host(vec![], vec![&["touch", "/x\n\u{1b}[2J"]]);
        assert_eq!(
            differences(&saved, &fresh),
            ["handler `touch /x\\n\\u{1b}[2J` is in the saved plan, not in a fresh plan"]
        );
    }

    #[test]
    fn framing_is_unambiguous() {
        let a = InputSet::new([("ab".to_string(), "c".to_string())].into());
        let b = InputSet::new([("a".to_string(), "bc".to_string())].into());
        assert_ne!(a.digest, b.digest);
    }

    #[test]
    fn non_utf8_names_never_collide() {
        use std::os::unix::ffi::OsStrExt;
        let a = name_of(std::ffi::OsStr::from_bytes(b"x\xff"));
        let b = name_of(std::ffi::OsStr::from_bytes(b"x\\xff"));
        assert_ne!(a, b);
    }

    #[test]
    fn an_explicit_contradicting_transport_is_refused() {
        let ssh = RunTransport::new(None, None).unwrap();
        assert!(ssh.resolve(Some(Path::new("demo")), None).is_err());
        assert_eq!(ssh.resolve(None, None).unwrap(), ssh);
        let dir = tempfile::tempdir().unwrap();
        let local = RunTransport::new(Some(dir.path()), None).unwrap();
        assert_eq!(local.resolve(None, None).unwrap(), local);
        let dotted = dir.path().join(".");
        assert_eq!(local.resolve(Some(&dotted), None).unwrap(), local);
        assert!(local.resolve(Some(Path::new("other"),), None).is_err());
        let cfg = RunTransport::new(None, Some(Path::new("/tmp/a"))).unwrap();
        assert!(cfg.resolve(None, Some(Path::new("/tmp/b"))).is_err());
        assert!(ssh.resolve(None, Some(Path::new("/tmp/b"))).is_err());
        assert_eq!(cfg.resolve(None, Some(Path::new("/tmp/a"))).unwrap(), cfg);
    }

    #[test]
    fn an_ssh_config_is_never_taken_from_the_file() {
        let cfg = RunTransport::new(None, Some(Path::new("/tmp/evil_config"))).unwrap();
        let e = cfg.resolve(None, None).unwrap_err();
        assert!(e.contains("apply it with the same --ssh-config"), "{e}");
    }

    #[test]
    fn a_local_dir_others_could_have_prepared_is_not_taken_from_the_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let open = dir.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let t = RunTransport::new(Some(&open), None).unwrap();
        let e = t.resolve(None, None).unwrap_err();
        assert!(e.contains("is writable by others (mode 0777)"), "{e}");
        // Said on the command line, it is the operator's word.
        assert!(t.resolve(Some(&open), None).is_ok());
        let missing = RunTransport::new(Some(&dir.path().join("missing")), None).unwrap();
        assert!(missing.resolve(None, None).is_err());
    }
}
