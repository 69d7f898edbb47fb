//! Tor exit policies (tor 0.4.9 syntax): parse single rules, print them
//! canonically, and work out what a relay really enforces.
//!
//! The parser accepts exactly what tor accepts (checked against
//! `tor --verify-config`; see the `matches_tor_verdicts` test), so oignon never
//! refuses a rule tor would run, nor ships one that stops tor from starting.
//! Where tor quietly reinterprets odd input (an empty mask, text after `]` or
//! after a port range, `accept6` with an IPv4 address) we accept it as tor does
//! but return a [`PolicyWarning`]: the operator probably meant something else.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

/// What a rule does with a connection it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Allow the exit connection.
    Accept,
    /// Refuse the exit connection.
    Reject,
}

/// The destination addresses a rule matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pattern {
    /// `*`: every IPv4 and IPv6 address (only IPv6 after `accept6`/`reject6`).
    Any,
    /// `*4`: every IPv4 address.
    Any4,
    /// `*6`: every IPv6 address.
    Any6,
    /// `private`: tor's list of private, local and reserved networks.
    Private,
    /// An IPv4 network, address as written (tor keeps host bits).
    V4 {
        /// Network address.
        addr: Ipv4Addr,
        /// Prefix length, 0..=32.
        bits: u8,
    },
    /// An IPv6 network, address as written.
    V6 {
        /// Network address.
        addr: Ipv6Addr,
        /// Prefix length as tor stores it, 0..=128 (see [`parse_rule`]).
        bits: u8,
    },
}

/// An inclusive destination port range; displays as `*` for 1-65535.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortRange {
    /// First port.
    pub lo: u16,
    /// Last port (inclusive).
    pub hi: u16,
}

/// One exit policy rule, e.g. `reject *:25`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Rule {
    /// Accept or reject.
    pub action: Action,
    /// Written `accept6`/`reject6`: the rule only applies to IPv6 destinations.
    pub v6_keyword: bool,
    /// Destination addresses.
    pub pattern: Pattern,
    /// Destination ports.
    pub ports: PortRange,
}

/// Why a rule does not parse. `offset`/`len` are the byte range of the input
/// to underline; when something is missing at the very end, `offset` is the
/// input length (one past the last byte), so do not slice with it blindly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    /// Byte offset of the problem in the input.
    pub offset: usize,
    /// Length in bytes of the problem (at least 1).
    pub len: usize,
    /// What is wrong, in the user's terms.
    pub message: String,
    /// What to do about it.
    pub help: Option<String>,
}

/// Something tor accepts but probably not what the user meant; same fields
/// and conventions as [`PolicyError`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyWarning {
    /// Byte offset of the questionable text in the input.
    pub offset: usize,
    /// Length in bytes of the questionable text (at least 1).
    pub len: usize,
    /// What tor will do with it.
    pub message: String,
    /// What to write instead.
    pub help: Option<String>,
}

/// An address family, for [`accepted_ports`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// IPv4 destinations.
    V4,
    /// IPv6 destinations.
    V6,
}

/// Names accepted by [`named`], for error messages ("known policies: ...").
pub const NAMED: &[&str] = &["reduced", "default", "web", "reject-all"];

/// tor's `MAX_ADDRESS_LENGTH`: longer address patterns are refused, even if
/// they are only padded with zeros.
const MAX_PATTERN_LEN: usize = 80;

const PORT_HELP: &str = "use a port from 1 to 65535, a range such as `80-443`, or `*`";

/// Ports tor's default exit policy rejects (`DEFAULT_EXIT_POLICY` in tor).
#[rustfmt::skip]
const DEFAULT_REJECTED: &[(u16, u16)] = &[
    (25, 25), (119, 119), (135, 139), (445, 445), (563, 563), (1214, 1214), (4661, 4666),
    (6346, 6429), (6699, 6699), (6881, 6999),
];

/// Ports of tor 0.4.9's ReducedExitPolicy (same as the string in the tor binary).
#[rustfmt::skip]
const REDUCED_ACCEPTED: &[(u16, u16)] = &[
    (20, 23), (43, 43), (53, 53), (79, 81), (88, 88), (110, 110), (143, 143), (194, 194),
    (220, 220), (389, 389), (443, 443), (464, 465), (531, 531), (543, 544), (554, 554),
    (563, 563), (587, 587), (636, 636), (706, 706), (749, 749), (873, 873), (902, 904),
    (981, 981), (989, 995), (1194, 1194), (1220, 1220), (1293, 1293), (1500, 1500),
    (1533, 1533), (1677, 1677), (1723, 1723), (1755, 1755), (1863, 1863), (2082, 2083),
    (2086, 2087), (2095, 2096), (2102, 2104), (3128, 3128), (3389, 3389), (3690, 3690),
    (4321, 4321), (4643, 4643), (5050, 5050), (5190, 5190), (5222, 5223), (5228, 5228),
    (5900, 5900), (6660, 6669), (6679, 6679), (6697, 6697), (8000, 8000), (8008, 8008),
    (8074, 8074), (8080, 8080), (8082, 8082), (8087, 8088), (8232, 8233), (8332, 8333),
    (8443, 8443), (8888, 8888), (9418, 9418), (9999, 10000), (11371, 11371), (18080, 18081),
    (18089, 18089), (19294, 19294), (19638, 19638), (50002, 50002), (64738, 64738),
];

impl PortRange {
    /// Every port, 1-65535 (`*`).
    pub const ALL: PortRange = PortRange { lo: 1, hi: 65535 };
}

