//! `oignon host retire HOST` on real Debian 12 hosts (scripts/lab-real): a host with two relays
//! ends for good (both units masked and stopped, keys destroyed, tombstones, configs archived, the
//! host out of the inventory). And the start guard: a plan never starts a relay whose identity is
//! active on another gathered host.

use crate::harness::real::RealLab;
use crate::harness::{oignon, Fixture};
use std::time::Duration;

const UP: Duration = Duration::from_secs(60);

/// What a dry run must leave as it was on the host: the units' states, the key files, the
/// configs, oignon's own state and backups (names and contents, not tor's changing state files).
fn host_state(lab: &RealLab, host: &str) -> String {
    lab.run(
        host,
        "for u in tor@marcuse1 tor@marcuse2; do echo \"$u $(systemctl is-active $u) $(systemctl is-enabled $u)\"; done; \
         find /var/lib/tor-instances/marcuse1/keys /var/lib/tor-instances/marcuse2/keys /etc/tor/instances /var/lib/oignon /var/backups/oignon -type f -print0 2>/dev/null \
           | sort -z | xargs -0 -r sha256sum; true",
    )
}

#[test]
fn host_retire_ends_both_relays_of_a_host_and_removes_it_from_the_inventory() {
    let f = Fixture::shipped_on_real();
    let Some(lab) = RealLab::start(
        "host_retire_ends_both_relays_of_a_host_and_removes_it_from_the_inventory",
        &f.real_hosts(&["marcuse", "ekumen"]),
    ) else {
        return;
    };
    oignon(&f, &lab, &["apply", "--yes", "--brief"])
        .code(0)
        .out_has(&["Applied: 2 hosts ok"]);
    for r in ["marcuse1", "marcuse2"] {
        lab.wait_active("marcuse", &format!("tor@{r}"), UP);
        lab.wait_journal(
            "marcuse",
            &format!("tor@{r}"),
            "identity key fingerprint is",
            UP,
        );
    }
    let fpr = |r: &str| {
        std::fs::read_to_string(f.path(&format!("secrets/relays/{r}/fingerprint")))
            .expect("fingerprint in secrets/")
            .trim()
            .to_string()
    };
    let cfg = lab.ssh_config();
    let host_retire = |args: &[&str]| {
        let mut all = vec!["host", "retire"];
        all.extend_from_slice(args);
        f.run_over(&cfg, &all)
    };
    let inventory = std::fs::read(f.path("inventory/ielo-liazo.toml")).unwrap();

    // The dry run shows both relays' steps and the patch, and changes nothing anywhere.
    let before = host_state(&lab, "marcuse");
    assert!(before.contains("tor@marcuse1 active enabled"), "{before}");
    host_retire(&["marcuse", "--dry-run"]).code(0).out_has(&[
        "Retirement of host marcuse and its 2 relays:",
        &format!("  marcuse1 ({}):", fpr("marcuse1")),
        &format!("  marcuse2 ({}):", fpr("marcuse2")),
        "    1. marcuse: stop, disable and mask tor@marcuse2",
        "  inventory: remove host marcuse and its [[host.relay]] tables",
        "-[[host]]\n-name = \"marcuse\"",
        "-nickname = \"marcuse2\"",
        "Dry run: nothing was changed.",
    ]);
    // Not confirmed (no terminal, no --yes): refused, nothing changed either.
    host_retire(&["marcuse"])
        .code(1)
        .err_has(&["needs confirmation: run it on a terminal, or pass --yes"]);
    assert_eq!(host_state(&lab, "marcuse"), before);
    assert_eq!(
        std::fs::read(f.path("inventory/ielo-liazo.toml")).unwrap(),
        inventory
    );

    // A host that does not answer is refused, saying what to do; its inventory entry stays.
    lab.stop_host("ekumen");
    host_retire(&["ekumen", "--yes"]).code(1).err_has(&[
        "ekumen is unreachable",
        "host retire needs it up",
        "remove its [[host]] from the inventory by hand",
    ]);
    assert!(std::fs::read_to_string(f.path("inventory/gandi.toml"))
        .unwrap()
        .contains("name = \"ekumen\""));

    // A relay whose identity is nowhere (not in secrets/, no fingerprint tor wrote on the host):
    // nothing says which identity retires, so the whole host is refused before anything changes,
    // the other relay included.
    let fleet = std::fs::read_to_string(f.path("inventory/fleet.toml")).unwrap();
    f.edit(
        "inventory/fleet.toml",
        "[fleet]\n",
        "[fleet]\nmanage_identities = false\n",
    );
    let kept = f.path("marcuse2-secrets");
    std::fs::rename(f.path("secrets/relays/marcuse2"), &kept).unwrap();
    let fp_file = "/var/lib/tor-instances/marcuse2/fingerprint";
    let fp_text = lab
        .read("marcuse", fp_file)
        .expect("tor wrote its fingerprint");
    lab.run("marcuse", &format!("rm {fp_file}"));
    host_retire(&["marcuse", "--yes"]).code(1).err_has(&[
        "marcuse2: no fingerprint in secrets/ nor on marcuse: nothing says which identity retires; check the host by hand. Nothing was changed",
    ]);
    assert_eq!(lab.is_active("marcuse", "tor@marcuse1"), "active");
    assert!(lab
        .read("marcuse", "/var/lib/oignon/moved/marcuse1")
        .is_none());
    f.write("inventory/fleet.toml", &fleet);
    std::fs::rename(&kept, f.path("secrets/relays/marcuse2")).unwrap();
    lab.write("marcuse", fp_file, &fp_text);

    let r = host_retire(&["marcuse", "--yes"]);
    // Both relays stop first (together: each stop waits tor's ShutdownWaitLength), then each
    // relay's keys, tombstone and purge.
    let at = |s: &str| r.stdout.find(s).unwrap_or(usize::MAX);
    assert!(
        at("marcuse: marcuse2: stop: done") < at("marcuse: marcuse1: quarantine: done"),
        "{}",
        r.stdout
    );
    r.code(0).out_has(&[
        "marcuse: marcuse1: stop: done",
        "marcuse: marcuse1: quarantine: done",
        "marcuse: marcuse1: tombstone: done",
        "marcuse: marcuse1: purge: done",
        "marcuse: marcuse2: purge: done",
        "inventory: host marcuse removed. Its relays are retired; their tombstones stay on marcuse.",
    ]);
    for r in ["marcuse1", "marcuse2"] {
        let unit = format!("tor@{r}");
        assert_eq!(lab.is_active("marcuse", &unit), "inactive");
        assert_eq!(
            lab.run("marcuse", &format!("systemctl is-enabled {unit} || true"))
                .trim(),
            "masked"
        );
        let tomb = lab
            .read_string("marcuse", &format!("/var/lib/oignon/moved/{r}"))
            .expect("a tombstone");
        assert!(
            tomb.contains("to\t-\n") && tomb.contains(&format!("fingerprint\t{}", fpr(r))),
            "{tomb}"
        );
        assert!(lab
            .read_string("marcuse", &format!("/etc/tor/instances/{r}/torrc"))
            .is_none());
        assert_eq!(
            lab.run(
                "marcuse",
                &format!("ls /var/backups/oignon | grep -c '^etc__tor__instances__{r}.removed'")
            )
            .trim(),
            "1"
        );
    }
    assert_eq!(
        lab.run(
            "marcuse",
            "find /var/lib/tor-instances /var/lib/oignon/quarantine -path '*keys*' -type f | wc -l"
        )
        .trim(),
        "0"
    );
    // The host is gone from the inventory; its hoster stays; the fleet checks.
    assert_eq!(
        std::fs::read_to_string(f.path("inventory/ielo-liazo.toml")).unwrap(),
        "[hoster]\nname = \"IELO-LIAZO\"\ndomain = \"ielo-liazo.com\"\n"
    );
    f.run(&["check"])
        .code(0)
        .out_has(&["ok: 3 hosts, 4 relays"]);
    // Nothing is left to retire; a rerun says so.
    host_retire(&["marcuse", "--yes"])
        .code(1)
        .err_has(&["no host `marcuse` in the inventory (already retired?)"]);
}

