//! Reading the inventory directory: every `*.toml` file, parsed, deserialized, with every unknown key
//! reported (not just the first) and every type error located.

use super::file::{FleetMeta, Host, Hoster, InventoryFile, Relay, Settings};
use super::introspect::fields_of;
use super::source::{Seg, SourceFile};
use crate::diagnostic::{suggest, Diagnostic};
use std::path::Path;

/// The parsed files of an inventory, and what was wrong with them.
pub struct Loaded {
    pub sources: Vec<SourceFile>,
    /// Parsed content, with the index of its source.
    pub files: Vec<(usize, InventoryFile)>,
    pub diagnostics: Vec<Diagnostic>,
}

/// Reads every `*.toml` file directly in `dir`, in name order (so output is stable).
pub fn load_dir(dir: &Path) -> Result<Loaded, Box<Diagnostic>> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        Box::new(
            Diagnostic::error(format!(
                "cannot read the inventory directory {}: {e}",
                dir.display()
            ))
            .help("pass the inventory with --inventory DIR (default: inventory/)"),
        )
    })?;
    let mut paths: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    paths.sort();
    // A `*.toml` that is not a regular file is not skipped in silence: a link that leads nowhere
    // (or in a loop), or a directory, would drop hosts from the fleet without a word.
    let mut odd = vec![];
    paths.retain(|p| match std::fs::metadata(p) {
        Ok(m) if m.is_file() => true,
        Ok(m) => {
            odd.push(
                Diagnostic::error(format!(
                    "{} is {}, not a TOML file",
                    p.display(),
                    if m.is_dir() { "a directory" } else { "not a regular file" }
                ))
                .in_file(p)
                .help("the inventory reads every *.toml directly in its directory: rename it, or move it out"),
            );
            false
        }
        Err(e) => {
            let what = match std::fs::symlink_metadata(p) {
                Ok(l) if l.file_type().is_symlink() => format!(
                    "is a symbolic link that leads nowhere readable ({e})"
                ),
                _ => format!("cannot be read ({e})"),
            };
            odd.push(
                Diagnostic::error(format!("{} {what}", p.display()))
                    .in_file(p)
                    .help("fix the link or remove it: every *.toml of the inventory is read"),
            );
            false
        }
    });
    if paths.is_empty() && odd.is_empty() {
        return Err(Box::new(
            Diagnostic::error(format!(
                "the inventory directory {} holds no .toml file",
                dir.display()
            ))
            .help("an inventory is a directory of TOML files; see README.md, \"The inventory\""),
        ));
    }
    let mut loaded = Loaded {
        sources: vec![],
        files: vec![],
        diagnostics: odd,
    };
    for path in paths {
        match std::fs::read(&path) {
            Err(e) => loaded.diagnostics.push(
                Diagnostic::error(format!("cannot read {}: {e}", path.display())).in_file(&path),
            ),
            Ok(bytes) => match String::from_utf8(bytes) {
                Err(e) => {
                    let text = String::from_utf8_lossy(e.as_bytes()).into_owned();
                    let at = e.utf8_error().valid_up_to();
                    loaded.diagnostics.push(
                        Diagnostic::error("the file is not valid UTF-8")
                            .help("TOML files must be UTF-8; re-save the file as UTF-8")
                            .at(&path, &text, at..at + 1),
                    );
                }
                Ok(text) => load_text(&mut loaded, path.clone(), text),
            },
        }
    }
    Ok(loaded)
}

/// Parses one file's text into `loaded` (public for tests and fuzzing).
pub fn load_text(loaded: &mut Loaded, path: std::path::PathBuf, text: String) {
    let (source, syntax) = SourceFile::parse(path, text);
    let idx = loaded.sources.len();
    if let Some(d) = syntax {
        loaded.diagnostics.push(d);
        loaded.sources.push(source);
        return;
    }
    loaded
        .diagnostics
        .extend(super::text::check_strings(&source));
    let mut unknown: Vec<Vec<Seg>> = vec![];
    let result: Result<InventoryFile, _> = {
        let de = toml::Deserializer::new(&source.text);
        serde_ignored::deserialize(de, |p| unknown.push(to_segs(&p)))
    };
    for path in unknown {
        loaded.diagnostics.push(unknown_key(&source, &path));
    }
    match result {
        Ok(file) => loaded.files.push((idx, file)),
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            let msg = e.message().trim().to_string();
            // serde says "missing field `x`": for a TOML file, it is a key to add.
            let d = match msg.strip_prefix("missing field ") {
                Some(key) => Diagnostic::error(format!("missing key {key} in this table"))
                    .help(format!("add {key} (see README.md, \"The inventory\")")),
                None => Diagnostic::error(format!("wrong value: {msg}"))
                    .help("see README.md, \"The inventory\", for each key's type"),
            };
            loaded
                .diagnostics
                .push(d.at(&source.path, &source.text, span));
        }
    }
    loaded.sources.push(source);
}

fn to_segs(p: &serde_ignored::Path<'_>) -> Vec<Seg> {
    use serde_ignored::Path as P;
    match p {
        P::Root => vec![],
        P::Seq { parent, index } => {
            let mut v = to_segs(parent);
            v.push(Seg::Index(*index));
            v
        }
        P::Map { parent, key } => {
            let mut v = to_segs(parent);
            v.push(Seg::Key(key.clone()));
            v
        }
        P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => {
            to_segs(parent)
        }
    }
}

/// The keys accepted where `path` points, by the shape of the path.
fn known_keys(parent: &[Seg]) -> &'static [&'static str] {
    let keys: Vec<&str> = parent
        .iter()
        .filter_map(|s| match s {
            Seg::Key(k) => Some(k.as_str()),
            Seg::Index(_) => None,
        })
        .collect();
    match keys.as_slice() {
        [] => fields_of::<InventoryFile>(),
        ["fleet"] => fields_of::<FleetMeta>(),
        ["hoster"] => fields_of::<Hoster>(),
        ["host"] => fields_of::<Host>(),
        ["host", "relay"] => fields_of::<Relay>(),
        [.., "defaults"] => fields_of::<Settings>(),
        [.., "dos_firewall"] => fields_of::<super::file::DosFirewallSetting>(),
        _ => &[],
    }
}

fn unknown_key(source: &SourceFile, path: &[Seg]) -> Diagnostic {
    let Some((Seg::Key(key), parent)) = path.split_last() else {
        return Diagnostic::error("unexpected value").at(
            &source.path,
            &source.text,
            source.span(path),
        );
    };
    let known = known_keys(parent);
    let dotted = dotted(path);
    let help = match suggest(key, known.iter().copied()) {
        Some(s) => format!("did you mean `{s}`?"),
        None if known.is_empty() => "remove it".to_string(),
        None => format!("known keys here: {}", known.join(", ")),
    };
    Diagnostic::error(format!("unknown key {}", super::text::shown(key)))
        .field(dotted)
        .help(help)
        .at(&source.path, &source.text, source.key_span(path))
}

/// `host.0.relay.1.nickname`-style rendering of a path. Keys are the user's text: control
/// characters are escaped and long keys cut, so a message never carries them raw.
pub fn dotted(path: &[Seg]) -> String {
    path.iter()
        .map(|s| match s {
            Seg::Key(k) => super::text::escaped_cut(k),
            Seg::Index(i) => i.to_string(),
        })
        .collect::<Vec<_>>()
        .join(".")
}
