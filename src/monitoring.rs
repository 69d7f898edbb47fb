//! Prometheus for the fleet: the scrape targets (`file_sd` JSON) and the alert rules, both made
//! from the inventory alone.
//!
//! How Prometheus reaches a relay (README, "Monitoring"): tor's MetricsPort stays on loopback
//! (plain HTTP, no authentication: never exposed). On each host, a reverse proxy with TLS and
//! basic auth (the `monitoring` role; as ansible-relayor does with nginx) serves each instance's
//! metrics under `/tor/NICKNAME` and node-exporter's under `/node`, on [`PROXY_PORT`]. Each relay
//! is then its own scrape target, so Prometheus's own `up` says when one instance is down.

use crate::inventory::Fleet;
use serde::Serialize;

/// The port of each host's TLS reverse proxy in front of the MetricsPorts and node-exporter.
pub const PROXY_PORT: u16 = 9443;

/// One `file_sd` entry: targets sharing labels.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Target {
    pub targets: Vec<String>,
    pub labels: std::collections::BTreeMap<String, String>,
}

/// Every relay (label `exporter="tor"`) and every host's node-exporter (`exporter="node"`), with
/// the labels hoster, host, nickname and exit; the path and scheme through the proxy are set as
/// Prometheus's `__metrics_path__` and `__scheme__` labels.
pub fn targets(fleet: &Fleet) -> Vec<Target> {
    let mut out = vec![];
    for h in &fleet.hosts {
        let addr = format!("{}:{PROXY_PORT}", h.ipv4);
        let base = |exporter: &str, path: String| {
            let mut l = std::collections::BTreeMap::new();
            l.insert("__metrics_path__".to_string(), path);
            l.insert("__scheme__".to_string(), "https".to_string());
            l.insert("exporter".to_string(), exporter.to_string());
            l.insert("hoster".to_string(), h.hoster.clone());
            l.insert("host".to_string(), h.name.clone());
            l
        };
        for r in h.relays.iter().filter(|r| r.metrics_port.is_some()) {
            let mut labels = base("tor", format!("/tor/{}", r.nickname));
            labels.insert("nickname".into(), r.nickname.clone());
            labels.insert("exit".into(), r.exit.to_string());
            out.push(Target {
                targets: vec![addr.clone()],
                labels,
            });
        }
        out.push(Target {
            targets: vec![addr],
            labels: base("node", "/node".into()),
        });
    }
    out
}

/// The `file_sd` file's text.
pub fn targets_json(fleet: &Fleet) -> String {
    // Serialising plain strings and maps cannot fail.
    serde_json::to_string_pretty(&targets(fleet)).unwrap_or_default() + "\n"
}

/// One alert rule.
pub struct Alert {
    pub name: &'static str,
    /// PromQL, on tor's MetricsPort names (tor 0.4.9) and Prometheus's `up`.
    pub expr: &'static str,
    pub r#for: &'static str,
    pub severity: &'static str,
    pub summary: &'static str,
    /// The tor metrics the expression reads (`up` excepted): each must exist on a real MetricsPort.
    pub metrics: &'static [&'static str],
}

