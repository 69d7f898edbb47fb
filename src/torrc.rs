//! tor's torrc grammar, as tor 0.4.9 reads it, to know what a rendered torrc really sets.
//!
//! A port of tor's `read_file_to_str` (every `\r` is deleted, the text ends at the first NUL),
//! `parse_config_line_from_str_verbose` and `config_get_lines_aux` (comments, backslash-newline
//! continuations, the comment lines a continued value swallows, C-quoted values, the `+`/`/`
//! prefixes, `%include`), and of `config_find_option_name` (tor's abbreviation table, then a
//! case-insensitive exact name, then the first option in tor's sorted list that starts with the
//! key: `ExitPolic` is `ExitPolicy`, `Sandbo` is `Sandbox`).
//!
//! Why so exact: oignon writes torrc files from inventory strings. Whatever tor would read
//! differently from what oignon meant (a line break in a URL, a `#` that cuts a value, a trailing
//! backslash that swallows the next line, an abbreviated option name) must be found here, before
//! the file reaches a relay.

use std::sync::OnceLock;

/// How an entry combines with the same option from tor's defaults file (torrc_format.txt, "Magic").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Magic {
    /// `Key value`: replaces the defaults file's lines of that option.
    Normal,
    /// `+Key value`: appended to the defaults file's lines.
    Append,
    /// `/Key`: clears the option (tor ignores any value).
    Clear,
}

/// One entry of a torrc, as tor reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The key as written, without its `+`/`/` prefix (not canonicalised: see [`canonical`]).
    pub key: String,
    pub magic: Magic,
    /// The value as tor decodes it: trailing whitespace dropped, a quoted value unescaped, a
    /// continued value joined (and cut at a NUL, as tor's C strings are).
    pub value: String,
    /// 1-based line of the key in the text.
    pub line: usize,
    /// The value went on over a backslash-newline.
    pub continued: bool,
    /// The value was a C-quoted string.
    pub quoted: bool,
}

impl Entry {
    /// `%include PATH`: tor reads another file (or directory) at this point.
    pub fn is_include(&self) -> bool {
        self.key == "%include"
    }
}

/// A parsed torrc.
#[derive(Debug, Clone, Default)]
pub struct Torrc {
    pub entries: Vec<Entry>,
    /// Line of the first NUL byte: tor ignores the rest of the file.
    pub nul_at_line: Option<usize>,
}

/// A torrc tor refuses to read at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    /// tor's own words.
    pub message: &'static str,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// tor's `TOR_ISSPACE`: space, `\t`, `\n`, `\v`, `\f`, `\r`.
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// Parses `text` as tor parses a torrc file.
pub fn parse(text: &str) -> Result<Torrc, ParseError> {
    let raw = text.as_bytes();
    let nul = raw.iter().position(|&b| b == 0);
    let nul_at_line = nul.map(|n| raw[..n].iter().filter(|&&b| b == b'\n').count() + 1);
    // tor reads the file as a C string and, in text mode, deletes every `\r` (not only in CRLF).
    let body = &raw[..nul.unwrap_or(raw.len())];
    // Copied only when there is a `\r` to delete: a byte-wise copy of every torrc was a tenth of
    // a large render.
    let s: std::borrow::Cow<[u8]> = if body.contains(&b'\r') {
        body.iter().copied().filter(|&b| b != b'\r').collect()
    } else {
        std::borrow::Cow::Borrowed(body)
    };
    let mut scan = Scanner {
        s: &s,
        i: 0,
        line: 1,
        counted: 0,
    };
    let mut entries = vec![];
    loop {
        scan.skip_to_key();
        if scan.at(0) == 0 {
            break;
        }
        let key_line = scan.line_at(scan.i);
        let key = scan.key();
        scan.skip_blanks();
        let (value, continued, quoted) = if scan.at(0) == b'"' {
            (scan.quoted_value()?, false, true)
        } else {
            let (value, continued) = scan.plain_value();
            (value, continued, false)
        };
        scan.end_of_entry();
        let (magic, key) = match key.first() {
            Some(b'+') => (Magic::Append, &key[1..]),
            Some(b'/') => (Magic::Clear, &key[1..]),
            _ => (Magic::Normal, key),
        };
        entries.push(Entry {
            key: String::from_utf8_lossy(key).into_owned(),
            magic,
            // tor replaces a cleared option's value with "".
            value: if magic == Magic::Clear {
                String::new()
            } else {
                String::from_utf8_lossy(&value).into_owned()
            },
            line: key_line,
            continued,
            quoted,
        });
        if scan.at(0) == 0 {
            break;
        }
    }
    Ok(Torrc {
        entries,
        nul_at_line,
    })
}

