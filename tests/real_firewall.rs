//! The `dos-firewall` role on a real Debian 12 host (scripts/lab-real): the rendered nftables
//! ruleset is checked by the host's own `nft -c` before it replaces anything, and once loaded it
//! drops a source that opens too many connections to an ORPort while another source still gets
//! through. Traffic stays inside the host's network namespace.

use crate::harness::real::RealLab;
use crate::harness::{oignon, run_in_env, Fixture};
use std::process::Command;
use std::time::Duration;

const UP: Duration = Duration::from_secs(60);
const RULES: &str = "/etc/nftables.d/oignon-dos-marcuse1.nft";

/// The shipped fleet with the dos-firewall role on every host, and marcuse running.
fn firewalled(test: &str) -> Option<(Fixture, RealLab)> {
    let f = Fixture::shipped_on_real();
    f.edit(
        "inventory/fleet.toml",
        "roles = [\"tor\", \"exit-policy\", \"kernel\", \"hardening\"]",
        "roles = [\"tor\", \"exit-policy\", \"kernel\", \"hardening\", \"dos-firewall\"]",
    );
    let lab = RealLab::start(test, &f.real_hosts(&["marcuse"]))?;
    Some((f, lab))
}

/// One TCP connection from `source` to marcuse1's ORPort (192.0.2.10:443) inside the host's
/// namespace, with a 1 s bound: whether it was accepted.
fn connects(lab: &RealLab, source: &str) -> bool {
    connects_to(lab, "192.0.2.10", source)
}

/// One TCP connection from `source` to `addr`:443 (marcuse1's ORPort on that address family)
/// inside the host's namespace, with a 1 s bound: whether it was accepted.
fn connects_to(lab: &RealLab, addr: &str, source: &str) -> bool {
    let ns = &lab.host("marcuse").netns;
    let (to, from) = if addr.contains(':') {
        (format!("TCP6:[{addr}]:443"), format!("[{source}]"))
    } else {
        (format!("TCP:{addr}:443"), source.to_string())
    };
    Command::new("ip")
        .args(["netns", "exec", ns, "socat", "-u", "OPEN:/dev/null"])
        .arg(format!("{to},bind={from},connect-timeout=1"))
        .output()
        .expect("ip netns exec socat")
        .status
        .success()
}

/// Adds `addr` to the loopback of marcuse's namespace: "another source" there.
fn add_source(lab: &RealLab, addr: &str) {
    let ns = lab.host("marcuse").netns.clone();
    let st = Command::new("ip")
        .args(["netns", "exec", &ns, "ip", "addr", "add", addr, "dev", "lo"])
        .status()
        .unwrap();
    assert!(st.success(), "ip addr add {addr}");
}

