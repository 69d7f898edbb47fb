//! The shipped demo keys, recognised however they are disguised.
//!
//! The demo store's decryption key (`secrets/demo-identity.txt`) is public, and so, through git
//! history, is every key ever encrypted to it. Looking for the `DEMO` marker alone is not enough:
//! deleting it, or running `oignon secrets rekey` with a real admin in `recipients.txt`, keeps the
//! very same (public) keys. So demo material is also recognised by what cannot be changed without
//! making new keys: the demo recipient, the demo relays' fingerprints and the demo FamilyId.
//! Demo keys may only serve documentation addresses (RFC 5737, RFC 3849).

use super::check::is_documentation;
use super::Store;
use crate::diagnostic::Diagnostic;
use crate::inventory::{source::Seg, Fleet, HostSpec, Inventory, Origin};
use std::net::IpAddr;

/// The public key of `secrets/demo-identity.txt`.
pub const DEMO_RECIPIENT: &str = "age13dwnu9g2s3fy085rpql6au4frceznr2kt9dzx2waxlk9w2le3aks3zacc0";

/// (nickname, RSA fingerprint) of the shipped demo relays. Regenerating the demo store means
/// updating this list: the `shipped_demo_store_matches_the_constants` test says so.
pub const DEMO_FINGERPRINTS: &[(&str, &str)] = &[
    ("AlGrothendieck", "9A8EFDB33BDE5D08A18FFC26718600A67BB68A49"),
    ("ekumen", "B6BB8CF45E7B8CC4B39D347128B5D16F49A43120"),
    ("marcuse1", "BE626C6551082E0DB9AF4E09240203287BA52DC6"),
    ("marcuse2", "F7EB0B9535BE19398372FD22FB02BA2322E59470"),
    ("marylou1", "42CFE3DAC76478BB4AA142E3E30D82FB3DAA2C7E"),
    ("marylou2", "4B57552472E147A0AE9C989A59D3B666927294BB"),
];

/// The FamilyId of the shipped demo family key.
pub const DEMO_FAMILY_ID: &str = "2s74a1s1l/pfVPI8av+c8QJzOLIeDNX0dNBZ8bKYSCE";

/// Whether `fingerprint` is one of the shipped demo relays' (whose private keys are public).
pub fn is_demo_fingerprint(fingerprint: &str) -> bool {
    DEMO_FINGERPRINTS
        .iter()
        .any(|(_, f)| f.eq_ignore_ascii_case(fingerprint.trim()))
}

/// Why every secret of the store must be treated as public: the `DEMO` marker, the demo recipient
/// in `recipients.txt` (anything encrypted to it can be decrypted by anyone), or the demo family
/// key. Empty for a real store.
pub fn store_demo_reasons(store: &Store) -> Vec<String> {
    let mut why = vec![];
    if store.is_demo() {
        why.push(format!("{} exists", store.dir.join("DEMO").display()));
    }
    let recipients = store.dir.join("recipients.txt");
    if let Ok(text) = std::fs::read_to_string(&recipients) {
        // Only key lines count: the demo key quoted in a comment harms nobody.
        if text
            .lines()
            .map(|l| l.split('#').next().unwrap_or("").trim())
            .any(|l| l == DEMO_RECIPIENT)
        {
            why.push(format!(
                "{} lists the public demo recipient",
                recipients.display()
            ));
        }
    }
    if store.family_id().as_deref() == Some(DEMO_FAMILY_ID) {
        why.push("the family key is the demo one".to_string());
    }
    why
}

fn at(o: &Origin, leaf: &str) -> Origin {
    let mut o = o.clone();
    o.path.push(Seg::Key(leaf.into()));
    o
}

/// The first address of `h` (host or any of its relays, IPv4 or IPv6) outside the documentation
/// ranges, with where it is written.
fn real_address(h: &HostSpec) -> Option<(IpAddr, Origin)> {
    let mut addrs: Vec<(IpAddr, Origin)> = vec![(h.ipv4.into(), at(&h.origin, "ipv4"))];
    if let Some(a) = h.ipv6 {
        addrs.push((a.into(), at(&h.origin, "ipv6")));
    }
    for r in &h.relays {
        // A relay's own address is located on the relay; an inherited one on the host.
        let v4 = if r.ipv4 == h.ipv4 {
            &h.origin
        } else {
            &r.origin
        };
        addrs.push((r.ipv4.into(), at(v4, "ipv4")));
        if let Some(a) = r.ipv6 {
            let v6 = if Some(a) == h.ipv6 {
                &h.origin
            } else {
                &r.origin
            };
            addrs.push((a.into(), at(v6, "ipv6")));
        }
    }
    addrs.into_iter().find(|(a, _)| !is_documentation(*a))
}