impl Rule {
    /// True when tor drops this rule (after a warning): `accept6`/`reject6`
    /// with an IPv4 or `private` pattern.
    pub fn ignored_by_tor(&self) -> bool {
        let v6_pattern = matches!(
            self.pattern,
            Pattern::Any | Pattern::Any6 | Pattern::V6 { .. }
        );
        self.v6_keyword && !v6_pattern
    }

    /// True when the rule matches every public address of `family`, so it
    /// decides a port's fate for a generic destination.
    fn covers_family(&self, family: Family) -> bool {
        match (family, self.pattern) {
            _ if self.ignored_by_tor() => false,
            (Family::V4, Pattern::Any) => !self.v6_keyword,
            (Family::V6, Pattern::Any) | (Family::V4, Pattern::Any4) => true,
            (Family::V6, Pattern::Any6) => true,
            (Family::V4, Pattern::V4 { bits, .. }) | (Family::V6, Pattern::V6 { bits, .. }) => {
                bits == 0
            }
            _ => false,
        }
    }
}

fn star(action: Action, (lo, hi): (u16, u16)) -> Rule {
    let ports = PortRange { lo, hi };
    Rule {
        action,
        v6_keyword: false,
        pattern: Pattern::Any,
        ports,
    }
}

/// `accept *:P` for each of `accepted`, then `last *:*`.
fn star_policy(accepted: &[(u16, u16)], last: Action) -> Vec<Rule> {
    let mut rules: Vec<Rule> = accepted.iter().map(|&r| star(Action::Accept, r)).collect();
    rules.push(star(last, (1, 65535)));
    rules
}

fn default_policy() -> Vec<Rule> {
    let mut rules: Vec<Rule> = DEFAULT_REJECTED
        .iter()
        .map(|&r| star(Action::Reject, r))
        .collect();
    rules.push(star(Action::Accept, (1, 65535)));
    rules
}

/// A ready-made, complete policy by name (see [`NAMED`]): `reduced` (tor's
/// ReducedExitPolicy), `default` (tor's default exit policy), `web` (ports 80
/// and 443) or `reject-all` (a non-exit).
pub fn named(name: &str) -> Option<Vec<Rule>> {
    match name {
        "reduced" => Some(star_policy(REDUCED_ACCEPTED, Action::Reject)),
        "default" => Some(default_policy()),
        "web" => Some(star_policy(&[(80, 80), (443, 443)], Action::Reject)),
        "reject-all" => Some(star_policy(&[], Action::Reject)),
        _ => None,
    }
}

/// True when the last rule matches every address and port (`accept *:*` or
/// `reject *:*`), so tor appends nothing after it.
pub fn is_complete(rules: &[Rule]) -> bool {
    let catch_all =
        |r: &Rule| r.pattern == Pattern::Any && !r.v6_keyword && r.ports == PortRange::ALL;
    rules.last().is_some_and(catch_all)
}

/// The policy tor enforces for `rules`: `reject private:*` first when
/// `reject_private` (ExitPolicyRejectPrivate, on by default), the rules minus
/// those tor ignores, then tor's default policy unless already complete.
/// (ExitPolicyRejectPrivate also rejects the relay's own addresses, and tor
/// rejects all IPv6 unless IPv6Exit is set; neither is modelled here.)
pub fn effective(rules: &[Rule], reject_private: bool) -> Vec<Rule> {
    let mut out = Vec::with_capacity(rules.len() + DEFAULT_REJECTED.len() + 2);
    if reject_private {
        out.push(Rule {
            pattern: Pattern::Private,
            ..star(Action::Reject, (1, 65535))
        });
    }
    out.extend(rules.iter().filter(|r| !r.ignored_by_tor()).cloned());
    if !is_complete(&out[usize::from(reject_private)..]) {
        out.extend(default_policy());
    }
    out
}

/// Ports a generic public destination of `family` may reach under `rules`
/// (pass [`effective`] output), first match wins, as sorted merged ranges.
/// Only rules matching every public address of the family count: `*`,
/// `*4`/`*6` and /0 networks, `accept6`/`reject6` only for IPv6. Ports no
/// rule decides count as rejected.
pub fn accepted_ports(rules: &[Rule], family: Family) -> Vec<PortRange> {
    // One verdict slot per port: simple, and 64 KiB per call is cheap.
    let mut verdict: Vec<Option<bool>> = vec![None; 65536];
    for rule in rules.iter().filter(|r| r.covers_family(family)) {
        for port in rule.ports.lo..=rule.ports.hi {
            let slot = &mut verdict[usize::from(port)];
            slot.get_or_insert(rule.action == Action::Accept);
        }
    }
    let mut out: Vec<PortRange> = Vec::new();
    for port in (1..=u16::MAX).filter(|&p| verdict[usize::from(p)] == Some(true)) {
        match out.last_mut() {
            // `last.hi < port`, so the addition cannot overflow.
            Some(last) if last.hi + 1 == port => last.hi = port,
            _ => out.push(PortRange { lo: port, hi: port }),
        }
    }
    out
}

/// Human-readable port list: `20-23, 43, 53`.
pub fn format_ports(ranges: &[PortRange]) -> String {
    let parts: Vec<String> = ranges.iter().map(PortRange::to_string).collect();
    parts.join(", ")
}

/// A byte range of the input, to hang a diagnostic on.
#[derive(Clone, Copy)]
struct Span(usize, usize);

