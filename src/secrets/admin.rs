//! The secrets store's admin tasks, one function per `oignon secrets …` subcommand and
//! `oignon fingerprints`: the binary only turns flags into these arguments. Each prints what it
//! made or found (never a secret) and returns the run's [`Outcome`]; the exit code follows from it
//! in [`crate::error::exit_code`].

use super::{encrypt, tor_keys, write_atomic, Identity, SecretsError, Store, IDENTITY_FILES};
use crate::error::Outcome;
use crate::fleet::Paths;
use crate::text::plural;
use crate::transport::TransportError;
use std::path::{Path, PathBuf};

/// Why a secrets task stopped before finishing. Each says what to do; none holds a secret.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// Reading, decrypting, encrypting or writing the store, or running tor on keys.
    #[error(transparent)]
    Secrets(#[from] SecretsError),
    /// A nickname tor would refuse.
    #[error("nickname `{nick}` {why}: tor accepts 1 to 19 letters and digits")]
    BadNickname { nick: String, why: String },
    /// keygen without `--force` over an identity the store already holds.
    #[error("{} already holds an identity for {nick}; replacing it loses the relay's reputation: pass --force if that is what you want", .dir.display())]
    IdentityExists { nick: String, dir: PathBuf },
    /// family-keygen without `--force` over the family key the store already holds.
    #[error("{} already holds the family key; a new one means every relay's FamilyId changes: pass --force if that is what you want", .dir.display())]
    FamilyKeyExists { dir: PathBuf },
    /// renew-signing of a relay the inventory does not name.
    #[error("no relay `{nick}` in the inventory: nothing to renew")]
    UnknownRelay { nick: String },
    /// renew-signing of a relay whose master key is on its host.
    #[error("{nick} does not use OfflineMasterKey: its ed25519 master key is on its host and tor renews the signing key itself; set offline_master_key = true for {nick} in the inventory first if that is what you want")]
    NotOffline { nick: String },
    /// renew-signing of a relay without an identity in the store.
    #[error("{nick} has no identity in {}: oignon secrets keygen {nick} first", .dir.display())]
    NoIdentity { nick: String, dir: PathBuf },
    /// import from a host the inventory does not name.
    #[error("no host `{host}` in the inventory; hosts: {}", .hosts.join(", "))]
    UnknownHost { host: String, hosts: Vec<String> },
    /// The host could not be reached, or the connection failed.
    #[error("{host}: {source}")]
    Unreachable {
        host: String,
        #[source]
        source: TransportError,
    },
    /// The host's import script failed, or answered something unreadable.
    #[error("{host}: reading the relays' keys failed: {words}")]
    Import { host: String, words: String },
    /// The async runtime could not start.
    #[error("cannot start the runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

type Result<T> = std::result::Result<T, AdminError>;

/// Where `secrets import` reads the running relays' keys from.
pub struct ImportOptions<'a> {
    /// The inventory, roles and secrets to load (the host must be in the inventory).
    pub paths: &'a Paths,
    /// The host whose relays are adopted.
    pub host: &'a str,
    /// Local transport: the host is the directory `local/HOST` instead of an SSH target.
    pub local: Option<PathBuf>,
    /// An ssh_config file for the connection.
    pub ssh_config: Option<&'a Path>,
}

/// `secrets keygen`: new relay identities made by tor, encrypted to recipients.txt; refuses to
/// replace one without `force` (the old relay's reputation would be lost).
pub fn keygen(store: &Store, nicks: &[String], force: bool) -> Result<Outcome> {
    // Fail on recipients.txt before tor makes any key.
    store.recipients()?;
    for n in nicks {
        if let Err(why) = crate::inventory::check_nickname(n) {
            return Err(AdminError::BadNickname {
                nick: n.clone(),
                why,
            });
        }
        // Any trace counts: a store missing one key file still records this relay's identity.
        let dir = store.relay_dir(n);
        let traces = IDENTITY_FILES
            .iter()
            .map(|f| format!("{f}.age"))
            .chain(["fingerprint".to_string()])
            .any(|f| dir.join(f).exists());
        if traces && !force {
            return Err(AdminError::IdentityExists {
                nick: n.clone(),
                dir,
            });
        }
    }
    for n in nicks {
        let keys = tor_keys::keygen(n)?;
        save_relay(store, n, &keys)?;
        println!("{n} {} {}", keys.fingerprint, keys.ed25519_id);
    }
    Ok(Outcome::Clean)
}

/// Encrypts a relay's identity files into the store, with its public fingerprints in clear.
fn save_relay(store: &Store, n: &str, keys: &tor_keys::RelayKeys) -> Result<()> {
    let dir = store.relay_dir(n);
    for (name, secret) in &keys.files {
        write_atomic(
            &dir.join(format!("{name}.age")),
            &encrypt(secret.expose(), store.recipients()?)?,
        )?;
    }
    write_atomic(
        &dir.join("fingerprint"),
        format!("{}\n", keys.fingerprint).as_bytes(),
    )?;
    write_atomic(
        &dir.join("ed25519_id"),
        format!("{}\n", keys.ed25519_id).as_bytes(),
    )?;
    Ok(())
}

