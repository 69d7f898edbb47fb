//! `oignon apply` against real lab hosts: atomicity, validation, handlers, locks, rolling
//! updates (saved plans: tests/saved_plan.rs). The only stand-in is the recording `systemctl`
//! inside each lab host.

use crate::harness::lab::Lab;
use crate::harness::{lab_of, oignon, sha, Fixture, LabFleet};

fn handler_calls(lab: &Lab, host: &str) -> Vec<String> {
    lab.systemctl_log(lab_of(host))
        .into_iter()
        // Queries (is-active, is-enabled, gather's `show`) are not handler runs.
        .filter(|l| !l.starts_with("is-") && !l.starts_with("show "))
        .collect()
}

#[test]
fn apply_then_plan_is_empty_and_each_handler_ran_once() {
    let Some(LabFleet { lab, f }) = LabFleet::start(4) else {
        return;
    };
    oignon(&f, &lab, &["apply", "--yes", "--brief"])
        .code(0)
        .out_has(&[
            "✓ marcuse: applied",
            "ran `systemctl enable --now tor@marcuse1`",
            "Applied: 4 hosts ok, 0 failed",
        ]);
    oignon(&f, &lab, &["plan", "--detailed-exitcode"])
        .code(0)
        .out_has(&["Fleet: 4 hosts, 0 with changes, 4 unchanged, 0 failed."]);
    let calls = handler_calls(&lab, "marcuse");
    for want in [
        "daemon-reload",
        "enable --now tor@marcuse1",
        "enable --now tor@marcuse2",
    ] {
        assert_eq!(
            calls.iter().filter(|c| c.as_str() == want).count(),
            1,
            "{want} once in {calls:?}"
        );
    }
    // What tor-instance-create would have made, inside the host.
    let out = lab.exec(
        lab_of("marcuse"),
        "id -u _tor-marcuse1 && stat -c '%a %U' /var/lib/tor-instances/marcuse1",
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("2700 _tor-marcuse1"),
        "{out:?}"
    );
    let torrc = lab
        .read(lab_of("marcuse"), "/etc/tor/instances/marcuse1/torrc")
        .unwrap();
    assert!(String::from_utf8_lossy(&torrc).contains("Nickname marcuse1\n"));
    // A second apply has nothing to do and runs no handler.
    oignon(&f, &lab, &["apply", "--yes"])
        .code(0)
        .out_has(&["Nothing to apply."]);
    assert_eq!(handler_calls(&lab, "marcuse"), calls);
}

#[test]
fn sysctl_key_missing_from_the_host_kernel_is_refused_before_anything_changes() {
    let Some(LabFleet { lab, f }) = LabFleet::start(4) else {
        return;
    };
    f.edit(
        "inventory/gandi.toml",
        "uplink = \"25 Mbit/s\"",
        "uplink = \"25 Mbit/s\"\n[host.defaults]\nsysctl = { \"kernel.no_such_knob\" = 1 }",
    );
    oignon(&f, &lab, &["apply", "--yes", "--brief", "--host", "ekumen"])
        .code(1)
        .out_has(&[
            "validation failed for /etc/sysctl.d/90-oignon.conf, nothing was written",
            "sysctl key kernel.no_such_knob does not exist on this host (/proc/sys)",
        ]);
    assert!(
        lab.read(lab_of("ekumen"), "/etc/tor/instances/ekumen/torrc")
            .is_none(),
        "no file written"
    );
}

#[test]
fn an_optional_sysctl_key_the_kernel_lacks_is_skipped_and_said_not_fatal() {
    let Some(LabFleet { lab, f }) = LabFleet::start(4) else {
        return;
    };
    // Keys marked `-` (sysctl.d) by the hardening role: kernel.yama.ptrace_scope among them.
    // Where this kernel has no Yama, its absence must not block the torrc and family updates.
    let run = oignon(&f, &lab, &["apply", "--yes", "--brief", "--host", "ekumen"]);
    run.code(0);
    let conf = lab
        .read_string(lab_of("ekumen"), "/etc/sysctl.d/90-oignon.conf")
        .unwrap();
    assert!(conf.contains("\n-kernel.yama.ptrace_scope = 2\n"), "{conf}");
    assert!(conf.contains("\nkernel.kptr_restrict = 2\n"), "{conf}");
    if !std::path::Path::new("/proc/sys/kernel/yama").exists() {
        run.out_has(&[
            "note: sysctl key kernel.yama.ptrace_scope is absent from this host's kernel: skipped",
        ]);
    }
}

