//! The ContactInfo fields oignon writes, by the ContactInfo Information Sharing Specification v2
//! (CIISS, nusenu): `email:user[]domain url:… proof:uri-rsa|dns-rsa hoster:domain uplinkbw:N
//! ciissversion:2`. Keys and values are separated by whitespace, so no value may hold any; tor
//! cuts a value at `#`; and tools parsing ContactInfo expect each field's own grammar.

/// A reason a value does not fit its CIISS field.
pub type Why = String;

/// The `email` field, as written in the inventory (`abuse@example.org`): an RFC 5322 addr-spec
/// restricted to dot-atoms (no quoted local parts), with `@` rewritten to `[]` in ContactInfo.
pub fn email(s: &str) -> Result<(), Why> {
    let Some((local, domain)) = s.split_once('@') else {
        return Err("it has no `@`".into());
    };
    if domain.contains('@') {
        return Err("it has more than one `@`".into());
    }
    if local.is_empty() || local.len() > 64 {
        return Err("the part before `@` must have 1 to 64 characters".into());
    }
    if let Some(c) = local.chars().find(|c| *c == '#') {
        return Err(format!(
            "`{c}` starts a comment in a torrc: tor would cut ContactInfo there"
        ));
    }
    // RFC 5322 atext, `#` aside (above).
    if let Some(c) = local
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "!$%&'*+-/=?^_`{|}~.".contains(*c)))
    {
        return Err(format!(
            "`{}` is not allowed before `@` (letters, digits and !$%&'*+-/=?^_`{{|}}~. are)",
            c.escape_default()
        ));
    }
    if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
        return Err(
            "dots before `@` must separate words (no leading, trailing or double dot)".into(),
        );
    }
    dns_name(domain).map_err(|e| format!("the domain after `@` {e}"))
}

/// The `url` field: `https://host[:port][/path]`, `http://…`, or a bare host name (CIISS allows
/// one for entities without a website); at most 399 characters of `[_%/:a-zA-Z0-9.-]`.
pub fn url(s: &str) -> Result<(), Why> {
    if s.len() >= 400 {
        return Err(format!("it has {} characters (CIISS: under 400)", s.len()));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "_%/:.-".contains(*c)))
    {
        return Err(format!(
            "`{}` is not allowed (CIISS: letters, digits and _%/:.- only)",
            c.escape_default()
        ));
    }
    let rest = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .unwrap_or(s);
    let host_end = rest.find(['/', ':']).unwrap_or(rest.len());
    let (host, tail) = rest.split_at(host_end);
    dns_name(host).map_err(|e| format!("its host name {e}"))?;
    if let Some(port) = tail.strip_prefix(':') {
        let digits = port.split('/').next().unwrap_or("");
        if digits.parse::<u16>().map_or(true, |p| p == 0) {
            return Err("the port after the host name must be a number from 1 to 65535".into());
        }
    }
    Ok(())
}

/// The `proof` field.
pub fn proof(s: &str) -> Result<(), Why> {
    match s {
        "uri-rsa" | "dns-rsa" => Ok(()),
        _ => Err("CIISS knows two proofs: `uri-rsa` and `dns-rsa`".into()),
    }
}

/// A DNS name such as the `hoster` field: labels of letters, digits and `-` (not at either end),
/// 1 to 63 characters each, at least two labels, under 254 characters in all; no scheme, no
/// slash.
pub fn dns_name(s: &str) -> Result<(), Why> {
    if s.is_empty() {
        return Err("is empty".into());
    }
    if s.len() >= 254 {
        return Err(format!("has {} characters (at most 253)", s.len()));
    }
    if s.contains("://") || s.contains('/') {
        return Err("must be a bare domain name, without `https://` or `/`".into());
    }
    let labels: Vec<&str> = s.split('.').collect();
    if labels.len() < 2 {
        return Err("must be a full domain name such as `example.org`".into());
    }
    for l in labels {
        if l.is_empty() || l.len() > 63 {
            return Err("has an empty or over-long label (1 to 63 characters between dots)".into());
        }
        if let Some(c) = l
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
        {
            return Err(format!(
                "contains `{}` (letters, digits, `-` and dots only; write an international name in punycode, xn--…)",
                c.escape_default()
            ));
        }
        if l.starts_with('-') || l.ends_with('-') {
            return Err("has a label starting or ending with `-`".into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_values_fit() {
        email("abuse@nos-oignons.net").unwrap();
        url("https://nos-oignons.net").unwrap();
        url("https://example.org:8443/tor").unwrap();
        url("example.org").unwrap();
        proof("uri-rsa").unwrap();
        dns_name("gandi.net").unwrap();
        dns_name("xn--caf-dma.fr").unwrap();
    }

    #[test]
    fn neighbours_of_an_injection_are_refused() {
        for bad in [
            "https://x.org\nExitPolicy accept *:*\n#",
            "https://x.org ExitPolicy",
            "https://x.org#frag",
            "https://x.org\\",
            "https://x.org\"",
            "https://",
            "https://x.org:0",
            "javascript:alert(1)",
        ] {
            assert!(url(bad).is_err(), "{bad:?}");
        }
        for bad in [
            "a@b",
            "a b@x.org",
            "a#b@x.org",
            "a@x.org\nExitPolicy accept *:*",
            "a@@x.org",
            "@x.org",
            ".a@x.org",
            "a@x.org ",
        ] {
            assert!(email(bad).is_err(), "{bad:?}");
        }
        for bad in [
            "gandi",
            "https://gandi.net",
            "gandi.net/",
            "-g.net",
            "g .net",
            "g#.net",
        ] {
            assert!(dns_name(bad).is_err(), "{bad:?}");
        }
        assert!(proof("uri-rsa ciissversion:3").is_err());
    }
}
