//! Where ssh master connections live, and for how long.
//!
//! Each master runs with `ControlPersist=Ns`: it ends on its own N seconds after its last use,
//! whether oignon closed it, forgot it or was killed. With `--ssh-persist N` (default 60) oignon
//! leaves its masters running at the end of a run, in a 0700 directory of its own
//! (`$XDG_RUNTIME_DIR/oignon/ssh`, `/run/user/UID/oignon/ssh`, else `~/.cache/oignon/ssh`), and the
//! next run within N seconds reuses them: no handshake. Masters to one destination share a
//! directory named after what ssh resolves for it (`ssh -G`: host name, port, user, identity,
//! known_hosts files, HostKeyAlias…), plus its pinned key: a run whose config or pin differs never
//! gets another's connection. With `--ssh-persist 0` masters live in a temp dir of the run and are
//! closed at its end (a killed run's still end after [`IDLE_WHEN_NOT_KEPT_S`]).

use super::TransportError;
use openssh::{ControlPersist, Session};
use std::ffi::OsString;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// `--ssh-persist`'s default, in seconds.
pub const DEFAULT_PERSIST_S: u64 = 60;

/// With `--ssh-persist 0`: how long a master outlives a run that could not close it (killed).
/// Not 0: ssh reads `ControlPersist=0` as "forever".
pub const IDLE_WHEN_NOT_KEPT_S: u64 = 10;

static PERSIST: AtomicU64 = AtomicU64::new(DEFAULT_PERSIST_S);

/// Sets `--ssh-persist` for the run (from `main`, before any connection).
pub fn set_persist(seconds: u64) {
    PERSIST.store(seconds, Ordering::Relaxed);
}

/// `--ssh-persist` as set for this run.
pub fn persist() -> u64 {
    PERSIST.load(Ordering::Relaxed)
}

/// Longest directory under which `KEY/.ssh-connectionXXXXXX/master` still fits a unix socket
/// path (108 bytes with its NUL on Linux).
const MAX_ROOT_LEN: usize = 60;

/// A `.ssh-connection*` directory younger than this may be a master still connecting: never swept.
const LAUNCH_GRACE: Duration = Duration::from_secs(30);

/// The masters' directory of this run.
pub struct Masters {
    dir: PathBuf,
    /// Seconds a master stays idle for the next run; 0: closed at the end of this one.
    persist: u64,
    /// The run's own directory when masters are not kept: shared with every connection, since
    /// their sockets and configs are needed until the last one closes.
    tmp: Option<Arc<tempfile::TempDir>>,
}

impl Masters {
    /// Oignon's own directory when masters are kept (swept of what dead masters left), else a
    /// temp dir of this run.
    pub fn new() -> Result<Masters, TransportError> {
        let persist = persist();
        if persist > 0 {
            match private_root() {
                Ok(dir) => {
                    sweep(&dir);
                    return Ok(Masters {
                        dir,
                        persist,
                        tmp: None,
                    });
                }
                Err(why) => tracing::info!("ssh connections are not kept between runs: {why}"),
            }
        }
        let tmp = tempfile::Builder::new()
            .prefix("oignon-ssh")
            .tempdir()
            .map_err(|e| TransportError {
                what: "cannot create a temp dir for ssh".into(),
                detail: e.to_string(),
            })?;
        Ok(Masters {
            dir: tmp.path().to_path_buf(),
            persist: 0,
            tmp: Some(Arc::new(tmp)),
        })
    }

    /// A hold on the run's directory (when masters are not kept), for a connection to keep.
    pub fn hold(&self) -> Option<Arc<tempfile::TempDir>> {
        self.tmp.clone()
    }

    /// Whether masters stay for the next run.
    pub fn kept(&self) -> bool {
        self.persist > 0
    }

