//! The checks of an inventory edit (`hoster add`, `host add`) beyond the inventory's own: the
//! edited inventory rendered with the roles, as `check` renders it, and tor's verdict on the new
//! relays' torrc files. What `check` would refuse is refused before the file is written. The one
//! finding expected at this point, a new relay without an identity in secrets/, is the next step
//! (`secrets keygen`), not an error here.

use crate::diagnostic::Diagnostic;
use crate::inventory::edit::Edit;
use crate::role::{Roles, ValidatorKind};
use std::path::Path;

/// What the later checks said: errors refuse the edit; `tor_skipped` says tor was not there.
pub struct Checked {
    pub errors: Vec<Diagnostic>,
    /// tor is not installed here, so the new torrc files were not verified by tor.
    pub tor_skipped: bool,
}

/// Renders the edited inventory with the roles (every host, as `check`), then has tor verify
/// the torrc of each relay the edit adds.
pub fn check_edit(edit: &Edit, roles_dir: &Path, secrets_dir: &Path) -> Checked {
    let inv = crate::inventory::load_texts(edit.inventory.clone());
    let mut errors: Vec<Diagnostic> = inv
        .diagnostics
        .iter()
        .filter(|d| d.is_error())
        .cloned()
        .collect();
    let roles = match Roles::load(roles_dir) {
        Ok(r) => r,
        Err(d) => {
            errors.extend(d);
            return Checked {
                errors,
                tor_skipped: false,
            };
        }
    };
    let Some(fleet) = inv.fleet.as_ref().filter(|_| errors.is_empty()) else {
        return Checked {
            errors,
            tor_skipped: false,
        };
    };
    let store = crate::secrets::Store::open(secrets_dir);
    let keys = crate::render::Keys {
        store: &store,
        identity: None,
    };
    let desired = match crate::render::render(&inv, fleet, &roles, |_| true, &keys) {
        Ok(d) => d,
        Err(d) => {
            errors.extend(d);
            return Checked {
                errors,
                tor_skipped: false,
            };
        }
    };
    if !crate::tor::available() {
        return Checked {
            errors,
            tor_skipped: true,
        };
    }
    for h in &desired.hosts {
        for f in h.files.iter().filter(|f| {
            f.validate == Some(ValidatorKind::Torrc)
                && f.instance
                    .as_ref()
                    .is_some_and(|i| edit.relays.iter().any(|(n, _)| n == i))
        }) {
            let name = f.instance.as_deref().unwrap_or("tor");
            if let Err(e) = crate::tor::verify_config_local(name, f.content.bytes()) {
                let (verb, words) = match e {
                    crate::tor::TorError::Rejected(words) => ("rejects", words.replace('\n', " ")),
                    other => ("could not verify", other.to_string()),
                };
                errors.push(
                    Diagnostic::error(format!(
                        "tor {verb} the torrc of the new relay `{name}` on host `{}` ({}): {words}",
                        h.name, f.path,
                    ))
                    .in_file(&edit.path)
                    .help("fix the value given to host add, or the [defaults] (fleet, hoster or host) it inherits"),
                );
            }
        }
    }
    Checked {
        errors,
        tor_skipped: false,
    }
}