/// The alerts relay operators use (ansible-relayor's names where it has them), on tor's real
/// MetricsPort metric names.
pub const ALERTS: &[Alert] = &[
    Alert {
        name: "TorInstanceDown",
        expr: r#"up{exporter="tor"} == 0"#,
        r#for: "5m",
        severity: "critical",
        summary: "tor instance {{ $labels.nickname }} on {{ $labels.host }} does not answer",
        metrics: &[],
    },
    Alert {
        name: "TorFlagRunningMissing",
        expr: r#"tor_relay_flag{type="Running"} == 0"#,
        r#for: "1h",
        severity: "critical",
        summary: "{{ $labels.nickname }} on {{ $labels.host }} lost the Running flag",
        metrics: &["tor_relay_flag"],
    },
    Alert {
        name: "TorCertificateExpiryUnder15Days",
        expr: "tor_relay_signing_cert_expiry_timestamp - time() < 15 * 86400",
        r#for: "1h",
        severity: "warning",
        summary: "{{ $labels.nickname }}: the signing certificate expires in under 15 days (oignon secrets renew-signing)",
        metrics: &["tor_relay_signing_cert_expiry_timestamp"],
    },
    Alert {
        name: "TorCertificateExpiryUnder1Day",
        expr: "tor_relay_signing_cert_expiry_timestamp - time() < 86400",
        r#for: "5m",
        severity: "critical",
        summary: "{{ $labels.nickname }}: the signing certificate expires in under a day",
        metrics: &["tor_relay_signing_cert_expiry_timestamp"],
    },
    Alert {
        name: "TorHighDnsErrorRate",
        expr: "sum by (host, nickname) (rate(tor_relay_exit_dns_error_total[15m])) / sum by (host, nickname) (rate(tor_relay_exit_dns_query_total[15m])) > 0.015",
        r#for: "15m",
        severity: "warning",
        summary: "exit {{ $labels.nickname }}: over 1.5% of DNS queries fail or time out",
        metrics: &["tor_relay_exit_dns_error_total", "tor_relay_exit_dns_query_total"],
    },
    Alert {
        name: "TorOnionskinsDropped",
        expr: r#"rate(tor_relay_load_onionskins_total{action="dropped"}[10m]) > 0"#,
        r#for: "10m",
        severity: "warning",
        summary: "{{ $labels.nickname }} drops onionskins (circuit creations): overloaded",
        metrics: &["tor_relay_load_onionskins_total"],
    },
    Alert {
        name: "TorOutOfMemory",
        expr: "increase(tor_relay_load_oom_bytes_total[1h]) > 0",
        r#for: "0m",
        severity: "warning",
        summary: "{{ $labels.nickname }}: tor's out-of-memory handler freed memory",
        metrics: &["tor_relay_load_oom_bytes_total"],
    },
    Alert {
        name: "TorTCPPortsExhausted",
        expr: "increase(tor_relay_load_tcp_exhaustion_total[1h]) > 0",
        r#for: "0m",
        severity: "warning",
        summary: "{{ $labels.nickname }} ran out of TCP source ports",
        metrics: &["tor_relay_load_tcp_exhaustion_total"],
    },
    Alert {
        name: "TorSocketsNearLimit",
        // tor 0.4.9 serves the limit as the series WITHOUT a state label (measured in the lab:
        // `tor_relay_load_socket_total 19968` beside `{state="opened"} 5`).
        expr: r#"tor_relay_load_socket_total{state="opened"} / ignoring(state) tor_relay_load_socket_total{state=""} > 0.9"#,
        r#for: "15m",
        severity: "warning",
        summary: "{{ $labels.nickname }} uses over 90% of its sockets",
        metrics: &["tor_relay_load_socket_total"],
    },
];

/// Single-quoted YAML: nothing inside is special but the quote, which doubles.
fn yaml_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The rules file (`promtool check rules` accepts it).
pub fn rules_yaml() -> String {
    let mut out = String::from(
        "# Made by `oignon monitoring rules`: alerts on tor's MetricsPort (see README, \"Monitoring\").\ngroups:\n  - name: oignon-tor\n    rules:\n",
    );
    for a in ALERTS {
        out.push_str(&format!(
            "      - alert: {}\n        expr: {}\n        for: {}\n        labels:\n          severity: {}\n        annotations:\n          summary: {}\n",
            a.name,
            yaml_quote(a.expr),
            a.r#for,
            a.severity,
            yaml_quote(a.summary)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fleet() -> Fleet {
        let inv = crate::inventory::load(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("inventory"),
        );
        inv.fleet.expect("the shipped inventory loads")
    }

    #[test]
    fn every_relay_and_every_node_exporter_is_a_target_with_its_labels() {
        let t = targets(&fleet());
        let tor: Vec<&Target> = t.iter().filter(|t| t.labels["exporter"] == "tor").collect();
        assert_eq!(tor.len(), 6);
        assert_eq!(
            t.iter().filter(|t| t.labels["exporter"] == "node").count(),
            4
        );
        let m2 = tor
            .iter()
            .find(|t| t.labels["nickname"] == "marcuse2")
            .unwrap();
        assert_eq!(m2.targets, ["192.0.2.10:9443"]);
        assert_eq!(m2.labels["host"], "marcuse");
        assert_eq!(m2.labels["hoster"], "IELO-LIAZO");
        assert_eq!(m2.labels["exit"], "true");
        assert_eq!(m2.labels["__metrics_path__"], "/tor/marcuse2");
        assert_eq!(m2.labels["__scheme__"], "https");
    }

    #[test]
    fn rules_quote_expressions_and_name_every_alert() {
        let y = rules_yaml();
        assert!(y.contains("      - alert: TorFlagRunningMissing\n        expr: 'tor_relay_flag{type=\"Running\"} == 0'\n"));
        assert_eq!(y.matches("- alert: ").count(), ALERTS.len());
        assert_eq!(yaml_quote("it's"), "'it''s'");
    }
}
