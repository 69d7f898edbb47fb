//! Tor exit policies (tor 0.4.9 syntax): parse single rules, print them
//! canonically, and work out what a relay really enforces.
//!
//! The parser accepts exactly what tor accepts (checked against
//! `tor --verify-config`; see the `matches_tor_verdicts` test), so oignon never
//! refuses a rule tor would run, nor ships one that stops tor from starting.
//! Where tor quietly reinterprets odd input (an empty mask, text after `]` or
//! after a port range, `accept6` with an IPv4 address) we accept it as tor does
//! but return a [`PolicyWarning`], because the operator probably meant
//! something else.

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
    /// An IPv4 network; `bits` is the prefix length (0..=32).
    V4 {
        /// Network address as written (tor does not clear host bits).
        addr: Ipv4Addr,
        /// Prefix length.
        bits: u8,
    },
    /// An IPv6 network; `bits` is the prefix length (0..=128).
    V6 {
        /// Network address as written.
        addr: Ipv6Addr,
        /// Prefix length, as tor stores it (see [`parse_rule`] on IPv4-mapped addresses).
        bits: u8,
    },
}

/// An inclusive destination port range. Displays as `*` for 1-65535.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortRange {
    /// First port in the range.
    pub lo: u16,
    /// Last port in the range (inclusive).
    pub hi: u16,
}

/// One exit policy rule, e.g. `reject *:25`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Rule {
    /// Accept or reject.
    pub action: Action,
    /// Written as `accept6`/`reject6`: the rule only applies to IPv6 destinations.
    pub v6_keyword: bool,
    /// Destination addresses.
    pub pattern: Pattern,
    /// Destination ports.
    pub ports: PortRange,
}

/// Why a rule does not parse. `offset`/`len` are a byte range of the input
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

/// Tor's longest address pattern (`MAX_ADDRESS_LENGTH` in tor's address.c);
/// tor rejects longer ones even if they are only padded with zeros.
const MAX_PATTERN_LEN: usize = 80;

const PORT_HELP: &str =
    "use a port from 1 to 65535, a range such as `80-443`, or `*` for all ports";
const ADDR_HELP: &str =
    "use an IPv4 address, an IPv6 address in brackets such as `[2001:db8::1]`, \
                         `*` (any), `*4`, `*6` or `private`";

/// Ports tor's default exit policy rejects (`DEFAULT_EXIT_POLICY` in tor's policies.c).
#[rustfmt::skip]
const DEFAULT_REJECTED: &[(u16, u16)] = &[
    (25, 25), (119, 119), (135, 139), (445, 445), (563, 563), (1214, 1214), (4661, 4666),
    (6346, 6429), (6699, 6699), (6881, 6999),
];

/// Ports of tor 0.4.9's ReducedExitPolicy (identical to the string in the tor binary).
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

    /// True for 1-65535.
    pub fn is_all(&self) -> bool {
        *self == Self::ALL
    }
}

impl Rule {
    /// True when tor drops this rule after a warning: `accept6`/`reject6`
    /// with an IPv4 (or `private`) pattern.
    pub fn ignored_by_tor(&self) -> bool {
        self.v6_keyword
            && !matches!(
                self.pattern,
                Pattern::Any | Pattern::Any6 | Pattern::V6 { .. }
            )
    }

    /// True when the rule matches every public address of `family` (so it
    /// decides the fate of a port for a generic destination).
    fn covers_family(&self, family: Family) -> bool {
        if self.ignored_by_tor() {
            return false;
        }
        match (family, self.pattern) {
            (Family::V4, Pattern::Any) => !self.v6_keyword,
            (Family::V6, Pattern::Any) => true,
            (Family::V4, Pattern::Any4) | (Family::V6, Pattern::Any6) => true,
            (Family::V4, Pattern::V4 { bits: 0, .. })
            | (Family::V6, Pattern::V6 { bits: 0, .. }) => true,
            _ => false,
        }
    }
}

fn star(action: Action, (lo, hi): (u16, u16)) -> Rule {
    Rule {
        action,
        v6_keyword: false,
        pattern: Pattern::Any,
        ports: PortRange { lo, hi },
    }
}

