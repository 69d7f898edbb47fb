//! The shell scripts that run on hosts, embedded in the binary, and the data they are fed.
//!
//! Scripts are POSIX sh, run as `sh -c SCRIPT NAME ROOT ARGS…`. Everything variable reaches them as
//! data (arguments quoted by the transport, or tab-separated lines on stdin), never spliced into the
//! script text.

pub mod record;

use crate::desired::DesiredHost;
use record::{RecordError, Records};
use std::collections::BTreeSet;

/// Gathers files and facts (see the header of gather.sh for its protocol).
pub const GATHER: &str = concat!(include_str!("paths.sh"), include_str!("gather.sh"));

/// Applies one host's changes (see the header of apply.sh for its records and answers).
pub const APPLY: &str = concat!(include_str!("paths.sh"), include_str!("apply.sh"));

/// The gather requests for a host: every desired path (with the hash oignon wants there) and every
/// instance. (Paths the last apply
/// managed that left the inventory are found by the script itself, from the host's manifest.)
pub fn gather_requests(desired: &DesiredHost) -> Result<Vec<u8>, RecordError> {
    let mut out = Records::new();
    let mut seen = BTreeSet::new();
    for f in &desired.files {
        if seen.insert(f.path.clone()) {
            if f.content.is_secret() {
                out.push(&["s", &f.path])?;
            } else {
                // With the wanted hash, the host sends content back only where it differs.
                out.push(&["f", &f.path, &f.sha256()])?;
            }
        }
    }
    for i in &desired.instances {
        out.push(&["i", i])?;
    }
    Ok(out.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::{Content, DesiredFile};

    fn file(path: &str, secret: bool) -> DesiredFile {
        DesiredFile {
            path: path.into(),
            content: if secret {
                Content::Secret(crate::secret::Secret::new(b"k".to_vec()))
            } else {
                Content::Plain(b"x".to_vec())
            },
            owner: "root".into(),
            group: "root".into(),
            mode: 0o644,
            role: "tor".into(),
            handler: None,
            validate: None,
            reboot_required: false,
            instance: None,
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
        };
        let req = String::from_utf8(gather_requests(&h).unwrap()).unwrap();
        let want = crate::util::sha256_hex(b"x");
        assert_eq!(req, format!("f\t/etc/a\t{want}\ns\t/var/k\ni\tr1\n"));
    }
}
