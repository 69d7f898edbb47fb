//! Running the real `tor` binary: `--verify-config` of rendered torrc files on the controller.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Why a torrc could not be verified on the controller: tor refused it, or tor could not be run.
#[derive(Debug, thiserror::Error)]
pub enum TorError {
    /// tor read the file and refused it; its `[warn]`/`[err]` lines.
    #[error("{0}")]
    Rejected(String),
    /// Debian's instance defaults are missing: the tor package is not installed here.
    #[error("cannot read {}: {source} (is the tor package installed?)", .path.display())]
    Defaults {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The scratch directory for the check could not be made or written.
    #[error("cannot prepare the check in a temp dir: {0}")]
    Scratch(#[source] std::io::Error),
    /// The `tor` program could not be started.
    #[error("cannot run tor: {0} (install the tor package)")]
    Spawn(#[source] std::io::Error),
}

/// Debian's per-instance defaults, expanded by tor@.service with the instance name.
pub const DEBIAN_INSTANCE_DEFAULTS: &str = "/usr/share/tor/tor-service-defaults-torrc-instances";

/// Whether `tor` can be run here.
pub fn available() -> bool {
    Command::new("tor")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The instance defaults for `name` as tor@.service expands them (`@@NAME@@` → name).
pub fn instance_defaults(name: &str) -> std::io::Result<String> {
    Ok(std::fs::read_to_string(DEBIAN_INSTANCE_DEFAULTS)?.replace("@@NAME@@", name))
}

/// Verifies `torrc` for instance `name` on this machine (the controller).
///
/// tor fails with a `User` line naming an absent user and chmods an existing DataDirectory, so here
/// the defaults lose their `User` line and point at a DataDirectory that does not exist. Returns
/// tor's own complaint on failure.
pub fn verify_config_local(name: &str, torrc: &[u8]) -> Result<(), TorError> {
    let dir = tempfile::tempdir().map_err(TorError::Scratch)?;
    let defaults = instance_defaults(name).map_err(|source| TorError::Defaults {
        path: DEBIAN_INSTANCE_DEFAULTS.into(),
        source,
    })?;
    let data_dir = dir.path().join("no-such-datadir");
    let defaults: String = defaults
        .lines()
        .filter(|l| !l.trim_start().starts_with("User "))
        .map(|l| {
            if l.trim_start().starts_with("DataDirectory ") {
                format!("DataDirectory {}", data_dir.display())
            } else {
                l.to_string()
            }
        })
        .map(|l| l + "\n")
        .collect();
    let dpath = dir.path().join("defaults");
    let tpath = dir.path().join("torrc");
    std::fs::write(&dpath, defaults).map_err(TorError::Scratch)?;
    std::fs::write(&tpath, torrc).map_err(TorError::Scratch)?;
    run_verify(&dpath, &tpath)
}

fn run_verify(defaults: &Path, torrc: &Path) -> Result<(), TorError> {
    let out = Command::new("tor")
        .arg("--defaults-torrc")
        .arg(defaults)
        .arg("-f")
        .arg(torrc)
        .arg("--verify-config")
        .arg("--hush")
        .output()
        .map_err(TorError::Spawn)?;
    if out.status.success() {
        return Ok(());
    }
    Err(TorError::Rejected(tor_complaint(&String::from_utf8_lossy(
        &out.stdout,
    ))))
}

/// A rendered torrc tor refused: where, and tor's words.
#[derive(Debug)]
pub struct Rejection {
    pub host: String,
    /// The instance the torrc belongs to (`tor` for a file of no instance).
    pub instance: String,
    /// The torrc's path on the host.
    pub path: String,
    /// tor's `[warn]`/`[err]` lines.
    pub words: String,
}

/// tor's verdict on every rendered torrc of `desired`: how many were verified, and the ones tor
/// refused. An error when tor could not run at all (no verdict is better than a wrong one).
pub fn verify_rendered(
    desired: &crate::desired::Desired,
) -> Result<(usize, Vec<Rejection>), TorError> {
    let mut verified = 0;
    let mut rejected = vec![];
    for h in &desired.hosts {
        for f in h
            .files
            .iter()
            .filter(|f| f.validate == Some(crate::role::ValidatorKind::Torrc))
        {
            let instance = f.instance.as_deref().unwrap_or("tor");
            verified += 1;
            match verify_config_local(instance, f.content.bytes()) {
                Ok(()) => {}
                Err(TorError::Rejected(words)) => rejected.push(Rejection {
                    host: h.name.clone(),
                    instance: instance.to_string(),
                    path: f.path.clone(),
                    words,
                }),
                Err(e) => return Err(e),
            }
        }
    }
    Ok((verified, rejected))
}

/// tor's `[warn]`/`[err]` lines, without timestamps: the part an operator needs to read.
pub fn tor_complaint(output: &str) -> String {
    let lines: Vec<&str> = output
        .lines()
        .filter_map(|l| {
            l.find("[warn]")
                .or_else(|| l.find("[err]"))
                .map(|i| l[i..].trim())
        })
        .collect();
    if lines.is_empty() {
        output.trim().to_string()
    } else {
        lines.join("\n")
    }
}
