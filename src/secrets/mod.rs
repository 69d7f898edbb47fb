//! Relay identities and the family key, age-encrypted in the repository.
//!
//! Layout of the secrets directory (default `secrets/`):
//! - `recipients.txt`: who can decrypt: age `age1…` and `ssh-ed25519 …` keys, one per line, each
//!   after a full-line `#` comment naming its owner (the age CLI reads the same file with `-R`).
//! - `relays/NICKNAME/secret_id_key.age`, `relays/NICKNAME/ed25519_master_id_secret_key.age`: the
//!   two key files that ARE a relay's identity; `relays/NICKNAME/fingerprint` and `ed25519_id`
//!   in clear (public), so rendering MyFamily needs no decryption.
//! - `family.secret_family_key.age` and `family.public_family_id` (the FamilyId, public).
//! - `DEMO`: present only in the shipped demo store (keys for documentation addresses only).
//!
//! Plaintext only ever lives in [`Secret`] (redacted Debug/Display, zeroed on drop), and only
//! leaves memory into a host's key file (through the apply script's stdin, inside SSH).

pub mod admin;
pub mod check;
pub mod demo;
pub mod tor_keys;

use crate::secret::Secret;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// The identity key files of a relay, as tor names them in `keys/`.
pub const IDENTITY_FILES: &[&str] = &["secret_id_key", "ed25519_master_id_secret_key"];

/// What a host gets with `OfflineMasterKey 1`: no master secret key, a renewable signing key and
/// certificate, and the master public key.
pub const OFFLINE_FILES: &[&str] = &[
    "secret_id_key",
    "ed25519_signing_secret_key",
    "ed25519_signing_cert",
    "ed25519_master_id_public_key",
];

/// The signing files `secrets renew-signing` makes.
pub const SIGNING_FILES: &[&str] = &[
    "ed25519_signing_secret_key",
    "ed25519_signing_cert",
    "ed25519_master_id_public_key",
];

/// A relay's `keys/ed25519_master_id_public_key` as tor writes it: a 32-byte header, then the key,
/// which is the relay's ed25519 id (kept in clear in secrets/relays/NICK/ed25519_id).
pub fn master_public_key(store: &Store, nick: &str) -> Result<Vec<u8>> {
    use base64::Engine as _;
    let path = store.relay_dir(nick).join("ed25519_id");
    let id = store.ed25519_id(nick).ok_or_else(|| {
        SecretsError(format!(
            "{} is missing: the relay's ed25519 id; `oignon secrets verify` shows it, keygen or import write it",
            path.display()
        ))
    })?;
    let key = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(id.trim_end_matches('='))
        .ok()
        .filter(|k| k.len() == 32)
        .ok_or_else(|| {
            SecretsError(format!(
                "{} does not hold an ed25519 id (43 characters of base64); restore it from git",
                path.display()
            ))
        })?;
    let mut out = b"== ed25519v1-public: type0 ==\0\0\0".to_vec();
    out.extend_from_slice(&key);
    Ok(out)
}

/// The family key's file name in each relay's KeyDirectory.
pub const FAMILY_KEY_FILE: &str = "family.secret_family_key";

/// A failure with secrets, naming the file and what to do. Never holds plaintext.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SecretsError(pub String);

type Result<T> = std::result::Result<T, SecretsError>;

fn err<T>(msg: impl Into<String>) -> Result<T> {
    Err(SecretsError(msg.into()))
}

/// The secrets directory.
#[derive(Debug, Clone)]
pub struct Store {
    pub dir: PathBuf,
}

impl Store {
    pub fn open(dir: &Path) -> Store {
        Store {
            dir: dir.to_path_buf(),
        }
    }

    pub fn relay_dir(&self, nick: &str) -> PathBuf {
        self.dir.join("relays").join(nick)
    }

    fn read_clear(&self, p: PathBuf) -> Option<String> {
        std::fs::read_to_string(p)
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    }

    /// The relay's RSA fingerprint (40 hex digits), if it has an identity here.
    pub fn fingerprint(&self, nick: &str) -> Option<String> {
        self.read_clear(self.relay_dir(nick).join("fingerprint"))
    }

    pub fn ed25519_id(&self, nick: &str) -> Option<String> {
        self.read_clear(self.relay_dir(nick).join("ed25519_id"))
    }

    /// Whether both identity files are present for the relay.
    pub fn has_identity(&self, nick: &str) -> bool {
        IDENTITY_FILES
            .iter()
            .all(|f| self.relay_dir(nick).join(format!("{f}.age")).is_file())
    }

    /// Whether `renew-signing` made the signing key and certificate of an offline-master relay.
    pub fn has_signing(&self, nick: &str) -> bool {
        SIGNING_FILES
            .iter()
            .all(|f| self.relay_dir(nick).join(format!("{f}.age")).is_file())
    }

    /// When the signing certificate expires (recorded by `renew-signing`).
    pub fn signing_expiry(&self, nick: &str) -> Option<String> {
        self.read_clear(self.relay_dir(nick).join("signing_cert_expires"))
    }

