//! `oignon migrate` on real Debian 12 hosts (scripts/lab-real): ekumen moves from its old VM
//! (`ekumen`) to a new one (`ekumen2`) with its identity, the controller killed after each step in
//! turn and once by a real SIGKILL, both hosts polled all along; then the guards that outlive the
//! command (the tombstone, one identity active on two hosts) and a target that fails verification.

use crate::harness::real::RealLab;
use crate::harness::{oignon, run_in_env, Fixture};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

const UP: Duration = Duration::from_secs(60);

const NEW_VM: &str = "\n# The new VM (kernel command line settable).\n[[host]]\nname = \"ekumen2\"\nipv4 = \"192.0.2.21\"\nipv6 = \"2001:db8:21::1\"\nuplink = \"25 Mbit/s\"\n";

/// The shipped fleet plus the new VM ekumen2, on two real hosts, both applied (ekumen runs on
/// ekumen).
fn two_vms(test: &str) -> Option<(Fixture, RealLab)> {
    let f = Fixture::shipped_on_real();
    let gandi = std::fs::read_to_string(f.path("inventory/gandi.toml")).expect("gandi.toml");
    f.write("inventory/gandi.toml", &format!("{gandi}{NEW_VM}"));
    let lab = RealLab::start(test, &f.real_hosts(&["ekumen", "ekumen2"]))?;
    oignon(&f, &lab, &["apply", "--yes", "--brief"])
        .code(0)
        .out_has(&["Applied: 2 hosts ok"]);
    lab.wait_active("ekumen", "tor@ekumen", UP);
    lab.wait_journal("ekumen", "tor@ekumen", "identity key fingerprint is", UP);
    Some((f, lab))
}

fn fingerprint(f: &Fixture) -> String {
    std::fs::read_to_string(f.path("secrets/relays/ekumen/fingerprint"))
        .expect("ekumen's fingerprint in secrets/")
        .trim()
        .to_string()
}

/// `oignon --ssh-config LAB migrate ARGS`, with extra environment.
fn migrate(
    f: &Fixture,
    lab: &RealLab,
    args: &[&str],
    env: &[(&str, &Path)],
) -> crate::harness::Run {
    let cfg = lab.ssh_config();
    let mut all = vec![
        "--ssh-config",
        cfg.to_str().expect("UTF-8"),
        "migrate",
        "ekumen",
        "--to",
        "ekumen2",
    ];
    all.extend_from_slice(args);
    run_in_env(&f.path(""), &all, env)
}

fn journal_steps(f: &Fixture) -> usize {
    let p = f.path(".oignon/migrations/ekumen.json");
    let Ok(text) = std::fs::read_to_string(p) else {
        return 0;
    };
    let v: serde_json::Value = serde_json::from_str(&text).expect("journal JSON");
    v["steps"].as_array().map_or(0, Vec::len)
}

/// Polls both hosts until `stop`; counts the polls where both ran tor@ekumen.
fn poll_both(lab: &RealLab, stop: &AtomicBool, both: &AtomicUsize, polls: &AtomicUsize) {
    while !stop.load(Ordering::Relaxed) {
        let a = lab.is_active("ekumen", "tor@ekumen");
        let b = lab.is_active("ekumen2", "tor@ekumen");
        let running = |s: &str| matches!(s, "active" | "activating" | "reloading" | "deactivating");
        if running(&a) && running(&b) {
            both.fetch_add(1, Ordering::Relaxed);
        }
        polls.fetch_add(1, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(30));
    }
}

