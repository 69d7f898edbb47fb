//! Relay keys made and read by tor itself, in throwaway DataDirectories that are wiped after use.

use super::{SecretsError, IDENTITY_FILES};
use crate::secret::Secret;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

type Result<T> = std::result::Result<T, SecretsError>;

/// A 0700 temp directory whose files are overwritten with zeros before it is removed.
pub struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Result<Scratch> {
        let dir = tempfile::Builder::new()
            .prefix("oignon-keys")
            .tempdir()
            .map_err(|e| SecretsError(format!("cannot make a temp dir: {e}")))?;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))
            .map_err(|e| SecretsError(e.to_string()))?;
        Ok(Scratch { dir })
    }
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // Best effort: overwrite key material before the directory goes.
        fn wipe(d: &Path) {
            if let Ok(rd) = std::fs::read_dir(d) {
                for e in rd.flatten() {
                    let p = e.path();
                    if p.is_dir() {
                        wipe(&p);
                    } else if let Ok(m) = p.metadata() {
                        // In place (no truncation, which would free the blocks or tmpfs pages
                        // with the key still in them), then to disk before the unlink.
                        use std::io::Write;
                        if let Ok(mut f) = std::fs::OpenOptions::new().write(true).open(&p) {
                            let _ = f.write_all(&vec![0u8; m.len() as usize]);
                            let _ = f.sync_all();
                        }
                    }
                }
            }
        }
        wipe(self.dir.path());
    }
}

/// An identity tor made or recognised.
pub struct RelayKeys {
    pub fingerprint: String,
    pub ed25519_id: String,
    /// (file name in keys/, content) for [`IDENTITY_FILES`].
    pub files: Vec<(String, Secret)>,
}

/// Runs tor with empty defaults and config (nothing from /etc/tor is read) and the given options.
fn tor(dir: &Path, args: &[&str], data_dir: Option<&Path>) -> Result<std::process::Output> {
    let empty = dir.join("empty-torrc");
    std::fs::write(&empty, b"").map_err(|e| SecretsError(e.to_string()))?;
    let mut cmd = Command::new("tor");
    cmd.arg("--defaults-torrc")
        .arg(&empty)
        .arg("-f")
        .arg(&empty)
        .arg("--hush")
        .args(args)
        .current_dir(dir);
    if let Some(d) = data_dir {
        cmd.arg("--DataDirectory").arg(d);
    }
    let out = cmd
        .output()
        .map_err(|e| SecretsError(format!("cannot run tor: {e} (apt-get install tor)")))?;
    if !out.status.success() {
        return Err(SecretsError(format!(
            "tor {} failed: {}",
            args.first().unwrap_or(&""),
            crate::tor::tor_complaint(&String::from_utf8_lossy(&out.stdout))
        )));
    }
    Ok(out)
}

/// A DataDirectory in `s` (0700, keys/ 0700) holding `files` (0600); returns its path.
fn data_dir_with(s: &Scratch, files: &[(String, Secret)]) -> Result<PathBuf> {
    let dd = s.path().join("data");
    let keys = dd.join("keys");
    std::fs::create_dir_all(&keys).map_err(|e| SecretsError(e.to_string()))?;
    for d in [&dd, &keys] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| SecretsError(e.to_string()))?;
    }
    for (name, secret) in files {
        let p = keys.join(name);
        std::fs::write(&p, secret.expose()).map_err(|e| SecretsError(e.to_string()))?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| SecretsError(e.to_string()))?;
    }
    Ok(dd)
}

/// The fingerprints tor prints for the keys in `data_dir` (making them if absent): (RSA, ed25519).
fn list_fingerprint(s: &Scratch, data_dir: &Path, nick: &str) -> Result<(String, String)> {
    tor(
        s.path(),
        &[
            "--list-fingerprint",
            "--DisableNetwork",
            "1",
            "--ORPort",
            "9999",
            "--Nickname",
            nick,
        ],
        Some(data_dir),
    )?;
    let read = |f: &str| -> Result<String> {
        let s = std::fs::read_to_string(data_dir.join(f))
            .map_err(|e| SecretsError(format!("tor wrote no {f}: {e}")))?;
        s.split_whitespace()
            .nth(1)
            .map(str::to_string)
            .ok_or_else(|| SecretsError(format!("tor's {f} is empty")))
    };
    Ok((read("fingerprint")?, read("fingerprint-ed25519")?))
}