#[test]
fn changing_one_instance_reloads_only_that_instance() {
    let Some(LabFleet { lab, f }) = LabFleet::start(4) else {
        return;
    };
    oignon(
        &f,
        &lab,
        &["apply", "--yes", "--brief", "--host", "marcuse"],
    )
    .code(0);
    let before = handler_calls(&lab, "marcuse").len();
    // A new prepended rule for marcuse2 only: ExitPolicy can change on a reload.
    f.edit(
        "inventory/ielo-liazo.toml",
        "orport = 9001",
        "orport = 9001\nexit_policy_prepend = [\"reject *:6667\"]",
    );
    oignon(&f, &lab, &["apply", "--yes", "--host", "marcuse"])
        .code(0)
        .out_has(&[
            "+ExitPolicy reject *:6667",
            "ran `systemctl reload tor@marcuse2`",
        ]);
    assert_eq!(
        handler_calls(&lab, "marcuse")[before..],
        ["reload tor@marcuse2".to_string()]
    );
    // An ORPort change cannot be taken by a reload: restart.
    f.edit(
        "inventory/ielo-liazo.toml",
        "orport = 9001",
        "orport = 9002",
    );
    oignon(&f, &lab, &["apply", "--yes", "--host", "marcuse"])
        .code(0)
        .out_has(&["ran `systemctl restart tor@marcuse2`"]);
}

#[test]
fn invalid_torrc_is_rejected_with_tors_words_and_the_old_file_stays() {
    let Some(LabFleet { lab, f }) = LabFleet::start(4) else {
        return;
    };
    oignon(&f, &lab, &["apply", "--yes", "--brief", "--host", "ekumen"]).code(0);
    let old = lab
        .read(lab_of("ekumen"), "/etc/tor/instances/ekumen/torrc")
        .unwrap();
    let calls = handler_calls(&lab, "ekumen");
    f.edit(
        "inventory/gandi.toml",
        "orport = 443",
        "orport = 443\ntorrc_extra = [\"ConnLimit abc\"]",
    );
    f.edit(
        "inventory/fleet.toml",
        "\"reject *:445\"]",
        "\"reject *:445\", \"reject *:6666\"]",
    );
    let run = oignon(&f, &lab, &["apply", "--yes", "--brief", "--host", "ekumen"]);
    run.code(1).out_has(&[
        "✗ ekumen: FAILED",
        "validation failed for /etc/tor/instances/ekumen/torrc, nothing was written",
        "Could not parse ConnLimit",
    ]);
    assert_eq!(
        lab.read(lab_of("ekumen"), "/etc/tor/instances/ekumen/torrc")
            .unwrap(),
        old,
        "old torrc intact"
    );
    assert_eq!(handler_calls(&lab, "ekumen"), calls, "no handler ran");
    let leftovers = lab.exec(
        lab_of("ekumen"),
        "ls -a /etc/tor/instances/ekumen /etc/sysctl.d | grep oignon-new || true",
    );
    assert!(
        leftovers.stdout.is_empty(),
        "temp files left: {}",
        String::from_utf8_lossy(&leftovers.stdout)
    );
}