#[test]
fn migrate_survives_a_kill_after_every_step_never_runs_two_copies_and_leaves_guards() {
    let Some((f, lab)) =
        two_vms("migrate_survives_a_kill_after_every_step_never_runs_two_copies_and_leaves_guards")
    else {
        return;
    };
    let fpr = fingerprint(&f);
    let old_gandi = std::fs::read_to_string(f.path("inventory/gandi.toml")).unwrap();

    // The dry run shows both hosts' steps and the exact inventory patch, and changes nothing.
    migrate(&f, &lab, &["--dry-run"], &[])
        .code(0)
        .out_has(&[
            "1. [    ] ekumen: stop, disable and mask tor@ekumen",
            "5. [    ] ekumen2: verify: tor@ekumen logs fingerprint",
            "+ /var/lib/tor-instances/ekumen/keys/secret_id_key (new file, 0600 _tor-ekumen:_tor-ekumen)",
            "-[[host.relay]]\n-nickname = \"ekumen\"",
            "Dry run: nothing was changed.",
        ]);
    assert_eq!(lab.is_active("ekumen", "tor@ekumen"), "active");
    assert_eq!(journal_steps(&f), 0);

    let stop = AtomicBool::new(false);
    let both = AtomicUsize::new(0);
    let polls = AtomicUsize::new(0);
    std::thread::scope(|s| {
        s.spawn(|| poll_both(&lab, &stop, &both, &polls));
        // A real SIGKILL mid-run first: wherever it lands, the journal says what was done.
        let cfg = lab.ssh_config();
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_oignon"))
            .args([
                "--ssh-config",
                cfg.to_str().unwrap(),
                "migrate",
                "ekumen",
                "--to",
                "ekumen2",
                "--yes",
            ])
            .current_dir(f.path(""))
            .env("HOME", f.path(""))
            .env("NO_COLOR", "1")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn oignon");
        std::thread::sleep(Duration::from_millis(1500));
        // SIGKILL, by its own PID: the process this test started.
        let _ = child.kill();
        let _ = child.wait();
        // What the killed run had started on a host ends there (its session hangs up).
        std::thread::sleep(Duration::from_secs(3));
        let after_kill = journal_steps(&f);
        eprintln!("SIGKILL landed after {after_kill} recorded steps");
        // Then a kill after each remaining step in turn; every other one before the journal
        // knows (the step done on the host, not recorded): the rerun finds it done there.
        for k in (after_kill + 1)..=6 {
            let hook = if k % 2 == 0 {
                format!("{k}-unrecorded")
            } else {
                k.to_string()
            };
            let r = migrate(
                &f,
                &lab,
                &["--yes"],
                &[("OIGNON_MIGRATE_EXIT_AFTER", Path::new(&hook))],
            );
            r.code(75).err_has(&[&format!("exiting after step {k}")]);
            if after_kill > 0 || k > 1 {
                r.out_has(&["Resuming (journal"]);
            }
            let want = if k % 2 == 0 { k - 1 } else { k };
            assert_eq!(journal_steps(&f), want, "after the kill at step {hook}");
        }
        let r = migrate(&f, &lab, &["--yes"], &[]);
        r.code(0);
        if after_kill < 7 {
            r.out_has(&[
                "already done",
                "7. inventory (-): done",
                &format!("ekumen now runs on ekumen2 with fingerprint {fpr}"),
            ]);
        }
        if after_kill < 6 {
            // Step 6 was killed unrecorded: done on the host, found done by the rerun.
            r.out_has(&["6. purge (ekumen): already done on the host"]);
        }
        stop.store(true, Ordering::Relaxed);
    });
    assert!(polls.load(Ordering::Relaxed) > 10, "the poller ran");
    assert_eq!(
        both.load(Ordering::Relaxed),
        0,
        "tor@ekumen ran on both hosts at once"
    );

    // A rerun after completion is a no-op that says so.
    migrate(&f, &lab, &["--yes"], &[])
        .code(0)
        .out_has(&["was completed at", "nothing to do"]);

    // The source: nothing running, enabled or startable, no key files left.
    assert_ne!(lab.is_active("ekumen", "tor@ekumen"), "active");
    assert_eq!(
        lab.run("ekumen", "systemctl is-enabled tor@ekumen || true")
            .trim(),
        "masked"
    );
    assert!(
        !lab.exec("ekumen", "systemctl start tor@ekumen")
            .status
            .success(),
        "a masked unit cannot start"
    );
    assert_eq!(lab.run("ekumen", "find /var/lib/tor-instances/ekumen /var/lib/oignon/quarantine -path '*keys*' -type f | wc -l").trim(), "0");
    let tomb = lab
        .read_string("ekumen", "/var/lib/oignon/moved/ekumen")
        .expect("a tombstone");
    assert!(
        tomb.contains("to\tekumen2") && tomb.contains(&format!("fingerprint\t{fpr}")),
        "{tomb}"
    );
    // The target: tor@ekumen under systemd, keys owned by _tor-ekumen, 0600, the original identity.
    lab.wait_active("ekumen2", "tor@ekumen", UP);
    let keys = lab.run("ekumen2", "stat -c '%U %a %n' /var/lib/tor-instances/ekumen/keys/secret_id_key /var/lib/tor-instances/ekumen/keys/ed25519_master_id_secret_key");
    for l in keys.lines() {
        assert!(l.starts_with("_tor-ekumen 600 "), "{l}");
    }
    let journal = lab.wait_journal("ekumen2", "tor@ekumen", "identity key fingerprint is", UP);
    assert!(
        journal.contains(&format!("identity key fingerprint is 'ekumen {fpr}'")),
        "{journal}"
    );
    // The inventory moved; check, then plan on both hosts, show no changes.
    let gandi = std::fs::read_to_string(f.path("inventory/gandi.toml")).unwrap();
    assert!(
        gandi.ends_with(
            "uplink = \"25 Mbit/s\"\n\n[[host.relay]]\nnickname = \"ekumen\"\norport = 443\n"
        ),
        "{gandi}"
    );
    f.run(&["check"]).code(0);
    oignon(&f, &lab, &["plan", "--detailed-exitcode", "--brief"])
        .code(0)
        .out_has(&["Fleet: 2 hosts, 0 with changes"]);

    // An older checkout (the inventory before the move) is refused on both hosts: by the
    // tombstone on ekumen (it would start the relay there again), by the arrival mark on ekumen2
    // (it would remove the relay there).
    f.write("inventory/gandi.toml", &old_gandi);
    let r = oignon(&f, &lab, &["apply", "--yes", "--brief"]);
    r.code(1).out_has(&[
        "refused: ekumen left this host (ekumen moved to host ekumen2 at",
        "--resurrect ekumen",
        "refused: ekumen was migrated to this host from ekumen at",
        "this inventory does not have it here: it is older than the migration",
    ]);
    assert_ne!(lab.is_active("ekumen", "tor@ekumen"), "active");
    assert_eq!(lab.is_active("ekumen2", "tor@ekumen"), "active");

    // Forced back (--resurrect) while ekumen2 runs it: the same key active on two hosts, which
    // plan then refuses, naming both.
    let cfg = lab.ssh_config();
    f.run_over(
        &cfg,
        &[
            "apply",
            "--yes",
            "--brief",
            "--host",
            "ekumen",
            "--resurrect",
            "ekumen",
        ],
    )
    .code(0)
    .out_has(&["ekumen: tombstone of ekumen removed, tor@ekumen unmasked (--resurrect)"]);
    lab.wait_active("ekumen", "tor@ekumen", UP);
    lab.wait_journal("ekumen", "tor@ekumen", "identity key fingerprint is", UP);
    oignon(&f, &lab, &["plan", "--brief"]).code(1).out_has(&[
        "is also active on host ekumen2 (as ekumen)",
        "is also active on host ekumen (as ekumen)",
    ]);
}

