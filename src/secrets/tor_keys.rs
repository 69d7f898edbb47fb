//! Relay keys made and read by tor itself, in throwaway DataDirectories on a tmpfs that are wiped
//! after use, on a signal, or (after a SIGKILL) at the next start.

use super::{SecretsError, IDENTITY_FILES};
use crate::secret::Secret;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard};

type Result<T> = std::result::Result<T, SecretsError>;

/// A 0700 directory for tor's DataDirectory, on a tmpfs, whose files are overwritten with zeros
/// before it is removed.
///
/// Decrypted keys live here while tor reads them, so:
/// - it is made on a tmpfs (`/dev/shm`, else `$XDG_RUNTIME_DIR` when that is a tmpfs): the keys
///   never reach a disk. With no tmpfs it falls back to the temp dir, with a warning;
/// - its name, `oignon-keys.BOOT.PID.START.XXXXXX`, says which run owns it (boot id, pid, and
///   the pid's start time, so a reused pid does not count): [`sweep_dead`] at the next start
///   removes those whose run is gone (a SIGKILL), never a live run's;
/// - it is registered while it lives, so [`wipe_all`] (run on SIGINT, SIGTERM, SIGHUP and
///   SIGQUIT) kills tor and wipes it before the process exits.
pub struct Scratch {
    dir: PathBuf,
}

/// Scratch directories of this process that exist now.
static LIVE: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
/// tor processes running on a scratch directory now.
static CHILDREN: Mutex<Vec<u32>> = Mutex::new(Vec::new());

const PREFIX: &str = "oignon-keys.";

/// The lists above stay usable after a panic elsewhere: they only hold paths and pids.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Scratch {
    pub fn new() -> Result<Scratch> {
        let prefix = format!("{PREFIX}{}.", owner_tag());
        let mut live = lock(&LIVE);
        let made = tmpfs_roots().into_iter().find_map(|root| {
            tempfile::Builder::new()
                .prefix(&prefix)
                .tempdir_in(&root)
                .ok()
        });
        let dir = match made {
            Some(d) => d,
            None => {
                static WARNED: std::sync::Once = std::sync::Once::new();
                WARNED.call_once(|| {
                    tracing::warn!(
                        "no tmpfs for tor's scratch keys (/dev/shm, $XDG_RUNTIME_DIR): using {}; \
                         decrypted keys touch that disk while tor reads them (overwritten, then \
                         removed; a killed run's are swept at the next start)",
                        std::env::temp_dir().display()
                    )
                });
                tempfile::Builder::new()
                    .prefix(&prefix)
                    .tempdir()
                    .map_err(|e| SecretsError(format!("cannot make a temp dir: {e}")))?
            }
        };
        // From here on the directory is ours to remove (Drop, wipe_all or the next sweep).
        let dir = dir.keep();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| SecretsError(e.to_string()))?;
        live.push(dir.clone());
        Ok(Scratch { dir })
    }
    pub fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // Under the lock: wipe_all (a signal) either finds the directory whole or not at all.
        let mut live = lock(&LIVE);
        wipe_and_remove(&self.dir);
        live.retain(|d| d != &self.dir);
    }
}

/// Overwrites every file under `dir` with zeros, in place (no truncation, which would free the
/// blocks or tmpfs pages with the key still in them) and to disk, then removes the directory.
/// Links are not followed.
fn wipe_and_remove(dir: &Path) {
    fn wipe(d: &Path) {
        let Ok(rd) = std::fs::read_dir(d) else { return };
        for e in rd.flatten() {
            let p = e.path();
            let Ok(m) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            if m.is_dir() {
                wipe(&p);
            } else if m.is_file() {
                use std::io::Write;
                use std::os::unix::fs::OpenOptionsExt;
                if let Ok(mut f) = std::fs::OpenOptions::new()
                    .write(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&p)
                {
                    let _ = f.write_all(&vec![0u8; m.len() as usize]);
                    let _ = f.sync_all();
                }
            }
        }
    }
    wipe(dir);
    let _ = std::fs::remove_dir_all(dir);
}

/// Where scratch directories go: the tmpfs candidates that exist, in order.
fn tmpfs_roots() -> Vec<PathBuf> {
    let mut roots = vec![PathBuf::from("/dev/shm")];
    if let Some(x) = std::env::var_os("XDG_RUNTIME_DIR") {
        let x = PathBuf::from(x);
        if x.is_absolute() {
            roots.push(x);
        }
    }
    roots.retain(|r| is_tmpfs(r));
    roots
}