#[test]
fn killing_the_connection_mid_apply_never_tears_a_file_and_a_rerun_converges() {
    let Some(LabFleet { lab, f }) = LabFleet::start(4) else {
        return;
    };
    let host = lab_of("marylou");
    let paths = [
        "/etc/tor/instances/marylou1/torrc",
        "/etc/tor/instances/marylou2/torrc",
        "/etc/sysctl.d/90-oignon.conf",
    ];
    oignon(
        &f,
        &lab,
        &["apply", "--yes", "--brief", "--host", "marylou"],
    )
    .code(0);
    let cfg = lab.ssh_config();
    let mut flips = 0;
    for round in 0..8u64 {
        // Alternate between two inventories so every apply rewrites every file.
        let (a, b) = if round % 2 == 0 {
            ("700 Mbit/s", "600 Mbit/s")
        } else {
            ("600 Mbit/s", "700 Mbit/s")
        };
        f.edit("inventory/tetaneutral.toml", a, b);
        let before: Vec<Option<Vec<u8>>> = paths.iter().map(|p| lab.read(host, p)).collect();
        let mut child = std::process::Command::new(crate::harness::BIN)
            .args([
                "--ssh-config",
                cfg.to_str().unwrap(),
                "apply",
                "--yes",
                "--brief",
                "--host",
                "marylou",
            ])
            .current_dir(f.dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(150 + 40 * round));
        lab.kill_sessions(host);
        let _ = child.wait();
        for (p, old) in paths.iter().zip(&before) {
            let now = lab.read(host, p);
            let desired = render_one(&f, "marylou", p);
            let whole = now == *old || now.as_deref() == Some(desired.as_slice());
            assert!(
                whole,
                "round {round}: {p} is torn: sha {:?}",
                now.as_deref().map(sha)
            );
            if now != *old {
                flips += 1;
            }
        }
    }
    // Whatever the interruptions did, one more apply converges (a stale lock is taken over).
    oignon(
        &f,
        &lab,
        &["apply", "--yes", "--brief", "--host", "marylou"],
    )
    .code(0);
    oignon(
        &f,
        &lab,
        &["plan", "--detailed-exitcode", "--host", "marylou"],
    )
    .code(0);
    eprintln!("files replaced during interrupted rounds: {flips}");
}

fn render_one(f: &Fixture, host: &str, path: &str) -> Vec<u8> {
    let out = f.path("render-check");
    let _ = std::fs::remove_dir_all(&out);
    f.run(&["render", "--host", host, "--out", out.to_str().unwrap()])
        .code(0);
    std::fs::read(out.join(host).join(path.trim_start_matches('/'))).unwrap()
}

#[test]
fn a_held_lock_refuses_a_second_apply_and_a_dead_holders_lock_is_taken_over() {
    let Some(LabFleet { lab, f }) = LabFleet::start(4) else {
        return;
    };
    let host = lab_of("ekumen");
    // A live holder: a process in the host that holds flock(1) on the lock, as apply.sh does.
    let out = lab.exec(
        host,
        "mkdir -p /var/lib/oignon && printf 'alice@laptop (oignon apply)\tpid 1\tsince 2026-11-25T10:00:00Z\n' > /var/lib/oignon/lock \
         && { setsid flock -o /var/lib/oignon/lock sleep 120 </dev/null >/dev/null 2>&1 & echo $! > /var/lib/oignon-lab/holder.pid; } \
         && sleep 0.3",
    );
    assert!(out.status.success(), "{out:?}");
    oignon(&f, &lab, &["plan", "--host", "ekumen", "--brief"])
        .code(0)
        .out_has(&["an apply holds the lock on this host: alice@laptop"]);
    oignon(&f, &lab, &["apply", "--yes", "--brief", "--host", "ekumen"])
        .code(1)
        .out_has(&["another apply holds the lock on this host: alice@laptop (oignon apply) pid"]);
    assert!(
        lab.read(host, "/etc/tor/instances/ekumen/torrc").is_none(),
        "nothing written under someone else's lock"
    );
    // The holder dies: its name stays in the file, but the lock died with it. A pid that is alive
    // again (reused after a reboot) no longer matters: only the flock does.
    let out = lab.exec(
        host,
        "kill $(cat /var/lib/oignon-lab/holder.pid); sleep 0.3",
    );
    assert!(out.status.success(), "{out:?}");
    oignon(&f, &lab, &["plan", "--host", "ekumen", "--brief"])
        .code(0)
        .out_has(&["an apply was interrupted on this host (alice@laptop"]);
    oignon(&f, &lab, &["apply", "--yes", "--brief", "--host", "ekumen"])
        .code(0)
        .out_has(&["took over a stale lock left by a dead apply (alice@laptop"]);
    assert_eq!(
        lab.read(host, "/var/lib/oignon/lock").as_deref(),
        Some(&b""[..]),
        "lock released: the file stays, naming nobody"
    );
}

