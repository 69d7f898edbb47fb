//! More of issue 5 with the real `tor`, `age` and `ssh-keygen` binaries, no lab needed: ssh admin
//! keys, armored files, the identity search order, overwrite refusals, temp dirs, and tor's own
//! view of the keys oignon stores. tests/secrets.rs has the lab round trips.

use crate::harness::{age_keygen, Fixture, Run};
use std::path::{Path, PathBuf};
use std::process::Command;

/// `Fixture::run` with extra environment (TMPDIR, OIGNON_IDENTITY; HOME is the fixture).
fn run_env(f: &Fixture, args: &[&str], env: &[(&str, &Path)]) -> Run {
    crate::harness::run_in_env(f.dir.path(), args, env)
}

fn age_decrypt(id: &Path, file: &Path) -> Vec<u8> {
    let o = Command::new("age")
        .arg("-d")
        .arg("-i")
        .arg(id)
        .arg(file)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "age -d {}: {}",
        file.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    o.stdout
}

fn read_trim(p: PathBuf) -> String {
    std::fs::read_to_string(p).unwrap().trim().to_string()
}

/// Every `.age` file under `dir` with its bytes, sorted.
fn age_files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "age") {
                let b = std::fs::read(&p).unwrap();
                out.push((p, b));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn an_ssh_ed25519_admin_key_works_as_recipient_and_identity_both_ways() {
    let f = Fixture::shipped();
    std::fs::remove_dir_all(f.path("secrets")).unwrap();
    let key = f.path("id_ed25519");
    let o = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "alice@example", "-f"])
        .arg(&key)
        .output()
        .expect("ssh-keygen");
    assert!(o.status.success());
    let public = std::fs::read_to_string(f.path("id_ed25519.pub")).unwrap();
    // The public key line as ssh-keygen writes it, comment included.
    f.write("secrets/recipients.txt", &format!("# alice\n{public}"));
    let k = key.to_str().unwrap();
    f.run(&["--identity", k, "secrets", "keygen", "ekumen"])
        .code(0);
    let plain = age_decrypt(&key, &f.path("secrets/relays/ekumen/secret_id_key.age"));
    assert!(String::from_utf8_lossy(&plain).contains("BEGIN RSA PRIVATE KEY"));
    f.run(&["--identity", k, "secrets", "verify"])
        .code(0)
        .out_has(&["ok ekumen "]);
    // A passphrase-protected key is refused with what to do, naming the file.
    let locked = f.path("locked");
    Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "pass phrase", "-f"])
        .arg(&locked)
        .output()
        .unwrap();
    f.run(&["--identity", locked.to_str().unwrap(), "secrets", "verify"])
        .code(1)
        .err_has(&["locked is passphrase-protected"]);
}

#[test]
fn an_armored_file_made_by_the_age_cli_is_read_and_rekeyed() {
    let f = Fixture::shipped();
    let id = f.own_store();
    let plain = f.path("plain");
    std::fs::write(&plain, b"armored by the age CLI").unwrap();
    let o = Command::new("age")
        .arg("-a")
        .arg("-R")
        .arg(f.path("secrets/recipients.txt"))
        .arg("-o")
        .arg(f.path("secrets/family.secret_family_key.age"))
        .arg(&plain)
        .output()
        .unwrap();
    assert!(o.status.success());
    f.run(&["secrets", "rekey"])
        .code(0)
        .out_has(&["re-encrypted 1 file to"]);
    assert_eq!(
        age_decrypt(&id, &f.path("secrets/family.secret_family_key.age")),
        b"armored by the age CLI"
    );
}

