//! `oignon monitoring targets|rules`: what Prometheus is given, checked by Prometheus's own
//! promtool (Debian's `prometheus` package): the rules parse and the scrape config with the
//! `file_sd` file loads.

use crate::harness::Fixture;
use std::process::Command;

fn promtool(args: &[&str]) -> std::process::Output {
    Command::new("promtool")
        .args(args)
        .output()
        .expect("promtool: ./scripts/test installs Debian's prometheus package")
}

#[test]
fn promtool_accepts_the_rules_and_a_scrape_config_using_the_targets() {
    let f = Fixture::shipped();
    std::fs::create_dir_all(f.path("out")).unwrap();
    let rules = f.path("out/tor.rules.yml");
    let targets = f.path("out/targets.json");
    f.run(&["monitoring", "rules", "--out", rules.to_str().unwrap()])
        .code(0)
        .err_has(&["wrote"]);
    f.run(&["monitoring", "targets", "--out", targets.to_str().unwrap()])
        .code(0);
    let out = promtool(&["check", "rules", rules.to_str().unwrap()]);
    let said =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "promtool check rules: {said}");
    assert!(said.contains("SUCCESS: 9 rules found"), "{said}");
    // The README's scrape config, pointed at these two files.
    let config = f.path("out/prometheus.yml");
    std::fs::write(
        &config,
        format!(
            r#"global:
  scrape_interval: 60s
rule_files:
  - {rules}
scrape_configs:
  - job_name: tor
    basic_auth:
      username: prometheus
      password_file: /etc/prometheus/oignon-proxy.password
    tls_config:
      ca_file: /etc/prometheus/oignon-ca.pem
    file_sd_configs:
      - files: [{targets}]
    relabel_configs:
      - source_labels: [exporter]
        regex: tor
        action: keep
  - job_name: node
    basic_auth:
      username: prometheus
      password_file: /etc/prometheus/oignon-proxy.password
    tls_config:
      ca_file: /etc/prometheus/oignon-ca.pem
    file_sd_configs:
      - files: [{targets}]
    relabel_configs:
      - source_labels: [exporter]
        regex: node
        action: keep
"#,
            rules = rules.display(),
            targets = targets.display()
        ),
    )
    .unwrap();
    let out = promtool(&["check", "config", "--syntax-only", config.to_str().unwrap()]);
    let said =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "promtool check config: {said}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&targets).unwrap()).unwrap();
    assert_eq!(
        json.as_array().unwrap().len(),
        10,
        "6 relays and 4 node exporters"
    );
}

#[test]
fn out_files_are_readable_by_prometheus_and_a_missing_directory_is_an_error_not_made() {
    use std::os::unix::fs::PermissionsExt as _;
    let f = Fixture::shipped();
    let missing = f.path("no/such/dir/targets.json");
    f.run(&["monitoring", "targets", "--out", missing.to_str().unwrap()])
        .code(1)
        .err_has(&[
            "cannot write",
            "no/such/dir/targets.json",
            "its directory must exist",
        ]);
    assert!(
        !f.path("no").exists(),
        "a mistyped --out directory must not be created"
    );
    let targets = f.path("targets.json");
    f.run(&["monitoring", "targets", "--out", targets.to_str().unwrap()])
        .code(0);
    let mode = std::fs::metadata(&targets).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o644, "Prometheus reads the file as its own user");
}

#[test]
fn a_broken_target_file_is_refused_by_promtool_so_the_check_above_can_fail() {
    let f = Fixture::shipped();
    std::fs::create_dir_all(f.path("out")).unwrap();
    let targets = f.path("out/targets.json");
    f.run(&["monitoring", "targets", "--out", targets.to_str().unwrap()])
        .code(0);
    std::fs::write(&targets, "[{\"targets\": 5}]").unwrap();
    let config = f.path("out/prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "scrape_configs:\n  - job_name: tor\n    file_sd_configs:\n      - files: [{}]\n",
            targets.display()
        ),
    )
    .unwrap();
    let out = promtool(&["check", "config", config.to_str().unwrap()]);
    assert!(!out.status.success());
}

