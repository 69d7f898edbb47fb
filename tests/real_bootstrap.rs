//! Onboarding on real Debian 12 hosts (scripts/lab-real): `hoster add` and `host add` write the
//! new host into a copy of the shipped inventory, `bootstrap` reads the host's facts in one
//! round trip and refuses while any fact blocks (changing nothing), then installs tor through
//! the host's real apt and dpkg from a local repository (the lab hosts have no network), and
//! `apply` makes it a running relay.

use crate::harness::real::RealLab;
use crate::harness::repo::{LocalRepo, TestKey};
use crate::harness::{Fixture, Run};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const UP: Duration = Duration::from_secs(60);
/// What `bootstrap` installs on a relay host: the repository holds them and their dependencies.
const PACKAGES: &[&str] = &["tor", "tor-geoipdb", "unattended-upgrades"];

/// `oignon hoster add` and `oignon host add aquila` in the fixture, as the README's runbook.
fn onboard(f: &Fixture, extra: &[&str]) {
    f.run(&["hoster", "add", "Aquilenet", "--domain", "aquilenet.fr"])
        .code(0)
        .out_has(&["Wrote inventory/aquilenet.toml"]);
    let mut args = vec![
        "host",
        "add",
        "aquila",
        "--hoster",
        "aquilenet.fr",
        "--ipv4",
        "192.0.2.50",
        "--ipv6",
        "2001:db8:50::1",
        "--uplink",
        "200 Mbit/s",
    ];
    args.extend_from_slice(extra);
    f.run(&args).code(0).out_has(&["Added host aquila"]);
}

fn bootstrap(f: &Fixture, lab: &RealLab, extra: &[&str]) -> Run {
    let mut args = vec!["bootstrap", "aquila"];
    args.extend_from_slice(extra);
    f.run_over(&lab.ssh_config(), &args)
}

/// Default routes in the host's network namespace, through a veth pair whose other end is in
/// the same namespace: the route exists, and nothing leaves the namespace.
fn add_default_routes(lab: &RealLab) {
    let ns = &lab.host("aquila").netns;
    for cmd in [
        "ip link add oig0 type veth peer name oig1",
        "ip link set oig0 up",
        "ip link set oig1 up",
        "ip route add default dev oig0",
        "ip -6 route add default dev oig0",
    ] {
        let mut argv = vec!["netns", "exec", ns];
        argv.extend(cmd.split(' '));
        let out = Command::new("ip").args(&argv).output().expect("ip");
        assert!(out.status.success(), "ip {argv:?}: {out:?}");
    }
}

/// Every path under /etc and /var/lib with its type, size, mode, owner and mtime; not the
/// relays' DataDirectories, which running tor instances write to on their own.
fn listing(lab: &RealLab) -> String {
    lab.run(
        "aquila",
        "find /etc /var/lib -xdev -path /var/lib/tor-instances -prune -o -printf '%p %y %s %m %U %T@\\n' | sort",
    )
}

/// Fails with the lines that differ between two listings.
#[track_caller]
fn assert_unchanged(before: &str, after: &str, what: &str) {
    let b: std::collections::BTreeSet<&str> = before.lines().collect();
    let a: std::collections::BTreeSet<&str> = after.lines().collect();
    let gone: Vec<&&str> = b.difference(&a).collect();
    let new: Vec<&&str> = a.difference(&b).collect();
    assert!(
        gone.is_empty() && new.is_empty(),
        "{what} changed the host:\nbefore only: {gone:#?}\nafter only: {new:#?}"
    );
}

/// A process listening on ADDR:PORT in a lab host's network namespace; killed on drop.
struct Squatter(Child);

