//! Located, human-first error reports: what is wrong, where (file:line:col and the field), what to do.
//!
//! Every user-input problem oignon finds becomes a [`Diagnostic`]. They are collected (never the first
//! one only) and rendered in the rustc style, with the offending source line and a caret under the span.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// How bad a finding is: errors fail `oignon check`, warnings are shown but do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// One finding about user input.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    /// The file the finding is about, as the user named it (relative to where oignon runs).
    pub file: Option<PathBuf>,
    /// 1-based line and column of the span start.
    pub line: usize,
    pub col: usize,
    /// The dotted field path, e.g. `host.ekumen.relay.ekumen.orport`.
    pub field: Option<String>,
    pub message: String,
    pub help: Option<String>,
    #[serde(skip)]
    snippet: Option<Snippet>,
}

/// Characters of a source line shown under a finding.
const SNIPPET_CHARS: usize = 120;

#[derive(Debug, Clone)]
struct Snippet {
    text: String,
    caret_col: usize,
    caret_len: usize,
}

impl Diagnostic {
    /// A finding with no location yet; see [`Diagnostic::at`].
    pub fn error(message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            file: None,
            line: 0,
            col: 0,
            field: None,
            message: message.into(),
            help: None,
            snippet: None,
        }
    }

    pub fn warning(message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(message)
        }
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// Locates the finding at a byte span of `text`, the content of `file`.
    pub fn at(mut self, file: &Path, text: &str, span: Range<usize>) -> Self {
        let start = floor_char_boundary(text, span.start.min(text.len()));
        let end = floor_char_boundary(text, span.end.min(text.len())).max(start);
        let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
        let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
        let line_text = &text[line_start..line_end];
        let line = text[..start].matches('\n').count() + 1;
        let col = text[line_start..start].chars().count() + 1;
        let caret_len = text[start..end.min(line_end)].chars().count().max(1);
        self.file = Some(file.to_path_buf());
        self.line = line;
        self.col = col;
        // A line of a megabyte must not print a megabyte: show a window around the caret.
        let text: Vec<char> = line_text.trim_end_matches('\r').chars().collect();
        let (text, caret_col, caret_len) = if text.len() <= SNIPPET_CHARS {
            (text.iter().collect(), col, caret_len)
        } else {
            let from = (col - 1).saturating_sub(SNIPPET_CHARS / 3);
            let to = (from + SNIPPET_CHARS).min(text.len());
            let mut shown: String = if from > 0 {
                "…".into()
            } else {
                String::new()
            };
            shown.extend(&text[from..to]);
            if to < text.len() {
                shown.push('…');
            }
            let caret_col = col - from + usize::from(from > 0);
            (
                shown,
                caret_col,
                caret_len.min(to - (col - 1).min(to)).max(1),
            )
        };
        self.snippet = Some(Snippet {
            text,
            caret_col,
            caret_len,
        });
        self
    }

    /// Locates the finding at a file with no useful span (e.g. an unreadable file).
    pub fn in_file(mut self, file: &Path) -> Self {
        self.file = Some(file.to_path_buf());
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Coloured as rustc does when `--color` (or a terminal) says so; diagnostics go to stderr.
        let label = match self.severity {
            Severity::Error => console::style("error").for_stderr().red().bold(),
            Severity::Warning => console::style("warning").for_stderr().yellow().bold(),
        };
        writeln!(
            f,
            "{label}{} {}",
            console::style(":").for_stderr().bold(),
            console::style(&self.message).for_stderr().bold()
        )?;
        let gutter = " ".repeat(self.line.to_string().len());
        if let Some(file) = &self.file {
            write!(f, "{gutter}--> {}", file.display())?;
            if self.line > 0 {
                write!(f, ":{}:{}", self.line, self.col)?;
            }
            if let Some(field) = &self.field {
                write!(f, " (field `{field}`)")?;
            }
            writeln!(f)?;
        } else if let Some(field) = &self.field {
            writeln!(f, "{gutter}--> field `{field}`")?;
        }
        if let Some(s) = &self.snippet {
            writeln!(f, "{gutter} |")?;
            writeln!(f, "{} | {}", self.line, s.text)?;
            let pad: String = s
                .text
                .chars()
                .take(s.caret_col - 1)
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            writeln!(
                f,
                "{gutter} | {pad}{}",
                console::style("^".repeat(s.caret_len))
                    .for_stderr()
                    .red()
                    .bold()
            )?;
        }
        if let Some(help) = &self.help {
            writeln!(
                f,
                "{gutter} = {} {help}",
                console::style("help:").for_stderr().cyan().bold()
            )?;
        }
        Ok(())
    }
}

/// The closest candidate to `word`, if one is close enough to be a likely typo.
pub fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| {
            (
                strsim::jaro_winkler(&word.to_lowercase(), &c.to_lowercase()),
                c,
            )
        })
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_file_line_col_and_caret() {
        let text = "[fleet]\nname = \"x\"\nnikname = 3\n";
        let d = Diagnostic::error("unknown key `nikname`")
            .field("nikname")
            .help("did you mean `nickname`?")
            .at(Path::new("inv/a.toml"), text, 19..26);
        let out = d.to_string();
        assert!(
            out.contains("--> inv/a.toml:3:1 (field `nikname`)"),
            "{out}"
        );
        assert!(out.contains("3 | nikname = 3\n  | ^^^^^^^"), "{out}");
        assert!(out.contains("= help: did you mean `nickname`?"), "{out}");
    }

    #[test]
    fn spans_past_the_end_or_inside_a_char_do_not_panic() {
        let text = "é = 1";
        let d = Diagnostic::error("x").at(Path::new("f"), text, 1..99);
        assert_eq!(d.line, 1);
        let _ = d.to_string();
    }

    #[test]
    fn a_megabyte_line_shows_a_window_around_the_caret() {
        let text = format!("url = \"{}\"", "x".repeat(1_000_000));
        let d = Diagnostic::error("x").at(Path::new("f"), &text, 6..text.len());
        let out = d.to_string();
        assert!(out.len() < 600, "{} bytes", out.len());
        assert!(out.contains("1 | url = \"xxx"), "{out}");
    }

    #[test]
    fn suggests_only_close_words() {
        assert_eq!(suggest("nikname", ["nickname", "orport"]), Some("nickname"));
        assert_eq!(suggest("zzz", ["nickname", "orport"]), None);
    }
}