    pub fn family_id(&self) -> Option<String> {
        self.read_clear(self.dir.join("family.public_family_id"))
    }

    pub fn has_family_key(&self) -> bool {
        self.dir.join("family.secret_family_key.age").is_file()
    }

    /// The shipped demo store: keys usable on documentation addresses only.
    pub fn is_demo(&self) -> bool {
        self.dir.join("DEMO").is_file()
    }

    /// Every `.age` file of the store, in a stable order.
    pub fn age_files(&self) -> Vec<PathBuf> {
        let mut out = vec![];
        let mut stack = vec![self.dir.clone()];
        while let Some(d) = stack.pop() {
            let Ok(rd) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|x| x == "age") {
                    out.push(p);
                }
            }
        }
        out.sort();
        out
    }

    /// The recipients of `recipients.txt`.
    pub fn recipients(&self) -> Result<Vec<Box<dyn age::Recipient + Send>>> {
        let path = self.dir.join("recipients.txt");
        let text = std::fs::read_to_string(&path).or_else(|e| err(format!("cannot read {}: {e}; list the admins' age or ssh-ed25519 public keys there, one per line", path.display())))?;
        let mut out: Vec<Box<dyn age::Recipient + Send>> = vec![];
        for (i, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            if let Ok(r) = line.parse::<age::x25519::Recipient>() {
                out.push(Box::new(r));
            } else if let Ok(r) = line.parse::<age::ssh::Recipient>() {
                out.push(Box::new(r));
            } else {
                return err(format!(
                    "{}:{}: not an age (age1…) or ssh-ed25519 recipient",
                    path.display(),
                    i + 1
                ));
            }
        }
        if out.is_empty() {
            return err(format!(
                "{} lists no recipient: nobody could decrypt; add an admin's public key",
                path.display()
            ));
        }
        Ok(out)
    }
}

/// Decryption keys: an age identity file or an OpenSSH private key.
pub struct Identity {
    pub source: PathBuf,
    keys: Vec<Box<dyn age::Identity>>,
}

impl Identity {
    /// `--identity FILE`, else `OIGNON_IDENTITY`, else `~/.config/oignon/identity`, else — for the
    /// shipped demo store only — `secrets/demo-identity.txt`.
    pub fn find(explicit: Option<&Path>, store: &Store) -> Result<Identity> {
        let candidates: Vec<PathBuf> = match explicit {
            Some(p) => vec![p.to_path_buf()],
            None => {
                let mut v = vec![];
                if let Some(p) = std::env::var_os("OIGNON_IDENTITY").filter(|p| !p.is_empty()) {
                    v.push(PathBuf::from(p));
                } else {
                    if let Some(home) = std::env::var_os("HOME") {
                        let p = Path::new(&home).join(".config/oignon/identity");
                        if p.is_file() {
                            v.push(p);
                        }
                    }
                    if v.is_empty() && store.is_demo() {
                        v.push(store.dir.join("demo-identity.txt"));
                    }
                }
                v
            }
        };
        let Some(path) = candidates.into_iter().next() else {
            return err("no identity to decrypt secrets: pass --identity FILE, set OIGNON_IDENTITY, or put your age or ssh key at ~/.config/oignon/identity");
        };
        Identity::load(&path)
    }

    pub fn load(path: &Path) -> Result<Identity> {
        // The identity is key material too: zero its copy once parsed.
        let bytes = zeroize::Zeroizing::new(
            std::fs::read(path)
                .or_else(|e| err(format!("cannot read the identity {}: {e}", path.display())))?,
        );
        let text = String::from_utf8_lossy(&bytes);
        let mut keys: Vec<Box<dyn age::Identity>> = vec![];
        if text.contains("AGE-SECRET-KEY-") {
            let f = age::IdentityFile::from_buffer(&bytes[..]).or_else(|e| {
                err(format!(
                    "{}: not a valid age identity file: {e}",
                    path.display()
                ))
            })?;
            for entry in f.into_identities() {
                // Native X25519 keys only: the age crate is built without plugin support.
                let age::IdentityFileEntry::Native(k) = entry;
                keys.push(Box::new(k));
            }
        } else if text.contains("PRIVATE KEY") {
            let k = age::ssh::Identity::from_buffer(&bytes[..], Some(path.display().to_string()))
                .or_else(|e| {
                err(format!(
                    "{}: not a usable OpenSSH private key: {e}",
                    path.display()
                ))
            })?;
            if let age::ssh::Identity::Encrypted(_) = k {
                return err(format!("{} is passphrase-protected; oignon needs an unencrypted key or an age identity", path.display()));
            }
            if let age::ssh::Identity::Unsupported(_) = k {
                return err(format!("{}: this ssh key type is not supported by age (use ssh-ed25519 or an age identity)", path.display()));
            }
            keys.push(Box::new(k));
        }
        if keys.is_empty() {
            return err(format!(
                "{} holds no age identity (AGE-SECRET-KEY-…) or OpenSSH private key",
                path.display()
            ));
        }
        Ok(Identity {
            source: path.to_path_buf(),
            keys,
        })
    }