/// `secrets family-keygen`: the family key from `tor --keygen-family`, and its FamilyId.
pub fn family_keygen(store: &Store, force: bool) -> Result<Outcome> {
    if store.has_family_key() && !force {
        return Err(AdminError::FamilyKeyExists {
            dir: store.dir.clone(),
        });
    }
    store.recipients()?;
    let (secret, id) = tor_keys::family_keygen()?;
    write_atomic(
        &store.dir.join("family.secret_family_key.age"),
        &encrypt(secret.expose(), store.recipients()?)?,
    )?;
    write_atomic(
        &store.dir.join("family.public_family_id"),
        format!("{id}\n").as_bytes(),
    )?;
    println!("FamilyId {id}");
    Ok(Outcome::Clean)
}

/// `secrets rekey`: every secret re-encrypted to the current recipients.txt, all decrypted first
/// so that an unreadable one changes nothing.
pub fn rekey(store: &Store, identity: Option<&Path>) -> Result<Outcome> {
    let id = Identity::find(identity, store)?;
    let files = store.age_files();
    // Decrypt everything first: a key that cannot be read stops the rekey before anything changes.
    let mut plain = vec![];
    for f in &files {
        plain.push((f.clone(), id.decrypt(f)?));
    }
    for (f, secret) in &plain {
        write_atomic(f, &encrypt(secret.expose(), store.recipients()?)?)?;
    }
    println!(
        "re-encrypted {} file{} to {}",
        files.len(),
        plural(files.len()),
        store.dir.join("recipients.txt").display()
    );
    Ok(Outcome::Clean)
}

/// `secrets renew-signing`: for OfflineMasterKey relays, a new signing key and certificate made
/// from the master key kept in the store.
pub fn renew_signing(
    paths: &Paths,
    identity: Option<&Path>,
    store: &Store,
    nicks: &[String],
    lifetime: &str,
) -> Result<Outcome> {
    // Only a relay whose master key stays offline has a signing key to renew by hand: any other
    // relay's tor renews its own, from the master key on its host.
    let Some(loaded) = crate::fleet::load(paths, false) else {
        return Ok(Outcome::Failed);
    };
    for n in nicks {
        let relay = loaded
            .fleet()
            .hosts
            .iter()
            .flat_map(|h| h.relays.iter())
            .find(|r| r.nickname == *n);
        match relay {
            None => return Err(AdminError::UnknownRelay { nick: n.clone() }),
            Some(r) if !r.offline_master_key => {
                return Err(AdminError::NotOffline { nick: n.clone() })
            }
            Some(_) => {}
        }
    }
    let id = Identity::find(identity, store)?;
    for n in nicks {
        if !store.has_identity(n) {
            return Err(AdminError::NoIdentity {
                nick: n.clone(),
                dir: store.relay_dir(n),
            });
        }
        let mut identity = vec![];
        for f in IDENTITY_FILES {
            identity.push((
                f.to_string(),
                id.decrypt(&store.relay_dir(n).join(format!("{f}.age")))?,
            ));
        }
        let (files, expires) = tor_keys::renew_signing(&identity, n, lifetime)?;
        for (name, secret) in &files {
            write_atomic(
                &store.relay_dir(n).join(format!("{name}.age")),
                &encrypt(secret.expose(), store.recipients()?)?,
            )?;
        }
        write_atomic(
            &store.relay_dir(n).join("signing_cert_expires"),
            format!("{expires}\n").as_bytes(),
        )?;
        println!(
            "{n}: new signing key, certificate valid until {expires}; `oignon apply` deploys it"
        );
    }
    Ok(Outcome::Clean)
}