impl Squatter {
    fn start(netns: &str, addr: &str, port: u16) -> Squatter {
        let child = Command::new("ip")
            .args(["netns", "exec", netns, "socat"])
            .arg(format!("TCP-LISTEN:{port},bind={addr},reuseaddr,fork"))
            .arg("EXEC:/bin/true")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("socat (./scripts/test installs it)");
        let s = Squatter(child);
        // Until it listens.
        for _ in 0..50 {
            let out = Command::new("ip")
                .args(["netns", "exec", netns, "ss", "-Hltn"])
                .output()
                .expect("ss");
            if String::from_utf8_lossy(&out.stdout).contains(&format!("{addr}:{port}")) {
                return s;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("socat does not listen on {addr}:{port}");
    }
}

impl Drop for Squatter {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn preflight_reports_each_blocking_fact_with_its_fix_and_changes_nothing() {
    let test = "preflight_reports_each_blocking_fact_with_its_fix_and_changes_nothing";
    let f = Fixture::shipped_on_real();
    onboard(&f, &["--relays", "2"]);
    // The host lacks the inventory's IPv6 address (the lab gives it only the IPv4), has no
    // default route and no GRUB (a container).
    let Some(lab) = RealLab::start(test, &[("aquila".into(), vec!["192.0.2.50".into()])]) else {
        return;
    };
    // Something already listens on aquila1's ORPort.
    let _squatter = Squatter::start(&lab.host("aquila").netns, "192.0.2.50", 443);
    // An old tor first on root's PATH, answering `--version` as tor 0.4.7 does.
    lab.write(
        "aquila",
        "/usr/local/bin/tor",
        b"#!/bin/sh\necho 'Tor version 0.4.7.16.'\n",
    );
    lab.run("aquila", "chmod 0755 /usr/local/bin/tor");
    let before = listing(&lab);
    let r = bootstrap(&f, &lab, &[]);
    r.code(1)
        .out_has(&[
            "fact ",
            "| how to fix",
            "IPv6 2001:db8:50::1",
            "ip addr add 2001:db8:50::1/128 dev IFACE",
            "ip route add default via GATEWAY",
            "ip -6 route add default via GATEWAY",
            "no GRUB (no /boot/grub/grub.cfg, no grub package)",
            "set boot = \"none\" for host aquila in inventory/aquilenet.toml",
            "ORPort aquila1 192.0.2.50:443",
            "ss -ltnp 'sport = :443'",
            "0.4.7.16 (/usr/local/bin/tor)",
            "set tor_source = \"torproject\" in [fleet]",
        ])
        .err_has(&["error: 6 blocking facts on aquila: nothing was changed"]);
    let blocked: Vec<&str> = r.stdout.lines().filter(|l| l.contains("| NO ")).collect();
    assert_eq!(blocked.len(), 6, "{}", r.stdout);
    // The clock: a container shares this machine's kernel clock, so its sync cannot be stopped
    // from inside; the row says so instead of blocking.
    assert!(
        r.stdout
            .lines()
            .any(|l| l.starts_with("clock synchronised") && l.contains("| note ")),
        "{}",
        r.stdout
    );
    assert_unchanged(&before, &listing(&lab), "the refused bootstrap");
    assert_eq!(
        lab.read_string("aquila", "/etc/apt/apt.conf.d/52oignon"),
        None
    );
}

#[test]
fn bootstrap_installs_tor_through_apt_then_its_apply_runs_the_relay_and_a_second_bootstrap_changes_nothing(
) {
    let test = "bootstrap_installs_tor_through_apt_then_its_apply_runs_the_relay_and_a_second_bootstrap_changes_nothing";
    let repo = LocalRepo::build(PACKAGES, "bookworm", "Debian", None)
        .unwrap_or_else(|e| panic!("{test}: {e}"));
    let f = Fixture::shipped_on_real();
    onboard(&f, &["--boot", "none", "--keygen"]);
    let Some(lab) = RealLab::start(
        test,
        &[(
            "aquila".into(),
            vec!["192.0.2.50".into(), "2001:db8:50::1".into()],
        )],
    ) else {
        return;
    };
    add_default_routes(&lab);
    // A fresh host: no tor, Debian's tor.service not masked, apt reading only the local
    // repository (the host has no network).
    lab.run(
        "aquila",
        "DEBIAN_FRONTEND=noninteractive apt-get purge -y -q tor tor-geoipdb >/dev/null 2>&1 && systemctl unmask tor.service tor@default.service >/dev/null 2>&1",
    );
    assert!(!lab.exec("aquila", "command -v tor").status.success());
    repo.install_on(&lab, "aquila", "/srv/oignon-repo");
    lab.write(
        "aquila",
        "/etc/apt/sources.list",
        b"deb [trusted=yes] file:/srv/oignon-repo bookworm main\n",
    );
    // --apply: the install, then the same apply as `oignon apply --host aquila`.
    bootstrap(&f, &lab, &["--apply", "--yes"])
        .code(0)
        .out_has(&[
            "not installed: bootstrap installs it",
            "file:/srv/oignon-repo bookworm",
            "Bootstrapped aquila:",
            "masked tor.service",
            "masked tor@default.service",
            "wrote /etc/apt/apt.conf.d/52oignon",
            "installed tor tor-geoipdb unattended-upgrades",
            "ran `systemctl enable --now tor@aquila`",
            "Applied: 1 host ok, 0 failed",
        ]);
    // Real dpkg state, and Debian's single instance never ran.
    let status = lab.run(
        "aquila",
        "dpkg-query -W -f '${Package} ${Status}\\n' tor tor-geoipdb unattended-upgrades",
    );
    assert_eq!(
        status
            .lines()
            .filter(|l| l.ends_with("install ok installed"))
            .count(),
        3,
        "{status}"
    );
    assert_eq!(
        lab.run("aquila", "systemctl is-enabled tor.service || true")
            .trim(),
        "masked"
    );
    assert_eq!(lab.is_active("aquila", "tor.service"), "inactive");
    assert!(lab
        .read_string("aquila", "/etc/apt/apt.conf.d/52oignon")
        .expect("52oignon")
        .contains("APT::Periodic::Unattended-Upgrade \"1\";"));

    f.run_over(
        &lab.ssh_config(),
        &["plan", "--host", "aquila", "--detailed-exitcode"],
    )
    .code(0);
    lab.wait_active("aquila", "tor@aquila", UP);
    let fpr = std::fs::read_to_string(f.path("secrets/relays/aquila/fingerprint"))
        .expect("keygen wrote the fingerprint")
        .trim()
        .to_string();
    let journal = lab.wait_journal(
        "aquila",
        "tor@aquila",
        "Your Tor server's identity key fingerprint is",
        UP,
    );
    assert!(
        journal.contains(&format!(
            "Your Tor server's identity key fingerprint is 'aquila {fpr}'"
        )),
        "tor@aquila logs another fingerprint than secrets/ ({fpr}):\n{journal}"
    );

    bootstrap(&f, &lab, &["--preflight"])
        .code(0)
        .out_has(&["Preflight ok: nothing blocks."]);
    let before = listing(&lab);
    bootstrap(&f, &lab, &[]).code(0).out_has(&[
        "held by tor@aquila.service (this relay)",
        "Nothing to change: aquila already holds what a relay needs.",
    ]);
    assert_unchanged(&before, &listing(&lab), "a second bootstrap");
}

#[test]
fn torproject_source_and_keyring_written_exactly_apt_checks_the_signature_and_unattended_upgrades_take_tor_from_it(
) {
    let test =
        "torproject_source_and_keyring_written_exactly_apt_checks_the_signature_and_unattended_upgrades_take_tor_from_it";
    // A repository standing in for deb.torproject.org: signed, `Origin: TorProject`.
    let key = TestKey::new().unwrap_or_else(|e| panic!("{test}: {e}"));
    let other = TestKey::new().unwrap_or_else(|e| panic!("{test}: {e}"));
    let repo = LocalRepo::build(PACKAGES, "bookworm", "TorProject", Some(&key))
        .unwrap_or_else(|e| panic!("{test}: {e}"));
    let f = Fixture::shipped_on_real();
    // First the wrong keyring: apt must refuse the repository.
    std::fs::write(f.path("inventory/torproject.gpg"), &other.keyring).unwrap();
    f.edit(
        "inventory/fleet.toml",
        "proof = \"uri-rsa\"\n",
        "proof = \"uri-rsa\"\ntor_source = \"torproject\"\ntor_keyring = \"torproject.gpg\"\ntor_repository = \"file:/srv/torproject-repo\"\n",
    );
    onboard(&f, &["--boot", "none", "--keygen"]);
    let Some(lab) = RealLab::start(
        test,
        &[(
            "aquila".into(),
            vec!["192.0.2.50".into(), "2001:db8:50::1".into()],
        )],
    ) else {
        return;
    };
    add_default_routes(&lab);
    lab.run(
        "aquila",
        "DEBIAN_FRONTEND=noninteractive apt-get purge -y -q tor tor-geoipdb >/dev/null 2>&1",
    );
    repo.install_on(&lab, "aquila", "/srv/torproject-repo");
    // No Debian source at all: everything comes from the signed repository.
    lab.write("aquila", "/etc/apt/sources.list", b"");
    bootstrap(&f, &lab, &[])
        .code(1)
        .out_has(&["not yet: bootstrap writes it"])
        .err_has(&["apt-get update failed", "NO_PUBKEY"]);
    assert!(!lab.exec("aquila", "command -v tor").status.success());

    // The right keyring: the source and keyring are rewritten, apt verifies and installs.
    std::fs::write(f.path("inventory/torproject.gpg"), &key.keyring).unwrap();
    bootstrap(&f, &lab, &[]).code(0).out_has(&[
        "wrote /etc/apt/keyrings/oignon-torproject.gpg",
        "installed tor tor-geoipdb unattended-upgrades",
    ]);
    assert_eq!(
        lab.read_string("aquila", "/etc/apt/sources.list.d/tor.sources")
            .expect("tor.sources"),
        "# Written by oignon bootstrap (tor_source = \"torproject\" in the inventory's [fleet]).\n\
         Types: deb\n\
         URIs: file:/srv/torproject-repo\n\
         Suites: bookworm\n\
         Components: main\n\
         Architectures: amd64\n\
         Signed-By: /etc/apt/keyrings/oignon-torproject.gpg\n"
    );
    assert_eq!(
        lab.read("aquila", "/etc/apt/keyrings/oignon-torproject.gpg")
            .expect("keyring"),
        key.keyring
    );
    let policy = lab.run("aquila", "apt-cache policy tor");
    assert!(
        policy.contains("file:/srv/torproject-repo bookworm/main"),
        "{policy}"
    );
    assert!(lab
        .read_string("aquila", "/etc/apt/apt.conf.d/52oignon")
        .expect("52oignon")
        .contains("\"origin=TorProject,codename=${distro_codename}\";"));
    bootstrap(&f, &lab, &[])
        .code(0)
        .out_has(&["Nothing to change: aquila already holds what a relay needs."]);

    // unattended-upgrades takes tor's updates from that origin: with a newer tor in the
    // repository, its dry run would upgrade tor; without 52oignon it would not.
    let newer = repo
        .add_newer("tor", "+oignon1", Some(&key))
        .unwrap_or_else(|e| panic!("{test}: {e}"));
    repo.install_on(&lab, "aquila", "/srv/torproject-repo");
    lab.run("aquila", "apt-get update -q >/dev/null");
    let policy = lab.run("aquila", "apt-cache policy tor");
    assert!(policy.contains(&format!("Candidate: {newer}")), "{policy}");
    let dry_run = "unattended-upgrade --dry-run --debug 2>&1 | grep -E '^(Allowed origins|Packages that will be upgraded|No packages found)' || true";
    // The words after "Packages that will be upgraded:" (the repository, all of it signed as
    // TorProject here, also holds newer libraries than the host's).
    let upgrades = |out: &str| -> Vec<String> {
        out.lines()
            .filter_map(|l| l.strip_prefix("Packages that will be upgraded:"))
            .flat_map(|l| l.split_whitespace().map(str::to_string))
            .collect()
    };
    let with = lab.run("aquila", dry_run);
    assert!(
        with.contains("origin=TorProject,codename=bookworm")
            && upgrades(&with).contains(&"tor".to_string()),
        "{with}"
    );
    lab.run("aquila", "mv /etc/apt/apt.conf.d/52oignon /root/52oignon");
    let without = lab.run("aquila", dry_run);
    assert!(
        !upgrades(&without).contains(&"tor".to_string()),
        "{without}"
    );
}
