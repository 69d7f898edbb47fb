//! `oignon apply` on real Debian 12 hosts (scripts/lab-real: systemd-nspawn containers): what the
//! namespace lab can only record (systemctl, journald, tor@ itself) happens for real here, and
//! these tests check its effects: tor running under Debian's unit and oignon's drop-in, the
//! fingerprint tor logs, reloads and restarts seen in tor's journal and MainPID.

use crate::harness::real::RealLab;
use crate::harness::{oignon, Fixture};
use std::time::Duration;

const UP: Duration = Duration::from_secs(60);

/// The shipped fleet on real hosts named after its hosts, or None (said loudly) when the tier
/// is skipped.
fn real(test: &str, hosts: &[&str]) -> Option<(Fixture, RealLab)> {
    let f = Fixture::shipped_on_real();
    let lab = RealLab::start(test, &f.real_hosts(hosts))?;
    Some((f, lab))
}

fn fingerprint_in_secrets(f: &Fixture, nick: &str) -> String {
    std::fs::read_to_string(f.path(&format!("secrets/relays/{nick}/fingerprint")))
        .expect("a fingerprint in secrets/")
        .trim()
        .to_string()
}

/// Listening TCP sockets in the host's network namespace, as `ADDR:PORT` (IPv6 in brackets).
fn listening(lab: &RealLab, host: &str) -> Vec<String> {
    lab.run(host, "ss -Hltn")
        .lines()
        .filter_map(|l| l.split_whitespace().nth(3).map(str::to_string))
        .collect()
}

#[test]
fn apply_to_fresh_hosts_runs_every_relay_with_the_identity_in_secrets() {
    let Some((f, lab)) = real(
        "apply_to_fresh_hosts_runs_every_relay_with_the_identity_in_secrets",
        &["ekumen", "algrothendieck", "marcuse", "marylou"],
    ) else {
        return;
    };
    oignon(&f, &lab, &["apply", "--yes", "--brief"])
        .code(0)
        .out_has(&["Applied: 4 hosts ok, 0 failed"]);
    let relays = [
        ("ekumen", "ekumen", "192.0.2.20:443"),
        ("algrothendieck", "AlGrothendieck", "203.0.113.40:443"),
        ("marcuse", "marcuse1", "192.0.2.10:443"),
        ("marcuse", "marcuse2", "192.0.2.10:9001"),
        ("marylou", "marylou1", "198.51.100.30:443"),
        ("marylou", "marylou2", "198.51.100.30:9001"),
    ];
    for (host, nick, orport) in relays {
        let unit = format!("tor@{nick}");
        lab.wait_active(host, &unit, UP);
        // tor's own words: the identity it loaded from the keys oignon deployed.
        let fpr = fingerprint_in_secrets(&f, nick);
        let journal = lab.wait_journal(
            host,
            &unit,
            "Your Tor server's identity key fingerprint is",
            UP,
        );
        assert!(
            journal.contains(&format!(
                "Your Tor server's identity key fingerprint is '{nick} {fpr}'"
            )),
            "{host}: {unit} logs another fingerprint than secrets/relays/{nick}/fingerprint ({fpr}):\n{journal}"
        );
        // Under Debian's unit plus oignon's drop-in, as its own user, on exactly its ORPort.
        assert!(listening(&lab, host).contains(&orport.to_string()));
        let pid = lab.main_pid(host, &unit);
        let status = lab.run(host, &format!("cat /proc/{pid}/status"));
        let user = lab.run(host, &format!("stat -c %U /proc/{pid}"));
        assert_eq!(user.trim(), format!("_tor-{nick}"));
        assert!(
            status.contains("Seccomp:\t2"),
            "{unit}: no seccomp filter:\n{status}"
        );
        let dropins = lab.run(
            host,
            &format!("systemctl show --property=DropInPaths --value {unit}"),
        );
        assert!(
            dropins.contains("/etc/systemd/system/tor@.service.d/oignon.conf"),
            "{unit} runs without oignon's drop-in: {dropins}"
        );
        let strict = lab.run(
            host,
            &format!("systemctl show --property=ProtectSystem --value {unit}"),
        );
        assert_eq!(strict.trim(), "strict");
    }
    // Only the instances under test run: Debian's tor@default stays masked.
    assert_eq!(lab.is_active("ekumen", "tor@default"), "inactive");
    // Everything is where the plan wants it.
    oignon(&f, &lab, &["plan", "--detailed-exitcode"])
        .code(0)
        .out_has(&["Fleet: 4 hosts, 0 with changes"]);
}

