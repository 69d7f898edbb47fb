//! Inventory strings are single lines of printable text, whatever the field.
//!
//! Every value oignon reads from the inventory ends up in some file or command line: a torrc
//! (one option per line), sysctl.d and GRUB files, ssh arguments, the tab-separated records of the
//! host scripts. A line break, a carriage return (tor deletes those, joining what they separate),
//! a NUL (tor stops reading there) or a tab changes what those readers see. So the check is made
//! once, on every key and string value of every file, by walking the TOML documents: a field added
//! tomorrow is covered without anyone remembering to add a check.

use super::source::{SourceFile, Written};
use crate::diagnostic::Diagnostic;

/// Characters no inventory string may hold.
pub fn forbidden(c: char) -> bool {
    // Cc: C0 (NUL, tab, LF, CR, ESC, …), DEL and C1 (NEL U+0085 included).
    c.is_control()
        // Line and paragraph separators: line breaks to Unicode-aware readers.
        || matches!(c, '\u{2028}' | '\u{2029}')
        // Bidirectional controls make the text shown differ from the text read.
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
        || c == '\u{feff}'
}

/// A human name for a forbidden character.
pub fn describe(c: char) -> String {
    let name = match c {
        '\n' => "a line feed",
        '\r' => "a carriage return",
        '\0' => "a NUL byte",
        '\t' => "a tab",
        '\u{0b}' => "a vertical tab",
        '\u{0c}' => "a form feed",
        '\u{1b}' => "an escape character",
        '\u{85}' => "a next-line character",
        '\u{2028}' => "a line separator",
        '\u{2029}' => "a paragraph separator",
        '\u{feff}' => "a zero-width no-break space",
        c if c.is_control() => "a control character",
        _ => "a bidirectional control character",
    };
    format!("{name} (U+{:04X})", c as u32)
}

/// Characters of a value quoted in a message before it is cut: a megabyte value must not print a
/// megabyte.
const SHOWN_CHARS: usize = 60;

/// `s` for a message: in backquotes, control and invisible characters escaped, cut after
/// [`SHOWN_CHARS`] characters with the size of the rest.
pub fn shown(s: &str) -> String {
    let (text, rest) = escaped(s);
    match rest {
        0 => format!("`{text}`"),
        n => format!("`{text}…` ({n} more characters)"),
    }
}

/// `s` with control and invisible characters escaped and cut after [`SHOWN_CHARS`] characters
/// (marked `…`), for a message that quotes it some other way.
pub fn escaped_cut(s: &str) -> String {
    match escaped(s) {
        (text, 0) => text,
        (text, _) => format!("{text}…"),
    }
}

/// The escaped first [`SHOWN_CHARS`] characters of `s`, and how many characters were left out.
fn escaped(s: &str) -> (String, usize) {
    let mut out = String::new();
    for (n, c) in s.chars().enumerate() {
        if n == SHOWN_CHARS {
            return (out, s.chars().count() - n);
        }
        if forbidden(c) || c == '`' {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    (out, 0)
}

/// One finding per key or string value of `src` holding a forbidden character.
pub fn check_strings(src: &SourceFile) -> Vec<Diagnostic> {
    src.strings()
        .into_iter()
        .filter_map(|w| finding(src, &w))
        .collect()
}

fn finding(src: &SourceFile, w: &Written) -> Option<Diagnostic> {
    let (at, c) = w.text.chars().enumerate().find(|(_, c)| forbidden(*c))?;
    let field = super::load::dotted(&w.path);
    let what = if w.is_key {
        format!("the key {} (in `{field}`)", shown(&w.text))
    } else {
        format!("`{field}` = {}", shown(&w.text))
    };
    let why = match c {
        '\n' | '\r' | '\u{85}' | '\u{2028}' | '\u{2029}' | '\u{0b}' | '\u{0c}' => {
            "a line break would add lines of its own to the files oignon renders (e.g. an ExitPolicy in a torrc)"
        }
        '\0' => "tor, shells and C programs stop reading at a NUL",
        '\t' => "tabs separate the fields of the records oignon sends to hosts; use spaces",
        _ => "it would be invisible or change how the text is shown",
    };
    Some(
        Diagnostic::error(format!(
            "{what} contains {} at character {}",
            describe(c),
            at + 1
        ))
        .field(field)
        .help(format!(
            "inventory strings are single lines of printable text: remove it ({why})"
        ))
        .at(&src.path, &src.text, w.span.clone()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_escapes_and_caps() {
        assert_eq!(shown("a\nb"), "`a\\nb`");
        let long = "x".repeat(1_000_000);
        let s = shown(&long);
        assert!(s.len() < 120, "{s}");
        assert!(s.ends_with("(999940 more characters)"), "{s}");
    }

    #[test]
    fn every_string_of_any_table_is_checked() {
        let text = "[fleet]\nurl = \"a\\nb\"\n[[host]]\nname = \"h\"\nsysctl = { \"k\\r\" = \"v\" }\nx = [\"ok\", \"t\\tab\"]\n";
        let (src, err) = SourceFile::parse("f.toml".into(), text.into());
        assert!(err.is_none());
        let found: Vec<String> = check_strings(&src).iter().map(|d| d.to_string()).collect();
        assert_eq!(found.len(), 3, "{found:#?}");
        assert!(
            found[0].contains("`fleet.url` = `a\\nb` contains a line feed (U+000A) at character 2")
        );
        assert!(
            found[1]
                .contains("the key `k\\r` (in `host.0.sysctl.k\\r`) contains a carriage return"),
            "{}",
            found[1]
        );
        assert!(found[2].contains("`host.0.x.1` = `t\\tab` contains a tab"));
    }
}