#[test]
fn plan_refuses_to_start_a_relay_whose_identity_runs_on_another_host() {
    let f = Fixture::shipped_on_real();
    let gandi = std::fs::read_to_string(f.path("inventory/gandi.toml")).expect("gandi.toml");
    f.write(
        "inventory/gandi.toml",
        &format!("{gandi}\n[[host]]\nname = \"ekumen2\"\nipv4 = \"192.0.2.21\"\nipv6 = \"2001:db8:21::1\"\nuplink = \"25 Mbit/s\"\n"),
    );
    let Some(lab) = RealLab::start(
        "plan_refuses_to_start_a_relay_whose_identity_runs_on_another_host",
        &f.real_hosts(&["ekumen", "ekumen2"]),
    ) else {
        return;
    };
    oignon(&f, &lab, &["apply", "--yes", "--brief"])
        .code(0)
        .out_has(&["Applied: 2 hosts ok"]);
    lab.wait_active("ekumen", "tor@ekumen", UP);
    // The old manual recipe: the relay's table moved to the new VM by hand, the old copy still
    // running. The plan would start the same identity on ekumen2: refused there, naming ekumen.
    let moved = std::fs::read_to_string(f.path("inventory/gandi.toml"))
        .unwrap()
        .replace("[[host.relay]]\nnickname = \"ekumen\"\norport = 443\n", "")
        + "\n[[host.relay]]\nnickname = \"ekumen\"\norport = 443\n";
    f.write("inventory/gandi.toml", &moved);
    f.run(&["check"]).code(0);
    let refused = [
        "ekumen2",
        "refused: ekumen would start here with the identity",
        "that is active on host ekumen (as ekumen); nothing was written",
        "this plan stops it on ekumen (it left the inventory there): apply ekumen first (`oignon apply --host ekumen`), then ekumen2",
    ];
    oignon(&f, &lab, &["plan", "--brief"])
        .code(1)
        .out_has(&refused);
    assert_eq!(lab.is_active("ekumen", "tor@ekumen"), "active");
    // apply: ekumen2 gets nothing (no instance, no keys) and never runs it; ekumen's own plan
    // (the relay left it) stops it there.
    oignon(&f, &lab, &["apply", "--yes", "--brief"])
        .code(1)
        .out_has(&refused);
    assert_ne!(lab.is_active("ekumen2", "tor@ekumen"), "active");
    assert_eq!(
        lab.run(
            "ekumen2",
            "systemctl show -P ActiveEnterTimestampMonotonic tor@ekumen"
        )
        .trim(),
        "0",
        "tor@ekumen never started on ekumen2"
    );
    assert!(lab
        .read(
            "ekumen2",
            "/var/lib/tor-instances/ekumen/keys/secret_id_key"
        )
        .is_none());
    assert_ne!(lab.is_active("ekumen", "tor@ekumen"), "active");
    // With the old copy stopped, the next apply starts it on ekumen2 (ekumen has nothing to do).
    oignon(&f, &lab, &["apply", "--yes", "--brief"])
        .code(0)
        .out_has(&["ekumen: no changes", "Applied: 1 host ok"]);
    lab.wait_active("ekumen2", "tor@ekumen", UP);
    assert_ne!(lab.is_active("ekumen", "tor@ekumen"), "active");
}