#[test]
fn a_target_failing_verification_keeps_the_source_keys_and_rollback_restores_the_source() {
    let Some((f, lab)) = two_vms(
        "a_target_failing_verification_keeps_the_source_keys_and_rollback_restores_the_source",
    ) else {
        return;
    };
    let fpr = fingerprint(&f);
    // Stopped once the target is deployed; there, a wrong key is planted: tor makes a new
    // identity when its keys are gone.
    migrate(
        &f,
        &lab,
        &["--yes"],
        &[("OIGNON_MIGRATE_EXIT_AFTER", Path::new("4"))],
    )
    .code(75);
    lab.wait_active("ekumen2", "tor@ekumen", UP);
    lab.run("ekumen2", "systemctl stop tor@ekumen && rm -f /var/lib/tor-instances/ekumen/keys/secret_id_key /var/lib/tor-instances/ekumen/keys/ed25519_master_id_* && systemctl start tor@ekumen");
    lab.wait_active("ekumen2", "tor@ekumen", UP);
    let r = migrate(&f, &lab, &["--yes", "--verify-timeout", "20"], &[]);
    r.code(1).err_has(&[
        "ekumen2: verification failed: tor@ekumen runs with fingerprint",
        &format!("not {fpr} (secrets/)"),
        "nothing was removed from ekumen",
        "--rollback",
    ]);
    // The source's keys are still there, in quarantine.
    assert_eq!(
        lab.run(
            "ekumen",
            "ls /var/lib/oignon/quarantine/ekumen/keys | grep -c secret_id_key"
        )
        .trim(),
        "1"
    );
    assert_ne!(lab.is_active("ekumen", "tor@ekumen"), "active");

    migrate(&f, &lab, &["--rollback"], &[])
        .code(0)
        .out_has(&["Rolled back: ekumen runs on ekumen again"]);
    lab.wait_active("ekumen", "tor@ekumen", UP);
    assert_ne!(lab.is_active("ekumen2", "tor@ekumen"), "active");
    assert_eq!(
        lab.run("ekumen2", "systemctl is-enabled tor@ekumen || true")
            .trim(),
        "masked"
    );
    let inv = lab.run(
        "ekumen",
        "systemctl show -p InvocationID --value tor@ekumen",
    );
    let words = lab.run(
        "ekumen",
        &format!(
            "journalctl -o cat _SYSTEMD_INVOCATION_ID={} | grep 'identity key fingerprint' || true",
            inv.trim()
        ),
    );
    assert!(
        words.contains(&format!("'ekumen {fpr}'")),
        "the source runs its own identity again: {words}"
    );
    assert!(
        lab.read("ekumen", "/var/lib/oignon/moved/ekumen").is_none(),
        "tombstone removed"
    );
    assert!(!f.path(".oignon/migrations/ekumen.json").exists());
    // Both hosts as the (unchanged) inventory wants them.
    oignon(&f, &lab, &["plan", "--detailed-exitcode", "--brief"])
        .code(0)
        .out_has(&["Fleet: 2 hosts, 0 with changes"]);
    let tomb = lab
        .read_string("ekumen2", "/var/lib/oignon/moved/ekumen")
        .expect("a tombstone on the target");
    assert!(tomb.contains("to\tekumen\n"), "{tomb}");

    // Migrating again to the host it was rolled back from works: its tombstone there is lifted.
    migrate(&f, &lab, &["--yes"], &[])
        .code(0)
        .out_has(&["4. deploy (ekumen2): done", "6. purge (ekumen): done"]);
    lab.wait_active("ekumen2", "tor@ekumen", UP);
    assert!(lab
        .read("ekumen2", "/var/lib/oignon/moved/ekumen")
        .is_none());
    oignon(&f, &lab, &["plan", "--detailed-exitcode", "--brief"])
        .code(0)
        .out_has(&["Fleet: 2 hosts, 0 with changes"]);
}