fn default_policy() -> Vec<Rule> {
    let mut rules: Vec<Rule> = DEFAULT_REJECTED
        .iter()
        .map(|&r| star(Action::Reject, r))
        .collect();
    rules.push(star(Action::Accept, (1, 65535)));
    rules
}

/// A ready-made policy by name (see [`NAMED`]): `reduced` (tor's
/// ReducedExitPolicy), `default` (tor's default exit policy), `web` (80 and
/// 443 only) or `reject-all` (a non-exit). Every one is complete.
pub fn named(name: &str) -> Option<Vec<Rule>> {
    let (accepted, last): (&[(u16, u16)], Action) = match name {
        "default" => return Some(default_policy()),
        "reduced" => (REDUCED_ACCEPTED, Action::Reject),
        "web" => (&[(80, 80), (443, 443)], Action::Reject),
        "reject-all" => (&[], Action::Reject),
        _ => return None,
    };
    let mut rules: Vec<Rule> = accepted.iter().map(|&r| star(Action::Accept, r)).collect();
    rules.push(star(last, (1, 65535)));
    Some(rules)
}

/// True when the last rule matches every address and port (`accept *:*` or
/// `reject *:*`), so tor will not append its default policy.
pub fn is_complete(rules: &[Rule]) -> bool {
    rules
        .last()
        .is_some_and(|r| r.pattern == Pattern::Any && !r.v6_keyword && r.ports.is_all())
}

/// The policy tor actually enforces for `rules`: `reject private:*` first when
/// `reject_private` (ExitPolicyRejectPrivate, on by default), then the rules
/// minus those tor ignores, then tor's default policy unless already complete.
/// (Tor also rejects the relay's own addresses with ExitPolicyRejectPrivate,
/// and all IPv6 unless IPv6Exit is set; neither is modelled here.)
pub fn effective(rules: &[Rule], reject_private: bool) -> Vec<Rule> {
    let mut out = Vec::with_capacity(rules.len() + DEFAULT_REJECTED.len() + 2);
    if reject_private {
        out.push(Rule {
            pattern: Pattern::Private,
            ..star(Action::Reject, (1, 65535))
        });
    }
    let kept: Vec<Rule> = rules
        .iter()
        .filter(|r| !r.ignored_by_tor())
        .cloned()
        .collect();
    let complete = is_complete(&kept);
    out.extend(kept);
    if !complete {
        out.extend(default_policy());
    }
    out
}

/// Ports a generic public destination of `family` may connect to under
/// `rules` (pass [`effective`] output), first match wins. Only rules matching
/// every public address of the family count: `*`, `*4`/`*6` and /0 networks;
/// `accept6`/`reject6` only for IPv6. Ports no rule decides count as rejected.
/// Returns sorted, merged ranges.
pub fn accepted_ports(rules: &[Rule], family: Family) -> Vec<PortRange> {
    // One verdict slot per port: simple, and 64 KiB per call is cheap.
    let mut verdict: Vec<Option<bool>> = vec![None; 65536];
    for rule in rules.iter().filter(|r| r.covers_family(family)) {
        for port in rule.ports.lo..=rule.ports.hi {
            let slot = &mut verdict[usize::from(port)];
            if slot.is_none() {
                *slot = Some(rule.action == Action::Accept);
            }
        }
    }
    let mut out: Vec<PortRange> = Vec::new();
    for port in 1..=u16::MAX {
        if verdict[usize::from(port)] != Some(true) {
            continue;
        }
        match out.last_mut() {
            Some(last) if last.hi + 1 == port => last.hi = port,
            _ => out.push(PortRange { lo: port, hi: port }),
        }
    }
    out
}

