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
fn a_broken_target_file_is_refused_by_promtool_so_the_check_above_can_fail() {
    let f = Fixture::shipped();
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