/// A position in a torrc's bytes (after tor's `\r` deletion and NUL cut), with the line of the
/// last position asked for: lines are counted incrementally, never from the start again.
struct Scanner<'a> {
    s: &'a [u8],
    i: usize,
    /// The line of byte `counted`.
    line: usize,
    counted: usize,
}

impl<'a> Scanner<'a> {
    /// The byte `k` past the position; 0 past the end, as tor's C string ends.
    fn at(&self, k: usize) -> u8 {
        self.s.get(self.i + k).copied().unwrap_or(0)
    }

    /// The 1-based line of byte `pos` (never before the last one asked for).
    fn line_at(&mut self, pos: usize) -> usize {
        self.line += self.s[self.counted..pos]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        self.counted = pos;
        self.line
    }

    /// Past `TOR_ISSPACE` bytes.
    fn skip_space(&mut self) {
        while is_space(self.at(0)) {
            self.i += 1;
        }
    }

    /// Past spaces and tabs.
    fn skip_blanks(&mut self) {
        while self.at(0) == b' ' || self.at(0) == b'\t' {
            self.i += 1;
        }
    }

    /// To the end of the line (a comment), not past its newline.
    fn skip_to_eol(&mut self) {
        while self.at(0) != 0 && self.at(0) != b'\n' {
            self.i += 1;
        }
    }

    /// Past whitespace and comment lines, to the next key (or the end).
    fn skip_to_key(&mut self) {
        loop {
            self.skip_space();
            if self.at(0) != b'#' {
                return;
            }
            self.skip_to_eol();
        }
    }

    /// The key: up to whitespace, a comment or a backslash-newline.
    fn key(&mut self) -> &'a [u8] {
        let start = self.i;
        while self.at(0) != 0
            && !is_space(self.at(0))
            && self.at(0) != b'#'
            && !(self.at(0) == b'\\' && self.at(1) == b'\n')
        {
            self.i += 1;
        }
        &self.s[start..self.i]
    }

    /// A C-quoted value: nothing but blanks or a comment may follow its closing quote.
    fn quoted_value(&mut self) -> Result<Vec<u8>, ParseError> {
        let Some((v, next)) = unescape(self.s, self.i) else {
            return Err(ParseError {
                line: self.line_at(self.i),
                message: "Invalid escape sequence in quoted string",
            });
        };
        self.i = next;
        self.skip_blanks();
        if self.at(0) != 0 && self.at(0) != b'#' && self.at(0) != b'\n' {
            return Err(ParseError {
                line: self.line_at(self.i),
                message: "Excess data after quoted string",
            });
        }
        Ok(v)
    }

    /// An unquoted value up to its newline or comment, over backslash-newline continuations;
    /// trailing whitespace dropped. Also says whether it was continued.
    fn plain_value(&mut self) -> (Vec<u8>, bool) {
        let val = self.i;
        let mut cont = false;
        while self.at(0) != 0 && self.at(0) != b'\n' && (self.at(0) != b'#' || cont) {
            if self.at(0) == b'\\' && self.at(1) == b'\n' {
                cont = true;
                self.i += 2;
            } else if self.at(0) == b'#' {
                // Inside a continued value a comment runs to its newline, included: the value
                // goes on at the next line even without a backslash (torrc_format.txt).
                self.skip_to_eol();
                if self.at(0) == b'\n' {
                    self.i += 1;
                }
            } else {
                self.i += 1;
            }
        }
        let mut end = self.i;
        if self.at(0) == b'\n' {
            self.i += 1;
        }
        while end > val && is_space(self.s[end - 1]) {
            end -= 1;
        }
        let body = &self.s[val..end];
        if cont {
            (join_continued(body), true)
        } else {
            (body.to_vec(), false)
        }
    }

    /// Past a trailing comment and the whitespace before the next entry.
    fn end_of_entry(&mut self) {
        if self.at(0) == b'#' {
            self.skip_to_eol();
        }
        self.skip_space();
    }
}

