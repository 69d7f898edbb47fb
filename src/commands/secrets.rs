//! `oignon secrets …` and `oignon fingerprints`: relay identities and the family key, made by tor,
//! kept age-encrypted in the secrets directory.

use crate::cli::Global;
use oignon::secrets::{encrypt, tor_keys, write_atomic, Identity, Store, IDENTITY_FILES};
use oignon::text::plural;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Sub,
}

#[derive(Debug, clap::Subcommand)]
pub enum Sub {
    /// Create relay identities with tor (networking disabled) and encrypt them to recipients.txt.
    Keygen {
        #[arg(required = true, value_name = "NICKNAME")]
        nicknames: Vec<String>,
        /// Replace an existing identity (the old relay's reputation is lost).
        #[arg(long)]
        force: bool,
    },
    /// Create the family key with `tor --keygen-family` and record its FamilyId.
    FamilyKeygen {
        #[arg(long)]
        force: bool,
    },
    /// Adopt the identities of relays already running on HOST (one SSH round trip), checking each
    /// against the fingerprint the running relay reports.
    Import {
        #[arg(value_name = "HOST")]
        host: String,
        #[command(flatten)]
        targets: super::plan::Targets,
    },
    /// Re-encrypt every secret to the current recipients.txt (after an admin joins or leaves).
    Rekey,
    /// OfflineMasterKey relays: a new signing key and certificate from the master key in secrets/.
    RenewSigning {
        #[arg(required = true, value_name = "NICKNAME")]
        nicknames: Vec<String>,
        /// How long the certificate is valid, in tor's words (`30 days`, `2 months`).
        #[arg(long, default_value = "30 days")]
        lifetime: String,
    },
    /// Decrypt each relay's keys and check with tor that they give the recorded fingerprint.
    Verify,
}

#[derive(Debug, clap::Args)]
pub struct FingerprintsArgs {
    /// Print the body of https://URL/.well-known/tor-relay/rsa-fingerprint.txt (CIISS uri-rsa proof).
    #[arg(long)]
    pub rsa_fingerprint_txt: bool,
}

pub fn run(g: &Global, a: Args) -> anyhow::Result<ExitCode> {
    let store = Store::open(&g.secrets);
    match a.command {
        Sub::Keygen { nicknames, force } => keygen(&store, &nicknames, force),
        Sub::FamilyKeygen { force } => family_keygen(&store, force),
        Sub::Import { host, targets } => import(g, &store, &host, targets),
        Sub::Rekey => rekey(g, &store),
        Sub::RenewSigning {
            nicknames,
            lifetime,
        } => renew_signing(g, &store, &nicknames, &lifetime),
        Sub::Verify => verify(g, &store),
    }
}

fn keygen(store: &Store, nicks: &[String], force: bool) -> anyhow::Result<ExitCode> {
    // Fail on recipients.txt before tor makes any key.
    store.recipients()?;
    for n in nicks {
        if let Err(e) = oignon::inventory::check_nickname(n) {
            anyhow::bail!("nickname `{n}` {e}: tor accepts 1 to 19 letters and digits");
        }
        // Any trace counts: a store missing one key file still records this relay's identity.
        let dir = store.relay_dir(n);
        let traces = IDENTITY_FILES
            .iter()
            .map(|f| format!("{f}.age"))
            .chain(["fingerprint".to_string()])
            .any(|f| dir.join(f).exists());
        if traces && !force {
            anyhow::bail!("{} already holds an identity for {n}; replacing it loses the relay's reputation: pass --force if that is what you want", store.relay_dir(n).display());
        }
    }
    for n in nicks {
        let keys = tor_keys::keygen(n)?;
        save_relay(store, n, &keys)?;
        println!("{n} {} {}", keys.fingerprint, keys.ed25519_id);
    }
    Ok(ExitCode::SUCCESS)
}

