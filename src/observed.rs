//! What a host looks like now, as gathered in one round trip by `src/remote/gather.sh`.

use std::collections::BTreeMap;

/// A managed path on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObservedFile {
    Absent,
    /// Something that is not a regular file (a directory, a symlink...): oignon will not touch it.
    Other(String),
    Present {
        owner: String,
        group: String,
        mode: u32,
        sha256: String,
        /// The content, for non-secret files.
        content: Option<Vec<u8>>,
    },
}

impl ObservedFile {
    pub fn sha256(&self) -> Option<&str> {
        match self {
            ObservedFile::Present { sha256, .. } => Some(sha256),
            _ => None,
        }
    }
}

/// A relay instance's system-level state.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObservedInstance {
    pub user_exists: bool,
    pub data_dir_exists: bool,
    /// `systemctl is-active`: active, inactive, failed, unknown...
    pub active: String,
}

/// Everything gathered from one host.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    pub files: BTreeMap<String, ObservedFile>,
    pub instances: BTreeMap<String, ObservedInstance>,
    /// Directories under /etc/tor/instances.
    pub instance_dirs: Vec<String>,
    /// Path → sha256 of what the last apply wrote.
    pub managed: BTreeMap<String, String>,
    /// Handler commands an interrupted apply left pending.
    pub pending: Vec<String>,
    /// The running kernel's command line (absent for the local transport).
    pub cmdline: Option<String>,
    pub tor_version: Option<String>,
    pub os: Option<String>,
    /// Who holds the apply lock, if anyone.
    pub lock: Option<String>,
    /// The name a dead apply left in the lock file (the lock itself died with it).
    pub lock_left: Option<String>,
}

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
            ["I", name, user, dd, active] => {
                o.instances.insert(
                    name.to_string(),
                    ObservedInstance {
                        user_exists: *user == "1",
                        data_dir_exists: *dd == "1",
                        active: active.to_string(),
                    },
                );
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

    #[test]
    fn parses_every_record_kind() {
        let out = "F\t/a\t0\nF\t/b\t1\troot\troot\t644\t-\taGkK\nF\t/k\t1\t_tor-x\t_tor-x\t600\tabc\nT\t/d\tdirectory\n\
I\tx\t1\t0\tactive\nD\tx\nM\t/b\tfff\t-\nM\t/old\taaa\tbbb\nP\tsystemctl reload tor@x\nK\tcmdline\tro quiet\nK\tend\tok\n";
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
    fn truncated_output_is_an_error_not_absent_files() {
        assert!(parse(b"F\t/a\t0\n").unwrap_err().contains("ended early"));
        assert!(parse(b"garbage\nK\tend\tok\n")
            .unwrap_err()
            .contains("line 1"));
    }
}