/// A continued value's bytes without its backslash-newlines and the comment lines it swallowed.
fn join_continued(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    let mut j = 0;
    while j < body.len() {
        if body[j] == b'#' {
            while j < body.len() && body[j] != b'\n' {
                j += 1;
            }
            if j < body.len() {
                j += 1;
            }
        } else if body[j] == b'\\' && body.get(j + 1) == Some(&b'\n') {
            j += 2;
        } else {
            out.push(body[j]);
            j += 1;
        }
    }
    out
}

/// tor's `unescape_string`: the C string starting at `s[start] == '"'`, and the index after its
/// closing quote. None where tor fails ("Invalid escape sequence").
fn unescape(s: &[u8], start: usize) -> Option<(Vec<u8>, usize)> {
    let at = |i: usize| s.get(i).copied().unwrap_or(0);
    let is_odigit = |b: u8| (b'0'..=b'7').contains(&b);
    let mut out = vec![];
    let mut i = start + 1;
    loop {
        match at(i) {
            0 | b'\n' => return None,
            b'"' => break,
            b'\\' => match at(i + 1) {
                b'x' | b'X' => {
                    let hi = (at(i + 2) as char).to_digit(16)?;
                    let lo = (at(i + 3) as char).to_digit(16)?;
                    out.push((hi * 16 + lo) as u8);
                    i += 4;
                }
                d if is_odigit(d) => {
                    let mut n = u32::from(d - b'0');
                    i += 2;
                    for _ in 0..2 {
                        if is_odigit(at(i)) {
                            n = n * 8 + u32::from(at(i) - b'0');
                            i += 1;
                        }
                    }
                    if n > 255 {
                        return None;
                    }
                    out.push(n as u8);
                }
                b'n' => {
                    out.push(b'\n');
                    i += 2;
                }
                b'r' => {
                    out.push(b'\r');
                    i += 2;
                }
                b't' => {
                    out.push(b'\t');
                    i += 2;
                }
                c @ (b'"' | b'\\' | b'\'') => {
                    out.push(c);
                    i += 2;
                }
                _ => return None,
            },
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    // tor keeps the result as a C string: an escaped NUL ends it.
    if let Some(n) = out.iter().position(|&b| b == 0) {
        out.truncate(n);
    }
    Some((out, i + 1))
}

/// How tor found an option from the key written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// The option's own name, in any case.
    Exact,
    /// An entry of tor's abbreviation table (`BandwidthRateBytes` → `BandwidthRate`).
    Abbreviation,
    /// The key is a prefix of the option's name: tor takes the first option, in its sorted list,
    /// that starts with it (and logs "The abbreviation … is deprecated").
    Prefix,
}

/// The option tor assigns a key to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resolved {
    /// tor's canonical spelling.
    pub name: &'static str,
    pub via: Via,
    /// False for names tor knows but never sets (obsolete options, which it skips with a warning,
    /// and virtual ones, which it refuses).
    pub settable: bool,
}