fn is_tmpfs(p: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    const TMPFS_MAGIC: i64 = 0x0102_1994;
    const RAMFS_MAGIC: i64 = 0x8584_58f6;
    let Ok(c) = std::ffi::CString::new(p.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `c` is a valid C string and `st` a statfs the call fills in.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return false;
    }
    #[allow(clippy::unnecessary_cast)]
    let kind = st.f_type as i64;
    kind == TMPFS_MAGIC || kind == RAMFS_MAGIC
}

/// `BOOT.PID.START` of this process: the first 8 characters of the boot id, the pid, and the
/// pid's start time in clock ticks since boot (field 22 of /proc/PID/stat).
fn owner_tag() -> String {
    let pid = std::process::id();
    format!("{}.{pid}.{}", boot_id(), start_time(pid).unwrap_or(0))
}

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| {
            s.trim()
                .chars()
                .filter(|c| c.is_ascii_hexdigit())
                .take(8)
                .collect()
        })
        .unwrap_or_else(|_| "noboot".into())
}

fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count from the last `)`.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

/// Whether the run that named a scratch directory `tag` (`BOOT.PID.START`) is still alive.
fn owner_alive(tag: &str, boot: &str) -> bool {
    let mut it = tag.split('.');
    let (Some(b), Some(pid), Some(start)) = (it.next(), it.next(), it.next()) else {
        return false;
    };
    let (Ok(pid), Ok(start)) = (pid.parse::<u32>(), start.parse::<u64>()) else {
        return false;
    };
    b == boot && start_time(pid) == Some(start)
}

/// Removes (after wiping) the scratch directories that runs killed before their clean-up left
/// behind: ours (same user), named by a run that is gone. A live run's are never touched. Also
/// the unnamed `oignon-keysXXXXXX` of versions before the naming, once older than an hour.
pub fn sweep_dead() -> usize {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    let boot = boot_id();
    let mut roots = tmpfs_roots();
    roots.push(std::env::temp_dir());
    roots.dedup();
    let mut swept = 0;
    for root in roots {
        let Ok(rd) = std::fs::read_dir(&root) else {
            continue;
        };
        for e in rd.flatten() {
            let name = e.file_name();
            let Some(name) = name.to_str() else { continue };
            let dead = if let Some(rest) = name.strip_prefix(PREFIX) {
                !owner_alive(rest, &boot)
            } else if let Some(rand) = name.strip_prefix("oignon-keys") {
                rand.len() == 6
                    && rand.chars().all(|c| c.is_ascii_alphanumeric())
                    && e.metadata()
                        .ok()
                        .and_then(|m| m.modified().ok())
                        .and_then(|t| t.elapsed().ok())
                        .is_some_and(|age| age > std::time::Duration::from_secs(3600))
            } else {
                false
            };
            if !dead {
                continue;
            }
            let p = e.path();
            let ours = std::fs::symlink_metadata(&p).is_ok_and(|m| m.is_dir() && m.uid() == me);
            if ours {
                tracing::info!("removing {}: the run that made it is gone", p.display());
                wipe_and_remove(&p);
                swept += 1;
            }
        }
    }
    swept
}

/// On a signal: stops the tor processes working on scratch keys, then wipes and removes every
/// scratch directory of this process. The lists stay locked, so nothing new starts before exit.
pub fn wipe_all() {
    let children = lock(&CHILDREN);
    for &pid in children.iter() {
        // SAFETY: kill has no memory preconditions; pid is a child we started.
        unsafe {
            libc::kill(pid as libc::pid_t, libc::SIGKILL);
        }
    }
    // A killed process may finish the write it is in: wait until it is gone or a zombie.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    for &pid in children.iter() {
        while std::time::Instant::now() < deadline {
            match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
                Ok(s)
                    if !s
                        .rsplit(')')
                        .next()
                        .unwrap_or("")
                        .trim_start()
                        .starts_with('Z') =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(5))
                }
                _ => break,
            }
        }
    }
    std::mem::forget(children);
    let live = lock(&LIVE);
    for d in live.iter() {
        wipe_and_remove(d);
    }
    std::mem::forget(live);
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
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // Spawned and registered under one lock: a signal's wipe_all kills it before wiping.
    let child = {
        let mut children = lock(&CHILDREN);
        let child = cmd
            .spawn()
            .map_err(|e| SecretsError(format!("cannot run tor: {e} (apt-get install tor)")))?;
        children.push(child.id());
        child
    };
    let pid = child.id();
    let out = child.wait_with_output();
    lock(&CHILDREN).retain(|&p| p != pid);
    let out = out.map_err(|e| SecretsError(format!("waiting for tor: {e}")))?;
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