#[test]
fn concurrent_applies_to_one_host_one_is_refused() {
    let Some(LabFleet { lab, f }) = LabFleet::start(4) else {
        return;
    };
    let cfg = lab.ssh_config();
    // Slow handlers widen the window in which both applies run.
    lab.write(
        lab_of("ekumen"),
        "/var/lib/oignon-lab/systemctl.sleep",
        b"2\n",
    );
    let spawn = || {
        std::process::Command::new(crate::harness::BIN)
            .args([
                "--ssh-config",
                cfg.to_str().unwrap(),
                "apply",
                "--yes",
                "--brief",
                "--host",
                "ekumen",
            ])
            .current_dir(f.dir.path())
            .env("NO_COLOR", "1")
            .output()
    };
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(spawn);
        std::thread::sleep(std::time::Duration::from_millis(700));
        let b = s.spawn(spawn);
        (a.join().unwrap().unwrap(), b.join().unwrap().unwrap())
    });
    let outs = [
        String::from_utf8_lossy(&a.stdout).into_owned(),
        String::from_utf8_lossy(&b.stdout).into_owned(),
    ];
    let refused = outs
        .iter()
        .filter(|o| o.contains("another apply holds the lock on this host"))
        .count();
    let applied = outs
        .iter()
        .filter(|o| o.contains("✓ ekumen: applied"))
        .count();
    assert_eq!((refused, applied), (1, 1), "{outs:#?}");
}

#[test]
fn serial_rollout_stops_at_the_first_failed_host() {
    let Some(LabFleet { lab, f }) = LabFleet::start(4) else {
        return;
    };
    // ekumen comes first and fails validation on its host.
    f.edit(
        "inventory/gandi.toml",
        "orport = 443",
        "orport = 443\ntorrc_extra = [\"ConnLimit abc\"]",
    );
    let run = oignon(&f, &lab, &["apply", "--yes", "--brief", "--serial", "1"]);
    run.code(1).out_has(&["✗ ekumen: FAILED", "rollout stopped after 1 failed host (--max-fail 0): not applied: algrothendieck, marcuse, marylou"]);
    assert!(
        lab.read(lab_of("marcuse"), "/etc/tor/instances/marcuse1/torrc")
            .is_none(),
        "marcuse untouched"
    );
    // With a budget of one failure the rollout goes on.
    oignon(
        &f,
        &lab,
        &[
            "apply",
            "--yes",
            "--brief",
            "--serial",
            "2",
            "--max-fail",
            "1",
        ],
    )
    .code(1)
    .out_has(&["✓ marylou: applied"]);
}

#[test]
fn a_handler_left_pending_by_an_interrupted_apply_runs_next_time() {
    let Some(LabFleet { lab, f }) = LabFleet::start(4) else {
        return;
    };
    oignon(&f, &lab, &["apply", "--yes", "--brief", "--host", "ekumen"]).code(0);
    lab.write(
        lab_of("ekumen"),
        "/var/lib/oignon/pending",
        b"systemctl reload tor@ekumen\n",
    );
    oignon(
        &f,
        &lab,
        &["plan", "--host", "ekumen", "--detailed-exitcode"],
    )
    .code(2)
    .out_has(&["> run `systemctl reload tor@ekumen` (left pending by an interrupted apply)"]);
    oignon(&f, &lab, &["apply", "--yes", "--host", "ekumen"])
        .code(0)
        .out_has(&["ran `systemctl reload tor@ekumen`"]);
    oignon(
        &f,
        &lab,
        &["plan", "--host", "ekumen", "--detailed-exitcode"],
    )
    .code(0);
}

#[test]
fn an_apply_killed_hard_leaves_no_records_behind_after_the_next_apply() {
    let Some(LabFleet { lab, f }) = LabFleet::start(4) else {
        return;
    };
    // What a SIGKILLed apply leaves: its work dir (records, key files among them) in /run.
    lab.exec(
        lab_of("ekumen"),
        "mkdir -p /run/oignon/apply.dead1 && echo secret > /run/oignon/apply.dead1/b64.1",
    );
    oignon(&f, &lab, &["apply", "--yes", "--brief", "--host", "ekumen"]).code(0);
    let left = lab.exec(
        lab_of("ekumen"),
        "ls -d /run/oignon/apply.* 2>/dev/null || true",
    );
    assert!(
        left.stdout.is_empty(),
        "left: {}",
        String::from_utf8_lossy(&left.stdout)
    );
}