struct Options {
    /// Every name tor knows, settable or not, sorted as tor sorts them (case-insensitively), with
    /// the lowercase form for matching.
    names: Vec<(&'static str, String, bool)>,
    /// Index into `names` by lowercase name: every line of every rendered torrc is looked up.
    exact: std::collections::HashMap<String, usize>,
    /// (abbreviation, full name), in tor's order.
    abbrevs: Vec<(&'static str, &'static str)>,
    /// The abbreviations, lowercase: most keys are none, and skip the table.
    abbrev_set: std::collections::HashSet<String>,
}

/// The option list of tor 0.4.9.11; see the header of the file for how it was made.
const OPTIONS_FILE: &str = include_str!("torrc_options.txt");

fn options() -> &'static Options {
    static OPTIONS: OnceLock<Options> = OnceLock::new();
    OPTIONS.get_or_init(|| {
        let mut names = vec![];
        let mut abbrevs = vec![];
        let mut section = "";
        for line in OPTIONS_FILE.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if line.starts_with('[') {
                section = line;
                continue;
            }
            match section {
                "[settable]" => names.push((line, line.to_ascii_lowercase(), true)),
                "[hidden]" => names.push((line, line.to_ascii_lowercase(), false)),
                "[abbrev]" => {
                    if let Some((a, f)) = line.split_once(' ') {
                        abbrevs.push((a, f.trim()));
                    }
                }
                _ => {}
            }
        }
        // tor sorts with strcasecmp: byte order of the lowercase forms.
        names.sort_by(|a, b| a.1.cmp(&b.1));
        let exact = names
            .iter()
            .enumerate()
            .map(|(i, (_, l, _))| (l.clone(), i))
            .collect();
        let abbrev_set = abbrevs
            .iter()
            .map(|(a, _)| a.to_ascii_lowercase())
            .collect();
        Options {
            names,
            exact,
            abbrevs,
            abbrev_set,
        }
    })
}

/// The option tor assigns `key` to (without its `+`/`/` prefix), or None when tor answers
/// "Unknown option".
pub fn canonical(key: &str) -> Option<Resolved> {
    let opts = options();
    let mut k = key;
    let mut via = Via::Exact;
    let mut lower = k.to_ascii_lowercase();
    if opts.abbrev_set.contains(&lower) {
        // tor goes through the whole table, so an abbreviation's result may itself be rewritten.
        for (abbrev, full) in &opts.abbrevs {
            if k.eq_ignore_ascii_case(abbrev) {
                k = full;
                via = Via::Abbreviation;
            }
        }
        lower = k.to_ascii_lowercase();
    }
    if k.is_empty() {
        return None;
    }
    if let Some((name, _, settable)) = opts.exact.get(&lower).map(|&i| &opts.names[i]) {
        return Some(Resolved {
            name,
            via,
            settable: *settable,
        });
    }
    opts.names
        .iter()
        .find(|(_, l, _)| l.starts_with(&lower))
        .map(|(name, _, settable)| Resolved {
            name,
            via: Via::Prefix,
            settable: *settable,
        })
}

/// Every option name tor lists as settable, in tor's order (for suggestions).
pub fn settable_names() -> impl Iterator<Item = &'static str> {
    options()
        .names
        .iter()
        .filter(|(_, _, s)| *s)
        .map(|(n, _, _)| *n)
}