#[test]
fn contact_info_change_reloads_tor_and_an_orport_change_restarts_it() {
    let Some((f, lab)) = real(
        "contact_info_change_reloads_tor_and_an_orport_change_restarts_it",
        &["marcuse"],
    ) else {
        return;
    };
    oignon(&f, &lab, &["apply", "--yes", "--brief"]).code(0);
    for unit in ["tor@marcuse1", "tor@marcuse2"] {
        lab.wait_active("marcuse", unit, UP);
    }
    let pid1 = lab.main_pid("marcuse", "tor@marcuse1");
    assert!(!lab
        .journal("marcuse", "tor@marcuse1")
        .contains("Received reload signal"));

    // ContactInfo is taken by a reload: same process, tor re-reads its torrc.
    f.edit(
        "inventory/fleet.toml",
        "email = \"abuse@nos-oignons.net\"",
        "email = \"abuse-desk@nos-oignons.net\"",
    );
    oignon(&f, &lab, &["apply", "--yes", "--brief"])
        .code(0)
        .out_has(&[
            "ran `systemctl reload tor@marcuse1`",
            "ran `systemctl reload tor@marcuse2`",
        ]);
    let journal = lab.wait_journal("marcuse", "tor@marcuse1", "Received reload signal", UP);
    assert!(
        journal.contains("Received reload signal (hup). Reloading config"),
        "{journal}"
    );
    assert_eq!(
        lab.main_pid("marcuse", "tor@marcuse1"),
        pid1,
        "a reload keeps the process"
    );
    lab.wait_active("marcuse", "tor@marcuse1", UP);
    assert!(
        !journal.contains("[warn]"),
        "tor warned on the reload:\n{journal}"
    );

    // An ORPort cannot change on a reload: a restart, a new process bound to the new port.
    let pid2 = lab.main_pid("marcuse", "tor@marcuse2");
    f.edit(
        "inventory/ielo-liazo.toml",
        "orport = 9001",
        "orport = 9002",
    );
    oignon(&f, &lab, &["apply", "--yes", "--brief"])
        .code(0)
        .out_has(&["ran `systemctl restart tor@marcuse2`"]);
    lab.wait_active("marcuse", "tor@marcuse2", UP);
    let new2 = lab.main_pid("marcuse", "tor@marcuse2");
    assert_ne!(new2, pid2, "tor@marcuse2 was not restarted");
    assert_eq!(
        lab.main_pid("marcuse", "tor@marcuse1"),
        pid1,
        "tor@marcuse1 was not touched"
    );
    let ports = listening(&lab, "marcuse");
    assert!(ports.contains(&"192.0.2.10:9002".to_string()), "{ports:?}");
    assert!(!ports.contains(&"192.0.2.10:9001".to_string()), "{ports:?}");
}

#[test]
fn a_drop_in_change_reloads_systemd_and_restarts_every_instance_under_it() {
    let Some((f, lab)) = real(
        "a_drop_in_change_reloads_systemd_and_restarts_every_instance_under_it",
        &["marcuse"],
    ) else {
        return;
    };
    oignon(&f, &lab, &["apply", "--yes", "--brief"]).code(0);
    let units = ["tor@marcuse1", "tor@marcuse2"];
    let mut before = vec![];
    for unit in units {
        lab.wait_active("marcuse", unit, UP);
        before.push(lab.main_pid("marcuse", unit));
    }
    // A property the new process shows: its nice value (Debian's unit sets none).
    f.edit(
        "roles/hardening/templates/tor-unit.conf.tera",
        "[Service]\n",
        "[Service]\nNice=5\n",
    );
    oignon(&f, &lab, &["apply", "--yes", "--brief"])
        .code(0)
        .out_has(&[
            "ran `systemctl daemon-reload`",
            "ran `systemctl restart tor@marcuse1`",
            "ran `systemctl restart tor@marcuse2`",
        ]);
    for (unit, old) in units.iter().zip(before) {
        lab.wait_active("marcuse", unit, UP);
        let pid = lab.main_pid("marcuse", unit);
        assert_ne!(pid, old, "{unit} was not restarted");
        // systemd read the new drop-in (daemon-reload) and the new process runs under it.
        let nice = lab.run("marcuse", &format!("ps -o ni= -p {pid}"));
        assert_eq!(nice.trim(), "5", "{unit}: the new drop-in is not in force");
    }
    let unit_state = lab.run(
        "marcuse",
        "systemctl show --property=NeedDaemonReload --value tor@marcuse1",
    );
    assert_eq!(unit_state.trim(), "no");
}

#[test]
fn a_stopped_instance_is_started_again_by_the_next_apply() {
    let Some((f, lab)) = real(
        "a_stopped_instance_is_started_again_by_the_next_apply",
        &["ekumen"],
    ) else {
        return;
    };
    oignon(&f, &lab, &["apply", "--yes", "--brief"]).code(0);
    lab.wait_active("ekumen", "tor@ekumen", UP);
    lab.run("ekumen", "systemctl stop tor@ekumen");
    assert_eq!(lab.is_active("ekumen", "tor@ekumen"), "inactive");
    oignon(&f, &lab, &["plan", "--detailed-exitcode"])
        .code(2)
        .out_has(&["tor@ekumen"]);
    oignon(&f, &lab, &["apply", "--yes", "--brief"]).code(0);
    lab.wait_active("ekumen", "tor@ekumen", UP);
    oignon(&f, &lab, &["plan", "--detailed-exitcode"]).code(0);
}