/// `secrets verify`: tor recomputes each relay's fingerprints from its decrypted keys, which must
/// match the recorded ones.
pub fn verify(store: &Store, identity: Option<&Path>) -> Result<Outcome> {
    let id = Identity::find(identity, store)?;
    let mut bad = 0;
    let mut nicks: Vec<String> = std::fs::read_dir(store.dir.join("relays"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    nicks.sort();
    for n in &nicks {
        let mut files = vec![];
        for f in IDENTITY_FILES {
            files.push((
                f.to_string(),
                id.decrypt(&store.relay_dir(n).join(format!("{f}.age")))?,
            ));
        }
        let (rsa, ed) = tor_keys::fingerprints_of(&files, n)?;
        let ok = Some(&rsa) == store.fingerprint(n).as_ref()
            && Some(&ed) == store.ed25519_id(n).as_ref();
        if !ok {
            bad += 1;
        }
        println!("{} {n} {rsa} {ed}", if ok { "ok" } else { "MISMATCH" });
    }
    if bad > 0 {
        eprintln!(
            "error: {bad} relay{} whose keys do not give the recorded fingerprint",
            plural(bad)
        );
        return Ok(Outcome::Failed);
    }
    Ok(Outcome::Clean)
}

/// `secrets import`: adopts the identities of the relays running on `host` (one round trip),
/// each checked against the fingerprint the running relay reports.
pub fn import(store: &Store, o: &ImportOptions<'_>) -> Result<Outcome> {
    let host = o.host;
    let Some(loaded) = crate::fleet::load(o.paths, false) else {
        return Ok(Outcome::Failed);
    };
    let fleet = loaded.fleet();
    let Some(spec) = fleet.hosts.iter().find(|h| h.name == host) else {
        return Err(AdminError::UnknownHost {
            host: host.to_string(),
            hosts: fleet.hosts.iter().map(|h| h.name.clone()).collect(),
        });
    };
    let nicks: Vec<String> = spec.relays.iter().map(|r| r.nickname.clone()).collect();
    let rt = tokio::runtime::Runtime::new().map_err(AdminError::Runtime)?;
    let unreachable = |source| AdminError::Unreachable {
        host: host.to_string(),
        source,
    };
    let reach = crate::gather::Reach::new(o.local.clone(), o.ssh_config, &[spec], 1)
        .map_err(unreachable)?;
    let out = rt.block_on(async {
        let t = reach
            .open(&crate::gather::Target::from(spec))
            .await
            .map_err(unreachable)?;
        let o = t
            .run("import", crate::remote::IMPORT, &nicks, vec![])
            .await
            .map_err(unreachable);
        t.close().await;
        o
    })?;
    if !out.success() {
        return Err(AdminError::Import {
            host: host.to_string(),
            words: out.stderr_text(),
        });
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut failed = 0;
    for n in &nicks {
        let crate::remote::import::Found {
            files,
            missing,
            running,
        } = crate::remote::import::relay(&text, n).map_err(|words| AdminError::Import {
            host: host.to_string(),
            words,
        })?;
        if !missing.is_empty() {
            eprintln!("error: {n} on {host} has no keys/{} (both identity files are needed, or the relay gets a new ed25519 identity)", missing.join(", keys/"));
            failed += 1;
            continue;
        }
        let (rsa, ed) = tor_keys::fingerprints_of(&files, n)?;
        match running.as_deref() {
            Some(fp) if fp != rsa => {
                eprintln!("error: the keys of {n} on {host} give fingerprint {rsa}, but the relay's fingerprint file says {fp}; nothing imported");
                failed += 1;
                continue;
            }
            Some(_) => {}
            None => eprintln!("note: {n} on {host} has no fingerprint file (tor has not run with these keys yet): its identity is the one its keys give, {rsa}"),
        }
        if store.has_identity(n) {
            if store.fingerprint(n).as_deref() == Some(rsa.as_str())
                && store.ed25519_id(n).is_none_or(|id| id == ed)
            {
                println!("{n} from {host}: already imported, same fingerprint {rsa}");
            } else {
                eprintln!(
                    "error: {} holds a different identity for {n} ({}) than the one on {host} ({rsa}); nothing imported. If the host's is the right one, remove {} first",
                    store.relay_dir(n).display(),
                    store.fingerprint(n).unwrap_or_else(|| "unknown fingerprint".into()),
                    store.relay_dir(n).display()
                );
                failed += 1;
            }
            continue;
        }
        save_relay(
            store,
            n,
            &tor_keys::RelayKeys {
                fingerprint: rsa.clone(),
                ed25519_id: ed.clone(),
                files,
            },
        )?;
        println!("imported {n} from {host}: {rsa} {ed}");
    }
    Ok(Outcome::failed_if(failed > 0))
}

/// `oignon fingerprints`: every relay's recorded fingerprints, or (`rsa_fingerprint_txt`) the
/// body of a CIISS `rsa-fingerprint.txt` proof. A relay without an identity fails the run.
pub fn fingerprints(paths: &Paths, rsa_fingerprint_txt: bool) -> Result<Outcome> {
    let Some(loaded) = crate::fleet::load(paths, false) else {
        return Ok(Outcome::Failed);
    };
    let store = Store::open(&paths.secrets);
    let relays: Vec<&str> = loaded
        .fleet()
        .hosts
        .iter()
        .flat_map(|h| h.relays.iter().map(|r| r.nickname.as_str()))
        .collect();
    if rsa_fingerprint_txt {
        // CIISS uri-rsa proof: one fingerprint per line. A relay left out would fail the proof:
        // say so and fail, but still print the others.
        let mut missing = 0;
        for n in &relays {
            match store.fingerprint(n) {
                Some(fp) => println!("{fp}"),
                None => {
                    missing += 1;
                    eprintln!(
                        "error: {n} has no identity in {}: left out (oignon secrets keygen {n})",
                        store.relay_dir(n).display()
                    );
                }
            }
        }
        return Ok(Outcome::failed_if(missing > 0));
    }
    println!("{:<20} {:<40} ED25519 ID", "NICKNAME", "RSA FINGERPRINT");
    let mut missing = 0;
    for n in &relays {
        match store.fingerprint(n) {
            Some(fp) => println!(
                "{n:<20} {fp:<40} {}",
                store.ed25519_id(n).unwrap_or_else(|| "-".into())
            ),
            None => {
                missing += 1;
                println!("{n:<20} {:<40} -", "(no identity: oignon secrets keygen)");
            }
        }
    }
    Ok(Outcome::failed_if(missing > 0))
}