#[test]
fn reboot_happens_only_with_the_reboot_flag_and_only_where_the_kernel_line_needs_it() {
    let Some(LabFleet { lab, f }) = LabFleet::start(4) else {
        return;
    };
    oignon(&f, &lab, &["apply", "--yes", "--brief", "--host", "ekumen"]).code(0);
    assert!(
        !handler_calls(&lab, "ekumen").iter().any(|c| c == "reboot"),
        "no reboot without --reboot"
    );
    // /proc/cmdline here lacks the hardening parameters: the plan says a reboot is required.
    oignon(&f, &lab, &["plan", "--host", "ekumen"])
        .code(0)
        .out_has(&[
        "! reboot required: the running kernel's command line (/proc/cmdline) lacks slab_nomerge",
    ]);
    // The lab's `systemctl` only records: the host never goes down, so apply waits for a new boot
    // id until --reboot-timeout and says the host did not come back (the real reboot, and the
    // wait, are tested on real hosts: tests/real_apply.rs, tests/real_vm.rs).
    oignon(
        &f,
        &lab,
        &[
            "apply",
            "--yes",
            "--host",
            "ekumen",
            "--reboot",
            "--reboot-timeout",
            "3",
        ],
    )
    .code(1)
    .out_has(&[
        "rebooted (`systemctl reboot` ran), but the host did not come back within 3s",
        "the old boot still answers",
    ]);
    assert_eq!(
        handler_calls(&lab, "ekumen")
            .iter()
            .filter(|c| *c == "reboot")
            .count(),
        1
    );
}

#[test]
fn a_full_backup_directory_fails_the_apply_before_any_file_is_replaced() {
    let Some(LabFleet { lab, f }) = LabFleet::start(4) else {
        return;
    };
    let host = lab_of("ekumen");
    oignon(&f, &lab, &["apply", "--yes", "--brief", "--host", "ekumen"]).code(0);
    let torrc = lab.read(host, "/etc/tor/instances/ekumen/torrc").unwrap();
    let sysctl = lab.read(host, "/etc/sysctl.d/90-oignon.conf").unwrap();
    // A full disk for backups only: a tiny tmpfs over /var/backups/oignon inside the host, filled.
    let out = lab.exec(
        host,
        "mount -t tmpfs -o size=64k tmpfs /var/backups/oignon && (dd if=/dev/zero of=/var/backups/oignon/fill bs=4k 2>/dev/null; true)",
    );
    assert!(out.status.success(), "{out:?}");
    f.edit(
        "inventory/fleet.toml",
        "\"reject *:445\"]",
        "\"reject *:445\", \"reject *:6666\"]",
    );
    f.edit("inventory/fleet.toml", "[defaults]\n", "[defaults]\nsysctl = { \"net.ipv4.tcp_syncookies\" = 1, \"net.ipv4.conf.all.rp_filter\" = 1 }\n");
    oignon(&f, &lab, &["apply", "--yes", "--brief", "--host", "ekumen"])
        .code(1)
        .out_has(&["under /var/backups/oignon failed, nothing was replaced"]);
    assert_eq!(
        lab.read(host, "/etc/tor/instances/ekumen/torrc").unwrap(),
        torrc
    );
    assert_eq!(
        lab.read(host, "/etc/sysctl.d/90-oignon.conf").unwrap(),
        sysctl
    );
    let listing = lab.exec(host, "ls -A /var/backups/oignon");
    assert_eq!(
        String::from_utf8_lossy(&listing.stdout),
        "fill\n",
        "no 0-byte backups left"
    );
    // Space again: the same apply goes through.
    let out = lab.exec(host, "rm /var/backups/oignon/fill");
    assert!(out.status.success());
    oignon(&f, &lab, &["apply", "--yes", "--brief", "--host", "ekumen"]).code(0);
}