/// The options oignon sets itself in every relay's torrc (or keeps at tor's default), with the
/// inventory field they come from. `torrc_extra` may not set them, and the rendered torrc must
/// give each exactly the value oignon means (see `render::check_torrc`).
pub const MANAGED: &[(&str, &str)] = &[
    ("Nickname", "the relay's `nickname`"),
    (
        "ContactInfo",
        "`[fleet]` email, url and proof and the hoster's `domain` (CIISS)",
    ),
    ("Address", "the host's or relay's `ipv4` and `ipv6`"),
    ("ORPort", "the relay's `orport` (with `ipv4` and `ipv6`)"),
    (
        "OutboundBindAddress",
        "the host's or relay's `ipv4` and `ipv6`",
    ),
    (
        "SocksPort",
        "nothing: relays serve no clients (SocksPort 0)",
    ),
    (
        "RelayBandwidthRate",
        "`uplink`, `bandwidth_share` or `bandwidth_rate`",
    ),
    ("RelayBandwidthBurst", "`bandwidth_burst` or `burst_factor`"),
    ("ExitRelay", "`exit`"),
    ("IPv6Exit", "`ipv6_exit`"),
    ("ExitPolicy", "`exit_policy` and `exit_policy_prepend`"),
    (
        "ExitPolicyRejectPrivate",
        "nothing: oignon keeps tor's default (reject private addresses)",
    ),
    (
        "ExitPolicyRejectLocalInterfaces",
        "nothing: oignon keeps tor's default",
    ),
    (
        "ReducedExitPolicy",
        "`exit_policy = \"reduced\"` (oignon writes the policy itself)",
    ),
    ("FamilyId", "secrets/ (the family key)"),
    ("MyFamily", "secrets/ (the relays' fingerprints)"),
    ("MetricsPort", "`metrics_port`"),
    ("MetricsPortPolicy", "`metrics_port` (loopback only)"),
    ("DoSCircuitCreationEnabled", "`dos_defense`"),
    ("DoSConnectionEnabled", "`dos_defense`"),
    ("DoSStreamCreationEnabled", "`dos_defense` (exits)"),
    ("OfflineMasterKey", "`offline_master_key`"),
    ("Sandbox", "`sandbox`"),
    ("NoExec", "`noexec`"),
    (
        "DataDirectory",
        "nothing: Debian's instance defaults set it, and oignon deploys keys there",
    ),
    (
        "KeyDirectory",
        "nothing: oignon deploys keys to the DataDirectory's keys/",
    ),
    (
        "FamilyKeyDirectory",
        "nothing: oignon deploys the family key to the DataDirectory's keys/",
    ),
];

/// The inventory field behind a managed option (canonical name), or None if oignon leaves it to
/// `torrc_extra`.
pub fn managed(name: &str) -> Option<&'static str> {
    MANAGED
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, f)| *f)
}