/// Errors for demo keys on any host with an address outside the documentation ranges: the whole
/// store when it is demo material ([`store_demo_reasons`]), else each relay whose identity is a
/// demo one. Nothing when the fleet does not manage identities (no key is deployed).
pub fn findings(inv: &Inventory, fleet: &Fleet, store: &Store) -> Vec<Diagnostic> {
    let mut out = vec![];
    if !fleet.manage_identities {
        return out;
    }
    let reasons = store_demo_reasons(store);
    for h in &fleet.hosts {
        let Some((addr, origin)) = real_address(h) else {
            continue;
        };
        if !reasons.is_empty() {
            out.push(inv.locate(
                Diagnostic::error(format!(
                    "host `{}` has the real address {addr}, but {} holds DEMO keys ({}), whose decryption key is public",
                    h.name,
                    store.dir.display(),
                    reasons.join("; ")
                ))
                .help("start a real secrets store (see secrets/README.md): your own recipients.txt, then oignon secrets keygen / family-keygen / import"),
                &origin,
                false,
            ));
            continue;
        }
        for r in &h.relays {
            let Some(fp) = store
                .fingerprint(&r.nickname)
                .filter(|f| is_demo_fingerprint(f))
            else {
                continue;
            };
            out.push(inv.locate(
                Diagnostic::error(format!(
                    "relay `{}` on host `{}` (real address {addr}) has the DEMO identity {fp}, whose private key is public (rekeying does not change that)",
                    r.nickname, h.name
                ))
                .help(format!(
                    "give it a real identity: oignon secrets keygen --force {}",
                    r.nickname
                )),
                &at(&r.origin, "nickname"),
                false,
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The constants describe the shipped store: regenerating it must update them.
    #[test]
    fn shipped_demo_store_matches_the_constants() {
        let store = Store::open(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("secrets"));
        assert!(store.is_demo(), "the shipped store is marked DEMO");
        for (nick, fp) in DEMO_FINGERPRINTS {
            assert_eq!(
                store.fingerprint(nick).as_deref(),
                Some(*fp),
                "secrets/relays/{nick}/fingerprint changed: update DEMO_FINGERPRINTS"
            );
        }
        assert_eq!(store.family_id().as_deref(), Some(DEMO_FAMILY_ID));
        let reasons = store_demo_reasons(&store);
        assert_eq!(reasons.len(), 3, "{reasons:?}");
    }

    #[test]
    fn a_rekeyed_store_without_its_marker_still_shows_its_demo_identities() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path());
        std::fs::write(
            dir.path().join("recipients.txt"),
            format!("# was: {DEMO_RECIPIENT}\nage1qqqq\n"),
        )
        .unwrap();
        assert!(store_demo_reasons(&store).is_empty(), "a comment is no key");
        std::fs::create_dir_all(dir.path().join("relays/renamed")).unwrap();
        std::fs::write(
            dir.path().join("relays/renamed/fingerprint"),
            "b6bb8cf45e7b8cc4b39d347128b5d16f49a43120\n",
        )
        .unwrap();
        // Copied under another nickname, in lower case: still the demo identity.
        let fp = store.fingerprint("renamed").unwrap();
        assert!(is_demo_fingerprint(&fp));
        std::fs::write(
            dir.path().join("recipients.txt"),
            format!("# demo\n{DEMO_RECIPIENT}  # left over\n"),
        )
        .unwrap();
        assert_eq!(store_demo_reasons(&store).len(), 1);
        std::fs::write(dir.path().join("family.public_family_id"), DEMO_FAMILY_ID).unwrap();
        assert_eq!(store_demo_reasons(&store).len(), 2);
    }

    #[test]
    fn fingerprints_compare_without_case_or_whitespace() {
        assert!(is_demo_fingerprint(
            " 9a8efdb33bde5d08a18ffc26718600a67bb68a49\n"
        ));
        assert!(!is_demo_fingerprint(
            "0000000000000000000000000000000000000000"
        ));
    }
}
