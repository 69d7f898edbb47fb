//! An inventory file's text, kept to point diagnostics at the exact key or value.

use crate::diagnostic::Diagnostic;
use std::ops::Range;
use std::path::PathBuf;
use toml_edit::{ImDocument, Item, Value};

/// One step of a path into a TOML document: `host`, `0`, `relay`, `1`, `nickname`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    Key(String),
    Index(usize),
}

/// Builds a path from string keys and indices: `path!["host", 0, "relay"]`.
#[macro_export]
macro_rules! path {
    ($($seg:expr),* $(,)?) => { vec![$($crate::inventory::source::Seg::from($seg)),*] };
}

impl From<&str> for Seg {
    fn from(s: &str) -> Self {
        Seg::Key(s.to_string())
    }
}
impl From<usize> for Seg {
    fn from(i: usize) -> Self {
        Seg::Index(i)
    }
}

/// A loaded inventory file.
pub struct SourceFile {
    /// As the user would type it (the inventory dir joined with the file name).
    pub path: PathBuf,
    pub text: String,
    doc: Option<ImDocument<String>>,
}

impl SourceFile {
    /// Parses `text`; a syntax error is returned as a located diagnostic.
    pub fn parse(path: PathBuf, text: String) -> (Self, Option<Diagnostic>) {
        match text.parse::<ImDocument<String>>() {
            Ok(doc) => (
                SourceFile {
                    path,
                    text,
                    doc: Some(doc),
                },
                None,
            ),
            Err(e) => {
                let span = e.span().unwrap_or(0..0);
                let msg = e.message().trim().to_string();
                let d = Diagnostic::error(format!("invalid TOML: {msg}"))
                    .help("fix the TOML syntax (https://toml.io)")
                    .at(&path, &text, span);
                (
                    SourceFile {
                        path,
                        text,
                        doc: None,
                    },
                    Some(d),
                )
            }
        }
    }

    /// The span of the value at `path` (or of the deepest part of it that exists).
    pub fn span(&self, path: &[Seg]) -> Range<usize> {
        self.find(path, false)
    }

    /// The span of the key that names the value at `path` (for "unknown key" findings).
    pub fn key_span(&self, path: &[Seg]) -> Range<usize> {
        self.find(path, true)
    }

    fn find(&self, path: &[Seg], want_key: bool) -> Range<usize> {
        match &self.doc {
            Some(doc) => find_in_table(doc.as_table(), path, want_key, 0..0),
            None => 0..0,
        }
    }
}

/// Walks `rest` from table `t`, remembering the deepest span found so a missing leaf still points
/// at its parent.
fn find_in_table(
    t: &toml_edit::Table,
    rest: &[Seg],
    want_key: bool,
    mut best: Range<usize>,
) -> Range<usize> {
    if let Some(s) = t.span() {
        best = s;
    }
    let Some((Seg::Key(k), tail)) = rest.split_first() else {
        return best;
    };
    let Some((key, item)) = t.get_key_value(k) else {
        return best;
    };
    if let Some(s) = key.span() {
        best = s;
    }
    if tail.is_empty() {
        if want_key {
            return best;
        }
        return item.span().unwrap_or(best);
    }
    match (&tail[0], item) {
        (Seg::Index(n), Item::ArrayOfTables(a)) => match a.get(*n) {
            Some(t2) => find_in_table(t2, &tail[1..], want_key, best),
            None => best,
        },
        (Seg::Key(_), Item::Table(t2)) => find_in_table(t2, tail, want_key, best),
        (Seg::Index(n), Item::Value(Value::Array(a))) => {
            a.get(*n).and_then(|v| v.span()).unwrap_or(best)
        }
        (Seg::Key(k2), Item::Value(Value::InlineTable(it))) => match it.get_key_value(k2) {
            Some((key2, _)) if want_key => key2.span().unwrap_or(best),
            Some((_, v)) => v.span().unwrap_or(best),
            None => best,
        },
        _ => best,
    }
}

/// A string written in an inventory file: a value or a key, decoded, with its place.
pub struct Written {
    /// Where it is: for a key, the path of the value it names.
    pub path: Vec<Seg>,
    pub text: String,
    pub span: Range<usize>,
    pub is_key: bool,
}

impl SourceFile {
    /// Every key and string value of the file, at any depth (tables, arrays, inline tables), so a
    /// check on all strings needs no list of fields that could miss a new one.
    pub fn strings(&self) -> Vec<Written> {
        let mut out = vec![];
        if let Some(doc) = &self.doc {
            walk_table(doc.as_table(), &mut vec![], &mut out);
        }
        out
    }
}

fn walk_table(t: &toml_edit::Table, path: &mut Vec<Seg>, out: &mut Vec<Written>) {
    for (k, item) in t.iter() {
        path.push(Seg::Key(k.to_string()));
        if let Some(key) = t.key(k) {
            out.push(Written {
                path: path.clone(),
                text: key.get().to_string(),
                span: key.span().unwrap_or(0..0),
                is_key: true,
            });
        }
        match item {
            Item::Value(v) => walk_value(v, path, out),
            Item::Table(t2) => walk_table(t2, path, out),
            Item::ArrayOfTables(a) => {
                for (i, t2) in a.iter().enumerate() {
                    path.push(Seg::Index(i));
                    walk_table(t2, path, out);
                    path.pop();
                }
            }
            Item::None => {}
        }
        path.pop();
    }
}

fn walk_value(v: &Value, path: &mut Vec<Seg>, out: &mut Vec<Written>) {
    match v {
        Value::String(s) => out.push(Written {
            path: path.clone(),
            text: s.value().clone(),
            span: s.span().unwrap_or(0..0),
            is_key: false,
        }),
        Value::Array(a) => {
            for (i, v2) in a.iter().enumerate() {
                path.push(Seg::Index(i));
                walk_value(v2, path, out);
                path.pop();
            }
        }
        Value::InlineTable(it) => {
            for (k, v2) in it.iter() {
                path.push(Seg::Key(k.to_string()));
                if let Some(key) = it.key(k) {
                    out.push(Written {
                        path: path.clone(),
                        text: key.get().to_string(),
                        span: key.span().unwrap_or(0..0),
                        is_key: true,
                    });
                }
                walk_value(v2, path, out);
                path.pop();
            }
        }
        _ => {}
    }
}
