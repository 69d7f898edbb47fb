//! An inventory's `ssh` destination, parsed by oignon rather than handed to ssh as one word.
//!
//! ssh reads its last argument as the destination, but a word that starts with `-` is an option
//! to it (`-oProxyCommand=…` runs a command on the controller), and the `openssh` crate puts the
//! destination last with no `--` before it. Parsing here means ssh only ever gets `-l USER`,
//! `-p PORT` and a host name that was checked to be a host name, never a word it could take for
//! an option. It also gives IPv6 literals (`[2001:db8::1]`, which plain ssh does not unwrap) and
//! `ssh://` URIs (which the crate's own parser mangles for IPv6) one meaning.

use std::fmt;
use std::net::Ipv6Addr;

/// Where ssh connects: what ssh gets as `-l`, `-p` and its host argument.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Destination {
    pub user: Option<String>,
    /// A host name, an IPv4 address, an ssh config alias, or an IPv6 address without brackets.
    pub host: String,
    pub port: Option<u16>,
}

/// Why a destination was refused; `Display` says what to write instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadDestination(pub String);

impl fmt::Display for BadDestination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

const FORMS: &str = "write a host name or ssh alias, user@host, [IPv6] or ssh://[user@]host[:port]";

/// The longest host name DNS allows; an alias longer than that is a mistake too.
const MAX_HOST: usize = 253;

impl Destination {
    /// Parses the forms ssh takes: `host`, `user@host`, `[IPv6]`, `user@[IPv6]`, a bare IPv6
    /// address, and `ssh://[user@]host[:port]` (host may be `[IPv6]`).
    pub fn parse(s: &str) -> Result<Destination, BadDestination> {
        parse(s).map_err(|why| BadDestination(format!("{why}; {FORMS}")))
    }
}

fn parse(s: &str) -> Result<Destination, String> {
    if s.is_empty() {
        return Err("the ssh destination is empty".into());
    }
    if let Some(c) = s.chars().find(|c| c.is_control() || c.is_whitespace()) {
        return Err(format!(
            "the ssh destination `{}` holds {}",
            s.escape_debug(),
            describe_char(c)
        ));
    }
    if s.starts_with('-') {
        return Err(format!(
            "the ssh destination `{s}` starts with `-`: ssh would read it as an option"
        ));
    }
    let (uri, rest) = match s.strip_prefix("ssh://") {
        Some(r) => (true, r),
        None => (false, s),
    };
    let (user, hostport) = match rest.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, rest),
    };
    if let Some(u) = user {
        check_user(u, s)?;
    }
    let (host, port) = if let Some(inner) = hostport.strip_prefix('[') {
        let Some((v6, after)) = inner.split_once(']') else {
            return Err(format!("`{s}` opens `[` without closing it"));
        };
        check_ipv6(v6, s)?;
        let port = match after {
            "" => None,
            p if uri && p.starts_with(':') => Some(parse_port(&p[1..], s)?),
            _ => {
                return Err(format!(
                    "`{s}`: only an ssh:// destination may give a port after `]`"
                ))
            }
        };
        (v6.to_string(), port)
    } else if hostport.matches(':').count() >= 2 {
        // A bare IPv6 address; in a URI it would be ambiguous with a port.
        if uri {
            return Err(format!("`{s}`: write an IPv6 address in brackets in a URI"));
        }
        check_ipv6(hostport, s)?;
        (hostport.to_string(), None)
    } else if let Some((h, p)) = hostport.split_once(':') {
        if !uri {
            return Err(format!(
                    "`{s}`: ssh takes no `:port` here; write ssh://{hostport} or set Port in the ssh config"
                ));
        }
        (h.to_string(), Some(parse_port(p, s)?))
    } else {
        (hostport.to_string(), None)
    };
    if !host.contains(':') {
        check_host(&host, s)?;
    }
    Ok(Destination {
        user: user.map(str::to_string),
        host,
        port,
    })
}

impl fmt::Display for Destination {
    /// The `ssh://` form, which says everything ssh gets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ssh://")?;
        if let Some(u) = &self.user {
            write!(f, "{u}@")?;
        }
        if self.host.contains(':') {
            write!(f, "[{}]", self.host)?;
        } else {
            f.write_str(&self.host)?;
        }
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        Ok(())
    }
}

fn describe_char(c: char) -> String {
    if c == ' ' {
        "a space".into()
    } else {
        format!("the control or blank character {:?}", c)
    }
}

fn check_user(u: &str, whole: &str) -> Result<(), String> {
    if u.is_empty() {
        return Err(format!("`{whole}` has an empty user before `@`"));
    }
    if u.starts_with('-') {
        return Err(format!(
            "the user in `{whole}` starts with `-`: ssh would read it as an option"
        ));
    }
    // `%` would be expanded by ssh as a token; `/`, `:`, quotes and the like are no login name.
    if let Some(c) = u
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '$')))
    {
        return Err(format!(
            "the user in `{whole}` holds `{c}`, which no login name has"
        ));
    }
    Ok(())
}

