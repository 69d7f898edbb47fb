//! Running the real `tor` binary: `--verify-config` of rendered torrc files on the controller.

use std::path::Path;
use std::process::Command;

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
pub fn verify_config_local(name: &str, torrc: &[u8]) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| format!("cannot make a temp dir: {e}"))?;
    let defaults = instance_defaults(name).map_err(|e| {
        format!("cannot read {DEBIAN_INSTANCE_DEFAULTS}: {e} (is the tor package installed?)")
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
    std::fs::write(&dpath, defaults).map_err(|e| e.to_string())?;
    std::fs::write(&tpath, torrc).map_err(|e| e.to_string())?;
    run_verify(&dpath, &tpath)
}

fn run_verify(defaults: &Path, torrc: &Path) -> Result<(), String> {
    let out = Command::new("tor")
        .arg("--defaults-torrc")
        .arg(defaults)
        .arg("-f")
        .arg(torrc)
        .arg("--verify-config")
        .arg("--hush")
        .output()
        .map_err(|e| format!("cannot run tor: {e} (install the tor package)"))?;
    if out.status.success() {
        return Ok(());
    }
    Err(tor_complaint(&String::from_utf8_lossy(&out.stdout)))
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
