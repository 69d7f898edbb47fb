//! `check` finds what `plan` would fail on in secrets/, without decrypting anything: damaged or
//! truncated `.age` files and a missing or bad recipients.txt.

use crate::harness::Fixture;

const KEY: &str = "secrets/relays/ekumen/secret_id_key.age";

fn header_len(bytes: &[u8]) -> usize {
    let mac = bytes.windows(5).position(|w| w == b"\n--- ").unwrap();
    mac + 1 + bytes[mac + 1..].iter().position(|&b| b == b'\n').unwrap() + 1
}

#[test]
fn a_truncated_age_file_fails_check_naming_it() {
    let f = Fixture::shipped();
    let bytes = std::fs::read(f.path(KEY)).unwrap();
    for keep in [header_len(&bytes) + 10, header_len(&bytes), 40, 0] {
        std::fs::write(f.path(KEY), &bytes[..keep]).unwrap();
        f.run(&["check", "--no-tor"]).code(1).err_has(&[KEY]);
    }
    std::fs::write(f.path(KEY), &bytes[..header_len(&bytes) + 20]).unwrap();
    f.run(&["check", "--no-tor"]).code(1).err_has(&[
        "is truncated: 20 bytes after the header",
        "restore it from git",
    ]);
}

#[test]
fn a_damaged_age_header_fails_check_naming_it() {
    let f = Fixture::shipped();
    let text = std::fs::read(f.path(KEY)).unwrap();
    let damaged: Vec<u8> = String::from_utf8_lossy(&text)
        .replacen("age-encryption.org/v1", "age-encryption.org/v9", 1)
        .into_bytes();
    std::fs::write(f.path(KEY), damaged).unwrap();
    f.run(&["check", "--no-tor"])
        .code(1)
        .err_has(&[KEY, "is not an age file or its header is damaged"]);
    std::fs::write(f.path(KEY), b"not age at all\n").unwrap();
    f.run(&["check", "--no-tor"]).code(1).err_has(&[KEY]);
}

#[test]
fn a_missing_or_bad_recipients_file_fails_check() {
    let f = Fixture::shipped();
    std::fs::remove_file(f.path("secrets/recipients.txt")).unwrap();
    f.run(&["check", "--no-tor"]).code(1).err_has(&[
        "cannot read secrets/recipients.txt",
        "recipients.txt lists who can decrypt",
    ]);
    f.write("secrets/recipients.txt", "age1notarecipient\n");
    f.run(&["check", "--no-tor"])
        .code(1)
        .err_has(&["secrets/recipients.txt:1: not an age (age1…) or ssh-ed25519 recipient"]);
}

#[test]
fn the_shipped_store_passes() {
    Fixture::shipped().run(&["check", "--no-tor"]).code(0);
}
