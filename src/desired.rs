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

/// The content of a desired file. Secret content never leaves memory except into the host's file.
#[derive(Clone)]
pub enum Content {
    Plain(Vec<u8>),
    Secret(crate::secret::Secret),
}

impl Content {
    pub fn bytes(&self) -> &[u8] {
        match self {
            Content::Plain(b) => b,
            Content::Secret(s) => s.expose(),
        }
    }
    pub fn is_secret(&self) -> bool {
        matches!(self, Content::Secret(_))
    }
}

impl std::fmt::Debug for Content {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Content::Plain(b) => write!(f, "Plain({} bytes)", b.len()),
            Content::Secret(_) => f.write_str("Secret(redacted)"),
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
    /// sha256 of the content, hex.
    pub fn sha256(&self) -> String {
        crate::util::sha256_hex(self.content.bytes())
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
}

/// Every selected host's desired state.
#[derive(Debug, Clone, Default)]
pub struct Desired {
    pub hosts: Vec<DesiredHost>,
}
