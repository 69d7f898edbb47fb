//! `oignon status` on real Debian 12 hosts (scripts/lab-real): each state the operator on duty
//! must see, made for real on systemd and tor, in one lab: a healthy host, a drifted one, one
//! whose tor@ failed (a broken torrc, restarted by systemd until it gave up), one whose relay
//! runs another identity than secrets/, and one unreachable.

use crate::harness::real::RealLab;
use crate::harness::{oignon, Fixture};
use std::time::{Duration, Instant};

const UP: Duration = Duration::from_secs(60);

/// `tor@NICK`'s state, waited for until it is `want` (tor@ retries a failing start a few times).
fn wait_state(lab: &RealLab, host: &str, unit: &str, want: &str) {
    let start = Instant::now();
    loop {
        let now = lab.is_active(host, unit);
        if now.trim() == want {
            return;
        }
        assert!(
            start.elapsed() < UP,
            "{host}: {unit} is {now}, not {want}, after {UP:?}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// The JSON row of a relay.
fn row<'a>(json: &'a serde_json::Value, nick: &str) -> &'a serde_json::Value {
    json["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .find(|r| r["nickname"] == nick)
        .unwrap_or_else(|| panic!("no row for {nick} in {json:#}"))
}

fn status_json(f: &Fixture, lab: &RealLab, code: i32) -> serde_json::Value {
    let run = oignon(f, lab, &["status", "--json"]);
    run.code(code);
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", run.stdout))
}

/// Metrics of the rules that tor 0.4.9.11's MetricsPort does not serve on a lab relay, which has
/// no route out (never in a consensus, never publishes its descriptor). Measured here; every
/// other rule metric, tor_relay_flag included, is served offline. `oignon status` reads the
/// signing certificate's expiry from the certificate itself, so it does not depend on this one.
const NETWORKED_ONLY: &[&str] = &["tor_relay_signing_cert_expiry_timestamp"];

/// Each alert rule's metric, against what a real tor 0.4.9's MetricsPort serves in the lab.
fn metric_names_of_every_rule_are_served_by_a_real_metrics_port(lab: &RealLab) {
    // tor keeps the connection open after its answer: read for 3 s.
    let body = lab.run(
        "marcuse",
        "bash -c \"exec 3<>/dev/tcp/127.0.0.1/9035 && printf 'GET /metrics HTTP/1.0\\r\\n\\r\\n' >&3 && timeout 3 cat <&3; true\"",
    );
    assert!(body.starts_with("HTTP/1.0 200"), "{body}");
    let served: std::collections::BTreeSet<&str> = body
        .lines()
        .filter(|l| l.starts_with("tor_"))
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    for alert in oignon::monitoring::ALERTS {
        for m in alert.metrics {
            assert!(
                served.contains(m) || NETWORKED_ONLY.contains(m),
                "{}: {m} is not served by tor's MetricsPort here (served: {served:?})",
                alert.name
            );
        }
    }
    // The label values the rules select on are tor's own.
    for (metric, label) in [
        ("tor_relay_flag", "type=\"Running\""),
        ("tor_relay_load_onionskins_total", "action=\"dropped\""),
        ("tor_relay_load_socket_total", "state=\"opened\""),
    ] {
        assert!(
            body.lines()
                .any(|l| l.starts_with(&format!("{metric}{{")) && l.contains(label)),
            "no {metric} with {label}:\n{}",
            body.lines()
                .filter(|l| l.starts_with(metric))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    // The socket limit is the series without a label (TorSocketsNearLimit divides by it).
    assert!(
        body.lines()
            .any(|l| l.starts_with("tor_relay_load_socket_total ")),
        "no unlabelled tor_relay_load_socket_total (the limit)"
    );
    for m in NETWORKED_ONLY {
        assert!(
            !served.contains(m),
            "{m} is served offline too: not networked-only"
        );
    }
}

#[test]
fn status_shows_healthy_drifted_failed_foreign_identity_and_unreachable_hosts() {
    let test = "status_shows_healthy_drifted_failed_foreign_identity_and_unreachable_hosts";
    let f = Fixture::shipped_on_real();
    // Containers share this machine's kernel: no command line of their own to manage.
    for (file, host) in [
        ("inventory/gandi.toml", "ekumen"),
        ("inventory/globenet.toml", "algrothendieck"),
        ("inventory/ielo-liazo.toml", "marcuse"),
        ("inventory/tetaneutral.toml", "marylou"),
    ] {
        f.edit(
            file,
            &format!("name = \"{host}\"\n"),
            &format!("name = \"{host}\"\nboot = \"none\"\n"),
        );
    }
    let hosts = ["ekumen", "algrothendieck", "marcuse", "marylou"];
    let Some(lab) = RealLab::start(test, &f.real_hosts(&hosts)) else {
        return;
    };
    // Before any apply: nothing runs, nothing was applied.
    let before = status_json(&f, &lab, 2);
    assert_eq!(before["schema"], "oignon.status/1");
    assert_eq!(
        row(&before, "ekumen")["last_apply"],
        serde_json::Value::Null
    );

    oignon(&f, &lab, &["apply", "--yes", "--brief"]).code(0);
    for (host, nick) in [
        ("ekumen", "ekumen"),
        ("algrothendieck", "AlGrothendieck"),
        ("marcuse", "marcuse1"),
        ("marcuse", "marcuse2"),
        ("marylou", "marylou1"),
        ("marylou", "marylou2"),
    ] {
        let unit = format!("tor@{nick}");
        lab.wait_active(host, &unit, UP);
        // tor writes its fingerprint file and opens its MetricsPort once started.
        lab.wait_journal(
            host,
            &unit,
            "Your Tor server's identity key fingerprint is",
            UP,
        );
    }
    let timed = std::time::Instant::now();
    let healthy = oignon(&f, &lab, &["status"]);
    eprintln!("status of 4 hosts (6 relays): {:?}", timed.elapsed());
    healthy.code(0).out_has(&[
        "Status: 6 relays on 4 hosts: 6 healthy, 0 need attention",
        "NICKNAME",
        "AlGrothendieck",
    ]);
    let j = status_json(&f, &lab, 0);
    for r in j["rows"].as_array().unwrap() {
        assert_eq!(r["unit"], "active", "{r:#}");
        assert_eq!(r["unit_file"], "enabled", "{r:#}");
        assert_eq!(r["fingerprint"], "matches", "{r:#}");
        assert_eq!(r["metrics"], true, "{r:#}");
        assert_eq!(
            r["tor_version"].as_str().map(|v| v.starts_with("0.4.")),
            Some(true)
        );
        assert_eq!(r["drift"], serde_json::json!([]));
        assert!(
            r["last_apply"]["who"]
                .as_str()
                .is_some_and(|w| !w.is_empty()),
            "{r:#}"
        );
    }

    metric_names_of_every_rule_are_served_by_a_real_metrics_port(&lab);

    // Drift: a managed file edited by hand.
    lab.run(
        "marcuse",
        "echo '# edited by hand' >> /etc/tor/instances/marcuse2/torrc",
    );
    // tor@ failed: a broken torrc, restarted by systemd until it gives up.
    lab.write(
        "algrothendieck",
        "/etc/tor/instances/AlGrothendieck/torrc",
        b"NotATorOption 1\n",
    );
    lab.exec("algrothendieck", "systemctl restart tor@AlGrothendieck");
    wait_state(&lab, "algrothendieck", "tor@AlGrothendieck", "failed");
    // Another identity: tor made new keys where secrets/ has others.
    lab.run(
        "marylou",
        // The family key stays: without it tor refuses a listed FamilyId.
        "systemctl stop tor@marylou1 && cd /var/lib/tor-instances/marylou1 && rm -f keys/secret_id_key keys/secret_onion_key* keys/ed25519_* fingerprint* && systemctl start tor@marylou1",
    );
    lab.wait_active("marylou", "tor@marylou1", UP);
    lab.wait_journal(
        "marylou",
        "tor@marylou1",
        "Your Tor server's identity key fingerprint is",
        UP,
    );

    let j = status_json(&f, &lab, 2);
    let ek = row(&j, "ekumen");
    assert_eq!(ek["attention"], serde_json::json!([]), "{ek:#}");
    let m2 = row(&j, "marcuse2");
    assert_eq!(
        m2["drift"],
        serde_json::json!(["/etc/tor/instances/marcuse2/torrc"]),
        "{m2:#}"
    );
    assert_eq!(m2["unit"], "active");
    assert_eq!(row(&j, "marcuse1")["drift"], serde_json::json!([]));
    let al = row(&j, "AlGrothendieck");
    assert_eq!(al["unit"], "failed", "{al:#}");
    assert_eq!(
        al["metrics"], false,
        "a failed relay's MetricsPort cannot answer"
    );
    let m1 = row(&j, "marylou1");
    assert_eq!(m1["fingerprint"], "differs", "{m1:#}");
    assert_eq!(row(&j, "marylou2")["fingerprint"], "matches");
    let text = oignon(&f, &lab, &["status", "--color", "never"]);
    text.code(2).out_has(&[
        "Status: 6 relays on 4 hosts: 3 healthy, 3 need attention",
        "! marcuse/marcuse2: 1 managed file differs from the inventory: /etc/tor/instances/marcuse2/torrc",
        "! algrothendieck/AlGrothendieck: tor@AlGrothendieck is failed",
        "! marylou/marylou1: marylou1 runs another identity than secrets/relays/marylou1",
        "DIFFERS",
    ]);
    // Attention rows carry the marker; healthy ones do not.
    let marked = |nick: &str| {
        text.stdout
            .lines()
            .find(|l| l.split_whitespace().any(|w| w == nick))
            .is_some_and(|l| l.starts_with('!'))
    };
    assert!(marked("marcuse2") && marked("AlGrothendieck") && marked("marylou1"));
    assert!(!marked("ekumen") && !marked("marylou2"));

    // Unreachable: the host is down. Its rows say so, and the run is an error (1).
    lab.stop_host("ekumen");
    let j = status_json(&f, &lab, 1);
    let ek = row(&j, "ekumen");
    assert_eq!(ek["unit"], "unreachable", "{ek:#}");
    assert!(ek["error"].as_str().is_some(), "{ek:#}");
    assert_eq!(row(&j, "AlGrothendieck")["unit"], "failed");
    oignon(&f, &lab, &["status"])
        .code(1)
        .out_has(&["(1 host unreachable: ekumen)"]);
}

#[test]
fn status_reads_a_relays_files_as_its_user_and_takes_its_answer_as_data() {
    let test = "status_reads_a_relays_files_as_its_user_and_takes_its_answer_as_data";
    let f = Fixture::shipped_on_real();
    f.edit(
        "inventory/ielo-liazo.toml",
        "name = \"marcuse\"\n",
        "name = \"marcuse\"\nboot = \"none\"\n",
    );
    let Some(lab) = RealLab::start(test, &f.real_hosts(&["marcuse"])) else {
        return;
    };
    oignon(&f, &lab, &["apply", "--yes", "--brief"]).code(0);
    for nick in ["marcuse1", "marcuse2"] {
        let unit = format!("tor@{nick}");
        lab.wait_active("marcuse", &unit, UP);
        lab.wait_journal(
            "marcuse",
            &unit,
            "Your Tor server's identity key fingerprint is",
            UP,
        );
    }
    status_json(&f, &lab, 0);
    // In marcuse1's DataDirectory (its user's), a link to a file only root may read; in
    // marcuse2's, a fingerprint file that tries to forge gather records.
    lab.run(
        "marcuse",
        "cd /var/lib/tor-instances/marcuse1 && rm fingerprint && setpriv --reuid=_tor-marcuse1 --regid=_tor-marcuse1 --clear-groups ln -s /etc/shadow fingerprint",
    );
    lab.write(
        "marcuse",
        "/var/lib/tor-instances/marcuse2/fingerprint",
        b"marcuse2 AB\tK\tend\tok\nI\tevil\tactive\tenabled\t-\n",
    );
    lab.run(
        "marcuse",
        "chown _tor-marcuse2: /var/lib/tor-instances/marcuse2/fingerprint",
    );
    let run = oignon(&f, &lab, &["status", "--json"]);
    run.code(2);
    assert!(
        !run.stdout.contains("root:"),
        "/etc/shadow leaked: {}",
        run.stdout
    );
    let j: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(row(&j, "marcuse1")["fingerprint"], "unreadable", "{j:#}");
    assert_eq!(row(&j, "marcuse2")["fingerprint"], "unreadable", "{j:#}");
    assert_eq!(
        j["rows"].as_array().unwrap().len(),
        2,
        "a forged record became a row"
    );
    // Everything else about them is still read right.
    assert_eq!(row(&j, "marcuse1")["unit"], "active");
    assert_eq!(row(&j, "marcuse2")["metrics"], true);
}

#[test]
fn status_shows_an_instance_oignon_does_not_manage_and_which_relay_it_copies() {
    let test = "status_shows_an_instance_oignon_does_not_manage_and_which_relay_it_copies";
    let f = Fixture::shipped_on_real();
    f.edit(
        "inventory/ielo-liazo.toml",
        "name = \"marcuse\"\n",
        "name = \"marcuse\"\nboot = \"none\"\n",
    );
    let Some(lab) = RealLab::start(test, &f.real_hosts(&["marcuse"])) else {
        return;
    };
    oignon(&f, &lab, &["apply", "--yes", "--brief"]).code(0);
    for nick in ["marcuse1", "marcuse2"] {
        let unit = format!("tor@{nick}");
        lab.wait_active("marcuse", &unit, UP);
        lab.wait_journal(
            "marcuse",
            &unit,
            "Your Tor server's identity key fingerprint is",
            UP,
        );
    }
    status_json(&f, &lab, 0);
    // What a migration can leave behind, made by hand: an instance with its own torrc (other
    // ports) and marcuse1's keys, enabled and started, which the inventory does not know.
    lab.run(
        "marcuse",
        "tor-instance-create oldcopy >/dev/null \
         && sed -e 's/^Nickname .*/Nickname oldcopy/' -e 's/:443$/:7443/' -e '/^MetricsPort/d' \
            /etc/tor/instances/marcuse1/torrc > /etc/tor/instances/oldcopy/torrc \
         && install -d -m 0700 -o _tor-oldcopy -g _tor-oldcopy /var/lib/tor-instances/oldcopy/keys \
         && cp -a /var/lib/tor-instances/marcuse1/keys/. /var/lib/tor-instances/oldcopy/keys/ \
         && chown -R _tor-oldcopy:_tor-oldcopy /var/lib/tor-instances/oldcopy/keys \
         && systemctl enable --now tor@oldcopy 2>/dev/null",
    );
    lab.wait_active("marcuse", "tor@oldcopy", UP);
    lab.wait_journal(
        "marcuse",
        "tor@oldcopy",
        "Your Tor server's identity key fingerprint is",
        UP,
    );
    let j = status_json(&f, &lab, 2);
    let old = row(&j, "oldcopy");
    assert_eq!(old["managed"], false, "{old:#}");
    assert_eq!(old["copy_of"], "marcuse1", "{old:#}");
    assert_eq!(old["unit"], "active", "{old:#}");
    assert_eq!(old["unit_file"], "enabled", "{old:#}");
    assert_eq!(row(&j, "marcuse1")["managed"], true);
    assert_eq!(row(&j, "marcuse1")["attention"], serde_json::json!([]));
    let text = oignon(&f, &lab, &["status", "--color", "never"]);
    eprintln!("{}", text.stdout); // the README's table
    text.code(2).out_has(&[
        "oldcopy (unmanaged)",
        "copy of marcuse1",
        "! marcuse/oldcopy: tor@oldcopy runs and is enabled with the identity of marcuse1 (second copy of marcuse1, which the inventory places on this host too), but oignon does not manage it (the inventory has no relay oldcopy on marcuse); stop it if it is not wanted: `systemctl disable --now tor@oldcopy && systemctl mask tor@oldcopy`",
        "Status: 2 relays and 1 unmanaged instance on 1 host: 2 healthy, 1 needs attention",
    ]);
    let line = text
        .stdout
        .lines()
        .find(|l| l.contains("oldcopy (unmanaged)"))
        .unwrap();
    assert!(line.starts_with('!'), "{}", text.stdout);

    // Stopped and masked, as its fix says: a leftover, shown and healthy.
    lab.run(
        "marcuse",
        "systemctl disable --now tor@oldcopy 2>/dev/null && systemctl mask tor@oldcopy 2>/dev/null",
    );
    let j = status_json(&f, &lab, 0);
    let old = row(&j, "oldcopy");
    assert_eq!(old["unit"], "masked", "{old:#}");
    assert_eq!(old["attention"], serde_json::json!([]), "{old:#}");
    assert_eq!(old["copy_of"], "marcuse1", "{old:#}");
}