#[test]
fn apply_reboot_on_a_container_host_reboots_it_and_waits_for_the_new_boot() {
    let Some((f, lab)) = real(
        "apply_reboot_on_a_container_host_reboots_it_and_waits_for_the_new_boot",
        &["ekumen"],
    ) else {
        return;
    };
    oignon(&f, &lab, &["apply", "--yes", "--brief"]).code(0);
    lab.wait_active("ekumen", "tor@ekumen", UP);
    let before = lab.boot_id("ekumen");
    // A container shares this machine's kernel: its /proc/cmdline never carries the kernel
    // role's parameters, so the plan always says "reboot required" (the VM tier proves the line).
    oignon(&f, &lab, &["apply", "--yes", "--brief", "--reboot"])
        .code(0)
        .out_has(&["✓ ekumen: applied", "rebooted (--reboot): back after"]);
    let after = lab.boot_id("ekumen");
    assert_ne!(before, after, "the same boot id: ekumen did not reboot");
    // A reboot asked by systemd inside the container (nspawn's exit 133), not a kill.
    let boots = std::fs::read_to_string(lab.host("ekumen").root.join("boots.log")).unwrap();
    assert!(boots.contains(" exit 133"), "{boots}");
    // The enabled relay comes back by itself, with its identity.
    lab.wait_active("ekumen", "tor@ekumen", UP);
    let fpr = fingerprint_in_secrets(&f, "ekumen");
    lab.wait_journal(
        "ekumen",
        "tor@ekumen",
        &format!("Your Tor server's identity key fingerprint is 'ekumen {fpr}'"),
        UP,
    );
    oignon(&f, &lab, &["plan", "--detailed-exitcode"]).code(0);
}

#[test]
fn apply_reboot_fails_the_host_that_does_not_come_back_in_time() {
    let Some((f, lab)) = real(
        "apply_reboot_fails_the_host_that_does_not_come_back_in_time",
        &["ekumen"],
    ) else {
        return;
    };
    oignon(&f, &lab, &["apply", "--yes", "--brief"]).code(0);
    // After its reboot, this host boots but never answers over SSH.
    lab.run("ekumen", "systemctl disable --quiet ssh.service");
    let before = lab.boot_id("ekumen");
    let t0 = std::time::Instant::now();
    oignon(
        &f,
        &lab,
        &[
            "apply",
            "--yes",
            "--brief",
            "--reboot",
            "--reboot-timeout",
            "8",
        ],
    )
    .code(1)
    .out_has(&[
        "✗ ekumen: FAILED",
        "the host did not come back within 8s",
        "--reboot-timeout",
    ]);
    assert!(t0.elapsed() < Duration::from_secs(40), "{:?}", t0.elapsed());
    // It did reboot: it only never answered.
    assert_ne!(lab.boot_id("ekumen"), before);
}

