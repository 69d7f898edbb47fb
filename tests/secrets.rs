//! Relay identities with the real `age` and `tor` binaries, on real lab hosts; and the canary:
//! a relay's private key never shows in any output channel or any file oignon writes on the
//! controller.

use crate::harness::{age_keygen, lab_of, oignon, Fixture, LabFleet};
use std::process::Command;

#[test]
fn files_interoperate_with_the_age_cli_both_ways() {
    let f = Fixture::shipped();
    let id = f.own_store();
    let idp = id.to_str().unwrap();
    f.run(&["secrets", "keygen", "ekumen"])
        .code(0)
        .out_has(&["ekumen "]);
    // oignon → age
    let o = Command::new("age")
        .args(["-d", "-i", idp])
        .arg(f.path("secrets/relays/ekumen/secret_id_key.age"))
        .output()
        .unwrap();
    assert!(
        o.status.success() && String::from_utf8_lossy(&o.stdout).contains("BEGIN RSA PRIVATE KEY"),
        "age could not decrypt oignon's file"
    );
    // age → oignon: a family key file made by the age CLI is read by oignon (rekey decrypts it).
    let plain = f.path("plain");
    std::fs::write(&plain, b"made by the age CLI").unwrap();
    let o = Command::new("age")
        .args(["-R"])
        .arg(f.path("secrets/recipients.txt"))
        .arg("-o")
        .arg(f.path("secrets/extra.age"))
        .arg(&plain)
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    f.run(&["secrets", "rekey"])
        .code(0)
        .out_has(&["re-encrypted 3 files"]);
    let o = Command::new("age")
        .args(["-d", "-i", idp])
        .arg(f.path("secrets/extra.age"))
        .output()
        .unwrap();
    assert_eq!(o.stdout, b"made by the age CLI");
}

#[test]
fn rekey_to_a_new_admin_lets_them_decrypt_and_verify() {
    let f = Fixture::shipped();
    f.own_store();
    f.run(&["secrets", "keygen", "marcuse1"]).code(0);
    let newcomer = f.path("newcomer.key");
    let pubkey = age_keygen(&newcomer);
    f.run(&[
        "--identity",
        newcomer.to_str().unwrap(),
        "secrets",
        "verify",
    ])
    .code(1)
    .err_has(&["newcomer.key", "recipients.txt", "oignon secrets rekey"]);
    let rec = std::fs::read_to_string(f.path("secrets/recipients.txt")).unwrap();
    f.write(
        "secrets/recipients.txt",
        &format!("{rec}# newcomer\n{pubkey}\n"),
    );
    f.run(&["secrets", "rekey"]).code(0);
    f.run(&[
        "--identity",
        newcomer.to_str().unwrap(),
        "secrets",
        "verify",
    ])
    .code(0)
    .out_has(&["ok marcuse1 "]);
}

#[test]
fn wrong_missing_and_tampered_identities_are_named() {
    let f = Fixture::shipped();
    f.run(&["--identity", "nope.key", "secrets", "verify"])
        .code(1)
        .err_has(&["cannot read the identity nope.key"]);
    let other = f.path("other.key");
    age_keygen(&other);
    f.run(&["--identity", other.to_str().unwrap(), "secrets", "verify"])
        .code(1)
        .err_has(&["none of the keys in", "can decrypt", "secret_id_key.age"]);
    let victim = f.path("secrets/relays/ekumen/secret_id_key.age");
    let mut bytes = std::fs::read(&victim).unwrap();
    let n = bytes.len();
    bytes[n - 5] ^= 0x55;
    std::fs::write(&victim, bytes).unwrap();
    f.run(&["secrets", "verify"])
        .code(1)
        .err_has(&["relays/ekumen/secret_id_key.age", "damaged"]);
    // No identity anywhere, and not the demo store: plan says where to put one.
    std::fs::remove_file(f.path("secrets/DEMO")).unwrap();
    let out = Command::new(crate::harness::BIN)
        .args(["plan", "--local", "x"])
        .current_dir(f.dir.path())
        .env("HOME", f.dir.path())
        .env_remove("OIGNON_IDENTITY")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no identity to decrypt secrets") && err.contains("~/.config/oignon/identity"),
        "{err}"
    );
}