    /// Decrypts one `.age` file. Errors name the file and never hold plaintext.
    pub fn decrypt(&self, file: &Path) -> Result<Secret> {
        let data =
            std::fs::read(file).or_else(|e| err(format!("cannot read {}: {e}", file.display())))?;
        let reader = age::armor::ArmoredReader::new(&data[..]);
        let dec = age::Decryptor::new(reader).or_else(|e| {
            err(format!(
                "{} is not an age file or is damaged ({e}); restore it from git",
                file.display()
            ))
        })?;
        let age::Decryptor::Recipients(d) = dec else {
            return err(format!(
                "{} is passphrase-encrypted; oignon's secrets are encrypted to recipients.txt",
                file.display()
            ));
        };
        let mut r = d.decrypt(self.keys.iter().map(|k| k.as_ref())).map_err(|e| match e {
            age::DecryptError::NoMatchingKeys => SecretsError(format!(
                "none of the keys in {} can decrypt {}: it was encrypted to other recipients; ask an admin to add your public key to recipients.txt and run `oignon secrets rekey`",
                self.source.display(),
                file.display()
            )),
            other => SecretsError(format!("cannot decrypt {} ({other}); the file may be damaged: restore it from git", file.display())),
        })?;
        let mut out = zeroize::Zeroizing::new(vec![]);
        r.read_to_end(&mut out).or_else(|e| {
            err(format!(
                "{} is damaged or was tampered with ({e}); restore it from git",
                file.display()
            ))
        })?;
        Ok(Secret::new(std::mem::take(&mut *out)))
    }
}

/// Encrypts `plain` to `recipients` (binary age format, which the `age` CLI reads).
pub fn encrypt(plain: &[u8], recipients: Vec<Box<dyn age::Recipient + Send>>) -> Result<Vec<u8>> {
    let enc = age::Encryptor::with_recipients(recipients)
        .ok_or_else(|| SecretsError("no recipients".into()))?;
    let mut out = vec![];
    let mut w = enc
        .wrap_output(&mut out)
        .or_else(|e| err(format!("encryption failed: {e}")))?;
    w.write_all(plain)
        .and_then(|_| w.finish().map(|_| ()))
        .or_else(|e| err(format!("encryption failed: {e}")))?;
    Ok(out)
}

/// Writes `bytes` to `path` atomically ([`crate::util::write_atomic`]), mode 0600, making the
/// store's directories as needed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)
        .or_else(|e| err(format!("cannot create {}: {e}", dir.display())))?;
    crate::util::write_atomic(path, bytes, crate::util::Mode::Exactly(0o600), false)
        .or_else(|e| err(format!("cannot write {}: {e}", path.display())))
}

/// `FamilyId` and `MyFamily` lines for relay `nick` (MyFamily: every OTHER relay with a known
/// fingerprint, sorted, kept during the happy-families transition).
pub fn family_lines(store: &Store, all: &[&str], nick: &str) -> Vec<String> {
    let mut lines = vec![];
    if let Some(id) = store.family_id() {
        lines.push(format!("FamilyId {id}"));
    }
    let mut fps: Vec<String> = all
        .iter()
        .filter(|n| !n.eq_ignore_ascii_case(nick))
        .filter_map(|n| store.fingerprint(n))
        .map(|f| format!("${f}"))
        .collect();
    fps.sort();
    if !fps.is_empty() {
        lines.push(format!("MyFamily {}", fps.join(",")));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encrypt_then_decrypt_round_trips_and_wrong_key_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let k = age::x25519::Identity::generate();
        let other = age::x25519::Identity::generate();
        let secret_str = |i: &age::x25519::Identity| {
            use age::secrecy::ExposeSecret;
            i.to_string().expose_secret().to_string()
        };
        std::fs::write(dir.path().join("id.txt"), secret_str(&k)).unwrap();
        std::fs::write(dir.path().join("other.txt"), secret_str(&other)).unwrap();
        let ct = encrypt(b"CANARY", vec![Box::new(k.to_public())]).unwrap();
        let f = dir.path().join("x.age");
        std::fs::write(&f, ct).unwrap();
        let id = Identity::load(&dir.path().join("id.txt")).unwrap();
        assert_eq!(id.decrypt(&f).unwrap().expose(), b"CANARY");
        let e = Identity::load(&dir.path().join("other.txt"))
            .unwrap()
            .decrypt(&f)
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("x.age") && e.contains("recipients.txt") && !e.contains("CANARY"),
            "{e}"
        );
        std::fs::write(&f, b"garbage").unwrap();
        let e = id.decrypt(&f).err().unwrap().to_string();
        assert!(e.contains("x.age") && e.contains("damaged"), "{e}");
    }
}
