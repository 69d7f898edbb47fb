//! bootstrap.sh's Rust half: the install as records (through the one encoder, [`Records`]) and
//! the parser of the script's answer. The script's header documents both.

use crate::bootstrap::Install;
use crate::remote::record::{RecordError, Records};

/// The requests for an install: masks first, then files, then packages.
pub fn requests(i: &Install) -> Result<Vec<u8>, RecordError> {
    use base64::Engine as _;
    let mut r = Records::new();
    for u in &i.mask {
        r.push(&["M", u])?;
    }
    for f in &i.files {
        let b64 = base64::engine::general_purpose::STANDARD.encode(&f.content);
        r.push(&["W", &f.path, &format!("{:o}", f.mode), &b64])?;
    }
    for p in &i.packages {
        r.push(&["P", p])?;
    }
    Ok(r.into_bytes())
}

/// What the script did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Done {
    /// The changes made, in order (none: the host already held everything).
    pub changes: Vec<String>,
    /// Why it stopped, when it did.
    pub error: Option<String>,
    /// The tor package's version afterwards.
    pub tor_version: Option<String>,
    /// Whether the answer ended with its end record.
    pub complete: bool,
}

/// Parses bootstrap.sh's output; an undocumented line is an error.
pub fn parse(stdout: &[u8]) -> Result<Done, String> {
    let text =
        std::str::from_utf8(stdout).map_err(|_| "bootstrap output is not UTF-8".to_string())?;
    let mut d = Done::default();
    for (n, line) in text.lines().enumerate() {
        match line.split('\t').collect::<Vec<_>>().as_slice() {
            ["C", what] => d.changes.push(what.to_string()),
            ["E", msg] => d.error = Some(msg.to_string()),
            ["K", "tor_version", v] => d.tor_version = (!v.is_empty()).then(|| v.to_string()),
            ["K", "end", "ok"] => d.complete = true,
            _ => {
                return Err(format!(
                    "unexpected bootstrap output line {}: {:?}",
                    n + 1,
                    line.chars().take(120).collect::<String>()
                ))
            }
        }
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bootstrap::InstallFile;

    #[test]
    fn an_install_travels_as_records_masks_first() {
        let i = Install {
            files: vec![InstallFile {
                path: "/etc/apt/apt.conf.d/52oignon".into(),
                mode: 0o644,
                content: b"x\n".to_vec(),
            }],
            packages: vec!["tor".into()],
            mask: vec!["tor.service".into()],
        };
        assert_eq!(
            String::from_utf8(requests(&i).unwrap()).unwrap(),
            "M\ttor.service\nW\t/etc/apt/apt.conf.d/52oignon\t644\teAo=\nP\ttor\n"
        );
    }

    #[test]
    fn a_path_with_a_newline_cannot_become_a_request() {
        let i = Install {
            files: vec![InstallFile {
                path: "/etc/x\nP\tevil".into(),
                mode: 0o644,
                content: vec![],
            }],
            packages: vec![],
            mask: vec![],
        };
        assert!(requests(&i).is_err());
    }

    #[test]
    fn the_answer_gives_changes_errors_and_the_version() {
        let d = parse(b"C\tmasked tor.service\nC\tinstalled tor\nK\ttor_version\t0.4.9.11-0+deb12u1\nK\tend\tok\n").unwrap();
        assert_eq!(d.changes, vec!["masked tor.service", "installed tor"]);
        assert_eq!(d.tor_version.as_deref(), Some("0.4.9.11-0+deb12u1"));
        assert!(d.complete && d.error.is_none());
        let d = parse(b"E\tapt-get update failed: x\n").unwrap();
        assert!(!d.complete && d.error.is_some());
        assert!(parse(b"C\tx\nrm -rf /\n").is_err());
    }
}