impl Span {
    fn err(self, message: impl Into<String>, help: impl Into<String>) -> PolicyError {
        let (message, help) = (message.into(), Some(help.into()));
        PolicyError {
            offset: self.0,
            len: self.1.max(1),
            message,
            help,
        }
    }

    fn warn(self, message: impl Into<String>, help: impl Into<String>) -> PolicyWarning {
        let (message, help) = (message.into(), Some(help.into()));
        PolicyWarning {
            offset: self.0,
            len: self.1.max(1),
            message,
            help,
        }
    }
}

/// Parses one rule such as `accept [2001:db8::]/32:80-81` (surrounding
/// whitespace allowed) with tor 0.4.9's leniency: the port may be omitted
/// (all ports), a mask may be a netmask (`/255.255.0.0`), numbers may carry
/// `+` or leading zeros, an unbracketed IPv6 address works if a mask follows,
/// and a mask on an IPv4-mapped IPv6 address counts from bit 96 (`/24` is
/// stored as 120), as in tor.
pub fn parse_rule(text: &str) -> Result<(Rule, Vec<PolicyWarning>), PolicyError> {
    // Every word is a subslice of `text`, so the pointer distance is its offset.
    let offset_of = |s: &str| s.as_ptr() as usize - text.as_ptr() as usize;
    let mut warnings = Vec::new();
    let mut words = text.split_ascii_whitespace();
    let Some(mut keyword) = words.next() else {
        let help = "write a rule such as `accept *:443` or `reject *:*`";
        return Err(Span(text.len(), 1).err("empty exit policy rule", help));
    };
    // tor's tokenizer skips one legacy `opt` prefix (descriptor syntax).
    if let (Some(next), "opt") = (words.clone().next(), keyword) {
        let msg = "tor ignores the legacy `opt` prefix";
        warnings.push(Span(offset_of(keyword), 3).warn(msg, "remove `opt`"));
        keyword = next;
        words.next();
    }
    let (action, v6_keyword) = parse_keyword(keyword, offset_of(keyword))?;
    let Some(arg) = words.next() else {
        let end = offset_of(keyword) + keyword.len();
        let msg = format!("`{keyword}` needs an address and port");
        return Err(Span(end, 1).err(msg, "for example `accept *:443`; `*` is any address"));
    };
    if let Some(extra) = words.next() {
        let start = offset_of(extra);
        let end = text
            .trim_end_matches(|c: char| c.is_ascii_whitespace())
            .len();
        let msg = format!("unexpected `{}` after the rule", &text[start..end]);
        let help = "write one address:port per rule, e.g. `accept *:80`, `accept *:443`";
        return Err(Span(start, end - start).err(msg, help));
    }
    let (pattern, ports) = parse_target(arg, offset_of(arg), &mut warnings)?;
    let rule = Rule {
        action,
        v6_keyword,
        pattern,
        ports,
    };
    if rule.ignored_by_tor() {
        let start = offset_of(keyword);
        let help = match pattern {
            Pattern::Private => format!("write `{action} private:{ports}`; it covers IPv6 too"),
            _ => format!("use `{action}` for IPv4 addresses"),
        };
        let msg = format!("tor ignores this rule: `{keyword}` only applies to IPv6 addresses");
        let span = Span(start, offset_of(arg) + arg.len() - start);
        warnings.push(span.warn(msg, help));
    }
    Ok((rule, warnings))
}

fn parse_keyword(word: &str, offset: usize) -> Result<(Action, bool), PolicyError> {
    const KEYWORDS: [&str; 4] = ["accept6", "reject6", "accept", "reject"];
    match word {
        "accept" => return Ok((Action::Accept, false)),
        "reject" => return Ok((Action::Reject, false)),
        "accept6" => return Ok((Action::Accept, true)),
        "reject6" => return Ok((Action::Reject, true)),
        _ => {}
    }
    let lower = word.to_ascii_lowercase();
    let help = if KEYWORDS.contains(&lower.as_str()) {
        format!("tor keywords are lowercase: write `{lower}`")
    } else if let Some(kw) = KEYWORDS.iter().find(|k| lower.starts_with(**k)) {
        // The prefix is ASCII, so `kw.len()` is a char boundary of `word` too.
        format!(
            "put a space after the keyword: `{kw} {}`",
            &word[kw.len()..]
        )
    } else {
        "start the rule with `accept`, `reject`, `accept6` or `reject6`".to_string()
    };
    let msg = format!("`{word}` is not an exit policy keyword");
    Err(Span(offset, word.len()).err(msg, help))
}

