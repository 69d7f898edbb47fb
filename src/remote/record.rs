//! The one encoder of the records that host scripts read on stdin: one record a line, its fields
//! separated by tabs. A field holding a tab or a newline would become a field or a record of its
//! own (a role `owner` holding `\tx\nH\ttouch /root/PWNED` once made apply run that as root), so
//! every field of every record goes through [`Records::push`], which refuses any control character.
//! Values are never cleaned field by field: a value that cannot travel is an error.

use std::fmt;

/// A field that cannot be sent to a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordError {
    /// The record kind (its first field), e.g. `W`.
    pub record: String,
    /// Which field (1-based, after the kind).
    pub field: usize,
    /// The character refused, as `U+0009`.
    pub char: char,
    /// The start of the value, escaped and capped (never a secret: key files travel as base64).
    pub excerpt: String,
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "refusing to send a `{}` record to the host: its field {} holds the control character U+{:04X} ({}); host scripts take tab-separated lines, so no value may hold a tab, a newline or any other control character; fix the value that produced it",
            self.record, self.field, self.char as u32, self.excerpt
        )
    }
}

impl std::error::Error for RecordError {}

/// Lines for a host script, built field by field.
#[derive(Debug, Default)]
pub struct Records {
    out: String,
}

/// How much of a refused value an error quotes.
const EXCERPT_CHARS: usize = 60;

impl Records {
    pub fn new() -> Records {
        Records::default()
    }

    /// Appends one record: `fields[0]` is its kind. Refuses any control character in any field.
    pub fn push(&mut self, fields: &[&str]) -> Result<(), RecordError> {
        for (i, value) in fields.iter().enumerate() {
            if let Some(c) = value.chars().find(|c| c.is_control()) {
                let mut excerpt: String = value.chars().take(EXCERPT_CHARS).collect();
                if value.chars().count() > EXCERPT_CHARS {
                    excerpt.push('…');
                }
                return Err(RecordError {
                    record: fields
                        .first()
                        .map(|k| k.escape_debug().to_string())
                        .unwrap_or_default(),
                    field: i,
                    char: c,
                    excerpt: format!("{:?}", excerpt),
                });
            }
        }
        self.out.push_str(&fields.join("\t"));
        self.out.push('\n');
        Ok(())
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.out.into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_tab_separated_one_record_a_line() {
        let mut r = Records::new();
        r.push(&["W", "/etc/x", "root"]).unwrap();
        r.push(&["B"]).unwrap();
        assert_eq!(r.into_bytes(), b"W\t/etc/x\troot\nB\n");
    }

    #[test]
    fn any_control_character_in_any_field_is_refused() {
        for bad in [
            "a\tb", "a\nb", "a\rb", "\0", "a\x1bb", "\x7f", "a\u{85}b", "\x0b", "\x0c",
        ] {
            for pos in 0..3 {
                let mut fields = vec!["W", "/etc/x", "root"];
                fields[pos] = bad;
                let e = Records::new().push(&fields).unwrap_err();
                assert_eq!(e.field, pos, "{bad:?} at {pos}");
                assert!(e.to_string().contains("control character U+"), "{e}");
            }
        }
    }

    #[test]
    fn the_injected_handler_of_the_attack_review_cannot_become_a_record() {
        let mut r = Records::new();
        let owner = "root\t\nH\ttouch /root/PWNED";
        let e = r.push(&["W", "/etc/x", owner, "root", "644"]).unwrap_err();
        assert_eq!((e.field, e.char), (2, '\t'));
        assert!(r.into_bytes().is_empty(), "nothing of the record was kept");
    }

    #[test]
    fn a_long_value_is_quoted_short() {
        let long = format!("{}\n", "x".repeat(1_000_000));
        let e = Records::new().push(&["L", &long]).unwrap_err();
        assert!(e.to_string().len() < 400, "{}", e.to_string().len());
    }
}