#[test]
fn the_recorded_fingerprint_is_what_tor_prints_from_the_decrypted_keys() {
    let f = Fixture::shipped();
    let id = f.own_store();
    let out = f.run(&["secrets", "keygen", "marylou2"]);
    out.code(0);
    let fp = read_trim(f.path("secrets/relays/marylou2/fingerprint"));
    let ed = read_trim(f.path("secrets/relays/marylou2/ed25519_id"));
    assert_eq!(out.stdout.trim(), format!("marylou2 {fp} {ed}"));
    assert!(
        fp.len() == 40
            && fp
                .chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_lowercase())
    );
    // A DataDirectory rebuilt by hand from `age -d`, read by tor itself: nothing of oignon's.
    let dd = f.path("rebuilt");
    std::fs::create_dir_all(dd.join("keys")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    for d in [&dd, &dd.join("keys")] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    for k in ["secret_id_key", "ed25519_master_id_secret_key"] {
        let p = dd.join("keys").join(k);
        std::fs::write(
            &p,
            age_decrypt(&id, &f.path(&format!("secrets/relays/marylou2/{k}.age"))),
        )
        .unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    std::fs::write(f.path("empty"), b"").unwrap();
    let o = Command::new("tor")
        .arg("--defaults-torrc")
        .arg(f.path("empty"))
        .arg("-f")
        .arg(f.path("empty"))
        .args([
            "--hush",
            "--list-fingerprint",
            "--DisableNetwork",
            "1",
            "--ORPort",
            "9999",
            "--Nickname",
            "marylou2",
            "--DataDirectory",
        ])
        .arg(&dd)
        .output()
        .expect("tor");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    let printed = String::from_utf8_lossy(&o.stdout);
    let last = printed.lines().last().unwrap_or("").replace(' ', "");
    assert_eq!(last, format!("marylou2{fp}"));
    assert_eq!(
        read_trim(dd.join("fingerprint-ed25519")),
        format!("marylou2 {ed}")
    );
    // The ed25519 id is the unpadded base64 of the 32-byte key after tor's 32-byte header.
    let public = std::fs::read(dd.join("keys/ed25519_master_id_public_key")).unwrap();
    assert_eq!(&public[..32], b"== ed25519v1-public: type0 ==\0\0\0");
    use base64::Engine as _;
    assert_eq!(
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(&public[32..]),
        ed
    );
}

#[test]
fn keygen_and_family_keygen_refuse_to_replace_an_identity_without_force() {
    let f = Fixture::shipped();
    let before = read_trim(f.path("secrets/relays/ekumen/fingerprint"));
    f.run(&["secrets", "keygen", "ekumen"]).code(1).err_has(&[
        "secrets/relays/ekumen already holds an identity for ekumen",
        "--force",
    ]);
    f.run(&["secrets", "family-keygen"])
        .code(1)
        .err_has(&["already holds the family key", "--force"]);
    assert_eq!(
        read_trim(f.path("secrets/relays/ekumen/fingerprint")),
        before
    );
    let fam = read_trim(f.path("secrets/family.public_family_id"));
    f.run(&["secrets", "keygen", "--force", "ekumen"]).code(0);
    f.run(&["secrets", "family-keygen", "--force"])
        .code(0)
        .out_has(&["FamilyId "]);
    assert_ne!(
        read_trim(f.path("secrets/relays/ekumen/fingerprint")),
        before
    );
    assert_ne!(read_trim(f.path("secrets/family.public_family_id")), fam);
    f.run(&["secrets", "verify"])
        .code(0)
        .out_has(&["ok ekumen "]);
    // tor refuses the nickname, so keygen does before making anything.
    f.run(&["secrets", "keygen", "marcuse-1"])
        .code(1)
        .err_has(&["marcuse-1"]);
    assert!(!f.path("secrets/relays/marcuse-1").exists());
}

#[test]
fn keygen_refuses_a_relay_with_any_trace_of_an_identity() {
    let f = Fixture::shipped();
    let before = read_trim(f.path("secrets/relays/marcuse1/fingerprint"));
    std::fs::remove_file(f.path("secrets/relays/marcuse1/ed25519_master_id_secret_key.age"))
        .unwrap();
    f.run(&["secrets", "keygen", "marcuse1"])
        .code(1)
        .err_has(&["--force"]);
    assert_eq!(
        read_trim(f.path("secrets/relays/marcuse1/fingerprint")),
        before
    );
}

#[test]
fn a_bad_recipients_file_is_named_by_line_and_nothing_is_written() {
    let f = Fixture::shipped();
    f.own_store();
    let rec = std::fs::read_to_string(f.path("secrets/recipients.txt")).unwrap();
    f.write(
        "secrets/recipients.txt",
        &format!("{rec}# bob\nssh-dss AAAAB3NzaC1kc3M bob\n"),
    );
    f.run(&["secrets", "keygen", "ekumen"])
        .code(1)
        .err_has(&["secrets/recipients.txt:4: not an age (age1…) or ssh-ed25519 recipient"]);
    assert!(!f.path("secrets/relays/ekumen").exists());
    f.write("secrets/recipients.txt", "# nobody yet\n");
    f.run(&["secrets", "family-keygen"])
        .code(1)
        .err_has(&["secrets/recipients.txt lists no recipient"]);
    assert!(!f.path("secrets/family.public_family_id").exists());
}

#[test]
fn a_truncated_file_stops_rekey_before_any_file_changes() {
    let f = Fixture::shipped();
    let victim = f.path("secrets/relays/marylou1/secret_id_key.age");
    let bytes = std::fs::read(&victim).unwrap();
    std::fs::write(&victim, &bytes[..bytes.len() / 2]).unwrap();
    let before = age_files(&f.path("secrets"));
    let admin = f.path("admin.key");
    let pubkey = age_keygen(&admin);
    let rec = std::fs::read_to_string(f.path("secrets/recipients.txt")).unwrap();
    f.write(
        "secrets/recipients.txt",
        &format!("{rec}# admin\n{pubkey}\n"),
    );
    f.run(&["secrets", "rekey"]).code(1).err_has(&[
        "secrets/relays/marylou1/secret_id_key.age",
        "damaged",
        "restore it from git",
    ]);
    assert!(
        before == age_files(&f.path("secrets")),
        "rekey changed files before failing"
    );
}

#[test]
fn identities_are_searched_in_the_documented_order() {
    let f = Fixture::shipped();
    std::fs::remove_file(f.path("secrets/DEMO")).unwrap();
    // Not the demo store any more: no fallback to its identity.
    for args in [&["secrets", "verify"][..], &["secrets", "rekey"][..]] {
        f.run(args).code(1).err_has(&[
            "--identity FILE",
            "OIGNON_IDENTITY",
            "~/.config/oignon/identity",
        ]);
    }
    let demo = f.path("secrets/demo-identity.txt");
    run_env(&f, &["secrets", "verify"], &[("OIGNON_IDENTITY", &demo)]).code(0);
    // --identity wins over OIGNON_IDENTITY.
    let other = f.path("other.key");
    age_keygen(&other);
    run_env(
        &f,
        &["--identity", other.to_str().unwrap(), "secrets", "verify"],
        &[("OIGNON_IDENTITY", &demo)],
    )
    .code(1)
    .err_has(&[
        "none of the keys in",
        "other.key",
        "recipients.txt",
        "oignon secrets rekey",
    ]);
    f.write(
        ".config/oignon/identity",
        &std::fs::read_to_string(&demo).unwrap(),
    );
    f.run(&["secrets", "verify"])
        .code(0)
        .out_has(&["ok marcuse1 "]);
    // OIGNON_IDENTITY wins over ~/.config/oignon/identity.
    run_env(&f, &["secrets", "verify"], &[("OIGNON_IDENTITY", &other)])
        .code(1)
        .err_has(&["other.key"]);
}

#[test]
fn temp_dirs_holding_plaintext_keys_are_gone_after_each_command() {
    let f = Fixture::shipped();
    let tmp = f.path("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let env = [("TMPDIR", tmp.as_path())];
    run_env(&f, &["secrets", "keygen", "--force", "ekumen"], &env).code(0);
    run_env(&f, &["secrets", "family-keygen", "--force"], &env).code(0);
    run_env(&f, &["secrets", "verify"], &env).code(0);
    run_env(&f, &["secrets", "rekey"], &env).code(0);
    // A failing tor run too: a DataDirectory whose keys tor cannot read.
    std::fs::write(f.path("plain"), b"not a key").unwrap();
    let o = Command::new("age")
        .arg("-R")
        .arg(f.path("secrets/recipients.txt"))
        .arg("-o")
        .arg(f.path("secrets/relays/marcuse2/secret_id_key.age"))
        .arg(f.path("plain"))
        .output()
        .unwrap();
    assert!(o.status.success());
    run_env(&f, &["secrets", "verify"], &env).code(1);
    let left: Vec<_> = std::fs::read_dir(&tmp)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn no_key_shows_in_any_output_of_the_secrets_commands_even_at_trace_level() {
    let f = Fixture::shipped();
    let id = f.own_store();
    let mut runs = vec![
        f.run(&["-vvv", "secrets", "keygen", "ekumen", "marcuse1"]),
        f.run(&["-vvv", "secrets", "family-keygen"]),
        f.run(&["-vvv", "secrets", "rekey"]),
        f.run(&["-vvv", "secrets", "verify"]),
        f.run(&["-vvv", "fingerprints"]),
        f.run(&["-vvv", "fingerprints", "--rsa-fingerprint-txt"]),
    ];
    let other = f.path("other.key");
    age_keygen(&other);
    runs.push(f.run(&[
        "-vvv",
        "--identity",
        other.to_str().unwrap(),
        "secrets",
        "verify",
    ]));
    // The canaries: pieces of the keys just made, as raw bytes would leak (base64, hex, PEM lines).
    let mut canaries = vec![];
    for file in [
        "relays/ekumen/secret_id_key.age",
        "relays/ekumen/ed25519_master_id_secret_key.age",
        "relays/marcuse1/ed25519_master_id_secret_key.age",
        "family.secret_family_key.age",
    ] {
        let plain = age_decrypt(&id, &f.path(&format!("secrets/{file}")));
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD.encode(&plain);
        canaries.push(b64[b64.len() - 30..b64.len() - 6].to_string());
        canaries.push(hex::encode(&plain[plain.len() - 16..]));
        if let Ok(text) = std::str::from_utf8(&plain) {
            canaries.extend(text.lines().skip(1).take(3).map(str::to_string));
        }
    }
    // A tampered file's error must not echo what it could read.
    let victim = f.path("secrets/relays/ekumen/secret_id_key.age");
    let mut bytes = std::fs::read(&victim).unwrap();
    let n = bytes.len();
    bytes[n - 3] ^= 0x01;
    std::fs::write(&victim, bytes).unwrap();
    runs.push(f.run(&["-vvv", "secrets", "verify"]));
    runs.push(f.run(&["-vvv", "secrets", "rekey"]));
    runs.last()
        .unwrap()
        .code(1)
        .err_has(&["relays/ekumen/secret_id_key.age"]);
    assert!(canaries.len() >= 11, "{}", canaries.len());
    for (i, r) in runs.iter().enumerate() {
        for c in &canaries {
            assert!(
                !r.stdout.contains(c.as_str()) && !r.stderr.contains(c.as_str()),
                "run {i} leaked key material"
            );
        }
    }
}

#[test]
fn fingerprints_prints_the_table_and_the_ciiss_proof_file() {
    let f = Fixture::shipped();
    let mut recorded: Vec<String> = [
        "AlGrothendieck",
        "ekumen",
        "marcuse1",
        "marcuse2",
        "marylou1",
        "marylou2",
    ]
    .iter()
    .map(|n| read_trim(f.path(&format!("secrets/relays/{n}/fingerprint"))))
    .collect();
    let table = f.run(&["fingerprints"]);
    table
        .code(0)
        .out_has(&["NICKNAME", "RSA FINGERPRINT", "ED25519 ID"]);
    for n in [
        "AlGrothendieck",
        "ekumen",
        "marcuse1",
        "marcuse2",
        "marylou1",
        "marylou2",
    ] {
        let ed = read_trim(f.path(&format!("secrets/relays/{n}/ed25519_id")));
        assert!(
            table
                .stdout
                .lines()
                .any(|l| l.starts_with(n) && l.ends_with(&ed)),
            "{}",
            table.stdout
        );
    }
    let proof = f.run(&["fingerprints", "--rsa-fingerprint-txt"]);
    proof.code(0);
    let mut lines: Vec<String> = proof.stdout.lines().map(str::to_string).collect();
    lines.sort();
    recorded.sort();
    assert_eq!(lines, recorded);
}

#[test]
fn demo_keys_are_refused_on_real_addresses_however_disguised() {
    // A relay's own IPv6 address counts as much as the host's.
    let f = Fixture::shipped();
    f.edit(
        "inventory/gandi.toml",
        "orport = 443",
        "orport = 443\nipv6 = \"2a01:4f8::1\"",
    );
    f.run(&["check", "--no-tor"]).code(1).err_has(&[
        "host `ekumen` has the real address 2a01:4f8::1",
        "DEMO keys",
        "inventory/gandi.toml:14:",
    ]);
    // Marker deleted and rekeyed to a real admin: the keys are still the public demo ones.
    let f = Fixture::shipped();
    let admin = f.path("admin.key");
    let pubkey = age_keygen(&admin);
    f.write("secrets/recipients.txt", &format!("# admin\n{pubkey}\n"));
    f.run(&["secrets", "rekey"]).code(0);
    std::fs::remove_file(f.path("secrets/DEMO")).unwrap();
    f.edit("inventory/gandi.toml", "\"192.0.2.20\"", "\"185.100.86.1\"");
    let a = admin.to_str().unwrap();
    let r = f.run(&["--identity", a, "check", "--no-tor"]);
    r.code(1).err_has(&[
        "host `ekumen` has the real address 185.100.86.1",
        "the family key is the demo one",
    ]);
    // A real family key: each demo relay identity is still named.
    f.run(&["--identity", a, "secrets", "family-keygen", "--force"])
        .code(0);
    f.run(&["--identity", a, "check", "--no-tor"]).code(1).err_has(&[
        "relay `ekumen` on host `ekumen` (real address 185.100.86.1) has the DEMO identity B6BB8CF45E7B8CC4B39D347128B5D16F49A43120",
        "oignon secrets keygen --force ekumen",
    ]);
    f.run(&["--identity", a, "secrets", "keygen", "--force", "ekumen"])
        .code(0);
    f.run(&["--identity", a, "check", "--no-tor"]).code(0);
}