/// Parses `ADDR[/MASK][:PORTS]` the way tor's `tor_addr_parse_mask_ports`
/// splits it: after an optional `[...]`, the first `/` starts the mask and
/// the first `:` after that starts the ports. `base` is `arg`'s offset.
fn parse_target(
    arg: &str,
    base: usize,
    warnings: &mut Vec<PolicyWarning>,
) -> Result<(Pattern, PortRange), PolicyError> {
    if let Some(rest) = arg.strip_prefix("private") {
        // tor insists on `private:` directly; no mask, no length limit.
        return match rest.strip_prefix(':') {
            Some(ports) => Ok((Pattern::Private, parse_ports(ports, base + 8, warnings)?)),
            None if rest.is_empty() => {
                let help = "write `private:*` for all ports";
                Err(Span(base + arg.len(), 1).err("`private` needs a port", help))
            }
            None => Err(bad_address(arg, base, false, arg)),
        };
    }
    if arg.len() > MAX_PATTERN_LEN {
        let msg = format!("address pattern is too long for tor ({} bytes)", arg.len());
        let help = "tor refuses patterns over 80 bytes; drop leading zeros";
        return Err(Span(base, arg.len()).err(msg, help));
    }
    let bracket_end = match (arg.starts_with('['), arg.find(']')) {
        (false, _) => None,
        (true, Some(end)) => Some(end),
        (true, None) => {
            let help = "close the IPv6 address with `]`, e.g. `[2001:db8::1]:443`";
            return Err(Span(base, 1).err("`[` is never closed", help));
        }
    };
    let scan_from = bracket_end.unwrap_or(0);
    let mask_at = arg[scan_from..].find('/').map(|i| i + scan_from);
    let port_from = mask_at.unwrap_or(scan_from);
    let port_at = arg[port_from..].find(':').map(|i| i + port_from);
    let field_end = mask_at.or(port_at).unwrap_or(arg.len());
    let (addr_text, addr_off) = match bracket_end {
        Some(end) => {
            // tor silently drops anything between `]` and the mask or port.
            let junk = &arg[end + 1..field_end];
            if !junk.is_empty() {
                let msg = format!("tor ignores `{junk}` after `]`");
                let help = "remove it (a port needs a `:`, e.g. `[2001:db8::1]:443`)";
                warnings.push(Span(base + end + 1, junk.len()).warn(msg, help));
            }
            (&arg[1..end], 1)
        }
        None => (&arg[..field_end], 0),
    };
    let mut pattern = match addr_text {
        "*" => Pattern::Any,
        "*4" => Pattern::Any4,
        "*6" => Pattern::Any6,
        _ => match (parse_v6(addr_text), addr_text.parse::<Ipv4Addr>()) {
            (Some(addr), _) => Pattern::V6 { addr, bits: 128 },
            (None, Ok(addr)) => Pattern::V4 { addr, bits: 32 },
            (None, Err(_)) => {
                let bracketed = bracket_end.is_some();
                return Err(bad_address(addr_text, base + addr_off, bracketed, arg));
            }
        },
    };
    if let Some(m) = mask_at {
        let end = port_at.unwrap_or(arg.len());
        let (text, span) = (&arg[m + 1..end], Span(base + m, end - m));
        pattern = match pattern {
            Pattern::V4 { addr, .. } => Pattern::V4 {
                addr,
                bits: parse_mask(text, 32, span, warnings)?,
            },
            Pattern::V6 { addr, .. } => {
                let bits = parse_mask(text, 128, span, warnings)?;
                Pattern::V6 {
                    addr,
                    bits: v4_mapped_bits(addr, bits, span)?,
                }
            }
            _ => {
                let help = "remove it: `*` is every address (`*4`/`*6` for one family)";
                return Err(span.err("a wildcard address cannot have a mask", help));
            }
        };
    }
    let ports = match port_at {
        Some(p) => parse_ports(&arg[p + 1..], base + p + 1, warnings)?,
        None => PortRange::ALL,
    };
    Ok((pattern, ports))
}

/// tor maps masks on `::ffff:a.b.c.d` into the last 32 bits (`96 + bits % 32`)
/// and refuses /33 to /95 there.
fn v4_mapped_bits(addr: Ipv6Addr, bits: u8, span: Span) -> Result<u8, PolicyError> {
    if addr.to_ipv4_mapped().is_none() {
        return Ok(bits);
    }
    if (33..96).contains(&bits) {
        let msg = format!("mask /{bits} is not allowed on an IPv4-mapped IPv6 address");
        return Err(span.err(msg, "use /96 to /128, or write the plain IPv4 address"));
    }
    Ok(96 + bits % 32)
}

/// Parses a prefix length like tor: a whole `strtol` number (so `+8`, `-0`,
/// `08`, and the empty string meaning 0) or a contiguous IPv4 netmask.
fn parse_mask(
    text: &str,
    max: u8,
    span: Span,
    warnings: &mut Vec<PolicyWarning>,
) -> Result<u8, PolicyError> {
    if text.is_empty() {
        let msg = "tor reads an empty mask `/` as `/0`, which matches every address";
        warnings.push(span.warn(msg, "write `/0` if you mean that, or remove the `/`"));
        return Ok(0);
    }
    match strtol_prefix(text) {
        Some((n, used)) if used == text.len() => {
            return match u8::try_from(n) {
                Ok(bits) if bits <= max => Ok(bits),
                _ => {
                    let help = format!("use a prefix length from 0 to {max}");
                    Err(span.err(format!("mask /{text} is out of range"), help))
                }
            };
        }
        _ => {}
    }
    let help = "use a prefix length such as `/24`";
    match text.parse::<Ipv4Addr>().map(u32::from) {
        // At most 32, so the cast cannot truncate.
        Ok(m) if m.leading_ones() + m.trailing_zeros() == 32 => Ok(m.leading_ones() as u8),
        Ok(_) => Err(span.err(format!("netmask {text} is not a contiguous prefix"), help)),
        Err(_) => Err(span.err(format!("`{text}` is not a valid mask"), help)),
    }
}