#[test]
fn apply_reboot_never_reboots_the_controller_for_a_local_image() {
    // `--local DIR`: host H is the directory DIR/H on this machine; `systemctl reboot` there
    // would reboot the controller itself. No real host is needed: the local transport. A
    // recording `systemctl` first in PATH keeps this machine up even if that ever regresses.
    let f = Fixture::shipped();
    let images = tempfile::tempdir().unwrap();
    let bin = tempfile::tempdir().unwrap();
    let calls = bin.path().join("calls");
    let fake = bin.path().join("systemctl");
    std::fs::write(
        &fake,
        format!("#!/bin/sh\necho \"$*\" >>'{}'\n", calls.display()),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let run = crate::harness::run_in_env(
        f.dir.path(),
        &[
            "apply",
            "--yes",
            "--brief",
            "--reboot",
            "--local",
            images.path().to_str().unwrap(),
            "--host",
            "ekumen",
        ],
        &[("PATH", std::path::Path::new(&path))],
    );
    run.code(0).out_has(&[
        "✓ ekumen: applied",
        "not rebooted: a local image runs its new kernel command line when it boots",
    ]);
    let called = std::fs::read_to_string(&calls).unwrap_or_default();
    assert!(
        !called.contains("reboot"),
        "systemctl reboot ran on the controller: {called}"
    );
}

/// The drop-in with a line that keeps tor from opening its ORPort: valid for systemd, fatal to
/// the relay.
fn fatal_drop_in(f: &Fixture) {
    f.edit(
        "roles/hardening/templates/tor-unit.conf.tera",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK",
        "RestrictAddressFamilies=AF_UNIX",
    );
}

#[test]
fn a_fatal_drop_in_is_rolled_back_and_the_relay_runs_again() {
    let Some((f, lab)) = real(
        "a_fatal_drop_in_is_rolled_back_and_the_relay_runs_again",
        &["ekumen"],
    ) else {
        return;
    };
    oignon(&f, &lab, &["apply", "--yes", "--brief"]).code(0);
    lab.wait_active("ekumen", "tor@ekumen", UP);
    let old = lab.read("ekumen", "/etc/systemd/system/tor@.service.d/oignon.conf");
    // Well-formed, so systemd-analyze verify accepts it; fatal to tor, which cannot bind its ORPort.
    fatal_drop_in(&f);
    oignon(&f, &lab, &["apply", "--yes", "--brief"])
        .code(1)
        .out_has(&[
            "✗ ekumen: FAILED",
            "refused by systemd at start: tor@ekumen failed under the new /etc/systemd/system/tor@.service.d/oignon.conf, so it was rolled back and tor@ekumen started again under the old one",
        ]);
    // Real: tor under AF_UNIX only could not bind its ORPort; then it ran again.
    let journal = lab.wait_journal(
        "ekumen",
        "tor@ekumen",
        "Failed to bind one of the listener ports",
        UP,
    );
    assert!(
        journal.contains("Failed to start tor@ekumen.service"),
        "{journal}"
    );
    assert_eq!(
        lab.read("ekumen", "/etc/systemd/system/tor@.service.d/oignon.conf"),
        old,
        "the old drop-in is back"
    );
    lab.wait_active("ekumen", "tor@ekumen", UP);
    // Nothing left pending, and the plan shows the drop-in still to change (not drift).
    oignon(&f, &lab, &["plan", "--brief"])
        .out_has(&["~ /etc/systemd/system/tor@.service.d/oignon.conf (the inventory changed)"]);
}

#[test]
fn fixing_a_fatal_drop_in_brings_the_relay_back_in_one_apply() {
    let Some((f, lab)) = real(
        "fixing_a_fatal_drop_in_brings_the_relay_back_in_one_apply",
        &["ekumen"],
    ) else {
        return;
    };
    oignon(&f, &lab, &["apply", "--yes", "--brief"]).code(0);
    lab.wait_active("ekumen", "tor@ekumen", UP);
    let good =
        std::fs::read_to_string(f.path("roles/hardening/templates/tor-unit.conf.tera")).unwrap();
    fatal_drop_in(&f);
    oignon(&f, &lab, &["apply", "--yes", "--brief"]).code(1);
    f.write("roles/hardening/templates/tor-unit.conf.tera", &good);
    // The failed apply rolled the drop-in back and left nothing pending: with the template fixed,
    // the host already is as planned.
    oignon(&f, &lab, &["apply", "--yes", "--brief"])
        .code(0)
        .out_has(&["Nothing to apply."]);
    lab.wait_active("ekumen", "tor@ekumen", UP);
    oignon(&f, &lab, &["plan", "--detailed-exitcode"]).code(0);
}

#[test]
fn sysctl_net_keys_load_for_real_in_the_hosts_namespace_and_kernel_keys_are_only_recorded() {
    let Some((f, lab)) = real(
        "sysctl_net_keys_load_for_real_in_the_hosts_namespace_and_kernel_keys_are_only_recorded",
        &["ekumen"],
    ) else {
        return;
    };
    let machine = "/proc/sys/net/ipv4/conf/all/log_martians";
    let machine_before = std::fs::read_to_string(machine).unwrap();
    let want = if machine_before.trim() == "1" { 0 } else { 1 };
    f.edit(
        "inventory/gandi.toml",
        "uplink = \"25 Mbit/s\"",
        &format!(
            "uplink = \"25 Mbit/s\"\n[host.defaults]\nsysctl = {{ \"net.ipv4.conf.all.log_martians\" = {want} }}"
        ),
    );
    oignon(&f, &lab, &["apply", "--yes", "--brief"])
        .code(0)
        .out_has(&["ran `sysctl --system`"]);
    // The real sysctl --system set it, in the host's own network namespace only.
    assert_eq!(
        lab.run("ekumen", "sysctl -n net.ipv4.conf.all.log_martians")
            .trim(),
        want.to_string()
    );
    assert_eq!(std::fs::read_to_string(machine).unwrap(), machine_before);
    // kernel.* belongs to the kernel this container shares: the stand-in's record says what
    // a container could not load.
    let skipped = lab
        .read_string("ekumen", "/var/lib/oignon-lab/sysctl-skipped.log")
        .unwrap_or_default();
    assert!(
        skipped.contains("/etc/sysctl.d/90-oignon.conf: kernel.kptr_restrict = 2"),
        "{skipped}"
    );
}