    /// The `ControlPersist` of new masters.
    pub fn control_persist(&self) -> ControlPersist {
        let s = if self.persist > 0 {
            self.persist
        } else {
            IDLE_WHEN_NOT_KEPT_S
        };
        // `s` > 0 by construction; MIN is never used.
        ControlPersist::IdleFor(
            std::num::NonZeroUsize::new(s as usize).unwrap_or(std::num::NonZeroUsize::MIN),
        )
    }

    /// Private (0700) directory for files of this run's ssh setup, such as pinned configs.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The directory for masters to one destination. `ssh_g`: the arguments that make
    /// `ssh -G` print what ssh resolves for it; `salt`: what else must match (the pinned key).
    pub async fn slot(&self, ssh_g: &[OsString], salt: &str) -> Result<PathBuf, TransportError> {
        if !self.kept() {
            return Ok(self.dir.clone());
        }
        use sha2::Digest as _;
        let mut h = sha2::Sha256::new();
        h.update(salt.as_bytes());
        h.update([0]);
        let resolved = tokio::time::timeout(
            super::CONNECT_TIMEOUT,
            tokio::process::Command::new("ssh")
                .args(ssh_g)
                .stdin(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .output(),
        )
        .await;
        // If ssh cannot resolve it, the connection will say why; the salt alone names the slot.
        if let Ok(Ok(out)) = resolved {
            if out.status.success() {
                h.update(&out.stdout);
            }
        }
        let slot = self.dir.join(&hex::encode(h.finalize())[..16]);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&slot)
            .or_else(|e| {
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    Ok(())
                } else {
                    Err(e)
                }
            })
            .map_err(|e| TransportError {
                what: format!("cannot create {}", slot.display()),
                detail: e.to_string(),
            })?;
        Ok(slot)
    }
}

/// A live master of an earlier run in `slot`, if there is one; stale sockets of masters that
/// were killed are removed on the way.
pub async fn reuse(slot: &Path) -> Option<Session> {
    let mut subs: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(slot)
        .ok()?
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(".ssh-connection")
        })
        .filter_map(|e| {
            let m = std::fs::symlink_metadata(e.path()).ok()?;
            if m.is_dir() {
                Some((m.modified().ok()?, e.path()))
            } else {
                None
            }
        })
        .collect();
    // The newest first: it has the most time left.
    subs.sort_by_key(|s| std::cmp::Reverse(s.0));
    for (_, sub) in subs {
        let ctl = sub.join("master");
        match std::os::unix::net::UnixStream::connect(&ctl) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                // A socket nobody listens on: its master was killed.
                let _ = std::fs::remove_dir_all(&sub);
                continue;
            }
            Err(_) => continue,
        }
        let session = Session::resume_mux(
            ctl.into_boxed_path(),
            Some(sub.join("log").into_boxed_path()),
        );
        if let Ok(Ok(())) = tokio::time::timeout(Duration::from_secs(2), session.check()).await {
            return Some(session);
        }
    }
    None
}

/// The first of `$XDG_RUNTIME_DIR/oignon/ssh`, `/run/user/UID/oignon/ssh` and
/// `${XDG_CACHE_HOME:-~/.cache}/oignon/ssh` that is (or could be made) a directory of ours that no
/// one else can write to or read, short enough for socket paths.
fn private_root() -> Result<PathBuf, String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    let mut candidates = vec![];
    let runtime = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .into_iter()
        .chain([PathBuf::from(format!("/run/user/{uid}"))]);
    for base in runtime {
        // A runtime dir is made by the login manager: used only if it is already ours.
        let ours = base.is_absolute()
            && std::fs::symlink_metadata(&base).is_ok_and(|m| m.is_dir() && m.uid() == uid);
        if ours {
            candidates.push(base.join("oignon/ssh"));
        }
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")));
    if let Some(c) = cache {
        candidates.push(c.join("oignon/ssh"));
    }
    let mut why = vec![];
    for c in candidates {
        if c.as_os_str().len() > MAX_ROOT_LEN {
            why.push(format!(
                "{} is too long for ssh's socket paths",
                c.display()
            ));
            continue;
        }
        match make_private(&c, uid) {
            Ok(()) => return Ok(c),
            Err(e) => why.push(e),
        }
    }
    if why.is_empty() {
        why.push("no HOME nor XDG_RUNTIME_DIR".into());
    }
    Err(why.join("; "))
}

