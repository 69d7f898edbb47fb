//! import.sh's Rust half: the parser of its answer (its header documents the lines). The script
//! takes its nicknames as arguments, quoted by the transport, and reads nothing on stdin.

use crate::secret::Secret;

/// What import.sh found for one relay.
#[derive(Default)]
pub struct Found {
    /// The identity key files present (file name under keys/, content).
    pub files: Vec<(String, Secret)>,
    /// The key files that are missing.
    pub missing: Vec<String>,
    /// The fingerprint tor wrote, if it has run with these keys.
    pub running: Option<String>,
}

/// Reads what the answer `text` says about relay `nick`. Lines about other relays, and lines the
/// parser does not know, are left out. Error: a key's base64 is damaged (the words name no key
/// material, only the relay).
pub fn relay(text: &str, nick: &str) -> Result<Found, String> {
    use base64::Engine as _;
    let mut found = Found::default();
    for line in text.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        match f.as_slice() {
            ["K", n, name, b64] if *n == nick => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .map_err(|_| format!("damaged key data for {nick}"))?;
                found.files.push((name.to_string(), Secret::new(bytes)));
            }
            ["N", n, name] if *n == nick => found.missing.push(name.to_string()),
            ["F", n, fp] if *n == nick => found.running = Some(fp.to_string()),
            _ => {}
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_relay_gets_only_its_own_lines() {
        let text = "K\ta\tsecret_id_key\taGkK\nN\ta\ted25519_master_id_secret_key\nF\ta\tABCD\nK\tb\tsecret_id_key\taGkK\n";
        let a = relay(text, "a").unwrap();
        assert_eq!(a.files.len(), 1);
        assert_eq!(a.files[0].0, "secret_id_key");
        assert_eq!(a.missing, ["ed25519_master_id_secret_key"]);
        assert_eq!(a.running.as_deref(), Some("ABCD"));
        let c = relay(text, "c").unwrap();
        assert!(c.files.is_empty() && c.missing.is_empty() && c.running.is_none());
        let e = relay("K\ta\tsecret_id_key\t!!!\n", "a").err().unwrap();
        assert_eq!(e, "damaged key data for a");
    }
}
