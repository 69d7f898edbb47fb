//! Small helpers shared by several stages.

use sha2::{Digest, Sha256};

/// sha256 of `data` as lowercase hex.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// The permissions a file written by [`write_atomic`] gets.
#[derive(Debug, Clone, Copy)]
pub enum Mode {
    /// The replaced file's permissions; this mode for a new file.
    Keep(u32),
    /// Always this mode (secrets: 0600 whatever the old file had).
    Exactly(u32),
}

/// Writes `bytes` to `path` so that a crash leaves the old file or the new one, never half: a
/// temporary file in the same directory, its mode set before any byte, fsync, rename, fsync of
/// the directory. `noclobber`: never replace a file that exists (a new file only). The directory
/// must exist: a mistyped `--out` directory is an error, not a new tree.
pub fn write_atomic(
    path: &std::path::Path,
    bytes: &[u8],
    mode: Mode,
    noclobber: bool,
) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::PermissionsExt as _;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => std::path::Path::new("."),
    };
    let mode = match mode {
        Mode::Exactly(m) => m,
        Mode::Keep(new) => std::fs::metadata(path).map_or(new, |m| m.permissions().mode() & 0o7777),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".oignon-new-")
        .tempfile_in(dir)?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    if noclobber {
        tmp.persist_noclobber(path).map_err(|e| e.error)?;
    } else {
        tmp.persist(path).map_err(|e| e.error)?;
    }
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn an_atomic_write_keeps_or_sets_the_mode_and_never_makes_directories() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("f");
        write_atomic(&f, b"one", Mode::Keep(0o644), false).unwrap();
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&f), 0o644);
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o640)).unwrap();
        write_atomic(&f, b"two", Mode::Keep(0o644), false).unwrap();
        assert_eq!(
            (mode(&f), std::fs::read(&f).unwrap()),
            (0o640, b"two".to_vec())
        );
        write_atomic(&f, b"three", Mode::Exactly(0o600), false).unwrap();
        assert_eq!(mode(&f), 0o600);
        assert!(write_atomic(&f, b"four", Mode::Keep(0o644), true).is_err());
        assert_eq!(std::fs::read(&f).unwrap(), b"three");
        assert!(write_atomic(
            &d.path().join("no/such/dir/f"),
            b"x",
            Mode::Keep(0o644),
            false
        )
        .is_err());
        assert!(!d.path().join("no").exists());
        // Nothing left behind: only `f`.
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
    }
}