#[test]
fn a_source_over_the_limit_is_dropped_while_another_still_connects() {
    let Some((f, lab)) =
        firewalled("a_source_over_the_limit_is_dropped_while_another_still_connects")
    else {
        return;
    };
    oignon(&f, &lab, &["apply", "--yes", "--brief"])
        .code(0)
        .out_has(&[
            RULES,
            "ran `oignon-nft-load 60`",
            "firewall confirmed over a new SSH connection",
        ]);
    lab.wait_active("marcuse", "tor@marcuse1", UP);
    lab.wait_journal(
        "marcuse",
        "tor@marcuse1",
        "Your Tor server's identity key fingerprint is",
        UP,
    );
    // Confirmed: the revert timer is gone, the rules stay, and they are what the boot loads.
    assert_eq!(
        lab.is_active("marcuse", "oignon-nft-revert.timer"),
        "inactive"
    );
    assert_eq!(
        lab.run("marcuse", "systemctl is-enabled oignon-firewall.service")
            .trim(),
        "enabled"
    );
    // "Another source": a second address on the namespace's loopback.
    let ns = lab.host("marcuse").netns.clone();
    let st = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns,
            "ip",
            "addr",
            "add",
            "192.0.2.99/32",
            "dev",
            "lo",
        ])
        .status()
        .unwrap();
    assert!(st.success());
    // Bounded: 20 attempts. torutils' burst is 8 new connections: the 9th goes over the rate,
    // the source is put in the blocked set and every later attempt is dropped.
    let results: Vec<bool> = (0..20).map(|_| connects(&lab, "192.0.2.10")).collect();
    let accepted = results.iter().filter(|ok| **ok).count();
    assert!(
        (8..=9).contains(&accepted) && results[..8].iter().all(|ok| *ok),
        "expected the first 8 connections accepted, then drops: {results:?}"
    );
    assert!(
        !results[19],
        "the flooding source still connects: {results:?}"
    );
    let blocked = lab.run("marcuse", "nft list set inet oignon_dos_marcuse1 blocked4");
    assert!(blocked.contains("192.0.2.10"), "{blocked}");
    // Another source is not punished for the first one.
    assert!(
        connects(&lab, "192.0.2.99"),
        "another source was dropped too"
    );

    // IPv6 counts per /64: a flood from one address blocks its whole /64 (another address of
    // it included), while another /64 still connects.
    add_source(&lab, "2001:db8:10::2/128");
    add_source(&lab, "2001:db8:99::1/128");
    let v6 = "2001:db8:10::1";
    let results: Vec<bool> = (0..20).map(|_| connects_to(&lab, v6, v6)).collect();
    let accepted = results.iter().filter(|ok| **ok).count();
    assert!(
        (8..=9).contains(&accepted) && results[..8].iter().all(|ok| *ok) && !results[19],
        "expected the first 8 IPv6 connections accepted, then drops: {results:?}"
    );
    let blocked = lab.run("marcuse", "nft list set inet oignon_dos_marcuse1 blocked6");
    assert!(blocked.contains("2001:db8:10::"), "{blocked}");
    assert!(
        !connects_to(&lab, v6, "2001:db8:10::2"),
        "another address of the same /64 still connects"
    );
    assert!(
        connects_to(&lab, v6, "2001:db8:99::1"),
        "another /64 was dropped too"
    );
}

#[test]
fn an_invalid_ruleset_is_refused_by_nft_and_the_old_one_stays() {
    let Some((f, lab)) = firewalled("an_invalid_ruleset_is_refused_by_nft_and_the_old_one_stays")
    else {
        return;
    };
    oignon(&f, &lab, &["apply", "--yes", "--brief"]).code(0);
    let before = lab
        .read_string("marcuse", RULES)
        .expect("the ruleset was written");
    let loaded = lab.run("marcuse", "nft list table inet oignon_dos_marcuse1");
    // A ruleset the kernel refuses: a port out of range.
    f.edit(
        "roles/dos-firewall/templates/dos.nft.tera",
        "tcp dport {{ relay.orport }} jump orport4",
        "tcp dport 70000 jump orport4",
    );
    let run = oignon(&f, &lab, &["apply", "--yes", "--brief"]);
    run.code(1).out_has(&["validation failed for"]);
    let said = format!("{}{}", run.stdout, run.stderr);
    assert!(said.contains(RULES), "{said}");
    assert!(
        said.contains("70000") || said.contains("Error"),
        "nft's own words are missing: {said}"
    );
    assert_eq!(
        lab.read_string("marcuse", RULES).as_deref(),
        Some(before.as_str())
    );
    assert_eq!(
        lab.run("marcuse", "nft list table inet oignon_dos_marcuse1"),
        loaded
    );
}