#[test]
fn preconditions_refuse_before_anything_changes_and_a_dead_source_needs_saying_so() {
    let Some((f, lab)) =
        two_vms("preconditions_refuse_before_anything_changes_and_a_dead_source_needs_saying_so")
    else {
        return;
    };
    // The target's inventory address is not one the new VM has: the relay would announce it.
    f.edit(
        "inventory/gandi.toml",
        "ipv4 = \"192.0.2.21\"",
        "ipv4 = \"192.0.2.22\"",
    );
    migrate(&f, &lab, &["--yes"], &[]).code(1).err_has(&[
        "ekumen2: the relay will announce 192.0.2.22 (the host's inventory address), which the host does not have",
        "1 precondition failed; nothing was changed",
    ]);
    assert_eq!(lab.is_active("ekumen", "tor@ekumen"), "active");
    assert!(!f.path(".oignon/migrations/ekumen.json").exists());
    f.edit(
        "inventory/gandi.toml",
        "ipv4 = \"192.0.2.22\"",
        "ipv4 = \"192.0.2.21\"",
    );

    // Something else holds the ORPort on the target's address.
    lab.run(
        "ekumen2",
        "systemd-run --unit=squat perl -MIO::Socket::INET -e 'my $s = IO::Socket::INET->new(LocalAddr => \"192.0.2.21:443\", Listen => 1, ReuseAddr => 1) or die; sleep 600'",
    );
    let mut tries = 0;
    while !lab.run("ekumen2", "ss -Hltn").contains("192.0.2.21:443") {
        tries += 1;
        assert!(tries < 100, "the squatter never listened");
        std::thread::sleep(Duration::from_millis(50));
    }
    migrate(&f, &lab, &["--yes"], &[]).code(1).err_has(&[
        "ekumen2: the ORPort 443 is taken (192.0.2.21:443 listening): free it, or give the relay another orport in the inventory",
    ]);
    assert_eq!(lab.is_active("ekumen", "tor@ekumen"), "active");
    lab.run("ekumen2", "systemctl stop squat");

    // A dead source: refused unless said, then shown as unprovable, and confirmed.
    lab.stop_host("ekumen");
    migrate(&f, &lab, &["--yes"], &[]).code(1).err_has(&[
        "source ekumen is unreachable",
        "rerun with --source-unreachable",
    ]);
    migrate(&f, &lab, &["--source-unreachable", "--dry-run"], &[])
        .code(0)
        .out_has(&["WARNING: ekumen is unreachable: oignon cannot prove the old copy is stopped"]);
    migrate(&f, &lab, &["--source-unreachable"], &[])
        .code(1)
        .err_has(&["needs confirmation: run it on a terminal, or pass --yes"]);
    assert!(!f.path(".oignon/migrations/ekumen.json").exists());
    migrate(&f, &lab, &["--source-unreachable", "--yes"], &[])
        .code(0)
        .out_has(&[
            "1. stop (ekumen): skipped",
            "5. verify (ekumen2): tor logs fingerprint",
            "6. purge (ekumen): skipped",
        ]);
    lab.wait_active("ekumen2", "tor@ekumen", UP);

    // Its end: `retire` on ekumen2 stops it for good and takes it out of the inventory.
    let cfg = lab.ssh_config();
    let retire = |args: &[&str]| {
        let mut all = vec!["--ssh-config", cfg.to_str().unwrap(), "retire", "ekumen"];
        all.extend_from_slice(args);
        f.run(&all)
    };
    retire(&["--dry-run"]).code(0).out_has(&[
        "1. ekumen2: stop, disable and mask tor@ekumen",
        "-nickname = \"ekumen\"",
        "Dry run: nothing was changed.",
    ]);
    assert_eq!(lab.is_active("ekumen2", "tor@ekumen"), "active");
    retire(&["--yes"]).code(0).out_has(&[
        "ekumen2: stop: done",
        "ekumen2: quarantine: done",
        "ekumen2: tombstone: done",
        "ekumen2: purge: done",
        "inventory: ekumen removed",
    ]);
    assert_ne!(lab.is_active("ekumen2", "tor@ekumen"), "active");
    assert_eq!(
        lab.run("ekumen2", "systemctl is-enabled tor@ekumen || true")
            .trim(),
        "masked"
    );
    assert_eq!(lab.run("ekumen2", "find /var/lib/tor-instances/ekumen /var/lib/oignon/quarantine -path '*keys*' -type f | wc -l").trim(), "0");
    let tomb = lab
        .read_string("ekumen2", "/var/lib/oignon/moved/ekumen")
        .expect("a tombstone");
    assert!(tomb.contains("to\t-\n"), "{tomb}");
    let gandi = std::fs::read_to_string(f.path("inventory/gandi.toml")).unwrap();
    assert!(!gandi.contains("nickname = \"ekumen\""), "{gandi}");
    f.run(&["check"]).code(0);
    f.run_over(
        &cfg,
        &[
            "plan",
            "--detailed-exitcode",
            "--brief",
            "--host",
            "ekumen2",
        ],
    )
    .code(0)
    .out_has(&["Fleet: 1 host, 0 with changes"]);
}