/// Per-host monitoring secrets for `host` at `addr`, made the way README's "Monitoring" says:
/// a self-signed certificate for the host's address, its key, and an htpasswd line, each
/// encrypted to the store's recipients. Returns (the certificate's path in clear, the password).
fn monitoring_secrets(f: &Fixture, host: &str, addr: &str) -> (std::path::PathBuf, String) {
    let clear = f.path("clear");
    std::fs::create_dir_all(&clear).unwrap();
    let (crt, key) = (clear.join("tls.crt"), clear.join("tls.key"));
    let ok = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
        ])
        .arg(format!("/CN={host}"))
        .arg("-addext")
        .arg(format!("subjectAltName=IP:{addr}"))
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&crt)
        .output()
        .unwrap();
    assert!(ok.status.success(), "{ok:?}");
    let password = "correct-horse-battery-staple".to_string();
    let hash = Command::new("openssl")
        .args(["passwd", "-apr1", &password])
        .output()
        .unwrap();
    let htpasswd = clear.join("htpasswd");
    std::fs::write(
        &htpasswd,
        format!("prometheus:{}", String::from_utf8_lossy(&hash.stdout)),
    )
    .unwrap();
    let dir = f.path(&format!("secrets/monitoring/{host}"));
    std::fs::create_dir_all(&dir).unwrap();
    for (name, file) in [
        ("tls.crt", &crt),
        ("tls.key", &key),
        ("htpasswd", &htpasswd),
    ] {
        let out = Command::new("age")
            .arg("-R")
            .arg(f.path("secrets/recipients.txt"))
            .arg("-o")
            .arg(dir.join(format!("{name}.age")))
            .arg(file)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    }
    (crt, password)
}

#[test]
fn the_proxy_serves_each_metrics_port_and_node_exporter_over_tls_to_prometheus_only() {
    use crate::harness::oignon;
    use crate::harness::real::RealLab;
    let test = "the_proxy_serves_each_metrics_port_and_node_exporter_over_tls_to_prometheus_only";
    let f = Fixture::shipped_on_real();
    f.edit(
        "inventory/fleet.toml",
        "roles = [\"tor\", \"exit-policy\", \"kernel\", \"hardening\"]",
        "roles = [\"tor\", \"exit-policy\", \"kernel\", \"hardening\", \"monitoring\"]",
    );
    // Without its secrets the plan says what is missing and how to make it.
    let Some(lab) = RealLab::start(test, &f.real_hosts(&["marcuse"])) else {
        return;
    };
    oignon(&f, &lab, &["plan"]).code(1).err_has(&[
        "role `monitoring` deploys /etc/oignon/monitoring/tls.crt on host `marcuse` from",
        "age -R",
    ]);
    let (crt, password) = monitoring_secrets(&f, "marcuse", "192.0.2.10");
    // A saved plan names the secret files, never their content.
    let saved = f.path("plan.json");
    oignon(&f, &lab, &["plan", "--out", saved.to_str().unwrap()]).code(0);
    let plan = std::fs::read_to_string(&saved).unwrap();
    assert!(plan.contains("/etc/oignon/monitoring/tls.key"));
    for leak in ["PRIVATE KEY", "$apr1$", "BEGIN CERTIFICATE"] {
        assert!(!plan.contains(leak), "the saved plan holds {leak}");
    }
    for name in ["tls.key", "htpasswd"] {
        use base64::Engine as _;
        let clear = std::fs::read(f.path(&format!("clear/{name}"))).unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(&clear);
        assert!(
            !plan.contains(&b64[..40]),
            "the saved plan holds {name}, base64"
        );
    }
    let applied = oignon(&f, &lab, &["apply", "--yes", "--brief"]);
    applied.code(0).out_has(&[
        "ran `systemctl restart prometheus-node-exporter`",
        "ran `systemctl reload-or-restart nginx`",
    ]);
    assert!(
        !applied.stdout.contains(&password) && !applied.stderr.contains("BEGIN PRIVATE KEY"),
        "a secret leaked into the output"
    );
    for unit in ["tor@marcuse1", "tor@marcuse2"] {
        lab.wait_active("marcuse", unit, std::time::Duration::from_secs(60));
        lab.wait_journal(
            "marcuse",
            unit,
            "Your Tor server's identity key fingerprint is",
            std::time::Duration::from_secs(60),
        );
    }
    let ns = lab.host("marcuse").netns.clone();
    // Prometheus's view, from another address of the namespace: TLS verified against the
    // certificate, with the password.
    let curl = |path: &str, auth: bool| -> (String, String) {
        let mut c = Command::new("ip");
        c.args([
            "netns",
            "exec",
            &ns,
            "curl",
            "-sS",
            "--max-time",
            "5",
            "-o",
            "-",
        ])
        .args(["-w", "\n%{http_code}", "--cacert"])
        .arg(&crt);
        if auth {
            c.arg("-u").arg(format!("prometheus:{password}"));
        }
        let out = c
            .arg(format!("https://192.0.2.10:9443{path}"))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", ""));
        (body.to_string(), code.to_string())
    };
    let (body, code) = curl("/tor/marcuse1", true);
    assert_eq!(code, "200", "{body}");
    assert!(body.contains("tor_relay_load_onionskins_total"), "{body}");
    let (body, code) = curl("/tor/marcuse2", true);
    assert_eq!(code, "200");
    assert!(body.contains("tor_relay_connections"), "{body}");
    let (body, code) = curl("/node", true);
    assert_eq!(code, "200");
    assert!(
        body.contains("node_cpu_seconds_total"),
        "{}",
        &body[..body.len().min(400)]
    );
    // Without the password: refused. An unknown path: nothing.
    assert_eq!(curl("/tor/marcuse1", false).1, "401");
    assert_eq!(curl("/tor/nobody", true).1, "404");
    // node-exporter itself is on loopback only: not reachable on the host's address.
    let direct = Command::new("ip")
        .args(["netns", "exec", &ns, "curl", "-sS", "--max-time", "3"])
        .arg("http://192.0.2.10:9100/metrics")
        .output()
        .unwrap();
    assert!(
        !direct.status.success(),
        "node-exporter answers beyond loopback"
    );
    // Secrets on the host: the key is root's alone, the password file nginx's group's.
    let modes = lab.run(
        "marcuse",
        "stat -c '%n %U:%G %a' /etc/oignon/monitoring/tls.key /etc/oignon/monitoring/htpasswd",
    );
    assert!(modes.contains("tls.key root:root 600"), "{modes}");
    assert!(modes.contains("htpasswd root:www-data 640"), "{modes}");
}