fn save_relay(store: &Store, n: &str, keys: &tor_keys::RelayKeys) -> anyhow::Result<()> {
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

fn family_keygen(store: &Store, force: bool) -> anyhow::Result<ExitCode> {
    if store.has_family_key() && !force {
        anyhow::bail!("{} already holds the family key; a new one means every relay's FamilyId changes: pass --force if that is what you want", store.dir.display());
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
    Ok(ExitCode::SUCCESS)
}

fn rekey(g: &Global, store: &Store) -> anyhow::Result<ExitCode> {
    let id = Identity::find(g.identity.as_deref(), store)?;
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
    Ok(ExitCode::SUCCESS)
}

fn renew_signing(
    g: &Global,
    store: &Store,
    nicks: &[String],
    lifetime: &str,
) -> anyhow::Result<ExitCode> {
    // Only a relay whose master key stays offline has a signing key to renew by hand: any other
    // relay's tor renews its own, from the master key on its host.
    let Some(loaded) = oignon::fleet::load(&g.paths(), false) else {
        return Ok(ExitCode::from(1));
    };
    for n in nicks {
        let relay = loaded
            .fleet()
            .hosts
            .iter()
            .flat_map(|h| h.relays.iter())
            .find(|r| r.nickname == *n);
        match relay {
            None => anyhow::bail!("no relay `{n}` in the inventory: nothing to renew"),
            Some(r) if !r.offline_master_key => anyhow::bail!(
                "{n} does not use OfflineMasterKey: its ed25519 master key is on its host and tor renews the signing key itself; set offline_master_key = true for {n} in the inventory first if that is what you want"
            ),
            Some(_) => {}
        }
    }
    let id = Identity::find(g.identity.as_deref(), store)?;
    for n in nicks {
        if !store.has_identity(n) {
            anyhow::bail!(
                "{n} has no identity in {}: oignon secrets keygen {n} first",
                store.relay_dir(n).display()
            );
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
    Ok(ExitCode::SUCCESS)
}

fn verify(g: &Global, store: &Store) -> anyhow::Result<ExitCode> {
    let id = Identity::find(g.identity.as_deref(), store)?;
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
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

fn import(
    g: &Global,
    store: &Store,
    host: &str,
    targets: super::plan::Targets,
) -> anyhow::Result<ExitCode> {
    let Some(loaded) = oignon::fleet::load(&g.paths(), false) else {
        return Ok(ExitCode::from(1));
    };
    let fleet = loaded.fleet();
    let Some(spec) = fleet.hosts.iter().find(|h| h.name == host) else {
        let names: Vec<&str> = fleet.hosts.iter().map(|h| h.name.as_str()).collect();
        anyhow::bail!(
            "no host `{host}` in the inventory; hosts: {}",
            names.join(", ")
        );
    };
    let nicks: Vec<String> = spec.relays.iter().map(|r| r.nickname.clone()).collect();
    let rt = tokio::runtime::Runtime::new()?;
    let reach =
        oignon::gather::Reach::new(targets.local.clone(), g.ssh_config.as_deref(), &[spec], 1)
            .map_err(|e| anyhow::anyhow!(e))?;
    let out = rt.block_on(async {
        let t = reach
            .open(&oignon::gather::Target::from(spec))
            .await
            .map_err(|e| anyhow::anyhow!("{host}: {e}"))?;
        let o = t
            .run("import", oignon::remote::IMPORT, &nicks, vec![])
            .await
            .map_err(|e| anyhow::anyhow!("{host}: {e}"));
        t.close().await;
        o
    })?;
    if !out.success() {
        anyhow::bail!(
            "{host}: reading the relays' keys failed: {}",
            out.stderr_text()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut failed = 0;
    for n in &nicks {
        let oignon::remote::import::Found {
            files,
            missing,
            running,
        } = oignon::remote::import::relay(&text, n).map_err(|e| anyhow::anyhow!("{host}: {e}"))?;
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
    Ok(ExitCode::from(if failed > 0 { 1 } else { 0 }))
}

pub fn fingerprints(g: &Global, a: FingerprintsArgs) -> anyhow::Result<ExitCode> {
    let Some(loaded) = oignon::fleet::load(&g.paths(), false) else {
        return Ok(ExitCode::from(1));
    };
    let store = Store::open(&g.secrets);
    let relays: Vec<&str> = loaded
        .fleet()
        .hosts
        .iter()
        .flat_map(|h| h.relays.iter().map(|r| r.nickname.as_str()))
        .collect();
    if a.rsa_fingerprint_txt {
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
        return Ok(ExitCode::from(if missing > 0 { 1 } else { 0 }));
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
    Ok(ExitCode::from(if missing > 0 { 1 } else { 0 }))
}