/// IPv6 as tor's `tor_inet_pton` reads it: like Rust's parser, except that
/// tor reads an embedded IPv4 tail with `%3u`, allowing leading zeros
/// (`::ffff:01.2.3.4`), so strip those and retry.
fn parse_v6(text: &str) -> Option<Ipv6Addr> {
    if let Ok(addr) = text.parse() {
        return Some(addr);
    }
    let (head, tail) = text.split_at(text.rfind(':')? + 1);
    let parts: Vec<&str> = tail.split('.').collect();
    let octet = |p: &&str| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit());
    if parts.len() != 4 || !parts.iter().all(octet) {
        return None;
    }
    let trimmed = parts.iter().map(|p| p.trim_start_matches('0'));
    let tail: Vec<&str> = trimmed
        .map(|p| if p.is_empty() { "0" } else { p })
        .collect();
    format!("{head}{}", tail.join(".")).parse().ok()
}

fn bad_address(addr: &str, offset: usize, bracketed: bool, arg: &str) -> PolicyError {
    let message = match addr {
        "" => "missing address".to_string(),
        _ => format!("`{addr}` is not an IP address"),
    };
    let before_mask = arg.split('/').next().unwrap_or(arg);
    let help = if !bracketed && before_mask.matches(':').count() >= 2 {
        "put IPv6 addresses in brackets, e.g. `[2001:db8::1]:443`"
    } else if addr.eq_ignore_ascii_case("private") {
        "write `private` in lowercase"
    } else if !bracketed && addr.contains(':') {
        "put the mask before the port, e.g. `192.0.2.0/24:443`"
    } else if addr.starts_with('*') {
        "use `*` (any address), `*4` (any IPv4) or `*6` (any IPv6)"
    } else if addr
        .bytes()
        .any(|b| b.is_ascii_alphabetic() && !b.is_ascii_hexdigit())
    {
        "exit policies match IP addresses, not host names"
    } else {
        "use an IPv4 address, `[IPv6]`, `*`, `*4`, `*6` or `private`"
    };
    Span(offset, addr.len()).err(message, help)
}

/// Reads an optional sign and decimal digits from the start of `s` like C's
/// `strtol`, which tor uses (hence `+80` is a valid port). Returns the value
/// (saturated) and the bytes used, or None if there are no digits.
fn strtol_prefix(s: &str) -> Option<(i64, usize)> {
    let bytes = s.as_bytes();
    let (negative, sign) = match bytes.first() {
        Some(b'-') => (true, 1),
        Some(b'+') => (false, 1),
        _ => (false, 0),
    };
    let digits = bytes[sign..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    if digits == 0 {
        return None;
    }
    let push = |acc: i64, b: &u8| acc.saturating_mul(10).saturating_add(i64::from(b - b'0'));
    let magnitude = bytes[sign..sign + digits].iter().fold(0, push);
    Some((if negative { -magnitude } else { magnitude }, sign + digits))
}

/// Parses `*`, `N` or `N-M` like tor's `parse_port_range`: empty means all
/// ports, and text after a complete range is ignored (we warn).
fn parse_ports(
    text: &str,
    offset: usize,
    warnings: &mut Vec<PolicyWarning>,
) -> Result<PortRange, PolicyError> {
    if text.is_empty() || text == "*" {
        return Ok(PortRange::ALL);
    }
    let whole = Span(offset, text.len());
    let not_ports = |rest: &str| {
        let help = match rest.starts_with(',') {
            true => "one port or range per rule: write `accept *:80`, `accept *:443`",
            false => PORT_HELP,
        };
        whole.err(format!("`{text}` is not a port or port range"), help)
    };
    let Some((lo, lo_len)) = strtol_prefix(text) else {
        return Err(not_ports(text));
    };
    if lo < 0 {
        let msg = format!("port range `{text}` has no lower bound");
        return Err(whole.err(msg, "start the range at 1, e.g. `1-1024`"));
    }
    let rest = &text[lo_len..];
    let (hi, hi_text, trailing) = if rest.is_empty() {
        (lo, &text[..lo_len], "")
    } else if let Some(hi_text) = rest.strip_prefix('-') {
        match strtol_prefix(hi_text) {
            Some((hi, used)) => (hi, &hi_text[..used], &hi_text[used..]),
            None if hi_text.is_empty() => {
                let msg = format!("port range `{text}` has no upper bound");
                let help = format!("write `{text}65535` to include every port from {lo} up");
                return Err(whole.err(msg, help));
            }
            None => return Err(whole.err(format!("`{hi_text}` is not a port"), PORT_HELP)),
        }
    } else {
        return Err(not_ports(rest));
    };
    let check = |value: i64, num: &str| match u16::try_from(value) {
        Ok(0) => Err(whole.err("port 0 is not a valid port", PORT_HELP)),
        Ok(port) => Ok(port),
        Err(_) => Err(whole.err(format!("`{num}` is not a valid port"), PORT_HELP)),
    };
    let (lo, hi) = (check(lo, &text[..lo_len])?, check(hi, hi_text)?);
    if lo > hi {
        let msg = format!("port range `{lo}-{hi}` is backwards");
        return Err(whole.err(msg, format!("write the lower port first: `{hi}-{lo}`")));
    }
    if !trailing.is_empty() {
        let msg = format!("tor ignores `{trailing}` after the port range");
        let span = Span(offset + text.len() - trailing.len(), trailing.len());
        warnings.push(span.warn(msg, format!("remove it; tor reads `{lo}-{hi}`")));
    }
    Ok(PortRange { lo, hi })
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::Accept => "accept",
            Action::Reject => "reject",
        })
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.lo, self.hi) {
            (1, 65535) => f.write_str("*"),
            (lo, hi) if lo == hi => write!(f, "{lo}"),
            (lo, hi) => write!(f, "{lo}-{hi}"),
        }
    }
}