/// `promtool test rules` input: tor-shaped series (label sets as tor 0.4.9's MetricsPort serves
/// them, seen in the lab) for a relay in trouble beside a healthy one; each alert must fire for
/// the first, with its labels and summary, and never for the second.
const RULE_TESTS: &str = r#"rule_files: [rules.yml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'tor_relay_load_socket_total{state="opened",host="marcuse",nickname="marcuse1"}'
        values: '19000x40'
      - series: 'tor_relay_load_socket_total{host="marcuse",nickname="marcuse1"}'
        values: '19968x40'
      - series: 'tor_relay_load_socket_total{state="opened",host="marcuse",nickname="marcuse2"}'
        values: '5x40'
      - series: 'tor_relay_load_socket_total{host="marcuse",nickname="marcuse2"}'
        values: '19968x40'
      - series: 'tor_relay_flag{type="Running",host="marcuse",nickname="marcuse1"}'
        values: '0x90'
      - series: 'tor_relay_flag{type="Running",host="marcuse",nickname="marcuse2"}'
        values: '1x90'
      - series: 'up{exporter="tor",host="ekumen",nickname="ekumen"}'
        values: '0x10'
      - series: 'tor_relay_exit_dns_query_total{host="marylou",nickname="marylou1"}'
        values: '0+1000x40'
      - series: 'tor_relay_exit_dns_error_total{reason="timeout",host="marylou",nickname="marylou1"}'
        values: '0+30x40'
      - series: 'tor_relay_load_onionskins_total{type="ntor_v3",action="dropped",host="marylou",nickname="marylou2"}'
        values: '0+5x40'
      - series: 'tor_relay_signing_cert_expiry_timestamp{host="marcuse",nickname="marcuse1"}'
        values: '43200x90'
      - series: 'tor_relay_signing_cert_expiry_timestamp{host="marcuse",nickname="marcuse2"}'
        values: '864000x90'
      - series: 'tor_relay_signing_cert_expiry_timestamp{host="marylou",nickname="marylou1"}'
        values: '8640000x90'
      - series: 'tor_relay_load_oom_bytes_total{subsys="cell",host="marylou",nickname="marylou1"}'
        values: '0+100x40'
      - series: 'tor_relay_load_tcp_exhaustion_total{host="marylou",nickname="marylou2"}'
        values: '0+1x40'
    alert_rule_test:
      - eval_time: 30m
        alertname: TorSocketsNearLimit
        exp_alerts:
          - exp_labels: {severity: warning, host: marcuse, nickname: marcuse1}
            exp_annotations: {summary: "marcuse1 uses over 90% of its sockets"}
      - eval_time: 70m
        alertname: TorFlagRunningMissing
        exp_alerts:
          - exp_labels: {severity: critical, host: marcuse, nickname: marcuse1, type: Running}
            exp_annotations: {summary: "marcuse1 on marcuse lost the Running flag"}
      - eval_time: 6m
        alertname: TorInstanceDown
        exp_alerts:
          - exp_labels: {severity: critical, exporter: tor, host: ekumen, nickname: ekumen}
            exp_annotations: {summary: "tor instance ekumen on ekumen does not answer"}
      - eval_time: 35m
        alertname: TorHighDnsErrorRate
        exp_alerts:
          - exp_labels: {severity: warning, host: marylou, nickname: marylou1}
            exp_annotations: {summary: "exit marylou1: over 1.5% of DNS queries fail or time out"}
      - eval_time: 30m
        alertname: TorOnionskinsDropped
        exp_alerts:
          - exp_labels: {severity: warning, host: marylou, nickname: marylou2, type: ntor_v3, action: dropped}
            exp_annotations: {summary: "marylou2 drops onionskins (circuit creations): overloaded"}
      - eval_time: 10m
        alertname: TorCertificateExpiryUnder1Day
        exp_alerts:
          - exp_labels: {severity: critical, host: marcuse, nickname: marcuse1}
            exp_annotations: {summary: "marcuse1: the signing certificate expires in under a day"}
      - eval_time: 70m
        alertname: TorCertificateExpiryUnder15Days
        exp_alerts:
          - exp_labels: {severity: warning, host: marcuse, nickname: marcuse1}
            exp_annotations: {summary: "marcuse1: the signing certificate expires in under 15 days (oignon secrets renew-signing)"}
          - exp_labels: {severity: warning, host: marcuse, nickname: marcuse2}
            exp_annotations: {summary: "marcuse2: the signing certificate expires in under 15 days (oignon secrets renew-signing)"}
      - eval_time: 30m
        alertname: TorOutOfMemory
        exp_alerts:
          - exp_labels: {severity: warning, subsys: cell, host: marylou, nickname: marylou1}
            exp_annotations: {summary: "marylou1: tor's out-of-memory handler freed memory"}
      - eval_time: 30m
        alertname: TorTCPPortsExhausted
        exp_alerts:
          - exp_labels: {severity: warning, host: marylou, nickname: marylou2}
            exp_annotations: {summary: "marylou2 ran out of TCP source ports"}
"#;

#[test]
fn every_alert_fires_on_a_relay_in_trouble_and_not_on_a_healthy_one() {
    let f = Fixture::shipped();
    let dir = f.path("out");
    std::fs::create_dir_all(&dir).unwrap();
    f.run(&[
        "monitoring",
        "rules",
        "--out",
        dir.join("rules.yml").to_str().unwrap(),
    ])
    .code(0);
    std::fs::write(dir.join("test.yml"), RULE_TESTS).unwrap();
    let out = Command::new("promtool")
        .args(["test", "rules", "test.yml"])
        .current_dir(&dir)
        .output()
        .expect("promtool");
    let said =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "promtool test rules:\n{said}");
    // Every alert oignon writes is exercised here.
    for a in oignon::monitoring::ALERTS {
        assert!(
            RULE_TESTS.contains(&format!("alertname: {}\n", a.name)),
            "{} untested",
            a.name
        );
    }
}