/// What tor ends up with for each option of one torrc file, by canonical name, in file order:
/// a `Normal` line replaces the defaults, `+` appends, `/` clears (tor reads the file's lines of
/// one option as one list, so only the presence of a `/` or `+` line changes how it combines).
/// Unknown keys and `%include` are kept under their own spelling.
#[cfg(test)]
pub fn values_by_option(t: &Torrc) -> Vec<(String, Vec<&Entry>)> {
    let mut out: Vec<(String, Vec<&Entry>)> = vec![];
    for e in &t.entries {
        let name = if e.is_include() {
            e.key.clone()
        } else {
            canonical(&e.key).map_or_else(|| e.key.clone(), |r| r.name.to_string())
        };
        match out.iter_mut().find(|(n, _)| *n == name) {
            Some((_, v)) => v.push(e),
            None => out.push((name, vec![e])),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(text: &str) -> Vec<(String, String)> {
        parse(text)
            .unwrap()
            .entries
            .into_iter()
            .map(|e| (e.key, e.value))
            .collect()
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn reads_the_examples_of_torrc_format_txt() {
        assert_eq!(kv("Foo Bar\n"), pairs(&[("Foo", "Bar")]));
        assert_eq!(
            kv("Foo    Bar    Baz    \n"),
            pairs(&[("Foo", "Bar    Baz")])
        );
        assert_eq!(kv("Hello\\\nWorld\n"), pairs(&[("Hello", "World")]));
        assert_eq!(
            kv("Hello World   #today\nHello World#tomorrow\n"),
            pairs(&[("Hello", "World"), ("Hello", "World")])
        );
        assert_eq!(
            kv("Hello \"\\\"World\\\"\\nand\\nuniverse\"\n"),
            pairs(&[("Hello", "\"World\"\nand\nuniverse")])
        );
        assert_eq!(
            kv("Hello\\\nWorld\\\nand\\\nfriends\n"),
            pairs(&[("Hello", "Worldandfriends")])
        );
        assert_eq!(
            kv("Too \\\nMany\\\\\\\nBacksl\\ashes \\\\\nhere\n"),
            pairs(&[("Too", "Many\\\\Backsl\\ashes \\here")])
        );
        let silly = pairs(&[("This", "entry        and some        are  silly")]);
        assert_eq!(
            kv("This entry      \\\n # has comments \\\n and some       \\\n are # generally \\\n silly\n"),
            silly
        );
        assert_eq!(
            kv("This entry      \\\n # has comments\n and some       \\\n are # generally\n silly\n"),
            silly
        );
    }

    #[test]
    fn carriage_returns_vanish_and_a_nul_ends_the_file_as_in_tor() {
        let t = parse("Exit\rPolicy accept *:*\nNickname a\0\nExitPolicy accept *:25\n").unwrap();
        assert_eq!(t.entries.len(), 2);
        assert_eq!(t.entries[0].key, "ExitPolicy");
        assert_eq!(t.nul_at_line, Some(2));
    }

    #[test]
    fn a_hash_cuts_an_unquoted_value_and_a_trailing_backslash_swallows_the_next_line() {
        assert_eq!(
            kv("ContactInfo url:https://x#y\n"),
            pairs(&[("ContactInfo", "url:https://x")])
        );
        assert_eq!(
            kv("ContactInfo a\\\nExitPolicy accept *:*\n"),
            pairs(&[("ContactInfo", "aExitPolicy accept *:*")])
        );
        assert_eq!(kv("Sandbox#0\n"), pairs(&[("Sandbox", "")]));
    }

    #[test]
    fn magic_prefixes_and_include_are_recognised() {
        let t = parse("+ExitPolicy accept *:*\n/ExitPolicy x\n%include /etc/x\n+%include /y\n")
            .unwrap();
        let e = &t.entries;
        assert_eq!(
            (e[0].key.as_str(), e[0].magic),
            ("ExitPolicy", Magic::Append)
        );
        assert_eq!(
            (e[1].key.as_str(), e[1].magic, e[1].value.as_str()),
            ("ExitPolicy", Magic::Clear, "")
        );
        assert!(e[2].is_include() && e[3].is_include());
        assert_eq!(e[2].line, 3);
    }

    #[test]
    fn bad_quoted_values_fail_with_tors_words() {
        assert_eq!(
            parse("A \"x\" y\n").unwrap_err().message,
            "Excess data after quoted string"
        );
        assert_eq!(
            parse("A \"\\q\"\n").unwrap_err().message,
            "Invalid escape sequence in quoted string"
        );
        assert_eq!(
            parse("A \"\\777\"\n").unwrap_err().message,
            "Invalid escape sequence in quoted string"
        );
        assert_eq!(kv("A \"a\\x00b\"\n"), pairs(&[("A", "a")]));
    }

    #[test]
    fn option_names_resolve_as_tor_resolves_them() {
        let r = |k: &str| canonical(k).map(|r| (r.name, r.via));
        assert_eq!(r("exitpolicy"), Some(("ExitPolicy", Via::Exact)));
        assert_eq!(r("ExitPolic"), Some(("ExitPolicy", Via::Prefix)));
        assert_eq!(r("Sandbo"), Some(("Sandbox", Via::Prefix)));
        assert_eq!(r("NICKNAM"), Some(("Nickname", Via::Prefix)));
        assert_eq!(
            r("BandwidthRateBytes"),
            Some(("BandwidthRate", Via::Abbreviation))
        );
        assert_eq!(r("NoSuchOption"), None);
        assert_eq!(r(""), None);
        let obsolete = canonical("AllowDotExit").unwrap();
        assert!(!obsolete.settable);
    }

    /// Runs the installed tor on `text` and returns `--dump-config short` (None without tor).
    fn tor_dump(text: &str) -> Option<Result<String, String>> {
        if !crate::tor::available() {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("torrc");
        let data = dir.path().join("data");
        std::fs::write(
            &f,
            format!("DataDirectory {}\n{text}", data.to_str().unwrap()),
        )
        .unwrap();
        let out = std::process::Command::new("tor")
            .args(["--defaults-torrc", "/dev/null", "-f"])
            .arg(&f)
            .args(["--dump-config", "short", "--hush"])
            .output()
            .unwrap();
        Some(if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stdout).into_owned())
        })
    }

    #[test]
    fn the_parser_agrees_with_the_installed_tor() {
        // Texts tor accepts; for each, the options we see set and their values must be tor's.
        let cases = [
            "ExitPolic accept *:25\nexitpolicy reject *:*\n",
            "Sandbo 1\nContactInfo email:a[]b.c url:https://x#frag\n",
            "Exit\rPolicy accept *:80\r\nExitPolicy reject *:*\r\n",
            "ContactInfo a \\\nExitPolicy accept *:*\n",
            "ContactInfo a \\\n # c\n b\nNickname x\n",
            "ContactInfo \"quoted \\x41 value\"  # c\nNICKNAME y\n",
            "   # only a comment\nContactInfo z\\\n",
            "ContactInfo q\0\nExitPolicy accept *:*\n",
            "ExitPolicyRejectP 0\nNICKNAME abc\n",
        ];
        for text in cases {
            let Some(dump) = tor_dump(text) else {
                eprintln!("tor not installed: skipped");
                return;
            };
            let dump = dump.unwrap_or_else(|e| panic!("tor refused {text:?}: {e}"));
            let mut ours: Vec<String> = vec![];
            for (name, entries) in values_by_option(&parse(text).unwrap()) {
                for e in entries {
                    ours.push(format!("{name} {}", e.value));
                }
            }
            for line in &ours {
                assert!(
                    dump.lines()
                        .any(|l| l.eq_ignore_ascii_case(line.trim_end())),
                    "{text:?}: we read {line:?}, tor's dump is:\n{dump}"
                );
            }
            let theirs = dump
                .lines()
                .filter(|l| !l.starts_with("DataDirectory"))
                .count();
            assert_eq!(theirs, ours.len(), "{text:?}: tor's dump is:\n{dump}");
        }
    }

    #[test]
    fn option_list_matches_the_installed_tor() {
        if !crate::tor::available() {
            eprintln!("tor not installed: skipped");
            return;
        }
        let out = std::process::Command::new("tor")
            .arg("--list-torrc-options")
            .output()
            .unwrap();
        let theirs: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect();
        let mut ours: Vec<String> = settable_names().map(str::to_string).collect();
        let mut sorted = theirs.clone();
        sorted.sort_by_key(|a| a.to_ascii_lowercase());
        ours.sort_by_key(|a| a.to_ascii_lowercase());
        assert_eq!(
            ours, sorted,
            "src/torrc_options.txt is out of date with the installed tor: regenerate it (see its header)"
        );
    }

    mod fuzz {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            #[test]
            fn parser_never_panics(text in "[ -~\t\r\n\\\\#\"+/%\u{0}\u{b}\u{c}é]{0,200}") {
                if let Ok(t) = parse(&text) {
                    for e in &t.entries {
                        let _ = canonical(&e.key);
                    }
                    let _ = values_by_option(&t);
                }
            }

            #[test]
            fn parser_never_panics_on_any_text(text in "\\PC{0,200}") {
                let _ = parse(&text);
            }
        }
    }
}