#[test]
fn a_ruleset_that_locks_ssh_out_is_reverted_by_the_host_and_it_answers_again() {
    let Some((f, lab)) =
        firewalled("a_ruleset_that_locks_ssh_out_is_reverted_by_the_host_and_it_answers_again")
    else {
        return;
    };
    oignon(&f, &lab, &["apply", "--yes", "--brief"])
        .code(0)
        .out_has(&["firewall confirmed over a new SSH connection"]);
    // A mistake that locks the operator out: new SSH connections dropped. The apply's own
    // connection is established, so it goes on: only a NEW connection tells.
    f.edit(
        "roles/dos-firewall/templates/dos.nft.tera",
        "type filter hook input priority filter - 1; policy accept;",
        "type filter hook input priority filter - 1; policy accept;\n\t\ttcp dport 22 ct state new drop",
    );
    // A short window from the inventory, so the test waits less (the default is 60 s).
    f.edit(
        "inventory/fleet.toml",
        "burst_factor = 1.0\n",
        "burst_factor = 1.0\ndos_firewall = { confirm_seconds = 15 }\n",
    );
    let args = |cmd: &'static str| -> Vec<String> {
        let mut a: Vec<String> = [
            "--ssh-config",
            lab.ssh_config().to_str().unwrap(),
            cmd,
            "--host",
            "marcuse",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if cmd == "apply" {
            a.extend(["--yes".to_string(), "--brief".to_string()]);
        }
        a
    };
    let run = |cmd: &'static str| {
        let a = args(cmd);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        run_in_env(&f.path("."), &a, &[])
    };
    // The plan shows the confirm-or-revert load, with the inventory's window.
    run("plan").code(0).out_has(&[
        "oignon-nft-load 15",
        "puts the old one back by itself after 15 s unless oignon confirms over a new SSH connection",
    ]);
    let started = std::time::Instant::now();
    let applied = run("apply");
    let applied_after = started.elapsed();
    applied.code(1).out_has(&[
        "the new firewall was loaded but could not be confirmed over a new SSH connection",
        "the host puts the previous ruleset back by itself within 15 s",
    ]);
    // The host restores the old ruleset by itself, within the window (and a little slack).
    let back = loop {
        let rules = lab.run("marcuse", "nft list ruleset");
        if !rules.contains("tcp dport 22 ct state new drop") {
            break started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(45),
            "the lockout ruleset is still loaded after {:?}:\n{rules}",
            started.elapsed()
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(
        back <= Duration::from_secs(30),
        "reverted only after {back:?}"
    );
    eprintln!(
        "lockout: apply returned after {:?}; old ruleset back after {back:?}",
        applied_after
    );
    // The per-source limits that were confirmed before are back too.
    assert!(lab
        .run("marcuse", "nft list tables")
        .contains("oignon_dos_marcuse1"));
    // And the host answers a new connection again.
    let again = lab.ssh("marcuse", "echo back");
    assert!(again.status.success(), "{again:?}");
    oignon(&f, &lab, &["status"]).out_has(&["marcuse1"]);
    // The unconfirmed ruleset never reaches the boot: after a reboot, the last confirmed one
    // loads (its per-source limits), and SSH still gets through.
    lab.reboot("marcuse");
    let rules = lab.run("marcuse", "nft list ruleset");
    assert!(rules.contains("table inet oignon_dos_marcuse1"), "{rules}");
    assert!(!rules.contains("tcp dport 22"), "{rules}");
    assert!(lab.ssh("marcuse", "true").status.success());
}

/// The shipped fleet with the dos-firewall role, no hosts needed.
fn firewalled_fixture() -> Fixture {
    let f = Fixture::shipped();
    f.edit(
        "inventory/fleet.toml",
        "roles = [\"tor\", \"exit-policy\", \"kernel\", \"hardening\"]",
        "roles = [\"tor\", \"exit-policy\", \"kernel\", \"hardening\", \"dos-firewall\"]",
    );
    f
}

#[test]
fn dos_firewall_limits_come_from_the_inventory_and_a_host_overrides_one_key() {
    let f = firewalled_fixture();
    f.edit(
        "inventory/ielo-liazo.toml",
        "uplink = \"100 Mbit/s\"\n",
        "uplink = \"100 Mbit/s\"\ndefaults = { dos_firewall = { per_minute = 20 } }\n",
    );
    f.run(&["render", "--host", "marcuse"]).code(0).out_has(&[
        "ip saddr limit rate over 20/minute burst 8 packets",
        "ip saddr ct count over 8",
        "timeout 24h",
        "ip daddr 192.0.2.10 tcp dport 443 jump orport4",
        "ip6 daddr 2001:db8:10::1 tcp dport 9001 jump orport6",
        "elements = { 128.31.0.39,",
    ]);
    f.run(&["render", "--host", "ekumen"])
        .code(0)
        .out_has(&["ip saddr limit rate over 8/minute burst 8 packets"]);
}

#[test]
fn a_dos_firewall_limit_out_of_bounds_or_misspelt_is_located() {
    let f = firewalled_fixture();
    f.edit(
        "inventory/fleet.toml",
        "burst_factor = 1.0\n",
        "burst_factor = 1.0\ndos_firewall = { per_minute = 0, burst = 8 }\n",
    );
    f.run(&["check", "--no-tor"]).code(1).err_has(&[
        "dos_firewall.per_minute = 0 is out of bounds (1 to 600)",
        "inventory/fleet.toml:",
        "new connections a minute from one source",
    ]);
    f.edit(
        "inventory/fleet.toml",
        "dos_firewall = { per_minute = 0,",
        "dos_firewall = { per_min = 8,",
    );
    f.run(&["check", "--no-tor"]).code(1).err_has(&["per_min"]);
}

#[test]
fn a_second_change_before_the_first_is_confirmed_still_reverts_to_the_last_good_ruleset() {
    let Some((f, lab)) = firewalled(
        "a_second_change_before_the_first_is_confirmed_still_reverts_to_the_last_good_ruleset",
    ) else {
        return;
    };
    oignon(&f, &lab, &["apply", "--yes", "--brief"])
        .code(0)
        .out_has(&["firewall confirmed over a new SSH connection"]);
    let template = "roles/dos-firewall/templates/dos.nft.tera";
    let hook = "type filter hook input priority filter - 1; policy accept;";
    // Each apply's window is the inventory's when it starts (read once, with the inventory).
    let window = |seconds: u32| {
        let fleet = std::fs::read_to_string(f.path("inventory/fleet.toml")).unwrap();
        let fleet = match fleet.find("dos_firewall = ") {
            Some(at) => {
                let end = at + fleet[at..].find('\n').unwrap();
                format!("{}{}", &fleet[..at], &fleet[end + 1..])
            }
            None => fleet,
        };
        let fleet = fleet.replacen(
            "burst_factor = 1.0\n",
            &format!("burst_factor = 1.0\ndos_firewall = {{ confirm_seconds = {seconds} }}\n"),
            1,
        );
        std::fs::write(f.path("inventory/fleet.toml"), fleet).unwrap();
    };
    let apply = || {
        let cfg = lab.ssh_config();
        let args = [
            "--ssh-config",
            cfg.to_str().unwrap(),
            "apply",
            "--yes",
            "--brief",
            "--host",
            "marcuse",
        ];
        run_in_env(&f.path("."), &args, &[])
    };
    // A first mistake: new SSH connections dropped; its apply waits for a confirmation that
    // cannot come. The established connection (kept for the next run) still gets through.
    f.edit(
        template,
        hook,
        &format!("{hook}\n\t\ttcp dport 22 ct state new drop"),
    );
    window(30);
    std::thread::scope(|s| {
        let first = s.spawn(apply);
        let start = std::time::Instant::now();
        while lab.is_active("marcuse", "oignon-nft-revert.timer") != "active"
            || !lab
                .run("marcuse", "nft list ruleset")
                .contains("tcp dport 22")
        {
            assert!(
                start.elapsed() < Duration::from_secs(25),
                "the first change never loaded"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        // A second change while the first is unconfirmed, through the kept connection.
        f.edit(
            template,
            "tcp dport 22 ct state new drop",
            "tcp dport 22 ct state new drop\n\t\ttcp dport 2222 drop",
        );
        window(20);
        apply()
            .code(1)
            .out_has(&["could not be confirmed over a new SSH connection"]);
        first.join().unwrap().code(1);
    });
    // The revert goes back to the last CONFIRMED ruleset, not to the first mistake.
    let start = std::time::Instant::now();
    loop {
        let rules = lab.run("marcuse", "nft list ruleset");
        if !rules.contains("dport 2222") {
            assert!(
                !rules.contains("tcp dport 22"),
                "reverted to the unconfirmed first change:\n{rules}"
            );
            assert!(rules.contains("table inet oignon_dos_marcuse1"), "{rules}");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(45),
            "never reverted:\n{rules}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(lab.ssh("marcuse", "true").status.success());
}

#[test]
fn a_confirm_window_out_of_bounds_or_misspelt_is_located() {
    let f = firewalled_fixture();
    f.edit(
        "inventory/fleet.toml",
        "burst_factor = 1.0\n",
        "burst_factor = 1.0\ndos_firewall = { burst = 8, confirm_seconds = 5 }\n",
    );
    f.run(&["check", "--no-tor"]).code(1).err_has(&[
        "dos_firewall.confirm_seconds = 5 is out of bounds (10 to 3600)",
        "inventory/fleet.toml:19:",
        "under 10 s a new SSH connection may not make it in time",
    ]);
    f.edit(
        "inventory/fleet.toml",
        "confirm_seconds = 5",
        "confirm_seconds = 7200",
    );
    f.run(&["check", "--no-tor"])
        .code(1)
        .err_has(&["dos_firewall.confirm_seconds = 7200 is out of bounds (10 to 3600)"]);
    f.edit(
        "inventory/fleet.toml",
        "confirm_seconds = 7200",
        "confirm_second = 90",
    );
    f.run(&["check", "--no-tor"]).code(1).err_has(&[
        "unknown key `confirm_second`",
        "inventory/fleet.toml:19:29",
        "did you mean `confirm_seconds`?",
    ]);
}

#[test]
fn the_plan_shows_the_confirm_window_the_inventory_sets_per_host() {
    let f = firewalled_fixture();
    // A slow uplink: IELO-LIAZO's hosts get 3 minutes; the others keep the default.
    f.edit(
        "inventory/ielo-liazo.toml",
        "uplink = \"100 Mbit/s\"\n",
        "uplink = \"100 Mbit/s\"\ndefaults = { dos_firewall = { confirm_seconds = 180 } }\n",
    );
    // Each key on its own: the fleet's per_minute still reaches the hoster's hosts.
    f.edit(
        "inventory/fleet.toml",
        "burst_factor = 1.0\n",
        "burst_factor = 1.0\ndos_firewall = { per_minute = 20 }\n",
    );
    f.run(&["render", "--host", "marcuse"])
        .code(0)
        .out_has(&["ip saddr limit rate over 20/minute burst 8 packets"]);
    let root = f.path("images");
    std::fs::create_dir_all(&root).unwrap();
    let root = root.to_str().unwrap();
    f.run(&["plan", "--local", root, "--host", "marcuse"])
        .code(0)
        .out_has(&[
            "oignon-nft-load 180",
            "puts the old one back by itself after 180 s unless oignon confirms over a new SSH connection",
        ]);
    let ekumen = f.run(&["plan", "--local", root, "--host", "ekumen"]);
    ekumen
        .code(0)
        .out_has(&["oignon-nft-load 60", "after 60 s"]);
    assert!(
        !ekumen.stdout.contains("oignon-nft-load 180"),
        "{}",
        ekumen.stdout
    );
}