#[test]
fn check_refuses_missing_shared_and_demo_identities_and_a_family_without_its_key() {
    let f = Fixture::shipped();
    std::fs::rename(
        f.path("secrets/relays/ekumen"),
        f.path("secrets/relays-ekumen-gone"),
    )
    .unwrap();
    f.run(&["check", "--no-tor"]).code(1).err_has(&[
        "relay `ekumen` has no identity",
        "inventory/gandi.toml:12:12",
        "oignon secrets keygen ekumen",
    ]);
    std::fs::rename(
        f.path("secrets/relays-ekumen-gone"),
        f.path("secrets/relays/ekumen"),
    )
    .unwrap();
    std::fs::copy(
        f.path("secrets/relays/marcuse1/fingerprint"),
        f.path("secrets/relays/marcuse2/fingerprint"),
    )
    .unwrap();
    f.run(&["check", "--no-tor"])
        .code(1)
        .err_has(&["relays `marcuse1` and `marcuse2` share the identity"]);
    let f = Fixture::shipped();
    std::fs::remove_file(f.path("secrets/family.secret_family_key.age")).unwrap();
    f.run(&["check", "--no-tor"]).code(1).err_has(&[
        "names a family whose secret key is missing",
        "tor refuses at start",
    ]);
    let f = Fixture::shipped();
    f.edit("inventory/gandi.toml", "\"192.0.2.20\"", "\"185.100.86.1\"");
    f.run(&["check", "--no-tor"]).code(1).err_has(&[
        "host `ekumen` has the real address 185.100.86.1",
        "DEMO keys",
        "inventory/gandi.toml:7:8",
    ]);
}

#[test]
fn keygen_deploy_and_tor_on_the_host_shows_the_same_fingerprint_then_import_round_trips() {
    let Some(LabFleet { lab, f }) = LabFleet::start(4) else {
        return;
    };
    let id = f.own_store();
    let keygen = f.run(&[
        "secrets",
        "keygen",
        "ekumen",
        "marcuse1",
        "marcuse2",
        "marylou1",
        "marylou2",
        "AlGrothendieck",
    ]);
    keygen.code(0);
    f.run(&["secrets", "family-keygen"])
        .code(0)
        .out_has(&["FamilyId "]);
    let fp = std::fs::read_to_string(f.path("secrets/relays/ekumen/fingerprint"))
        .unwrap()
        .trim()
        .to_string();
    oignon(&f, &lab, &["apply", "--yes", "--brief", "--host", "ekumen"])
        .code(0)
        .out_has(&["wrote /var/lib/tor-instances/ekumen/keys/secret_id_key"]);
    let perms = lab.exec(lab_of("ekumen"), "stat -c '%a %U' /var/lib/tor-instances/ekumen/keys /var/lib/tor-instances/ekumen/keys/secret_id_key");
    // 2700: the keys directory inherits the setgid bit of Debian's 02700 DataDirectory, as when tor
    // makes it; tor only checks that group and others have no access.
    assert_eq!(
        String::from_utf8_lossy(&perms.stdout),
        "2700 _tor-ekumen\n600 _tor-ekumen\n"
    );
    // tor, as the instance user, reads the deployed DataDirectory.
    let out = lab.exec(
        lab_of("ekumen"),
        "runuser -u _tor-ekumen -- tor --defaults-torrc /dev/null --list-fingerprint --DataDirectory /var/lib/tor-instances/ekumen --DisableNetwork 1 --ORPort 9999 --Nickname ekumen --hush -f /etc/tor/instances/ekumen/torrc 2>&1 | tail -n 1",
    );
    let shown = String::from_utf8_lossy(&out.stdout).replace(' ', "");
    assert!(
        shown.contains(&fp),
        "tor on the host printed {shown:?}, secrets say {fp}"
    );
    // The running relay's `fingerprint` file (tor writes it at start) is what import checks against.
    lab.exec(
        lab_of("ekumen"),
        &format!("echo 'ekumen {fp}' > /var/lib/tor-instances/ekumen/fingerprint"),
    );
    let g = Fixture::shipped_on_lab();
    g.use_identity(&id);
    std::fs::remove_dir_all(g.path("secrets")).unwrap();
    g.write(
        "secrets/recipients.txt",
        &std::fs::read_to_string(f.path("secrets/recipients.txt")).unwrap(),
    );
    oignon(&g, &lab, &["secrets", "import", "ekumen"])
        .code(0)
        .out_has(&[&format!("imported ekumen from ekumen: {fp}")]);
    assert_eq!(
        std::fs::read_to_string(g.path("secrets/relays/ekumen/fingerprint"))
            .unwrap()
            .trim(),
        fp
    );
    // Importing the same relay again is no error: it is already there, with the same keys.
    oignon(&g, &lab, &["secrets", "import", "ekumen"])
        .code(0)
        .out_has(&[&format!(
            "ekumen from ekumen: already imported, same fingerprint {fp}"
        )]);
    // A different identity in secrets/ is refused, naming both.
    std::fs::write(
        g.path("secrets/relays/ekumen/fingerprint"),
        "1111111111111111111111111111111111111111\n",
    )
    .unwrap();
    oignon(&g, &lab, &["secrets", "import", "ekumen"])
        .code(1)
        .err_has(&[
            "holds a different identity for ekumen (1111111111111111111111111111111111111111) than the one on ekumen",
        ]);
    // A relay that never ran has no fingerprint file: its keys are its identity, said as a note.
    std::fs::remove_dir_all(g.path("secrets/relays")).unwrap();
    lab.exec(
        lab_of("ekumen"),
        "rm /var/lib/tor-instances/ekumen/fingerprint",
    );
    oignon(&g, &lab, &["secrets", "import", "ekumen"])
        .code(0)
        .err_has(&[
            "ekumen on ekumen has no fingerprint file (tor has not run with these keys yet)",
        ])
        .out_has(&[&format!("imported ekumen from ekumen: {fp}")]);
    // A host whose running relay reports another fingerprint is not imported.
    lab.exec(lab_of("ekumen"), "echo 'ekumen 0000000000000000000000000000000000000000' > /var/lib/tor-instances/ekumen/fingerprint");
    std::fs::remove_dir_all(g.path("secrets/relays")).unwrap();
    oignon(
        &g,
        &lab,
        &["secrets", "import", "ekumen"],
    )
    .code(1)
    .err_has(&[
        "but the relay's fingerprint file says 0000000000000000000000000000000000000000; nothing imported",
    ]);
}