#[test]
fn a_misspelt_systemd_drop_in_is_refused_by_systemd_analyze_verify() {
    let Some(LabFleet { lab, f }) = LabFleet::start(4) else {
        return;
    };
    // Well-formed lines, so the syntax check passes: only systemd's own verdict catches these.
    for (bad, want) in [
        (
            "ProtectSystm=strict",
            "Unknown key 'ProtectSystm' in section [Service]",
        ),
        (
            "ExecStartPost=/usr/bin/no-such-tool",
            "Command /usr/bin/no-such-tool is not executable",
        ),
    ] {
        let f2 = Fixture::shipped_on_lab();
        f2.edit(
            "roles/hardening/templates/tor-unit.conf.tera",
            "ProtectSystem=strict",
            &format!("ProtectSystem=strict\n{bad}"),
        );
        oignon(
            &f2,
            &lab,
            &["apply", "--yes", "--brief", "--host", "ekumen"],
        )
        .code(1)
        .out_has(&[
            "validation failed for /etc/systemd/system/tor@.service.d/oignon.conf",
            want,
        ]);
        assert!(
            lab.read(
                lab_of("ekumen"),
                "/etc/systemd/system/tor@.service.d/oignon.conf"
            )
            .is_none(),
            "nothing written"
        );
    }
    // The shipped drop-in passes it.
    oignon(&f, &lab, &["apply", "--yes", "--brief", "--host", "ekumen"]).code(0);
}

#[test]
fn the_master_public_key_is_deployed_so_tor_regenerates_nothing() {
    let Some(LabFleet { lab, f }) = LabFleet::start(4) else {
        return;
    };
    oignon(&f, &lab, &["apply", "--yes", "--brief", "--host", "ekumen"])
        .code(0)
        .out_has(&["wrote /var/lib/tor-instances/ekumen/keys/ed25519_master_id_public_key"]);
    // tor itself, as the relay's user, on the deployed keys: nothing to regenerate, same id.
    let out = lab.exec(
        lab_of("ekumen"),
        "runuser -u _tor-ekumen -- tor --defaults-torrc /dev/null -f /etc/tor/instances/ekumen/torrc --list-fingerprint --DataDirectory /var/lib/tor-instances/ekumen --DisableNetwork 1 --ORPort 9999 --Nickname ekumen 2>&1",
    );
    let log = String::from_utf8_lossy(&out.stdout);
    assert!(!log.contains("Regenerating"), "{log}");
    let id =
        std::fs::read_to_string(crate::harness::repo().join("secrets/relays/ekumen/ed25519_id"))
            .unwrap();
    assert!(
        log.contains(id.trim()),
        "tor reports the ed25519 id of secrets/: {log}"
    );
    let mode = lab.exec(
        lab_of("ekumen"),
        "stat -c '%a %U' /var/lib/tor-instances/ekumen/keys/ed25519_master_id_public_key",
    );
    assert_eq!(String::from_utf8_lossy(&mode.stdout), "600 _tor-ekumen\n");
    oignon(
        &f,
        &lab,
        &["plan", "--detailed-exitcode", "--host", "ekumen"],
    )
    .code(0);
}

#[test]
fn temp_files_a_killed_apply_left_are_swept_by_the_next_apply() {
    let Some(LabFleet { lab, f }) = LabFleet::start(4) else {
        return;
    };
    let host = lab_of("ekumen");
    // What a SIGKILLed apply leaves: temp files beside their targets, old and new naming.
    for p in [
        "/etc/tor/instances/ekumen/.oignon-new.torrc.4242",
        "/etc/sysctl.d/.oignon-new.Ab3dEf9h",
    ] {
        lab.write(host, p, b"half a file\n");
    }
    // Only the torrc changes: the sysctl.d leftover is swept all the same (a managed directory).
    oignon(&f, &lab, &["apply", "--yes", "--brief", "--host", "ekumen"]).code(0);
    lab.write(host, "/etc/sysctl.d/.oignon-new.Zz9yXw8v", b"half a file\n");
    f.edit(
        "inventory/fleet.toml",
        "\"reject *:445\"]",
        "\"reject *:445\", \"reject *:6666\"]",
    );
    oignon(&f, &lab, &["apply", "--yes", "--brief", "--host", "ekumen"]).code(0);
    let left = lab.exec(
        host,
        "ls -A /etc/tor/instances/ekumen /etc/sysctl.d | grep oignon-new || true",
    );
    assert_eq!(String::from_utf8_lossy(&left.stdout), "", "leftovers swept");
}