#[test]
fn a_keys_link_planted_by_the_relay_user_is_refused_never_followed() {
    let Some((f, lab)) = two_vms("a_keys_link_planted_by_the_relay_user_is_refused_never_followed")
    else {
        return;
    };
    // The relay's user (tor, if compromised) swaps its keys directory for a link to /etc/ssh.
    lab.run(
        "ekumen",
        "cd /var/lib/tor-instances/ekumen && setpriv --reuid=_tor-ekumen --regid=_tor-ekumen --clear-groups sh -c 'mv keys keys.real && ln -s /etc/ssh keys'",
    );
    let before = lab.run("ekumen", "stat -c '%a %U' /etc/ssh; ls /etc/ssh | wc -l");
    migrate(&f, &lab, &["--yes"], &[]).code(1).err_has(&[
        "ekumen: step `quarantine` failed: refused, nothing more was changed: /var/lib/tor-instances/ekumen/keys is a symbolic link",
        "run migrate again (it resumes here)",
    ]);
    // Nothing was moved, chowned or chmodded through the link, and the target got nothing.
    assert_eq!(
        lab.run("ekumen", "stat -c '%a %U' /etc/ssh; ls /etc/ssh | wc -l"),
        before
    );
    assert!(lab
        .exec("ekumen", "test -L /var/lib/tor-instances/ekumen/keys")
        .status
        .success());
    assert!(lab
        .read("ekumen", "/var/lib/oignon/quarantine/ekumen/keys")
        .is_none());
    assert_ne!(lab.is_active("ekumen2", "tor@ekumen"), "active");
}
