//! gather.sh's Rust half: the requests it reads on stdin (through the one encoder, [`Records`]) and
//! the parser of its answer into [`Observed`]. The script's header documents both.

use crate::desired::DesiredHost;
use crate::observed::{Observed, ObservedFile, ObservedInstance};
use crate::remote::record::{RecordError, Records};
use std::collections::BTreeSet;

// The instance-state and status records' types live with the other observed facts (the plan
// reads them and must not depend on the host scripts); named here too, beside their parser.
pub use crate::observed::{InstanceFacts, InstanceState, StatusFacts};

/// The `q` requests of `oignon status`: for each (instance, MetricsPort), ask its fingerprint,
/// signing certificate and whether the port answers. Appended to [`requests`]' lines.
pub fn status_requests(instances: &[(String, Option<u16>)]) -> Result<Vec<u8>, RecordError> {
    let mut out = Records::new();
    for (name, port) in instances {
        let port = port.map_or("-".to_string(), |p| p.to_string());
        out.push(&["q", name, &port])?;
    }
    Ok(out.into_bytes())
}

/// `-` is the script's word for "unknown" or "absent".
fn known(v: &str) -> Option<String> {
    (v != "-" && !v.is_empty()).then(|| v.to_string())
}

/// The gather requests for a host: every desired path (with the hash oignon wants there) and every
/// instance. (Paths the last apply
/// managed that left the inventory are found by the script itself, from the host's manifest.)
pub fn requests(desired: &DesiredHost) -> Result<Vec<u8>, RecordError> {
    let mut out = Records::new();
    let mut seen = BTreeSet::new();
    for f in &desired.files {
        if seen.insert(f.path.clone()) {
            if f.content.is_secret() {
                out.push(&["s", &f.path])?;
            } else {
                // With the wanted hash, the host sends content back only where it differs.
                out.push(&["f", &f.path, f.sha256()])?;
            }
        }
    }
    for i in &desired.instances {
        out.push(&["i", i])?;
    }
    Ok(out.into_bytes())
}

// The types of the `I` and `X` records live in observed.rs (what a host looks like), which the
// plan reads and which must not name this module (architecture.rs); they are named here too.
pub use crate::observed::Tombstone;