impl fmt::Display for Pattern {
    /// tor syntax; full-length masks are left out (`192.0.2.1`, `[::1]`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pattern::Any => f.write_str("*"),
            Pattern::Any4 => f.write_str("*4"),
            Pattern::Any6 => f.write_str("*6"),
            Pattern::Private => f.write_str("private"),
            Pattern::V4 { addr, bits: 32 } => write!(f, "{addr}"),
            Pattern::V4 { addr, bits } => write!(f, "{addr}/{bits}"),
            Pattern::V6 { addr, bits: 128 } => write!(f, "[{addr}]"),
            Pattern::V6 { addr, bits } => write!(f, "[{addr}]/{bits}"),
        }
    }
}

impl fmt::Display for Rule {
    /// Canonical tor text, e.g. `accept6 [2001:db8::]/32:80-81`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let six = if self.v6_keyword { "6" } else { "" };
        write!(f, "{}{six} {}:{}", self.action, self.pattern, self.ports)
    }
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for PolicyError {}

impl fmt::Display for PolicyWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rule(text: &str) -> Rule {
        parse_rule(text)
            .unwrap_or_else(|e| panic!("{text:?}: {e:?}"))
            .0
    }

    fn err(text: &str) -> PolicyError {
        parse_rule(text).unwrap_err()
    }

    /// The text the first warning of `text` underlines.
    fn warned(text: &str) -> &str {
        let w = &parse_rule(text).unwrap().1[0];
        &text[w.offset..w.offset + w.len]
    }

    /// The text an error underlines.
    fn blamed(text: &str) -> &str {
        let e = err(text);
        &text[e.offset..(e.offset + e.len).min(text.len())]
    }

    #[rustfmt::skip]
    const CANONICAL: &[(&str, &str)] = &[
        ("reject *:25", "reject *:25"),
        ("  accept6\t[2001:db8::]/32:80-81 ", "accept6 [2001:db8::]/32:80-81"),
        ("accept 192.0.2.0/24:*", "accept 192.0.2.0/24:*"),
        ("accept 192.0.2.0/255.255.255.0", "accept 192.0.2.0/24:*"),
        ("accept 192.0.2.1/32:+080", "accept 192.0.2.1:80"),
        ("reject private:", "reject private:*"),
        ("accept *4:1-65535", "accept *4:*"),
        ("accept6 *6:22-22", "accept6 *6:22"),
        ("accept [1.2.3.4]:443", "accept 1.2.3.4:443"),
        ("accept 2001:db8::/32:443", "accept [2001:db8::]/32:443"),
        ("accept [::ffff:01.2.3.4]", "accept [::ffff:1.2.3.4]:*"),
        ("accept [::ffff:1.2.3.4]/24:80", "accept [::ffff:1.2.3.4]/120:80"),
        ("accept [::1]/255.255.0.0:1", "accept [::1]/16:1"),
    ];

    #[test]
    fn parses_and_prints_canonically() {
        for &(input, canonical) in CANONICAL {
            let parsed = rule(input);
            assert_eq!(parsed.to_string(), canonical, "{input:?}");
            assert_eq!(rule(canonical), parsed, "{canonical:?}");
        }
        let ports = PortRange { lo: 22, hi: 22 };
        let expected = Rule {
            action: Action::Accept,
            v6_keyword: true,
            pattern: Pattern::Any6,
            ports,
        };
        assert_eq!(rule("accept6 *6:22"), expected);
    }

    #[test]
    fn port_errors_explain_and_point_at_the_port() {
        let e = err("accept *:0");
        assert_eq!(e.message, "port 0 is not a valid port");
        assert_eq!(e.help.as_deref(), Some(PORT_HELP));
        assert_eq!(blamed("accept *:0"), "0");
        let e = err("reject 10.0.0.0/8:80-");
        assert_eq!(e.message, "port range `80-` has no upper bound");
        let help = "write `80-65535` to include every port from 80 up";
        assert_eq!(e.help.as_deref(), Some(help));
        assert_eq!(blamed("reject 10.0.0.0/8:80-"), "80-");
        assert!(err("accept *:90-80").message.contains("backwards"));
        assert!(err("accept *:65536").message.contains("not a valid port"));
        assert!(err("accept *:-80").message.contains("no lower bound"));
        assert!(err("accept *:80,443")
            .help
            .unwrap()
            .contains("one port or range per rule"));
    }

    #[test]
    fn address_and_keyword_errors() {
        assert_eq!(blamed("accept 2001:db8::1:443"), "2001");
        assert!(err("accept 2001:db8::1:443")
            .help
            .unwrap()
            .contains("brackets"));
        assert!(err("ACCEPT *:80").help.unwrap().contains("`accept`"));
        assert!(err("accept*:80").help.unwrap().contains("`accept *:80`"));
        assert!(err("accept example.org:80")
            .help
            .unwrap()
            .contains("host names"));
        assert!(err("accept Private:*").help.unwrap().contains("lowercase"));
        assert!(err("accept */8:80").message.contains("wildcard"));
        assert!(err("accept 1.2.3.4/255.0.255.0")
            .message
            .contains("contiguous"));
        assert!(err("accept [::ffff:1.2.3.4]/40")
            .message
            .contains("IPv4-mapped"));
        assert_eq!(blamed("accept [::1:80"), "[");
        assert_eq!(blamed("accept *:80 foo"), "foo");
        let long = format!("accept 1.2.3.4:{:0>73}", 80);
        assert!(err(&long).message.contains("too long"));
        assert!(parse_rule(&long[..long.len() - 1]).is_ok());
    }

    #[test]
    fn missing_pieces_point_at_the_end() {
        let cases = [
            ("", 0),
            ("   ", 3),
            ("accept", 6),
            ("accept ", 6),
            ("accept private", 14),
        ];
        for (text, offset) in cases {
            let e = err(text);
            assert_eq!((e.offset, e.len), (offset, 1), "{text:?}");
        }
    }

    #[test]
    fn tor_lenient_forms_warn() {
        assert_eq!(warned("accept6 192.0.2.1:80"), "accept6 192.0.2.1:80");
        let (_, w) = parse_rule("reject6 private:*").unwrap();
        assert!(w[0].help.as_deref().unwrap().contains("`reject private:*`"));
        assert!(parse_rule("accept6 *:80").unwrap().1.is_empty());
        assert_eq!(warned("accept 1.2.3.4/:80"), "/");
        let addr = Ipv4Addr::new(1, 2, 3, 4);
        assert_eq!(
            rule("accept 1.2.3.4/:80").pattern,
            Pattern::V4 { addr, bits: 0 }
        );
        assert_eq!(warned("accept [::1]80"), "80");
        assert_eq!(rule("accept [::1]80").ports, PortRange::ALL);
        assert_eq!(warned("accept *:80-90-100"), "-100");
        assert_eq!(warned("opt accept *:80"), "opt");
        assert_eq!(rule("opt accept *:80"), rule("accept *:80"));
    }

    #[test]
    fn multibyte_input_does_not_panic() {
        for text in [
            "accépt *:80",
            "accept é:80",
            "accept *:8ü",
            "accept *:80-9é",
            "accept [é",
        ] {
            assert!(text.is_char_boundary(err(text).offset), "{text:?}");
        }
        for text in [
            "accept private:é",
            "accept 1.2.3.4/é:1",
            "ü",
            "accept [::1]ü:80",
        ] {
            let _ = parse_rule(text);
        }
    }

    #[test]
    fn named_policies() {
        for name in NAMED {
            assert!(is_complete(&named(name).unwrap()), "{name}");
        }
        assert_eq!(named("nope"), None);
        let reduced = named("reduced").unwrap();
        assert_eq!(reduced.last().unwrap().to_string(), "reject *:*");
        let expected = "20-23, 43, 53, 79-81, 88, 110, 143, 194, 220, 389, 443, 464-465, \
            531, 543-544, 554, 563, 587, 636, 706, 749, 873, 902-904, 981, 989-995, 1194, \
            1220, 1293, 1500, 1533, 1677, 1723, 1755, 1863, 2082-2083, 2086-2087, 2095-2096, \
            2102-2104, 3128, 3389, 3690, 4321, 4643, 5050, 5190, 5222-5223, 5228, 5900, \
            6660-6669, 6679, 6697, 8000, 8008, 8074, 8080, 8082, 8087-8088, 8232-8233, \
            8332-8333, 8443, 8888, 9418, 9999-10000, 11371, 18080-18081, 18089, 19294, 19638, \
            50002, 64738";
        assert_eq!(
            format_ports(&accepted_ports(&reduced, Family::V4)),
            expected
        );
        let default: Vec<String> = named("default")
            .unwrap()
            .iter()
            .map(Rule::to_string)
            .collect();
        let expected = "reject *:25,reject *:119,reject *:135-139,reject *:445,reject *:563,\
            reject *:1214,reject *:4661-4666,reject *:6346-6429,reject *:6699,\
            reject *:6881-6999,accept *:*";
        assert_eq!(default.join(","), expected);
        let web = named("web").unwrap();
        assert_eq!(format_ports(&accepted_ports(&web, Family::V6)), "80, 443");
        assert!(accepted_ports(&named("reject-all").unwrap(), Family::V4).is_empty());
    }

    #[test]
    fn effective_policy_matches_tor() {
        let rules = [rule("accept *:443"), rule("accept6 192.0.2.1:80")];
        assert!(!is_complete(&rules));
        let eff = effective(&rules, true);
        assert_eq!(eff[0].to_string(), "reject private:*");
        assert_eq!(eff[1].to_string(), "accept *:443");
        assert_eq!(eff[2..].to_vec(), named("default").unwrap());
        let web = named("web").unwrap();
        assert_eq!(effective(&web, false), web);
        assert_eq!(effective(&web, true).len(), web.len() + 1);
        assert!(!is_complete(&[rule("accept6 *:*")]));
        assert!(!is_complete(&[]));
    }

    #[test]
    fn accepted_ports_first_match_and_families() {
        let eff = effective(&[], true);
        let expected = "1-24, 26-118, 120-134, 140-444, 446-562, 564-1213, 1215-4660, \
            4667-6345, 6430-6698, 6700-6880, 7000-65535";
        assert_eq!(format_ports(&accepted_ports(&eff, Family::V4)), expected);
        let rules = [
            "reject 192.0.2.0/24:*",
            "accept6 *:22",
            "accept *4:25",
            "reject 0.0.0.0/0:80",
            "accept [::]/0:80",
            "accept *:80-81",
            "reject *:*",
        ]
        .map(rule);
        assert_eq!(format_ports(&accepted_ports(&rules, Family::V4)), "25, 81");
        assert_eq!(
            format_ports(&accepted_ports(&rules, Family::V6)),
            "22, 80-81"
        );
        assert_eq!(
            format_ports(&accepted_ports(&[rule("accept *:*")], Family::V4)),
            "*"
        );
        assert_eq!(format_ports(&[]), "");
    }

    /// Rules, and whether tor 0.4.9 accepts them in a torrc.
    #[rustfmt::skip]
    const TOR_VERDICTS: &[(&str, bool)] = &[
        ("accept *:80", true), ("reject *:*", true), ("accept *", true),
        ("accept 192.0.2.0/24:*", true), ("accept 192.0.2.0/255.255.255.0:443", true),
        ("accept [2001:db8::]/32:80-81", true), ("accept6 [2001:db8::1]:443", true),
        ("accept6 192.0.2.1:80", true), ("reject private:*", true), ("accept private:", true),
        ("accept *4:*", true), ("reject *6:25", true), ("accept 1.2.3.4:+80", true),
        ("accept 1.2.3.4/:80", true), ("accept [::1]80", true), ("accept *:80-90x", true),
        ("accept 2001:db8::/32:80", true), ("accept [::ffff:01.2.3.4]/24:80", true),
        ("opt accept *:80", true),
        ("ACCEPT *:80", false), ("accept *:0", false), ("accept *:80-", false),
        ("accept *:90-80", false), ("accept *:65536", false), ("accept 1.2.3.4/33:80", false),
        ("accept 1.2.3.4/255.0.255.0:80", false), ("accept private", false),
        ("accept Private:*", false), ("accept localhost:80", false), ("accept */8:80", false),
        ("accept [::1:80", false), ("accept 01.2.3.4:80", false), ("accept *:80 foo", false),
        ("accept*:80", false), ("accept ::1:80", false), ("accept *:80x", false),
        ("accept [::ffff:1.2.3.4]/40:80", false), ("accept 1.2.3.4/-1:80", false),
    ];

    #[test]
    fn matches_tor_verdicts() {
        use std::process::Command;
        for &(text, valid) in TOR_VERDICTS {
            assert_eq!(parse_rule(text).is_ok(), valid, "our verdict on {text:?}");
        }
        if Command::new("tor").arg("--version").output().is_err() {
            eprintln!("skipping the tor oracle: `tor` is not on PATH");
            return;
        }
        let dir = std::env::temp_dir().join(format!("oignon-exit-policy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (defaults, torrc) = (dir.join("defaults"), dir.join("torrc"));
        std::fs::write(&defaults, "").unwrap();
        let data_dir = dir.join("never-created");
        let mut mismatches = Vec::new();
        for &(text, valid) in TOR_VERDICTS {
            let conf = format!(
                "SocksPort 0\nORPort 9001\nNickname test\nContactInfo test@example.com\n\
                 DataDirectory {}\nExitRelay 1\nExitPolicy {text}\n",
                data_dir.display()
            );
            std::fs::write(&torrc, conf).unwrap();
            let out = Command::new("tor")
                .arg("--verify-config")
                .arg("--defaults-torrc")
                .arg(&defaults)
                .arg("-f")
                .arg(&torrc)
                .output()
                .unwrap();
            if out.status.success() != valid {
                mismatches.push((text, String::from_utf8_lossy(&out.stdout).into_owned()));
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
        assert!(mismatches.is_empty(), "tor disagrees: {mismatches:#?}");
    }

    /// Rule-shaped strings built from `|`-separated pieces (empty ones included).
    fn rule_like() -> impl Strategy<Value = String> {
        let pick = |s: &'static str| prop::sample::select(s.split('|').collect::<Vec<_>>());
        let kw = pick("accept|reject6|accept6|Reject|opt reject|accept\t");
        let addr = pick(
            "*|*4|*6|private|192.0.2.1|[2001:db8::1]|[::ffff:1.2.3.4]|2001:db8::|[1.2.3.4]|\
             01.2.3.4|[::1||é|[*]|[::ffff:001.2.3.4]",
        );
        let mask = pick("|/|/0|/24|/32|/33|/64|/128|/255.255.0.0|/+8|/-0|/x|/é");
        let port = pick("|:|:*|:80|:0|:80-|:1-65535|:+80|:80-90x|:65536|:90-80|:ü|x:1| x");
        (kw, addr, mask, port).prop_map(|(k, a, m, p)| format!("{k} {a}{m}{p}"))
    }

    fn check_round_trip(text: &str) {
        match parse_rule(text) {
            Ok((parsed, warnings)) => {
                let printed = parsed.to_string();
                let again = parse_rule(&printed).unwrap_or_else(|e| panic!("{printed:?}: {e:?}"));
                assert_eq!(again.0, parsed, "{text:?} printed as {printed:?}");
                assert!(again.1.is_empty() || parsed.ignored_by_tor(), "{printed:?}");
                for w in warnings {
                    assert!(
                        text.get(w.offset..w.offset + w.len).is_some(),
                        "{text:?}: {w:?}"
                    );
                }
            }
            Err(e) => {
                assert!(
                    e.len >= 1 && text.is_char_boundary(e.offset),
                    "{text:?}: {e:?}"
                );
                let end = e.offset + e.len;
                assert!(
                    e.offset == text.len() || text.get(e.offset..end).is_some(),
                    "{e:?}"
                );
            }
        }
    }

    proptest! {
        #[test]
        fn arbitrary_strings_never_panic_and_round_trip(text in any::<String>()) {
            check_round_trip(&text);
        }

        #[test]
        fn rule_like_strings_round_trip(text in rule_like()) {
            check_round_trip(&text);
        }
    }
}
