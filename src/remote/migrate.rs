//! migrate.sh's Rust half: the arguments of each verb (checked here before they travel, and again
//! by the script) and the reading of its answers. The script's header documents both.

use crate::remote::record::Records;

/// A host-side step of a migration or a retirement (see migrate.sh's header for each).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verb {
    Probe {
        port: u16,
    },
    Stop,
    Quarantine,
    Tombstone {
        to: String,
        when: String,
        fingerprint: String,
    },
    /// The arrival mark on the target: `from` is the host the relay came from.
    Arrive {
        from: String,
        when: String,
        fingerprint: String,
    },
    Verify {
        port: u16,
        seconds: u64,
    },
    Purge,
    Rollback,
    Resurrect,
}

impl Verb {
    /// The script's arguments after ROOT: VERB NAME ARGS. Refuses (before anything travels) a
    /// nickname or value the script would refuse, or one holding a control character.
    pub fn args(&self, name: &str) -> Result<Vec<String>, String> {
        if name.is_empty() || name.len() > 19 || !name.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(format!("\"{name}\" is not a relay nickname"));
        }
        let mut v = vec![self.word().to_string(), name.to_string()];
        match self {
            Verb::Probe { port } => v.push(port.to_string()),
            Verb::Verify { port, seconds } => {
                v.push(port.to_string());
                v.push(seconds.to_string());
            }
            Verb::Tombstone {
                to,
                when,
                fingerprint,
            }
            | Verb::Arrive {
                from: to,
                when,
                fingerprint,
            } => {
                if to.is_empty()
                    || !to
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
                {
                    return Err(format!("\"{to}\" cannot be written in a tombstone (a host name: letters, digits, `.` and `-`)"));
                }
                if fingerprint.len() != 40
                    || !fingerprint
                        .chars()
                        .all(|c| c.is_ascii_digit() || ('A'..='F').contains(&c))
                {
                    return Err(format!(
                        "\"{fingerprint}\" is not a relay fingerprint (40 upper-case hex digits)"
                    ));
                }
                v.extend([to.clone(), when.clone(), fingerprint.clone()]);
            }
            _ => {}
        }
        // The one encoder's rule, for arguments too: no control character anywhere.
        let fields: Vec<&str> = v.iter().map(String::as_str).collect();
        Records::new().push(&fields).map_err(|e| e.to_string())?;
        Ok(v)
    }

    /// The verb as migrate.sh takes it.
    pub fn word(&self) -> &'static str {
        match self {
            Verb::Probe { .. } => "probe",
            Verb::Stop => "stop",
            Verb::Quarantine => "quarantine",
            Verb::Tombstone { .. } => "tombstone",
            Verb::Arrive { .. } => "arrive",
            Verb::Verify { .. } => "verify",
            Verb::Purge => "purge",
            Verb::Rollback => "rollback",
            Verb::Resurrect => "resurrect",
        }
    }
}

/// How a step ended on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepAnswer {
    /// Done now.
    Done,
    /// Found done already (a rerun after a killed controller).
    Already,
}

/// Reads a step's answer: DONE/ALREADY, or the script's refusal (what is wrong, what to do).
pub fn step_answer(
    verb: &str,
    status: Option<i32>,
    stdout: &[u8],
    stderr: &str,
) -> Result<StepAnswer, String> {
    let text = String::from_utf8_lossy(stdout);
    for line in text.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        match f.as_slice() {
            ["DONE", v] if *v == verb => return Ok(StepAnswer::Done),
            ["ALREADY", v] if *v == verb => return Ok(StepAnswer::Already),
            ["REFUSED", why] => return Err(format!("refused, nothing more was changed: {why}")),
            _ => {}
        }
    }
    Err(format!(
        "`{verb}` ended without an answer (exit {}): {}",
        status.map_or("signal".into(), |c| c.to_string()),
        stderr.trim()
    ))
}

/// What `probe` (and `verify`) found on a host about one relay.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Probe {
    pub tor_installed: bool,
    /// systemd's ActiveState of tor@NAME (`-` if unknown).
    pub active_state: String,
    /// systemd's UnitFileState of tor@NAME: enabled, disabled, masked... (`-` if unknown).
    pub unit_file_state: String,
    pub config_dir: bool,
    pub user: bool,
    pub data_dir: bool,
    /// The DataDirectory holds keys/secret_id_key.
    pub keys: bool,
    /// The DataDirectory's `fingerprint` file.
    pub fingerprint_file: Option<String>,
    /// What tor logged in its current run: "Your Tor server's identity key fingerprint is".
    pub journal_fingerprint: Option<String>,
    pub quarantined: bool,
    pub tombstone: Option<crate::remote::gather::Tombstone>,
    /// Sockets listening on the relay's ORPort.
    pub listening: Vec<String>,
    /// The host's global addresses.
    pub addresses: Vec<String>,
}