#[test]
fn handlers_left_pending_run_in_order_after_this_applys_daemon_reload() {
    let Some(LabFleet { lab, f }) = LabFleet::start(4) else {
        return;
    };
    let host = lab_of("ekumen");
    oignon(&f, &lab, &["apply", "--yes", "--brief", "--host", "ekumen"]).code(0);
    let before = handler_calls(&lab, "ekumen").len();
    // A failed apply left a restart pending; this apply changes the drop-in.
    lab.write(
        host,
        "/var/lib/oignon/pending",
        b"systemctl restart tor@ekumen\nsystemctl reload tor@ekumen\n",
    );
    f.edit(
        "roles/hardening/templates/tor-unit.conf.tera",
        "ProtectSystem=strict",
        "ProtectSystem=strict\nNice=5",
    );
    oignon(&f, &lab, &["apply", "--yes", "--brief", "--host", "ekumen"]).code(0);
    // daemon-reload first, then the restart (once: the pending reload is subsumed).
    assert_eq!(
        handler_calls(&lab, "ekumen")[before..],
        [
            "daemon-reload".to_string(),
            "restart tor@ekumen".to_string()
        ]
    );
}

/// A role's `[[secret]]` (a TLS key, a password file) is a secret on the host too: replaced or
/// removed, apply never leaves a copy of it under /var/backups/oignon (the canary is searched for
/// in every backup), as it never copies relay keys out of a DataDirectory.
#[test]
fn a_role_secret_replaced_or_removed_leaves_no_copy_in_the_backups() {
    let Some(LabFleet { lab, f }) = LabFleet::start(4) else {
        return;
    };
    let host = lab_of("ekumen");
    f.write(
        "roles/canary/role.toml",
        "description = \"one secret file\"\n\n[[secret]]\npath = \"/etc/oignon/canary/token\"\nsource = \"canary/{host}\"\n",
    );
    let seal = |text: &str| {
        std::fs::create_dir_all(f.path("secrets/canary")).unwrap();
        let mut age = std::process::Command::new("age")
            .arg("-R")
            .arg(f.path("secrets/recipients.txt"))
            .arg("-o")
            .arg(f.path("secrets/canary/ekumen.age"))
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write as _;
        age.stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        assert!(age.wait().unwrap().success());
    };
    let roles = "roles = [\"tor\", \"exit-policy\", \"kernel\", \"hardening\"]";
    let with_canary = "roles = [\"tor\", \"exit-policy\", \"kernel\", \"hardening\", \"canary\"]";
    seal("CANARY-ONE-7f3a\n");
    f.edit("inventory/fleet.toml", roles, with_canary);
    let apply = || oignon(&f, &lab, &["apply", "--yes", "--brief", "--host", "ekumen"]);
    apply().code(0);
    let token = || lab.read_string(host, "/etc/oignon/canary/token");
    assert_eq!(token().as_deref(), Some("CANARY-ONE-7f3a\n"));
    // Replaced: the old secret is not backed up.
    seal("CANARY-TWO-9c1e\n");
    apply().code(0);
    assert_eq!(token().as_deref(), Some("CANARY-TWO-9c1e\n"));
    // Removed with its role: not archived either.
    f.edit("inventory/fleet.toml", with_canary, roles);
    apply().code(0).out_has(&["/etc/oignon/canary/token"]);
    assert_eq!(token(), None);
    let found = lab.exec(
        host,
        "test -d /var/backups/oignon && echo backups-here; grep -rl CANARY- /var/backups/oignon; ls -1 /var/backups/oignon",
    );
    let said = String::from_utf8_lossy(&found.stdout);
    assert!(said.contains("backups-here"), "{said}");
    assert!(
        !said.contains("CANARY") && !said.contains("canary__token"),
        "a secret reached the backups:\n{said}"
    );
}