fn read_keys(data_dir: &Path, names: &[&str]) -> Result<Vec<(String, Secret)>> {
    names
        .iter()
        .map(|f| {
            let bytes = std::fs::read(data_dir.join("keys").join(f))
                .map_err(|e| SecretsError(format!("tor wrote no keys/{f}: {e}")))?;
            Ok((f.to_string(), Secret::new(bytes)))
        })
        .collect()
}

/// A new relay identity, made by tor with networking disabled.
pub fn keygen(nick: &str) -> Result<RelayKeys> {
    let s = Scratch::new()?;
    let dd = data_dir_with(&s, &[])?;
    let (fingerprint, ed25519_id) = list_fingerprint(&s, &dd, nick)?;
    Ok(RelayKeys {
        fingerprint,
        ed25519_id,
        files: read_keys(&dd, IDENTITY_FILES)?,
    })
}

/// The fingerprints tor computes from identity key files (RSA, ed25519).
pub fn fingerprints_of(files: &[(String, Secret)], nick: &str) -> Result<(String, String)> {
    let s = Scratch::new()?;
    let dd = data_dir_with(&s, files)?;
    list_fingerprint(&s, &dd, nick)
}

/// A new family key: (secret key file content, FamilyId).
pub fn family_keygen() -> Result<(Secret, String)> {
    let s = Scratch::new()?;
    tor(s.path(), &["--keygen-family", "family"], None)?;
    let secret = std::fs::read(s.path().join("family.secret_family_key"))
        .map_err(|e| SecretsError(format!("tor wrote no family key: {e}")))?;
    let id = std::fs::read_to_string(s.path().join("family.public_family_id"))
        .map_err(|e| SecretsError(e.to_string()))?;
    Ok((Secret::new(secret), id.trim().to_string()))
}

/// A new signing key and certificate for an offline master key: (files, expiry as UTC text).
pub fn renew_signing(
    identity: &[(String, Secret)],
    nick: &str,
    lifetime: &str,
) -> Result<(Vec<(String, Secret)>, String)> {
    let s = Scratch::new()?;
    let dd = data_dir_with(&s, identity)?;
    tor(
        s.path(),
        &[
            "--keygen",
            "--no-passphrase",
            "--Nickname",
            nick,
            "--SigningKeyLifetime",
            lifetime,
        ],
        Some(&dd),
    )?;
    let files = read_keys(&dd, super::SIGNING_FILES)?;
    let cert = files
        .iter()
        .find(|(n, _)| n == "ed25519_signing_cert")
        .map(|(_, c)| c.expose().to_vec())
        .unwrap_or_default();
    Ok((
        files,
        cert_expiry(&cert)
            .ok_or_else(|| SecretsError("tor's signing certificate could not be read".into()))?,
    ))
}

/// The expiry of an `ed25519_signing_cert` file: after the 32-byte header, version (1), type (1),
/// then the expiration in hours since the epoch (4 bytes, big-endian).
pub fn cert_expiry(file: &[u8]) -> Option<String> {
    let c = file.get(32..38)?;
    let hours = u32::from_be_bytes([c[2], c[3], c[4], c[5]]) as i64;
    let days = hours / 24;
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    Some(format!("{y:04}-{m:02}-{d:02}T{:02}:00Z", hours % 24))
}

#[cfg(test)]
mod tests {
    #[test]
    fn cert_expiry_reads_hours_since_the_epoch() {
        let mut f = vec![0u8; 32];
        // 2026-12-25T07:00Z = 20812 days * 24 + 7 hours
        let hours: u32 = 20_812 * 24 + 7;
        f.extend_from_slice(&[1, 4]);
        f.extend_from_slice(&hours.to_be_bytes());
        assert_eq!(super::cert_expiry(&f).as_deref(), Some("2026-12-25T07:00Z"));
        assert_eq!(super::cert_expiry(&[0u8; 10]), None);
    }
}
