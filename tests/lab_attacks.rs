//! The attack review's root holes, replayed on lab hosts (real sshd, real tor, real setpriv):
//! a relay user's links in its DataDirectory, links at temp names, a symlinked config directory,
//! records oignon never sends, role values that would add a record, and a stale-lock race.
//! Each attack must be refused with a clear message, or be harmless, and leave its target alone.

use crate::harness::lab::Lab;
use crate::harness::{lab_of, oignon, Fixture, LabFleet};

/// Runs `cmd` in the host as the relay's own user (what a compromised tor could do).
fn as_relay_user(lab: &Lab, host: &str, user: &str, cmd: &str) {
    let out = lab.exec_argv(
        host,
        &[
            "setpriv",
            &format!("--reuid={user}"),
            &format!("--regid={user}"),
            "--clear-groups",
            "sh",
            "-c",
            cmd,
        ],
    );
    assert!(out.status.success(), "as {user}: {cmd}: {out:?}");
}

fn root_exec(lab: &Lab, host: &str, cmd: &str) -> String {
    let out = lab.exec(host, cmd);
    assert!(out.status.success(), "{cmd}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A root-owned victim directory with a shadow-like file, and how it looks now.
fn plant_victim(lab: &Lab, host: &str) {
    root_exec(
        lab,
        host,
        "mkdir -p /etc/oignon-victim && chmod 0755 /etc/oignon-victim && printf 'root:x:1:\\n' > /etc/oignon-victim/shadow && chmod 0640 /etc/oignon-victim/shadow",
    );
}
fn victim_state(lab: &Lab, host: &str) -> String {
    root_exec(
        lab,
        host,
        "stat -c '%n %U:%G %a' /etc/oignon-victim /etc/oignon-victim/*; sha256sum /etc/oignon-victim/shadow",
    )
}

#[test]
fn relay_user_linking_keys_to_a_root_directory_gets_no_root_write() {
    let Some(LabFleet { lab, f }) = LabFleet::start(4) else {
        return;
    };
    let host = lab_of("ekumen");
    oignon(&f, &lab, &["apply", "--yes", "--brief", "--host", "ekumen"]).code(0);
    plant_victim(&lab, host);
    let before = victim_state(&lab, host);
    // The reported attack: the relay user swaps its keys directory for a link to a root directory.
    as_relay_user(
        &lab,
        host,
        "_tor-ekumen",
        "cd /var/lib/tor-instances/ekumen && mv keys keys.old && ln -s /etc/oignon-victim keys",
    );
    oignon(&f, &lab, &["plan", "--host", "ekumen", "--brief"])
        .code(1)
        .out_has(&["path through the symbolic link /var/lib/tor-instances/ekumen/keys"]);
    oignon(&f, &lab, &["apply", "--yes", "--brief", "--host", "ekumen"])
        .code(1)
        .out_has(&["path through the symbolic link /var/lib/tor-instances/ekumen/keys"]);
    assert_eq!(victim_state(&lab, host), before, "the victim is untouched");
    // Put back as it was, the relay converges again.
    as_relay_user(
        &lab,
        host,
        "_tor-ekumen",
        "cd /var/lib/tor-instances/ekumen && rm keys && mv keys.old keys",
    );
    oignon(
        &f,
        &lab,
        &["plan", "--detailed-exitcode", "--host", "ekumen"],
    )
    .code(0);
}

#[test]
fn relay_user_planting_links_at_temp_names_gets_no_root_write() {
    let Some(LabFleet { lab, f }) = LabFleet::start(4) else {
        return;
    };
    let host = lab_of("ekumen");
    oignon(&f, &lab, &["apply", "--yes", "--brief", "--host", "ekumen"]).code(0);
    let key = lab
        .read(host, "/var/lib/tor-instances/ekumen/keys/secret_id_key")
        .expect("deployed key");
    plant_victim(&lab, host);
    let before = victim_state(&lab, host);
    // The reported attack: delete a key (the next apply writes it again) and plant links at the
    // temp names apply used to take (`.oignon-new.FILE.PID`), and at a few random-looking ones.
    let mut plant = String::from("cd /var/lib/tor-instances/ekumen/keys && rm secret_id_key");
    for pid in 1..=300 {
        plant.push_str(&format!(
            " && ln -s /etc/oignon-victim/shadow .oignon-new.secret_id_key.{pid}"
        ));
    }
    plant.push_str(" && ln -s /etc/oignon-victim/shadow .oignon-new.XXXXXXXX");
    as_relay_user(&lab, host, "_tor-ekumen", &plant);
    oignon(&f, &lab, &["apply", "--yes", "--brief", "--host", "ekumen"])
        .code(0)
        .out_has(&["wrote /var/lib/tor-instances/ekumen/keys/secret_id_key"]);
    assert_eq!(victim_state(&lab, host), before, "the victim is untouched");
    assert_eq!(
        lab.read(host, "/var/lib/tor-instances/ekumen/keys/secret_id_key")
            .as_deref(),
        Some(&key[..]),
        "the key is back"
    );
    let listing = root_exec(
        &lab,
        host,
        "cd /var/lib/tor-instances/ekumen/keys && stat -c '%n %U %a' secret_id_key && ls -A",
    );
    assert!(
        listing.starts_with("secret_id_key _tor-ekumen 600\n"),
        "{listing}"
    );
    assert!(
        !listing.contains(".oignon-new"),
        "planted temp links are swept: {listing}"
    );
    oignon(
        &f,
        &lab,
        &["plan", "--detailed-exitcode", "--host", "ekumen"],
    )
    .code(0);
}

#[test]
fn a_keys_entry_that_is_not_the_relay_users_directory_is_refused() {
    let Some(LabFleet { lab, f }) = LabFleet::start(4) else {
        return;
    };
    let host = lab_of("ekumen");
    oignon(&f, &lab, &["apply", "--yes", "--brief", "--host", "ekumen"]).code(0);
    // A root-owned directory in its place (a relay user cannot make one, but a confused admin can).
    root_exec(
        &lab,
        host,
        "cd /var/lib/tor-instances/ekumen && mv keys keys.old && mkdir keys",
    );
    oignon(&f, &lab, &["apply", "--yes", "--brief", "--host", "ekumen"])
        .code(1)
        .out_has(&[
            "/var/lib/tor-instances/ekumen/keys, owned by root instead of _tor-ekumen",
            "move it away by hand",
        ]);
    // A plain file named keys.
    root_exec(
        &lab,
        host,
        "cd /var/lib/tor-instances/ekumen && rmdir keys && touch keys && chown _tor-ekumen keys",
    );
    oignon(&f, &lab, &["apply", "--yes", "--brief", "--host", "ekumen"])
        .code(1)
        .out_has(&["/var/lib/tor-instances/ekumen/keys, which is not a directory"]);
}

#[test]
fn a_symlinked_instance_config_directory_is_refused() {
    let Some(LabFleet { lab, f }) = LabFleet::start(4) else {
        return;
    };
    let host = lab_of("ekumen");
    root_exec(
        &lab,
        host,
        "mkdir -p /etc/tor/instances /etc/oignon-elsewhere && ln -s /etc/oignon-elsewhere /etc/tor/instances/ekumen",
    );
    oignon(&f, &lab, &["plan", "--host", "ekumen", "--brief"])
        .code(1)
        .out_has(&["path through the symbolic link /etc/tor/instances/ekumen"]);
    oignon(&f, &lab, &["apply", "--yes", "--brief", "--host", "ekumen"]).code(1);
    assert_eq!(
        root_exec(&lab, host, "ls -A /etc/oignon-elsewhere"),
        "",
        "nothing written through the link"
    );
    // The script refuses it too, whatever a controller sends (a plan made before the link).
    let torrc = "Nickname ekumen\n";
    let b64 = base64_of(torrc.as_bytes());
    let out = run_apply_script(
        &lab,
        host,
        &format!(
            "L\ttest\nW\t/etc/tor/instances/ekumen/torrc\troot\troot\t644\t-\tekumen\t{b64}\n"
        ),
    );
    assert_eq!(out.0, Some(8), "{out:?}");
    assert!(
        out.1.contains("REFUSED\t/etc/tor/instances/ekumen/torrc: /etc/tor/instances/ekumen is a symbolic link"),
        "{out:?}"
    );
    assert_eq!(root_exec(&lab, host, "ls -A /etc/oignon-elsewhere"), "");
}

fn base64_of(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// Runs the embedded apply.sh on a host with these records (as a tampered controller would).
fn run_apply_script(lab: &Lab, host: &str, records: &str) -> (Option<i32>, String, String) {
    run_apply_script_from(lab, host, records, "/root/records")
}

/// `run_apply_script` with the records in a file of its own (runs at once must not share one).
fn run_apply_script_from(
    lab: &Lab,
    host: &str,
    records: &str,
    file: &str,
) -> (Option<i32>, String, String) {
    // As oignon embeds it: the shared path functions, then apply.sh.
    let script = ["src/remote/paths.sh", "src/remote/apply.sh"]
        .map(|p| std::fs::read_to_string(crate::harness::repo().join(p)).unwrap())
        .concat();
    lab.write(host, file, records.as_bytes());
    let out = lab.exec_argv(
        host,
        &[
            "sh",
            "-c",
            "exec sh -c \"$1\" oignon-apply '' < \"$2\"",
            "sh",
            &script,
            file,
        ],
    );
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_apply_script_refuses_records_oignon_never_sends() {
    let Some(lab) = Lab::start_or_skip(1) else {
        return;
    };
    let host = "lab1";
    let b64 = base64_of(b"x\n");
    let cases: &[(&str, &str)] = &[
        (
            "L\tme\nH\ttouch\t/root/PWNED\n",
            "handler \"touch /root/PWNED\" is not one oignon runs",
        ),
        (
            "L\tme\nH\tsystemctl\treload\ttor@x;touch\n",
            "is not a relay nickname",
        ),
        (
            "L\tme\nH\tsystemctl\treload\ttor@x\t/root/PWNED\n",
            "is not a relay nickname",
        ),
        (
            "L\tme\nH\tsh\t-c\ttouch /root/PWNED\n",
            "is not one oignon runs",
        ),
        (
            &format!("L\tme\nW\t/root/PWNED\troot;touch\troot\t644\t-\t-\t{b64}\n"),
            "\"root;touch\" is not a user or group name",
        ),
        (
            &format!("L\tme\nW\t/etc/../root/PWNED\troot\troot\t644\t-\t-\t{b64}\n"),
            "holds characters or components oignon never sends",
        ),
        (
            &format!("L\tme\nW\t/root/PWNED\troot\troot\t4755\t-\t-\t{b64}\n"),
            "mode \"4755\" is not an octal mode without special bits",
        ),
        (
            &format!("L\tme\nW\t/root/PWNED\troot\troot\t0666\t-\t-\t{b64}\n"),
            "mode \"0666\" makes the file writable by every user",
        ),
        (
            &format!("L\tme\nW\t/root/PWNED 2\troot\troot\t644\t-\t-\t{b64}\n"),
            "holds characters or components",
        ),
        (
            &format!("L\tme\nW\t/root/PWNED\troot\troot\t644\tsh\t-\t{b64}\n"),
            "validator \"sh\" is unknown",
        ),
        (
            "L\tme\nW\t/root/PWNED\troot\troot\t644\t-\t-\t$(touch /root/PWNED)\n",
            "the content is not base64",
        ),
        (
            &format!("L\tme\nW\t/var/lib/tor-instances/x/keys/k\troot\troot\t600\t-\tx\t{b64}\n"),
            "must belong to _tor-x",
        ),
        (
            "L\tme\nR\t/var/lib/tor-instances/x/keys/secret_id_key\n",
            "never removes anything from a DataDirectory",
        ),
        ("L\tme\nI\tx/../../root\n", "is not a relay nickname"),
        ("L\tme\nX\t../../root\n", "is not a relay nickname"),
        ("L\tme\nQ\tanything\n", "unknown record kind \"Q\""),
        ("W\t/root/PWNED\n", "the first record must be L"),
    ];
    for (records, want) in cases {
        let (code, stdout, stderr) = run_apply_script(&lab, host, records);
        assert_eq!(code, Some(8), "{records:?}: {stdout} {stderr}");
        assert!(
            stdout.starts_with("REFUSED\t") && stdout.contains(want),
            "{records:?}: {stdout}"
        );
        assert!(lab.read(host, "/root/PWNED").is_none(), "{records:?}");
    }
}

#[test]
fn a_role_owner_holding_a_tab_and_a_newline_is_refused_with_its_line() {
    let Some(LabFleet { lab, f }) = LabFleet::start(4) else {
        return;
    };
    // The reported attack: a tab and a newline in `owner` added a handler record.
    f.edit(
        "roles/tor/role.toml",
        "owner = \"root\"",
        "owner = \"root\\t-\\t-\\t-\\t-\\t-\\nH\\ttouch\\t/root/PWNED\"",
    );
    f.run(&["check", "--no-tor"]).code(1).err_has(&[
        "roles/tor/role.toml:7:",
        "field `file.0.owner`",
        "holds '\\t', which is not allowed in a user or group name",
    ]);
    oignon(&f, &lab, &["apply", "--yes", "--brief", "--host", "ekumen"]).code(1);
    assert!(lab.read(lab_of("ekumen"), "/root/PWNED").is_none());
    assert!(lab
        .read(lab_of("ekumen"), "/etc/tor/instances/ekumen/torrc")
        .is_none());
}

#[test]
fn role_group_mode_and_path_are_checked_where_they_are_loaded() {
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "group = \"root\"",
            "group = \"root\\n\"",
            &["field `file.0.group`", "holds '\\n'"],
        ),
        (
            "mode = \"0644\"",
            "mode = \"0644\\n\"",
            &["field `file.0.mode`", "is not an octal file mode"],
        ),
        (
            "mode = \"0644\"",
            "mode = \"4755\"",
            &["field `file.0.mode`", "set-uid, set-gid or sticky"],
        ),
        (
            "mode = \"0644\"",
            "mode = \"0666\"",
            &["field `file.0.mode`", "writable by every user"],
        ),
        (
            "mode = \"0644\"",
            "mode = \"-1\"",
            &["is not an octal file mode"],
        ),
        (
            "path = \"/etc/tor/instances/{{ relay.nickname }}/torrc\"",
            "path = \"/etc/tor/instances/{{ relay.nickname }}/torrc\\nH\"",
            &["field `file.0.path`", "control character U+000A"],
        ),
        (
            "path = \"/etc/tor/instances/{{ relay.nickname }}/torrc\"",
            "path = \"/etc/tor/../../root/{{ relay.nickname }}\"",
            &["field `file.0.path`", "has a `..` component"],
        ),
        (
            "path = \"/etc/tor/instances/{{ relay.nickname }}/torrc\"",
            "path = \"/etc/tor/in stances/{{ relay.nickname }}\"",
            &["field `file.0.path`", "holds ' '"],
        ),
    ];
    for (from, to, want) in cases {
        let f = Fixture::shipped();
        f.edit("roles/tor/role.toml", from, to);
        let mut all = vec!["roles/tor/role.toml:"];
        all.extend_from_slice(want);
        f.run(&["check", "--no-tor"]).code(1).err_has(&all);
    }
}

#[test]
fn two_applies_meeting_a_dead_holders_lock_never_both_take_it() {
    let Some(lab) = Lab::start_or_skip(1) else {
        return;
    };
    let host = "lab1";
    // Slow handlers keep the first apply holding the lock while the second arrives.
    lab.write(host, "/var/lib/oignon-lab/systemctl.sleep", b"1\n");
    let records = "L\tme\nH\tsystemctl\treload\ttor@x\n";
    for round in 0..4 {
        lab.write(
            host,
            "/var/lib/oignon/lock",
            b"bob@old (oignon apply)\tpid 4194300\tsince 2026-11-24T10:00:00Z\n",
        );
        let (a, b) = std::thread::scope(|s| {
            let a = s.spawn(|| run_apply_script_from(&lab, host, records, "/root/records.a"));
            let b = s.spawn(|| run_apply_script_from(&lab, host, records, "/root/records.b"));
            (a.join().unwrap(), b.join().unwrap())
        });
        let took = [&a, &b]
            .iter()
            .filter(|o| o.1.contains("STALE-LOCK\tbob@old"))
            .count();
        let done = [&a, &b].iter().filter(|o| o.1.contains("DONE")).count();
        assert!(took <= 1, "round {round}: both took over: {a:?} {b:?}");
        assert!(done >= 1, "round {round}: {a:?} {b:?}");
        if done == 1 {
            assert!(
                [&a, &b]
                    .iter()
                    .any(|o| o.0 == Some(3) && o.1.starts_with("LOCKED\tme")),
                "round {round}: the other was refused, naming the holder: {a:?} {b:?}"
            );
        }
    }
}