#[test]
fn a_different_identity_on_the_host_is_a_conflict_apply_refuses_without_replace_identity() {
    let Some(LabFleet { lab, f }) = LabFleet::start(4) else {
        return;
    };
    oignon(&f, &lab, &["apply", "--yes", "--brief", "--host", "ekumen"]).code(0);
    lab.write(
        lab_of("ekumen"),
        "/var/lib/tor-instances/ekumen/keys/secret_id_key",
        b"another relay's key\n",
    );
    oignon(&f, &lab, &["plan", "--host", "ekumen", "--brief"])
        .code(0)
        .out_has(&[
            "CONFLICT: the relay identity on the host differs from the one in secrets/",
            "(secret) sha256 changed",
        ]);
    oignon(&f, &lab, &["apply", "--yes", "--brief", "--host", "ekumen"])
        .code(1)
        .out_has(&[
            "refused: the identity of ekumen on this host differs from secrets/",
            "--replace-identity ekumen",
        ]);
    assert_eq!(
        lab.read(
            lab_of("ekumen"),
            "/var/lib/tor-instances/ekumen/keys/secret_id_key"
        )
        .unwrap(),
        b"another relay's key\n"
    );
    oignon(
        &f,
        &lab,
        &[
            "apply",
            "--yes",
            "--brief",
            "--host",
            "ekumen",
            "--replace-identity",
            "ekumen",
        ],
    )
    .code(0)
    .out_has(&["ran `systemctl restart tor@ekumen`"]);
}