fn check_host(h: &str, whole: &str) -> Result<(), String> {
    if h.is_empty() {
        return Err(format!("`{whole}` has no host"));
    }
    if h.starts_with('-') {
        return Err(format!(
            "the host in `{whole}` starts with `-`: ssh would read it as an option"
        ));
    }
    if h.len() > MAX_HOST {
        return Err(format!(
            "the host in `{whole}` is {} characters long (at most {MAX_HOST})",
            h.len()
        ));
    }
    if let Some(c) = h
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "the host in `{whole}` holds `{c}`: a host name, IPv4 address or ssh alias is made of letters, digits, `.`, `-` and `_`"
        ));
    }
    Ok(())
}

fn check_ipv6(v6: &str, whole: &str) -> Result<(), String> {
    // A link-local address may name its interface: fe80::1%eth0.
    let (addr, zone) = match v6.split_once('%') {
        Some((a, z)) => (a, Some(z)),
        None => (v6, None),
    };
    if addr.parse::<Ipv6Addr>().is_err() {
        return Err(format!("`{whole}`: `{addr}` is not an IPv6 address"));
    }
    if let Some(z) = zone {
        if z.is_empty()
            || !z
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return Err(format!("`{whole}`: `{z}` is not an interface name"));
        }
    }
    Ok(())
}

fn parse_port(p: &str, whole: &str) -> Result<u16, String> {
    match p.parse::<u16>() {
        Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => Ok(n),
        _ => Err(format!("`{whole}`: `{p}` is not a port (1-65535)")),
    }
}

#[cfg(test)]
mod tests {
    use super::Destination;

    /// (user, host, port) as ssh gets them.
    fn ok(s: &str) -> (Option<String>, String, Option<u16>) {
        let d = Destination::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        (d.user, d.host, d.port)
    }

    fn root() -> Option<String> {
        Some("root".into())
    }

    fn admin() -> Option<String> {
        Some("admin".into())
    }

    fn refused(s: &str) -> String {
        match Destination::parse(s) {
            Ok(d) => panic!("{s} was accepted as {d:?}"),
            Err(e) => e.0,
        }
    }

    #[test]
    fn every_form_ssh_takes_gives_user_host_and_port() {
        assert_eq!(ok("lab1"), (None, "lab1".into(), None));
        assert_eq!(ok("root@lab1"), (root(), "lab1".into(), None));
        assert_eq!(
            ok("ssh://root@127.0.0.1:22201"),
            (root(), "127.0.0.1".into(), Some(22201))
        );
        assert_eq!(
            ok("ssh://relay.example.org"),
            (None, "relay.example.org".into(), None)
        );
        assert_eq!(ok("[2001:db8::1]"), (None, "2001:db8::1".into(), None));
        assert_eq!(
            ok("admin@[2001:db8::1]"),
            (admin(), "2001:db8::1".into(), None)
        );
        assert_eq!(ok("2001:db8::1"), (None, "2001:db8::1".into(), None));
        assert_eq!(
            ok("ssh://admin@[2001:db8::1]:2222"),
            (admin(), "2001:db8::1".into(), Some(2222))
        );
        assert_eq!(ok("[fe80::1%eth0]"), (None, "fe80::1%eth0".into(), None));
        assert_eq!(ok("my_alias"), (None, "my_alias".into(), None));
    }

    #[test]
    fn nothing_that_ssh_could_read_as_an_option_is_accepted() {
        for s in [
            "-oProxyCommand=touch /tmp/x",
            "-oProxyCommand=id",
            "-F/tmp/evil",
            "root@-oProxyCommand=id",
            "-root@host",
            "ssh://-oProxyCommand=id",
            "ssh://-l@host",
            "ssh://root@-host:22",
            "[-1::]",
        ] {
            let why = refused(s);
            assert!(
                why.contains("option") || why.contains("not an IPv6") || why.contains("holds"),
                "{s}: {why}"
            );
        }
        assert!(refused("-oProxyCommand=id")
            .contains("starts with `-`: ssh would read it as an option"));
    }

    #[test]
    fn malformed_destinations_say_what_to_write() {
        for s in [
            "",
            "host name",
            "host\nProxyCommand id",
            "host\t",
            "@host",
            "user@",
            "host:22",
            "[2001:db8::1",
            "[2001:db8::1]:22",
            "[not-v6]",
            "ssh://host:0",
            "ssh://host:65536",
            "ssh://host:+22",
            "ssh://2001:db8::1",
            "ho$t",
            "host/x",
            "us%r@host",
            "a'b@host",
        ] {
            let why = refused(s);
            assert!(why.contains("ssh://[user@]host[:port]"), "{s}: {why}");
        }
        assert!(refused("host:22").contains("ssh://host:22"));
        assert!(refused("a\u{1b}[31m").contains("\\u{1b}"));
    }

    #[test]
    fn display_is_the_uri_ssh_gets() {
        let d = Destination::parse("admin@[2001:db8::1]").unwrap();
        assert_eq!(d.to_string(), "ssh://admin@[2001:db8::1]");
        let d = Destination::parse("ssh://127.0.0.1:2222").unwrap();
        assert_eq!(d.to_string(), "ssh://127.0.0.1:2222");
    }
}
