//! What each host should look like: the output of rendering, the input of planning.

use crate::role::{HandlerKind, ValidatorKind};
use serde::Serialize;

/// A handler bound to its target: `tor-reload` of one instance, or a host-wide one.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Handler {
    pub kind: HandlerKind,
    /// The relay instance, for per-instance handlers.
    pub instance: Option<String>,
}

/// The content of a desired file, with its sha256 computed once when it is made (plan, the gather
/// request and apply's records all need it, for every file of every host). Secret content never
/// leaves memory except into the host's file.
#[derive(Clone)]
pub struct Content {
    bytes: Bytes,
    /// Lowercase hex; private so that it always is the digest of `bytes`.
    sha256: String,
}

#[derive(Clone)]
enum Bytes {
    Plain(Vec<u8>),
    Secret(crate::secret::Secret),
}

impl Content {
    /// Content that may be shown (diffs, `render`, saved plans).
    pub fn plain(bytes: Vec<u8>) -> Content {
        Content {
            sha256: crate::util::sha256_hex(&bytes),
            bytes: Bytes::Plain(bytes),
        }
    }

    /// Content that is never shown, only its sha256.
    pub fn secret(secret: crate::secret::Secret) -> Content {
        Content {
            sha256: crate::util::sha256_hex(secret.expose()),
            bytes: Bytes::Secret(secret),
        }
    }

    pub fn bytes(&self) -> &[u8] {
        match &self.bytes {
            Bytes::Plain(b) => b,
            Bytes::Secret(s) => s.expose(),
        }
    }

    pub fn is_secret(&self) -> bool {
        matches!(self.bytes, Bytes::Secret(_))
    }

    /// sha256 of the bytes, lowercase hex.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }
}

impl std::fmt::Debug for Content {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.bytes {
            Bytes::Plain(b) => write!(f, "Plain({} bytes)", b.len()),
            Bytes::Secret(_) => f.write_str("Secret(redacted)"),
        }
    }
}

/// One file oignon manages on a host.
#[derive(Debug, Clone)]
pub struct DesiredFile {
    pub path: String,
    pub content: Content,
    pub owner: String,
    pub group: String,
    pub mode: u32,
    pub role: String,
    pub handler: Option<Handler>,
    pub validate: Option<ValidatorKind>,
    pub reboot_required: bool,
    /// The relay instance the file belongs to, if any.
    pub instance: Option<String>,
}

impl DesiredFile {
    /// sha256 of the content, hex (computed once, when the content was made).
    pub fn sha256(&self) -> &str {
        self.content.sha256()
    }

    /// A plain `root:root 0644` file of no role behaviour, for unit tests to adjust.
    #[cfg(test)]
    pub fn for_test(path: &str, content: &[u8]) -> DesiredFile {
        DesiredFile {
            path: path.into(),
            content: Content::plain(content.to_vec()),
            owner: "root".into(),
            group: "root".into(),
            mode: 0o644,
            role: "test".into(),
            handler: None,
            validate: None,
            reboot_required: false,
            instance: None,
        }
    }
}

/// One host's desired state.
#[derive(Debug, Clone)]
pub struct DesiredHost {
    pub name: String,
    /// Files in a stable order (role order, then instance order).
    pub files: Vec<DesiredFile>,
    /// Relay instances (Debian's `tor@NAME`), in inventory order.
    pub instances: Vec<String>,
    /// Kernel parameters that must appear in `/proc/cmdline`, when the kernel role is on.
    pub kernel_params: Option<Vec<String>>,
    /// Things the plan should say about this host (e.g. a signing certificate's expiry).
    pub notices: Vec<String>,
    /// Seconds a new firewall ruleset waits for oignon's confirmation before the host puts the
    /// old one back (the inventory's `dos_firewall.confirm_seconds`).
    pub firewall_window: u64,
}

/// Every selected host's desired state.
#[derive(Debug, Clone, Default)]
pub struct Desired {
    pub hosts: Vec<DesiredHost>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_digest_is_computed_at_creation_and_a_secret_stays_redacted() {
        let plain = Content::plain(b"hi\n".to_vec());
        assert_eq!(plain.sha256(), crate::util::sha256_hex(b"hi\n"));
        let secret = Content::secret(crate::secret::Secret::new(b"k".to_vec()));
        assert_eq!(secret.sha256(), crate::util::sha256_hex(b"k"));
        assert!(secret.is_secret() && !plain.is_secret());
        assert_eq!(format!("{secret:?}"), "Secret(redacted)");
    }
}