#[test]
fn canary_private_key_never_leaks_to_any_output_or_controller_file() {
    let Some(LabFleet { lab, f }) = LabFleet::start(4) else {
        return;
    };
    // The canaries: pieces of the real plaintext keys, decrypted here with the age CLI.
    let mut canaries = vec![];
    for (file, min) in [("secret_id_key", 40), ("ed25519_master_id_secret_key", 24)] {
        let o = Command::new("age")
            .args(["-d", "-i"])
            .arg(f.path("secrets/demo-identity.txt"))
            .arg(f.path(&format!("secrets/relays/ekumen/{file}.age")))
            .output()
            .unwrap();
        assert!(o.status.success());
        let plain = o.stdout;
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD.encode(&plain);
        canaries.push(b64[8..8 + min].to_string());
        canaries.push(hex::encode(&plain[plain.len() - 16..]));
        if let Ok(text) = std::str::from_utf8(&plain) {
            if let Some(line) = text.lines().nth(3) {
                canaries.push(line.to_string());
            }
        }
    }
    let saved = f.path("plan.json");
    let render_out = f.path("rendered");
    let runs = [
        f.run(&["-vvv", "check"]),
        f.run(&["-vvv", "render", "--out", render_out.to_str().unwrap()]),
        f.run(&["-vvv", "render"]),
        oignon(&f, &lab, &["-vvv", "plan"]),
        oignon(&f, &lab, &["-vvv", "plan", "--json"]),
        oignon(
            &f,
            &lab,
            &["-vvv", "plan", "--out", saved.to_str().unwrap()],
        ),
        oignon(
            &f,
            &lab,
            &["-vvv", "apply", saved.to_str().unwrap(), "--yes"],
        ),
        oignon(&f, &lab, &["-vvv", "apply", "--yes"]),
        f.run(&["-vvv", "fingerprints"]),
        f.run(&["-vvv", "secrets", "verify"]),
        f.run(&["-vvv", "--identity", "nope", "secrets", "verify"]),
    ];
    for (i, r) in runs.iter().enumerate() {
        for c in &canaries {
            assert!(
                !r.stdout.contains(c.as_str()) && !r.stderr.contains(c.as_str()),
                "run {i} leaked a key"
            );
        }
    }
    // Every file oignon wrote on the controller (the fixture dir, minus the store itself).
    let mut stack = vec![f.dir.path().to_path_buf()];
    let mut checked = 0;
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.starts_with(f.path("secrets")) {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else if p.is_file() {
                // (Not the sockets of ssh masters kept under ~/.cache/oignon/ssh: nothing to read.)
                let bytes = std::fs::read(&p).unwrap();
                let text = String::from_utf8_lossy(&bytes);
                for c in &canaries {
                    assert!(!text.contains(c.as_str()), "{} holds a key", p.display());
                }
                checked += 1;
            }
        }
    }
    assert!(
        checked > 10,
        "the controller files were looked at ({checked})"
    );
    // And on the host: the key is in the instance's key file, never in backups.
    let backups = lab.exec(
        lab_of("ekumen"),
        "cat /var/backups/oignon/* 2>/dev/null || true",
    );
    let text = String::from_utf8_lossy(&backups.stdout);
    for c in &canaries {
        assert!(!text.contains(c.as_str()), "a backup holds a key");
    }
    let deployed = lab
        .read(
            lab_of("ekumen"),
            "/var/lib/tor-instances/ekumen/keys/secret_id_key",
        )
        .unwrap();
    let deployed = String::from_utf8_lossy(&deployed);
    assert!(
        deployed.contains("BEGIN RSA PRIVATE KEY"),
        "the key did reach its file"
    );
    // The canaries are real pieces of the key: the one from its PEM body is in the deployed file.
    assert!(
        canaries.iter().any(|c| deployed.contains(c.as_str())),
        "canaries are not taken from the key"
    );
}

#[test]
fn offline_master_key_deploys_a_signing_key_and_shows_its_expiry() {
    let f = Fixture::shipped();
    f.edit(
        "inventory/gandi.toml",
        "orport = 443",
        "orport = 443\noffline_master_key = true",
    );
    f.run(&["check", "--no-tor"]).code(1).err_has(&[
        "relay `ekumen` keeps its master key offline but has no signing key",
        "oignon secrets renew-signing ekumen",
    ]);
    let run = f.run(&[
        "secrets",
        "renew-signing",
        "ekumen",
        "--lifetime",
        "30 days",
    ]);
    run.code(0)
        .out_has(&["ekumen: new signing key, certificate valid until 20"]);
    f.run(&["check"])
        .code(0)
        .out_has(&["6 torrc verified by tor"]);
    f.run(&["render", "--host", "ekumen"])
        .code(0)
        .out_has(&["OfflineMasterKey 1\n"]);
    let root = f.path("images");
    std::fs::create_dir_all(&root).unwrap();
    let plan = f.run(&[
        "plan",
        "--local",
        root.to_str().unwrap(),
        "--host",
        "ekumen",
        "--brief",
    ]);
    plan.code(0).out_has(&[
        "+ /var/lib/tor-instances/ekumen/keys/ed25519_signing_secret_key",
        "+ /var/lib/tor-instances/ekumen/keys/ed25519_signing_cert",
        "! ekumen (OfflineMasterKey): signing certificate valid until 20",
    ]);
    assert!(
        !plan.stdout.contains("ed25519_master_id_secret_key"),
        "the master key stays offline:\n{}",
        plan.stdout
    );
}