/// Human-readable port list: `20-23, 43, 53`.
pub fn format_ports(ranges: &[PortRange]) -> String {
    ranges
        .iter()
        .map(PortRange::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn error(
    offset: usize,
    len: usize,
    message: impl Into<String>,
    help: impl Into<String>,
) -> PolicyError {
    PolicyError {
        offset,
        len: len.max(1),
        message: message.into(),
        help: Some(help.into()),
    }
}

fn warning(
    offset: usize,
    len: usize,
    message: impl Into<String>,
    help: impl Into<String>,
) -> PolicyWarning {
    PolicyWarning {
        offset,
        len: len.max(1),
        message: message.into(),
        help: Some(help.into()),
    }
}

/// Parses one rule such as `accept [2001:db8::]/32:80-81`, with tor 0.4.9's
/// leniency: the port may be omitted (all ports), masks may be netmasks
/// (`/255.255.0.0`), numbers may carry `+` or leading zeros, an unbracketed
/// IPv6 address is fine if a mask follows it, and a mask on an IPv4-mapped
/// IPv6 address counts from bit 96 (so `/24` is stored as 120), as in tor.
pub fn parse_rule(text: &str) -> Result<(Rule, Vec<PolicyWarning>), PolicyError> {
    // Every token is a subslice of `text`, so pointer distance is its offset.
    let offset_of = |s: &str| s.as_ptr() as usize - text.as_ptr() as usize;
    let mut warnings = Vec::new();
    let mut words = text.split_ascii_whitespace();
    let Some(mut keyword) = words.next() else {
        let msg = "empty exit policy rule";
        return Err(error(
            text.len(),
            1,
            msg,
            "write a rule such as `accept *:443` or `reject *:*`",
        ));
    };
    // tor's tokenizer skips one legacy `opt` prefix from descriptor syntax.
    if keyword == "opt" {
        if let Some(next) = words.next() {
            let msg = "tor ignores the legacy `opt` prefix";
            warnings.push(warning(offset_of(keyword), 3, msg, "remove `opt`"));
            keyword = next;
        }
    }
    let (action, v6_keyword) = parse_keyword(keyword, offset_of(keyword))?;
    let Some(arg) = words.next() else {
        let end = offset_of(keyword) + keyword.len();
        let msg = format!("`{keyword}` needs an address and port");
        return Err(error(
            end,
            1,
            msg,
            "for example `accept *:443`; `*` means any address",
        ));
    };
    if let Some(extra) = words.next() {
        let start = offset_of(extra);
        let end = text
            .trim_end_matches(|c: char| c.is_ascii_whitespace())
            .len();
        let msg = format!("unexpected `{}` after the rule", &text[start..end]);
        let help =
            "write one address:port per rule, e.g. `accept *:80` and `accept *:443` as two rules";
        return Err(error(start, end - start, msg, help));
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
        let plain = if action == Action::Accept {
            "accept"
        } else {
            "reject"
        };
        let help = match pattern {
            Pattern::Private => format!("write `{plain} private:{ports}`; it covers IPv4 and IPv6"),
            _ => format!("use `{plain}` for IPv4 addresses"),
        };
        let msg = format!("tor ignores this rule: `{keyword}` only applies to IPv6 addresses");
        warnings.push(warning(
            start,
            offset_of(arg) + arg.len() - start,
            msg,
            help,
        ));
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
    Err(error(
        offset,
        word.len(),
        format!("`{word}` is not an exit policy keyword"),
        help,
    ))
}

/// Parses `ADDR[/MASK][:PORTS]` the way tor's `tor_addr_parse_mask_ports`
/// splits it: after an optional `[...]`, the first `/` starts the mask and the
/// first `:` after that starts the ports.
fn parse_target(
    arg: &str,
    base: usize,
    warnings: &mut Vec<PolicyWarning>,
) -> Result<(Pattern, PortRange), PolicyError> {
    if let Some(rest) = arg.strip_prefix("private") {
        // tor insists on `private:`; it has no mask and no length limit.
        return match rest.strip_prefix(':') {
            Some(ports) => Ok((Pattern::Private, parse_ports(ports, base + 8, warnings)?)),
            None if rest.is_empty() => {
                let msg = "`private` needs a port";
                Err(error(
                    base + arg.len(),
                    1,
                    msg,
                    "write `private:*` for all ports",
                ))
            }
            None => Err(bad_address(arg, base, false, arg)),
        };
    }
    if arg.len() > MAX_PATTERN_LEN {
        let msg = format!("address pattern is too long for tor ({} bytes)", arg.len());
        let help = "tor rejects patterns longer than 80 bytes; drop leading zeros";
        return Err(error(base, arg.len(), msg, help));
    }
    let bracket_end = if arg.starts_with('[') {
        match arg.find(']') {
            Some(end) => Some(end),
            None => {
                let msg = "`[` is never closed";
                let help = "close the IPv6 address with `]`, e.g. `[2001:db8::1]:443`";
                return Err(error(base, 1, msg, help));
            }
        }
    } else {
        None
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
                warnings.push(warning(base + end + 1, junk.len(), msg, help));
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
                return Err(bad_address(
                    addr_text,
                    base + addr_off,
                    bracket_end.is_some(),
                    arg,
                ))
            }
        },
    };
    if let Some(m) = mask_at {
        let end = port_at.unwrap_or(arg.len());
        let text = &arg[m + 1..end];
        let (offset, len) = (base + m, end - m);
        pattern = match pattern {
            Pattern::V4 { addr, .. } => Pattern::V4 {
                addr,
                bits: parse_mask(text, 32, offset, len, warnings)?,
            },
            Pattern::V6 { addr, .. } => {
                let bits = parse_mask(text, 128, offset, len, warnings)?;
                Pattern::V6 {
                    addr,
                    bits: v4_mapped_bits(addr, bits, offset, len)?,
                }
            }
            _ => {
                let msg = "a wildcard address cannot have a mask";
                let help =
                    "remove the mask: `*` already means every address (`*4`/`*6` for one family)";
                return Err(error(offset, len, msg, help));
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
/// and rejects /33 to /95 there.
fn v4_mapped_bits(addr: Ipv6Addr, bits: u8, offset: usize, len: usize) -> Result<u8, PolicyError> {
    if addr.to_ipv4_mapped().is_none() {
        return Ok(bits);
    }
    if (33..96).contains(&bits) {
        let msg = format!("mask /{bits} is not allowed on an IPv4-mapped IPv6 address");
        return Err(error(
            offset,
            len,
            msg,
            "use /96 to /128, or write the plain IPv4 address",
        ));
    }
    Ok(96 + bits % 32)
}

/// Parses a prefix length like tor: a whole `strtol` number (so `+8`, `-0`,
/// `08` and even an empty string, meaning 0) or a contiguous IPv4 netmask.
fn parse_mask(
    text: &str,
    max: u8,
    offset: usize,
    len: usize,
    warnings: &mut Vec<PolicyWarning>,
) -> Result<u8, PolicyError> {
    if text.is_empty() {
        let msg = "tor reads an empty mask `/` as `/0`, which matches every address";
        warnings.push(warning(
            offset,
            len,
            msg,
            "write `/0` if you mean that, or remove the `/`",
        ));
        return Ok(0);
    }
    if let Some((n, used)) = strtol_prefix(text) {
        if used == text.len() {
            return match u8::try_from(n) {
                Ok(bits) if bits <= max => Ok(bits),
                _ => {
                    let msg = format!("mask /{text} is out of range");
                    Err(error(
                        offset,
                        len,
                        msg,
                        format!("use a prefix length from 0 to {max}"),
                    ))
                }
            };
        }
    }
    match text.parse::<Ipv4Addr>().map(u32::from) {
        Ok(m) if m.leading_ones() + m.trailing_zeros() == 32 => Ok(m.leading_ones() as u8),
        Ok(_) => {
            let msg = format!("netmask {text} is not a contiguous prefix");
            Err(error(offset, len, msg, "use a prefix length such as `/24`"))
        }
        Err(_) => {
            let msg = format!("`{text}` is not a valid mask");
            Err(error(
                offset,
                len,
                msg,
                "use a prefix length such as `/24` or a netmask such as `/255.255.255.0`",
            ))
        }
    }
}

/// IPv6 as tor's `tor_inet_pton` reads it. It matches Rust's parser except
/// that tor reads an embedded IPv4 tail with `%3u`, allowing leading zeros
/// (`::ffff:01.2.3.4`), so strip those and retry.
fn parse_v6(text: &str) -> Option<Ipv6Addr> {
    if let Ok(addr) = text.parse() {
        return Some(addr);
    }
    let (head, tail) = text.split_at(text.rfind(':')? + 1);
    let parts: Vec<&str> = tail.split('.').collect();
    if parts.len() != 4
        || parts
            .iter()
            .any(|p| p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    let tail: Vec<&str> = parts
        .iter()
        .map(|p| p.trim_start_matches('0'))
        .map(|p| if p.is_empty() { "0" } else { p })
        .collect();
    format!("{head}{}", tail.join(".")).parse().ok()
}

fn bad_address(addr: &str, offset: usize, bracketed: bool, arg: &str) -> PolicyError {
    let message = if addr.is_empty() {
        "missing address".to_string()
    } else {
        format!("`{addr}` is not an IP address")
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
        ADDR_HELP
    };
    error(offset, addr.len(), message, help)
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
    let magnitude = bytes[sign..sign + digits].iter().fold(0i64, |acc, b| {
        acc.saturating_mul(10).saturating_add(i64::from(b - b'0'))
    });
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
    let whole = |message: String, help: String| error(offset, text.len(), message, help);
    let not_ports = |rest: &str| {
        let help = match rest.as_bytes().first() {
            Some(b',') => "each rule takes one port or range; write `accept *:80` and `accept *:443` as two rules",
            _ => PORT_HELP,
        };
        whole(
            format!("`{text}` is not a port or port range"),
            help.to_string(),
        )
    };
    let Some((lo, lo_len)) = strtol_prefix(text) else {
        return Err(not_ports(text));
    };
    if lo < 0 {
        return Err(whole(
            format!("port range `{text}` has no lower bound"),
            "start the range at 1, e.g. `1-1024`".into(),
        ));
    }
    let rest = &text[lo_len..];
    let (hi, hi_text, trailing) = if rest.is_empty() {
        (lo, &text[..lo_len], "")
    } else if let Some(hi_text) = rest.strip_prefix('-') {
        match strtol_prefix(hi_text) {
            Some((hi, used)) => (hi, &hi_text[..used], &hi_text[used..]),
            None if hi_text.is_empty() => {
                let help = format!(
                    "write `{}65535` to include every port from {lo} up",
                    &text[..=lo_len]
                );
                return Err(whole(
                    format!("port range `{text}` has no upper bound"),
                    help,
                ));
            }
            None => {
                return Err(whole(
                    format!("`{hi_text}` is not a port"),
                    PORT_HELP.into(),
                ))
            }
        }
    } else {
        return Err(not_ports(rest));
    };
    let check = |value: i64, num: &str| match u16::try_from(value) {
        Ok(0) => Err(whole("port 0 is not a valid port".into(), PORT_HELP.into())),
        Ok(port) => Ok(port),
        Err(_) => Err(whole(
            format!("`{num}` is not a valid port"),
            PORT_HELP.into(),
        )),
    };
    let (lo, hi) = (check(lo, &text[..lo_len])?, check(hi, hi_text)?);
    if lo > hi {
        return Err(whole(
            format!("port range `{lo}-{hi}` is backwards"),
            format!("write the lower port first: `{hi}-{lo}`"),
        ));
    }
    if !trailing.is_empty() {
        let msg = format!("tor ignores `{trailing}` after the port range");
        let help = format!("remove it; tor reads this as `{lo}-{hi}`");
        warnings.push(warning(
            offset + text.len() - trailing.len(),
            trailing.len(),
            msg,
            help,
        ));
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
        if self.is_all() {
            f.write_str("*")
        } else if self.lo == self.hi {
            write!(f, "{}", self.lo)
        } else {
            write!(f, "{}-{}", self.lo, self.hi)
        }
    }
}

impl fmt::Display for Pattern {
    /// Tor syntax; full-length masks are omitted (`192.0.2.1`, `[::1]`).
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
        match parse_rule(text) {
            Ok((rule, _)) => rule,
            Err(e) => panic!("{text:?}: {e:?}"),
        }
    }

    fn warnings(text: &str) -> Vec<PolicyWarning> {
        parse_rule(text).unwrap().1
    }

    fn err(text: &str) -> PolicyError {
        parse_rule(text).unwrap_err()
    }

    /// The text an error or warning underlines.
    fn span(text: &str, offset: usize, len: usize) -> &str {
        &text[offset..(offset + len).min(text.len())]
    }

    #[test]
    fn parses_and_prints_canonically() {
        for (input, canonical) in [
            ("reject *:25", "reject *:25"),
            (
                "  accept6\t[2001:db8::]/32:80-81 ",
                "accept6 [2001:db8::]/32:80-81",
            ),
            ("accept 192.0.2.0/24:*", "accept 192.0.2.0/24:*"),
            ("accept 192.0.2.0/255.255.255.0", "accept 192.0.2.0/24:*"),
            ("accept 192.0.2.1/32:+080", "accept 192.0.2.1:80"),
            ("reject private:", "reject private:*"),
            ("accept *4:1-65535", "accept *4:*"),
            ("accept [1.2.3.4]:443", "accept 1.2.3.4:443"),
            ("accept 2001:db8::/32:443", "accept [2001:db8::]/32:443"),
            ("accept [::ffff:01.2.3.4]", "accept [::ffff:1.2.3.4]:*"),
            (
                "accept [::ffff:1.2.3.4]/24:80",
                "accept [::ffff:1.2.3.4]/120:80",
            ),
            ("accept [::1]/255.255.0.0:1", "accept [::1]/16:1"),
        ] {
            let parsed = rule(input);
            assert_eq!(parsed.to_string(), canonical, "{input:?}");
            assert_eq!(rule(canonical), parsed, "{canonical:?}");
        }
        assert_eq!(
            rule("accept6 *6:22"),
            Rule {
                action: Action::Accept,
                v6_keyword: true,
                pattern: Pattern::Any6,
                ports: PortRange { lo: 22, hi: 22 }
            }
        );
    }

    #[test]
    fn port_errors_explain_and_point_at_the_port() {
        let text = "accept *:0";
        let e = err(text);
        assert_eq!(e.message, "port 0 is not a valid port");
        assert_eq!(e.help.as_deref(), Some(PORT_HELP));
        assert_eq!(span(text, e.offset, e.len), "0");
        let e = err("reject 10.0.0.0/8:80-");
        assert_eq!(e.message, "port range `80-` has no upper bound");
        assert_eq!(
            e.help.as_deref(),
            Some("write `80-65535` to include every port from 80 up")
        );
        assert_eq!(span("reject 10.0.0.0/8:80-", e.offset, e.len), "80-");
        assert!(err("accept *:90-80").message.contains("backwards"));
        assert!(err("accept *:65536").message.contains("not a valid port"));
        assert!(err("accept *:-80").message.contains("no lower bound"));
        assert!(err("accept *:80,443").help.unwrap().contains("two rules"));
    }

    #[test]
    fn address_and_keyword_errors() {
        let text = "accept 2001:db8::1:443";
        let e = err(text);
        assert_eq!(span(text, e.offset, e.len), "2001");
        assert!(e.help.unwrap().contains("brackets"));
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
        let e = err("accept [::1:80");
        assert_eq!(span("accept [::1:80", e.offset, e.len), "[");
        let e = err("accept *:80 foo");
        assert_eq!(span("accept *:80 foo", e.offset, e.len), "foo");
        let long = format!("accept 1.2.3.4:{:0>73}", 80);
        assert!(err(&long).message.contains("too long"));
        assert!(parse_rule(&long[..long.len() - 1]).is_ok());
    }

    #[test]
    fn missing_pieces_point_at_the_end() {
        for (text, offset) in [
            ("", 0),
            ("   ", 3),
            ("accept", 6),
            ("accept ", 6),
            ("accept private", 14),
        ] {
            let e = err(text);
            assert_eq!((e.offset, e.len), (offset, 1), "{text:?}");
        }
    }

    #[test]
    fn tor_lenient_forms_warn() {
        let w = warnings("accept6 192.0.2.1:80");
        assert_eq!(w.len(), 1);
        assert!(w[0].message.contains("ignores"));
        assert_eq!(
            span("accept6 192.0.2.1:80", w[0].offset, w[0].len),
            "accept6 192.0.2.1:80"
        );
        assert!(warnings("reject6 private:*")[0]
            .help
            .as_deref()
            .unwrap()
            .contains("reject private:*"));
        assert!(warnings("accept6 *:80").is_empty());
        let text = "accept 1.2.3.4/:80";
        let w = warnings(text);
        assert_eq!(span(text, w[0].offset, w[0].len), "/");
        assert_eq!(
            rule(text).pattern,
            Pattern::V4 {
                addr: Ipv4Addr::new(1, 2, 3, 4),
                bits: 0
            }
        );
        let text = "accept [::1]80";
        assert_eq!(
            span(text, warnings(text)[0].offset, warnings(text)[0].len),
            "80"
        );
        assert_eq!(rule(text).ports, PortRange::ALL);
        let text = "accept *:80-90-100";
        assert_eq!(
            span(text, warnings(text)[0].offset, warnings(text)[0].len),
            "-100"
        );
        assert_eq!(rule("opt accept *:80"), rule("accept *:80"));
        assert_eq!(warnings("opt accept *:80").len(), 1);
    }

    #[test]
    fn multibyte_input_does_not_panic() {
        for text in [
            "accépt *:80",
            "accept é:80",
            "accept *:8ü",
            "accept *:80-9é",
            "accept [é",
            "accept private:é",
            "accept 1.2.3.4/é:1",
            "ü",
        ] {
            let e = err(text);
            assert!(text.is_char_boundary(e.offset.min(text.len())), "{text:?}");
        }
    }

    #[test]
    fn named_policies() {
        for name in NAMED {
            assert!(is_complete(&named(name).unwrap()), "{name}");
        }
        assert_eq!(named("nope"), None);
        let reduced = named("reduced").unwrap();
        assert_eq!(format_ports(&accepted_ports(&reduced, Family::V4)), "20-23, 43, 53, 79-81, 88, 110, 143, 194, 220, 389, 443, 464-465, 531, 543-544, 554, 563, 587, 636, 706, 749, 873, 902-904, 981, 989-995, 1194, 1220, 1293, 1500, 1533, 1677, 1723, 1755, 1863, 2082-2083, 2086-2087, 2095-2096, 2102-2104, 3128, 3389, 3690, 4321, 4643, 5050, 5190, 5222-5223, 5228, 5900, 6660-6669, 6679, 6697, 8000, 8008, 8074, 8080, 8082, 8087-8088, 8232-8233, 8332-8333, 8443, 8888, 9418, 9999-10000, 11371, 18080-18081, 18089, 19294, 19638, 50002, 64738");
        assert_eq!(reduced.last().unwrap().to_string(), "reject *:*");
        let default: Vec<String> = named("default")
            .unwrap()
            .iter()
            .map(Rule::to_string)
            .collect();
        assert_eq!(default.join(","), "reject *:25,reject *:119,reject *:135-139,reject *:445,reject *:563,reject *:1214,reject *:4661-4666,reject *:6346-6429,reject *:6699,reject *:6881-6999,accept *:*");
        assert_eq!(
            format_ports(&accepted_ports(&named("web").unwrap(), Family::V6)),
            "80, 443"
        );
        assert!(accepted_ports(&named("reject-all").unwrap(), Family::V4).is_empty());
    }

    #[test]
    fn effective_policy_matches_tor() {
        let rules = vec![rule("accept *:443"), rule("accept6 192.0.2.1:80")];
        assert!(!is_complete(&rules));
        let eff = effective(&rules, true);
        assert_eq!(eff[0].to_string(), "reject private:*");
        assert_eq!(eff[1].to_string(), "accept *:443");
        assert_eq!(eff[2..].to_vec(), named("default").unwrap());
        let web = named("web").unwrap();
        assert_eq!(effective(&web, false), web);
        assert!(!is_complete(&[rule("accept6 *:*")]));
        assert!(!is_complete(&[]));
    }

    #[test]
    fn accepted_ports_first_match_and_families() {
        let eff = effective(&[], true);
        assert_eq!(format_ports(&accepted_ports(&eff, Family::V4)), "1-24, 26-118, 120-134, 140-444, 446-562, 564-1213, 1215-4660, 4667-6345, 6430-6698, 6700-6880, 7000-65535");
        let rules = [
            rule("reject 192.0.2.0/24:*"),
            rule("accept6 *:22"),
            rule("accept *4:25"),
            rule("reject 0.0.0.0/0:80"),
            rule("accept [::]/0:80"),
            rule("accept *:80-81"),
            rule("reject *:*"),
        ];
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

    /// Rules and whether tor 0.4.9 accepts them in a torrc.
    const TOR_VERDICTS: &[(&str, bool)] = &[
        ("accept *:80", true),
        ("reject *:*", true),
        ("accept *", true),
        ("accept 192.0.2.0/24:*", true),
        ("accept 192.0.2.0/255.255.255.0:443", true),
        ("accept [2001:db8::]/32:80-81", true),
        ("accept6 [2001:db8::1]:443", true),
        ("accept6 192.0.2.1:80", true),
        ("reject private:*", true),
        ("accept private:", true),
        ("accept *4:*", true),
        ("reject *6:25", true),
        ("accept 1.2.3.4:+80", true),
        ("accept 1.2.3.4/:80", true),
        ("accept [::1]80", true),
        ("accept 2001:db8::/32:80", true),
        ("accept *:80-90x", true),
        ("accept [::ffff:01.2.3.4]/24:80", true),
        ("opt accept *:80", true),
        ("ACCEPT *:80", false),
        ("accept *:0", false),
        ("accept *:80-", false),
        ("accept *:90-80", false),
        ("accept *:65536", false),
        ("accept 1.2.3.4/33:80", false),
        ("accept 1.2.3.4/255.0.255.0:80", false),
        ("accept private", false),
        ("accept Private:*", false),
        ("accept localhost:80", false),
        ("accept */8:80", false),
        ("accept [::1:80", false),
        ("accept 01.2.3.4:80", false),
        ("accept *:80 foo", false),
        ("accept*:80", false),
        ("accept ::1:80", false),
        ("accept [::ffff:1.2.3.4]/40:80", false),
        ("accept *:80x", false),
        ("accept 1.2.3.4/-1:80", false),
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
        let mut mismatches = Vec::new();
        for &(text, valid) in TOR_VERDICTS {
            let conf = format!(
                "SocksPort 0\nORPort 9001\nNickname test\nContactInfo test@example.com\n\
                 DataDirectory {}\nExitRelay 1\nExitPolicy {text}\n",
                dir.join("never-created").display()
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

    fn rule_like() -> impl Strategy<Value = String> {
        let sel = |v: &[&'static str]| prop::sample::select(v.to_vec());
        let kw = sel(&[
            "accept",
            "reject6",
            "accept6",
            "Reject",
            "opt reject",
            "accept\t",
        ]);
        let addr = sel(&[
            "*",
            "*4",
            "*6",
            "private",
            "192.0.2.1",
            "[2001:db8::1]",
            "[::ffff:1.2.3.4]",
            "2001:db8::",
            "[1.2.3.4]",
            "01.2.3.4",
            "[::1",
            "",
            "é",
            "[*]",
        ]);
        let mask = sel(&[
            "",
            "/",
            "/0",
            "/24",
            "/32",
            "/33",
            "/64",
            "/128",
            "/255.255.0.0",
            "/+8",
            "/-0",
            "/x",
            "/é",
        ]);
        let ports = sel(&[
            "", ":", ":*", ":80", ":0", ":80-", ":1-65535", ":+80", ":80-90x", ":65536", ":90-80",
            ":ü", "x:1", " x",
        ]);
        (kw, addr, mask, ports).prop_map(|(k, a, m, p)| format!("{k} {a}{m}{p}"))
    }

    fn check_round_trip(text: &str) {
        match parse_rule(text) {
            Ok((parsed, warnings)) => {
                let printed = parsed.to_string();
                let (again, again_warnings) =
                    parse_rule(&printed).unwrap_or_else(|e| panic!("{printed:?}: {e:?}"));
                assert_eq!(again, parsed, "{text:?} printed as {printed:?}");
                assert!(
                    again_warnings.is_empty() || parsed.ignored_by_tor(),
                    "{printed:?}"
                );
                for w in warnings {
                    assert!(
                        w.len >= 1 && w.offset + w.len <= text.len(),
                        "{text:?}: {w:?}"
                    );
                }
            }
            Err(e) => {
                assert!(
                    e.len >= 1 && e.offset <= text.len() && text.is_char_boundary(e.offset),
                    "{text:?}: {e:?}"
                );
                if e.offset < text.len() {
                    assert!(
                        text.get(e.offset..e.offset + e.len).is_some(),
                        "{text:?}: {e:?}"
                    );
                }
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