/// Creates `dir` (and missing parents) 0700 and checks that it and its parent belong to `uid`,
/// are real directories and that no one else can write to them (nor read `dir`).
fn make_private(dir: &Path, uid: u32) -> Result<(), String> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let parent = dir.parent().unwrap_or(dir);
    for d in [parent, dir] {
        let m = std::fs::symlink_metadata(d).map_err(|e| format!("{}: {e}", d.display()))?;
        if !m.is_dir() || m.uid() != uid {
            return Err(format!("{} is not a directory of this user", d.display()));
        }
        if m.mode() & 0o022 != 0 {
            return Err(format!("{} can be written by others", d.display()));
        }
    }
    let m = std::fs::symlink_metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if m.mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| format!("cannot chmod 0700 {}: {e}", dir.display()))?;
    }
    Ok(())
}

/// Removes what ended masters left in `root`: their `.ssh-connection*` directories once the socket
/// is gone (ssh removes it when the master ends), and destination directories and pinned configs
/// unused for a day.
fn sweep(root: &Path) {
    let Ok(rd) = std::fs::read_dir(root) else {
        return;
    };
    let old = |p: &Path, age: Duration| {
        std::fs::symlink_metadata(p)
            .ok()
            .and_then(|m| m.modified().ok())
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|a| a > age)
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let p = e.path();
        if !std::fs::symlink_metadata(&p).is_ok_and(|m| m.is_dir()) {
            continue;
        }
        if name == "pins" {
            for f in std::fs::read_dir(&p).into_iter().flatten().flatten() {
                if old(&f.path(), Duration::from_secs(86_400)) {
                    let _ = std::fs::remove_file(f.path());
                }
            }
            continue;
        }
        if name.len() != 16 || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
            continue;
        }
        for sub in std::fs::read_dir(&p).into_iter().flatten().flatten() {
            let s = sub.path();
            let ended = std::fs::symlink_metadata(s.join("master")).is_err();
            if sub
                .file_name()
                .to_string_lossy()
                .starts_with(".ssh-connection")
                && ended
                && old(&s, LAUNCH_GRACE)
            {
                let _ = std::fs::remove_dir_all(&s);
            }
        }
        // A day, not the launch grace: a run may be about to start a master in a directory
        // that has been empty a while. remove_dir fails on one that holds anything.
        if old(&p, Duration::from_secs(86_400)) {
            let _ = std::fs::remove_dir(&p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_private_root_refuses_a_directory_others_can_write() {
        let t = tempfile::tempdir().unwrap();
        // SAFETY: as in private_root.
        let uid = unsafe { libc::geteuid() };
        let open = t.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = make_private(&open.join("ssh"), uid).unwrap_err();
        assert!(err.contains("can be written by others"), "{err}");
        let link = t.path().join("link");
        std::os::unix::fs::symlink(t.path(), &link).unwrap();
        assert!(make_private(&link, uid).is_err(), "a symlink was taken");
        let fine = t.path().join("oignon/ssh");
        make_private(&fine, uid).unwrap();
        let mode = std::fs::metadata(&fine).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }

    #[test]
    fn control_persist_is_never_zero() {
        for p in [0, 1, 60] {
            let m = Masters {
                dir: PathBuf::from("/x"),
                persist: p,
                tmp: None,
            };
            let ControlPersist::IdleFor(n) = m.control_persist() else {
                panic!("not an idle time")
            };
            assert_eq!(
                n.get() as u64,
                if p == 0 { IDLE_WHEN_NOT_KEPT_S } else { p }
            );
        }
    }
}
