//! What `check` (and every command that loads the fleet) verifies about identities, which tor's
//! own `--verify-config` cannot see.

use super::Store;
use crate::diagnostic::Diagnostic;
use crate::inventory::{source::Seg, Fleet, Inventory, Origin};
use std::collections::HashMap;
use std::net::IpAddr;

fn at(o: &Origin, leaf: &str) -> Origin {
    let mut o = o.clone();
    o.path.push(Seg::Key(leaf.into()));
    o
}

/// Documentation ranges (RFC 5737, RFC 3849): the only addresses demo keys may serve.
pub fn is_documentation(a: IpAddr) -> bool {
    match a {
        IpAddr::V4(v) => {
            let o = v.octets();
            matches!(
                (o[0], o[1], o[2]),
                (192, 0, 2) | (198, 51, 100) | (203, 0, 113)
            )
        }
        IpAddr::V6(v) => {
            let s = v.segments();
            s[0] == 0x2001 && s[1] == 0x0db8
        }
    }
}

/// Findings about identities: missing, shared, a family id without its key, demo keys on real
/// addresses.
pub fn findings(inv: &Inventory, fleet: &Fleet, store: &Store) -> Vec<Diagnostic> {
    let mut out = vec![];
    if !fleet.manage_identities {
        return out;
    }
    let mut seen: HashMap<String, String> = HashMap::new();
    for h in &fleet.hosts {
        for r in &h.relays {
            let o = at(&r.origin, "nickname");
            if !store.has_identity(&r.nickname) {
                out.push(inv.locate(
                    Diagnostic::error(format!(
                        "relay `{}` has no identity in {}: tor would make a new one and the relay would lose its fingerprint and reputation",
                        r.nickname,
                        store.relay_dir(&r.nickname).display()
                    ))
                    .help(format!("oignon secrets keygen {} (a new relay), or oignon secrets import {} (a running one)", r.nickname, h.name)),
                    &o,
                    false,
                ));
                continue;
            }
            if r.offline_master_key && !store.has_signing(&r.nickname) {
                out.push(inv.locate(
                    Diagnostic::error(format!("relay `{}` keeps its master key offline but has no signing key in secrets/", r.nickname))
                        .help(format!("oignon secrets renew-signing {}", r.nickname)),
                    &o,
                    false,
                ));
            }
            if let Some(fp) = store.fingerprint(&r.nickname) {
                if let Some(other) = seen.insert(fp.clone(), r.nickname.clone()) {
                    out.push(inv.locate(
                        Diagnostic::error(format!("relays `{other}` and `{}` share the identity {fp}: the directory authorities would see one relay", r.nickname))
                            .help(format!("give `{}` its own identity: oignon secrets keygen --force {}", r.nickname, r.nickname)),
                        &o,
                        false,
                    ));
                }
            }
        }
    }
    out.extend(super::demo::findings(inv, fleet, store));
    // What plan would fail on, found without decrypting: recipients.txt and every file's header.
    if let Err(e) = store.recipients() {
        out.push(Diagnostic::error(e.to_string()).help(
            "recipients.txt lists who can decrypt secrets/; restore it from git, or write the admins' public keys there",
        ));
    }
    for f in store.age_files() {
        if let Err(why) = age_file_shape(&f) {
            out.push(
                Diagnostic::error(format!("{} {why}", f.display()))
                    .help("restore it from git (git checkout -- FILE), or make it again (oignon secrets keygen --force NICKNAME, or secrets import HOST)"),
            );
        }
    }
    if store.family_id().is_some() && !store.has_family_key() {
        out.push(
            Diagnostic::error(format!(
                "{} names a family whose secret key is missing: every relay would carry `FamilyId` without its key, which tor --verify-config accepts but tor refuses at start",
                store.dir.join("family.public_family_id").display()
            ))
            .help("restore family.secret_family_key.age from git, or run oignon secrets family-keygen --force"),
        );
    }
    out
}

/// Whether a file is a whole age file, as far as can be told without its key: a header age parses,
/// ended by its MAC line, then at least a nonce and one chunk's tag (a truncated file fails here;
/// a payload damaged inside fails only at decryption, which `secrets verify` does).
fn age_file_shape(path: &std::path::Path) -> Result<(), String> {
    use std::io::Read;
    let raw = std::fs::read(path).map_err(|e| format!("cannot be read: {e}"))?;
    let mut bytes = vec![];
    age::armor::ArmoredReader::new(&raw[..])
        .read_to_end(&mut bytes)
        .map_err(|e| format!("is not a readable age file ({e})"))?;
    match age::Decryptor::new(&bytes[..]) {
        Ok(age::Decryptor::Recipients(_)) => {}
        Ok(_) => {
            return Err(
                "is passphrase-encrypted; oignon's secrets are encrypted to recipients.txt".into(),
            )
        }
        Err(e) => return Err(format!("is not an age file or its header is damaged ({e})")),
    }
    // The header ends with its MAC line, "--- <base64>\n"; the payload follows.
    let mac = bytes
        .windows(5)
        .position(|w| w == b"\n--- ")
        .ok_or("has no header MAC line")?;
    let end = bytes[mac + 1..]
        .iter()
        .position(|&b| b == b'\n')
        .map(|i| mac + 1 + i + 1)
        .ok_or("ends inside its header")?;
    // A 16-byte nonce, then each chunk carries a 16-byte tag.
    if bytes.len() - end < 32 {
        return Err(format!(
            "is truncated: {} byte{} after the header, where even an empty secret takes 32",
            bytes.len() - end,
            crate::text::plural(bytes.len() - end)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn documentation_ranges() {
        for a in ["192.0.2.1", "198.51.100.7", "203.0.113.255", "2001:db8::1"] {
            assert!(super::is_documentation(a.parse().unwrap()), "{a}");
        }
        for a in ["192.0.3.1", "8.8.8.8", "2001:db9::1"] {
            assert!(!super::is_documentation(a.parse().unwrap()), "{a}");
        }
    }
}