impl Probe {
    /// Whether systemd runs (or is starting, or stopping) tor@NAME.
    pub fn running(&self) -> bool {
        matches!(
            self.active_state.as_str(),
            "active" | "activating" | "reloading" | "deactivating"
        )
    }
}

/// Parses probe's records; a refusal, or an answer without its last line, is an error.
pub fn parse_probe(stdout: &[u8]) -> Result<Probe, String> {
    let text = std::str::from_utf8(stdout).map_err(|_| "probe output is not UTF-8".to_string())?;
    let mut p = Probe::default();
    let mut complete = false;
    for line in text.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        let yes = |v: &str| v == "1";
        match f.as_slice() {
            ["REFUSED", why] => return Err(format!("refused: {why}")),
            ["T", v] => p.tor_installed = yes(v),
            ["S", a, u] => {
                p.active_state = a.to_string();
                p.unit_file_state = u.to_string();
            }
            ["C", v] => p.config_dir = yes(v),
            ["U", v] => p.user = yes(v),
            ["D", v] => p.data_dir = yes(v),
            ["Y", v] => p.keys = yes(v),
            ["F", fp] => p.fingerprint_file = Some(fp.to_string()),
            ["J", fp] => p.journal_fingerprint = Some(fp.to_string()),
            ["Q", v] => p.quarantined = yes(v),
            ["X", ..] => p.tombstone = crate::remote::gather::Tombstone::parse(&f),
            ["L", a] => p.listening.push(a.to_string()),
            ["A", a] => p.addresses.push(a.to_string()),
            ["K", "end", "ok"] => complete = true,
            _ => {
                return Err(format!(
                    "unexpected probe line: {:?}",
                    line.chars().take(120).collect::<String>()
                ))
            }
        }
    }
    if !complete {
        return Err("probe output ended early (the connection may have dropped)".into());
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_checked_before_they_travel() {
        assert_eq!(Verb::Stop.args("ekumen").unwrap(), ["stop", "ekumen"]);
        assert!(Verb::Stop
            .args("eku-men")
            .unwrap_err()
            .contains("not a relay nickname"));
        assert!(Verb::Stop.args("x;rm").is_err());
        let t = |to: &str, fp: &str| Verb::Tombstone {
            to: to.into(),
            when: "2026-12-02T17:00:00Z".into(),
            fingerprint: fp.into(),
        };
        let fp = "A".repeat(40);
        assert_eq!(
            t("ekumen2", &fp).args("ekumen").unwrap(),
            [
                "tombstone",
                "ekumen",
                "ekumen2",
                "2026-12-02T17:00:00Z",
                fp.as_str()
            ]
        );
        assert!(t("a b", &fp)
            .args("ekumen")
            .unwrap_err()
            .contains("cannot be written in a tombstone"));
        assert!(t("h", "abc")
            .args("ekumen")
            .unwrap_err()
            .contains("not a relay fingerprint"));
    }

    #[test]
    fn answers_say_done_already_or_why_refused() {
        assert_eq!(
            step_answer("stop", Some(0), b"DONE\tstop\n", ""),
            Ok(StepAnswer::Done)
        );
        assert_eq!(
            step_answer("stop", Some(0), b"ALREADY\tstop\n", ""),
            Ok(StepAnswer::Already)
        );
        let e = step_answer("purge", Some(8), b"REFUSED\ttor@x is running here\n", "").unwrap_err();
        assert!(e.contains("tor@x is running here"), "{e}");
        let e = step_answer("purge", None, b"", "Connection closed").unwrap_err();
        assert!(
            e.contains("without an answer (exit signal): Connection closed"),
            "{e}"
        );
    }

    #[test]
    fn probe_records_are_read_and_a_truncated_answer_is_an_error() {
        let out = "T\t1\nS\tinactive\tmasked\nC\t1\nU\t1\nD\t1\nY\t0\nF\tABCD\nQ\t1\nX\tekumen\tekumen2\t2026-12-02T17:00:00Z\tABCD\nL\t192.0.2.21:443\nA\t192.0.2.21\nK\tend\tok\n";
        let p = parse_probe(out.as_bytes()).unwrap();
        assert!(p.tor_installed && p.config_dir && p.quarantined && !p.keys);
        assert_eq!(p.unit_file_state, "masked");
        assert!(!p.running());
        assert_eq!(p.tombstone.unwrap().to, "ekumen2");
        assert_eq!(p.listening, ["192.0.2.21:443"]);
        assert!(parse_probe(b"T\t1\n").unwrap_err().contains("ended early"));
        assert!(parse_probe(b"REFUSED\tno\n")
            .unwrap_err()
            .contains("refused: no"));
    }
}