/// Parses gather.sh's output. Unknown or malformed lines are errors: a truncated answer must never
/// look like "the files are absent".
pub fn parse(stdout: &[u8]) -> Result<Observed, String> {
    use base64::Engine as _;
    let text = std::str::from_utf8(stdout).map_err(|_| "gather output is not UTF-8".to_string())?;
    let mut o = Observed::default();
    let mut complete = false;
    for (n, line) in text.lines().enumerate() {
        let f: Vec<&str> = line.split('\t').collect();
        let bad = || {
            format!(
                "unexpected gather output line {}: {:?}",
                n + 1,
                line.chars().take(120).collect::<String>()
            )
        };
        match f.as_slice() {
            ["F", path, "0"] => {
                o.files.insert(path.to_string(), ObservedFile::Absent);
            }
            ["F", path, "1", owner, group, mode, sum, rest @ ..] => {
                let mode = u32::from_str_radix(mode, 8).map_err(|_| bad())?;
                let (sha256, content) = match rest {
                    [b64] => {
                        let bytes = base64::engine::general_purpose::STANDARD
                            .decode(b64)
                            .map_err(|_| bad())?;
                        (crate::util::sha256_hex(&bytes), Some(bytes))
                    }
                    [] => (sum.to_string(), None),
                    _ => return Err(bad()),
                };
                o.files.insert(
                    path.to_string(),
                    ObservedFile::Present {
                        owner: owner.to_string(),
                        group: group.to_string(),
                        mode,
                        sha256,
                        content,
                    },
                );
            }
            ["T", path, kind] => {
                o.files
                    .insert(path.to_string(), ObservedFile::Other(kind.to_string()));
            }
            ["S", name, fpr, cert, metrics] => {
                let signing_cert = match *cert {
                    "-" => None,
                    b64 => Some(
                        base64::engine::general_purpose::STANDARD
                            .decode(b64)
                            .map_err(|_| bad())?,
                    ),
                };
                let metrics_up = match *metrics {
                    "up" => Some(true),
                    "down" => Some(false),
                    "-" => None,
                    _ => return Err(bad()),
                };
                o.status
                    .get_or_insert_with(Default::default)
                    .instances
                    .insert(
                        name.to_string(),
                        InstanceFacts {
                            fingerprint: known(fpr).filter(|f| f != "?"),
                            fingerprint_unreadable: *fpr == "?",
                            signing_cert,
                            metrics_up,
                        },
                    );
            }
            ["A", when, who] => {
                o.status.get_or_insert_with(Default::default).last_apply =
                    known(when).map(|w| (w, who.to_string()));
            }
            ["K", "reboot_required", v] => {
                o.status
                    .get_or_insert_with(Default::default)
                    .reboot_required = *v == "yes";
            }
            ["R", name, user, dd, active] => {
                o.instances.insert(
                    name.to_string(),
                    ObservedInstance {
                        user_exists: *user == "1",
                        data_dir_exists: *dd == "1",
                        active: active.to_string(),
                    },
                );
            }
            ["I", name, active, unit_file, id_sha] => {
                let st = InstanceState::parse(name, active, unit_file, id_sha).ok_or_else(bad)?;
                o.instance_states.insert(name.to_string(), st);
            }
            ["X", ..] => {
                let t = Tombstone::parse(&f).ok_or_else(bad)?;
                o.tombstones.insert(t.name.clone(), t);
            }
            ["N", ..] => {
                let t = Tombstone::parse(&f).ok_or_else(bad)?;
                o.arrivals.insert(t.name.clone(), t);
            }
            ["D", name] => o.instance_dirs.push(name.to_string()),
            ["M", path, sum, now] => {
                o.managed.insert(path.to_string(), sum.to_string());
                match *now {
                    "-" => {}
                    "0" => {
                        o.files.insert(path.to_string(), ObservedFile::Absent);
                    }
                    sha => {
                        // Only the hash is known: enough to archive it and to notice it moved.
                        o.files.insert(
                            path.to_string(),
                            ObservedFile::Present {
                                owner: String::new(),
                                group: String::new(),
                                mode: 0,
                                sha256: sha.to_string(),
                                content: None,
                            },
                        );
                    }
                }
            }
            ["P", cmd] => o.pending.push(cmd.to_string()),
            ["K", "lock", v] => o.lock = Some(v.trim().to_string()),
            ["K", "lock-left", v] => o.lock_left = Some(v.trim().to_string()),
            ["K", "cmdline", v] => o.cmdline = Some(v.trim().to_string()),
            ["K", "tor_version", v] => o.tor_version = (!v.is_empty()).then(|| v.to_string()),
            ["K", "os", v] => o.os = Some(v.to_string()),
            ["K", "end", "ok"] => complete = true,
            ["K", ..] => {}
            _ => return Err(bad()),
        }
    }
    if !complete {
        return Err("gather output ended early (the connection may have dropped)".into());
    }
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::{Content, DesiredFile};

    fn file(path: &str, secret: bool) -> DesiredFile {
        let f = DesiredFile::for_test(path, b"x");
        if secret {
            DesiredFile {
                content: Content::secret(crate::secret::Secret::new(b"k".to_vec())),
                ..f
            }
        } else {
            f
        }
    }

    #[test]
    fn requests_name_each_path_once_and_mark_secrets() {
        let h = DesiredHost {
            name: "h".into(),
            files: vec![file("/etc/a", false), file("/var/k", true)],
            instances: vec!["r1".into()],
            kernel_params: None,
            notices: vec![],
            firewall_window: 60,
        };
        let req = String::from_utf8(requests(&h).unwrap()).unwrap();
        let want = crate::util::sha256_hex(b"x");
        assert_eq!(req, format!("f\t/etc/a\t{want}\ns\t/var/k\ni\tr1\n"));
    }

    #[test]
    fn parses_every_record_kind() {
        let out = "F\t/a\t0\nF\t/b\t1\troot\troot\t644\t-\taGkK\nF\t/k\t1\t_tor-x\t_tor-x\t600\tabc\nT\t/d\tdirectory\n\
R\tx\t1\t0\tactive\nD\tx\nM\t/b\tfff\t-\nM\t/old\taaa\tbbb\nP\tsystemctl reload tor@x\nK\tcmdline\tro quiet\nK\tend\tok\n";
        let o = parse(out.as_bytes()).unwrap();
        assert_eq!(o.files["/a"], ObservedFile::Absent);
        let ObservedFile::Present {
            content,
            sha256,
            mode,
            ..
        } = &o.files["/b"]
        else {
            panic!()
        };
        assert_eq!(content.as_deref(), Some(&b"hi\n"[..]));
        assert_eq!(*sha256, crate::util::sha256_hex(b"hi\n"));
        assert_eq!(*mode, 0o644);
        assert_eq!(o.files["/k"].sha256(), Some("abc"));
        assert!(o.instances["x"].user_exists && !o.instances["x"].data_dir_exists);
        assert_eq!(o.pending, ["systemctl reload tor@x"]);
        assert_eq!(o.cmdline.as_deref(), Some("ro quiet"));
        assert_eq!(o.managed["/old"], "aaa");
        assert_eq!(o.files["/old"].sha256(), Some("bbb"));
    }

    #[test]
    fn instance_states_and_tombstones_are_read_and_checked() {
        let sha = "a".repeat(64);
        let out = format!("I\tekumen\tactive\tenabled\t{sha}\nI\told\tinactive\tmasked\t-\nX\told\tekumen2\t2026-12-02T17:00:00Z\tABCD\nN\tnew\tekumen\t2026-12-02T17:00:00Z\tABCD\nK\tend\tok\n");
        let o = parse(out.as_bytes()).unwrap();
        assert!(o.instance_states["ekumen"].is_active());
        assert_eq!(
            o.instance_states["ekumen"].id_sha.as_deref(),
            Some(sha.as_str())
        );
        assert_eq!(o.instance_states["old"].unit_file_state, "masked");
        assert_eq!(o.instance_states["old"].id_sha, None);
        assert_eq!(o.tombstones["old"].to, "ekumen2");
        assert_eq!(o.arrivals["new"].to, "ekumen");
        for bad in [
            "I\tbad-name\tactive\tenabled\t-\n",
            "I\tx\tACTIVE;\tenabled\t-\n",
            "I\tx\tactive\tenabled\tnothex\n",
            "X\tx\th st\twhen\tFP\n",
        ] {
            let e = parse(format!("{bad}K\tend\tok\n").as_bytes()).unwrap_err();
            assert!(
                e.contains("unexpected gather output line 1"),
                "{bad:?}: {e}"
            );
        }
    }

    #[test]
    fn parses_status_facts_beside_instance_states() {
        let sha = "ab".repeat(32);
        let out = format!("R\tx\t1\t0\tactive\nI\tx\tfailed\tenabled\t{sha}\nI\ty\t-\t-\t-\n\
S\tx\tAB12\taGkK\tup\nS\ty\t-\t-\t-\nS\tz\t?\t-\tdown\nA\t2026-12-02T10:00:00Z\tops@ctl\nK\treboot_required\tyes\nK\tend\tok\n");
        let o = parse(out.as_bytes()).unwrap();
        assert!(o.instances["x"].user_exists);
        assert_eq!(
            o.instance_states["x"],
            InstanceState {
                name: "x".into(),
                active_state: "failed".into(),
                unit_file_state: "enabled".into(),
                id_sha: Some(sha.clone()),
            }
        );
        assert_eq!(o.instance_states["y"].active_state, "-");
        assert_eq!(o.instance_states["y"].id_sha, None);
        let s = o.status.unwrap();
        assert_eq!(s.instances["x"].fingerprint.as_deref(), Some("AB12"));
        assert_eq!(s.instances["x"].signing_cert.as_deref(), Some(&b"hi\n"[..]));
        assert_eq!(s.instances["x"].metrics_up, Some(true));
        assert_eq!(s.instances["y"], InstanceFacts::default());
        assert!(s.instances["z"].fingerprint_unreadable && s.instances["z"].fingerprint.is_none());
        assert_eq!(
            s.last_apply,
            Some(("2026-12-02T10:00:00Z".into(), "ops@ctl".into()))
        );
        assert!(s.reboot_required);
        assert!(parse(b"S\tx\t-\t-\tmaybe\nK\tend\tok\n").is_err());
    }

    #[test]
    fn status_requests_carry_each_instance_and_its_metrics_port() {
        let r = status_requests(&[("a".into(), Some(9035)), ("b".into(), None)]).unwrap();
        assert_eq!(r, b"q\ta\t9035\nq\tb\t-\n");
    }

    #[test]
    fn truncated_output_is_an_error_not_absent_files() {
        assert!(parse(b"F\t/a\t0\n").unwrap_err().contains("ended early"));
        assert!(parse(b"garbage\nK\tend\tok\n")
            .unwrap_err()
            .contains("line 1"));
    }
}
