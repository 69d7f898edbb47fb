//! Moving a relay's `[[host.relay]]` table from one host to another, in the inventory's own files,
//! keeping every comment, key order and blank line (toml_edit, as `cargo add` edits Cargo.toml).
//! The relay's table travels whole with the comments above it; the two hosts may be in different
//! files. Nothing is written here: [`relocate`] returns the new texts, [`patch`] their diff.

use std::path::{Path, PathBuf};
use toml_edit::{DocumentMut, Item, Table};

/// One inventory file the move changes: its path, its text now and after the move.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edit {
    pub path: PathBuf,
    pub old: String,
    pub new: String,
}

/// Where a relay or a host was found: the file and the index of the host in its `[[host]]` array.
struct Place {
    file: usize,
    host: usize,
}

/// The edits that move relay `nick` to host `to`: one per file changed (none when the relay is
/// already on `to`). Errors name the file and say what to do.
pub fn relocate(dir: &Path, nick: &str, to: &str) -> Result<Vec<Edit>, String> {
    let mut files = toml_files(dir)?;
    let mut relay: Option<(Place, usize)> = None;
    let mut target: Option<Place> = None;
    for (fi, (_, _, doc)) in files.iter().enumerate() {
        let Some(hosts) = doc.get("host").and_then(Item::as_array_of_tables) else {
            continue;
        };
        for (hi, h) in hosts.iter().enumerate() {
            if h.get("name").and_then(Item::as_str) == Some(to) {
                target = Some(Place { file: fi, host: hi });
            }
            if let Some(relays) = h.get("relay").and_then(Item::as_array_of_tables) {
                for (ri, r) in relays.iter().enumerate() {
                    if r.get("nickname").and_then(Item::as_str) == Some(nick) {
                        relay = Some((Place { file: fi, host: hi }, ri));
                    }
                }
            }
        }
    }
    let Some((from, ri)) = relay else {
        return Err(format!(
            "no relay `{nick}` in the inventory ({}): nothing to move",
            dir.display()
        ));
    };
    let Some(to_place) = target else {
        return Err(format!("no host `{to}` in the inventory ({}): add it first (`[[host]]` with its name, addresses and uplink), then migrate", dir.display()));
    };
    if from.file == to_place.file && from.host == to_place.host {
        return Ok(vec![]);
    }
    // Take the relay's table out of its host (with the comments above it, its decor).
    let moved = {
        let doc = &mut files[from.file].2;
        let host = host_mut(doc, from.host)?;
        let relays = host
            .get_mut("relay")
            .and_then(Item::as_array_of_tables_mut)
            .ok_or("the relay's host has no relay array")?;
        let t = relays.get(ri).cloned().ok_or("the relay vanished")?;
        relays.remove(ri);
        if relays.is_empty() {
            host.remove("relay");
        }
        t
    };
    // Put it last among the target host's relays, in document order.
    {
        let doc = &mut files[to_place.file].2;
        let after = last_position(host_mut(doc, to_place.host)?);
        let mut moved = moved;
        if let Some(after) = after {
            shift_after(doc.as_table_mut(), after);
            moved.set_position(after + 1);
        }
        let host = host_mut(doc, to_place.host)?;
        let slot = host
            .entry("relay")
            .or_insert_with(|| Item::ArrayOfTables(Default::default()));
        slot.as_array_of_tables_mut()
            .ok_or_else(|| {
                format!("host `{to}`: `relay` is not an array of tables ([[host.relay]])")
            })?
            .push(moved);
    }
    let mut edits = vec![];
    for (fi, (path, old, doc)) in files.into_iter().enumerate() {
        if fi == from.file || fi == to_place.file {
            let new = doc.to_string();
            if new != old {
                edits.push(Edit { path, old, new });
            }
        }
    }
    Ok(edits)
}

/// The inventory's TOML files, in name order, each with its text and its parsed document.
fn toml_files(dir: &Path) -> Result<Vec<(PathBuf, String, DocumentMut)>, String> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    paths.sort();
    let mut files = vec![];
    for path in paths {
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let doc: DocumentMut = text.parse().map_err(|e| {
            format!(
                "{}: not valid TOML ({e}); run `oignon check`",
                path.display()
            )
        })?;
        files.push((path, text, doc));
    }
    Ok(files)
}

/// The edit that removes host `name` (`oignon host retire`): its `[[host]]` table with the
/// comments above it and every `[[host.relay]]` under it. The rest of the file (the hoster, the
/// other hosts and the comments above them) is kept as it is; a file left without hosts keeps its
/// `[hoster]`.
pub fn remove_host(dir: &Path, name: &str) -> Result<Vec<Edit>, String> {
    let mut known = vec![];
    for (path, old, mut doc) in toml_files(dir)? {
        let Some(hosts) = doc.get_mut("host").and_then(Item::as_array_of_tables_mut) else {
            continue;
        };
        let names: Vec<String> = hosts
            .iter()
            .filter_map(|h| h.get("name").and_then(Item::as_str).map(str::to_string))
            .collect();
        let Some(hi) = names.iter().position(|n| n == name) else {
            known.extend(names);
            continue;
        };
        hosts.remove(hi);
        if hosts.is_empty() {
            doc.remove("host");
        }
        let new = doc.to_string();
        return Ok(vec![Edit { path, old, new }]);
    }
    Err(format!(
        "no host `{name}` in the inventory ({}); hosts: {}",
        dir.display(),
        known.join(", ")
    ))
}

/// The edits that remove relay `nick` (`oignon retire`): its table and the comments above it.
pub fn remove(dir: &Path, nick: &str) -> Result<Vec<Edit>, String> {
    for (path, old, mut doc) in toml_files(dir)? {
        let Some(hosts) = doc.get_mut("host").and_then(Item::as_array_of_tables_mut) else {
            continue;
        };
        let mut found = false;
        for h in hosts.iter_mut() {
            let Some(relays) = h.get_mut("relay").and_then(Item::as_array_of_tables_mut) else {
                continue;
            };
            let Some(ri) = relays
                .iter()
                .position(|r| r.get("nickname").and_then(Item::as_str) == Some(nick))
            else {
                continue;
            };
            relays.remove(ri);
            if relays.is_empty() {
                h.remove("relay");
            }
            found = true;
            break;
        }
        if found {
            let new = doc.to_string();
            return Ok(vec![Edit { path, old, new }]);
        }
    }
    Err(format!(
        "no relay `{nick}` in the inventory ({})",
        dir.display()
    ))
}

/// The unified diff of the edits, as `--dry-run` prints it (paths as given).
pub fn patch(edits: &[Edit]) -> String {
    let mut out = String::new();
    for e in edits {
        let name = e.path.display().to_string();
        out.push_str(
            &similar::TextDiff::from_lines(&e.old, &e.new)
                .unified_diff()
                .context_radius(3)
                .header(&format!("a/{name}"), &format!("b/{name}"))
                .to_string(),
        );
    }
    out
}

/// Writes each edit atomically: a temp file in the same directory with the file's permissions,
/// fsync, rename over it, fsync of the directory. A crash leaves each file wholly old or new.
pub fn write(edits: &[Edit]) -> Result<(), String> {
    for e in edits {
        crate::util::write_atomic(
            &e.path,
            e.new.as_bytes(),
            crate::util::Mode::Keep(0o644),
            false,
        )
        .map_err(|x| format!("{}: {x}", e.path.display()))?;
    }
    Ok(())
}

fn host_mut(doc: &mut DocumentMut, i: usize) -> Result<&mut Table, String> {
    doc.get_mut("host")
        .and_then(Item::as_array_of_tables_mut)
        .and_then(|a| a.get_mut(i))
        .ok_or_else(|| "the host vanished from the file while it was edited".to_string())
}

/// The largest document position among a table and the tables below it.
fn last_position(t: &Table) -> Option<usize> {
    let mut best = t.position();
    for (_, item) in t.iter() {
        let sub = match item {
            Item::Table(s) => last_position(s),
            Item::ArrayOfTables(a) => a.iter().filter_map(last_position).max(),
            _ => None,
        };
        best = best.max(sub);
    }
    best
}

/// Every table positioned after `after` moves one place down, to make room.
fn shift_after(t: &mut Table, after: usize) {
    if let Some(p) = t.position() {
        if p > after {
            t.set_position(p + 1);
        }
    }
    for (_, item) in t.iter_mut() {
        match item {
            Item::Table(s) => shift_after(s, after),
            Item::ArrayOfTables(a) => a.iter_mut().for_each(|s| shift_after(s, after)),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(files: &[(&str, &str)]) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for (n, t) in files {
            std::fs::write(d.path().join(n), t).unwrap();
        }
        d
    }

    const GANDI: &str = include_str!("testdata/relocate/gandi.toml");

    #[test]
    fn moving_a_relay_keeps_comments_order_and_layout_golden() {
        let d = dir(&[("gandi.toml", GANDI)]);
        let edits = relocate(d.path(), "ekumen", "ekumen2").unwrap();
        assert_eq!(edits.len(), 1);
        let want = include_str!("testdata/relocate/gandi.moved.toml");
        assert_eq!(edits[0].new, want, "got:\n{}", edits[0].new);
        // The whole file parses and only the relay moved.
        let doc: toml::Table = edits[0].new.parse().unwrap();
        let hosts = doc["host"].as_array().unwrap();
        assert!(hosts[0].get("relay").is_none());
        assert_eq!(hosts[1]["relay"][0]["nickname"].as_str(), Some("ekumen"));
    }

    #[test]
    fn a_relay_moves_between_files_and_the_patch_is_a_unified_diff() {
        let d = dir(&[
            ("gandi.toml", GANDI),
            (
                "zz.toml",
                "[hoster]\nname = \"Z\"\ndomain = \"z.example\"\n\n[[host]]\nname = \"z1\" # new VM\nipv4 = \"192.0.2.99\"\nuplink = \"1 Gbit/s\"\n",
            ),
        ]);
        let edits = relocate(d.path(), "ekumen", "z1").unwrap();
        assert_eq!(edits.len(), 2);
        let z = &edits
            .iter()
            .find(|e| e.path.ends_with("zz.toml"))
            .unwrap()
            .new;
        assert!(z.contains("name = \"z1\" # new VM"), "{z}");
        assert!(
            z.contains(
                "# Identity keys in secrets/relays/ekumen.\n[[host.relay]]\nnickname = \"ekumen\""
            ),
            "{z}"
        );
        let p = patch(&edits);
        assert!(
            p.contains("--- a/") && p.contains("+++ b/") && p.contains("@@"),
            "{p}"
        );
        assert!(
            p.contains("-nickname = \"ekumen\"") && p.contains("+nickname = \"ekumen\""),
            "{p}"
        );
    }

    #[test]
    fn unknown_relay_or_host_is_an_error_saying_what_to_do() {
        let d = dir(&[("gandi.toml", GANDI)]);
        let e = relocate(d.path(), "nope", "ekumen2").unwrap_err();
        assert!(e.contains("no relay `nope` in the inventory"), "{e}");
        let e = relocate(d.path(), "ekumen", "nohost").unwrap_err();
        assert!(
            e.contains("no host `nohost` in the inventory") && e.contains("add it first"),
            "{e}"
        );
        assert!(relocate(d.path(), "ekumen", "ekumen").unwrap().is_empty());
    }

    #[test]
    fn writing_keeps_the_file_mode() {
        use std::os::unix::fs::PermissionsExt as _;
        let d = dir(&[("gandi.toml", GANDI)]);
        let p = d.path().join("gandi.toml");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        write(&relocate(d.path(), "ekumen", "ekumen2").unwrap()).unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        assert!(std::fs::read_to_string(&p)
            .unwrap()
            .ends_with("orport = 443   # the one port Gandi lets through\n"));
    }

    #[test]
    fn removing_a_relay_keeps_the_rest() {
        let d = dir(&[("gandi.toml", GANDI)]);
        let e = remove(d.path(), "ekumen").unwrap();
        assert!(!e[0].new.contains("nickname = \"ekumen\""));
        assert!(e[0].new.contains("name = \"ekumen2\""));
        assert!(remove(d.path(), "nope").is_err());
    }

    const TETANEUTRAL: &str = include_str!("testdata/relocate/tetaneutral.toml");

    #[test]
    fn removing_a_host_takes_its_relays_and_keeps_the_rest_golden() {
        let d = dir(&[("gandi.toml", GANDI), ("tetaneutral.toml", TETANEUTRAL)]);
        let e = remove_host(d.path(), "marylou").unwrap();
        assert_eq!(e.len(), 1);
        assert!(e[0].path.ends_with("tetaneutral.toml"));
        assert_eq!(e[0].old, TETANEUTRAL);
        let want = include_str!("testdata/relocate/tetaneutral.retired.toml");
        assert_eq!(e[0].new, want, "got:\n{}", e[0].new);
        let p = patch(&e);
        assert!(
            p.contains("-name = \"marylou\"          # two relays"),
            "{p}"
        );
        assert!(p.contains("-nickname = \"marylou2\""), "{p}");
        assert!(
            !p.lines()
                .any(|l| l.starts_with('+') && !l.starts_with("+++")),
            "only lines removed:\n{p}"
        );
    }

    #[test]
    fn removing_the_last_host_of_a_file_keeps_its_hoster() {
        let d = dir(&[("tetaneutral.toml", TETANEUTRAL)]);
        let e = remove_host(d.path(), "marylou").unwrap();
        write(&e).unwrap();
        let e = remove_host(d.path(), "marylou3").unwrap();
        let doc: toml::Table = e[0].new.parse().unwrap();
        assert!(doc.get("host").is_none(), "{}", e[0].new);
        assert_eq!(doc["hoster"]["name"].as_str(), Some("tetaneutral.net"));
        assert!(e[0]
            .new
            .starts_with("# tetaneutral.net hosts two of our VMs"));
    }

    #[test]
    fn removing_an_unknown_host_names_the_hosts_there_are() {
        let d = dir(&[("gandi.toml", GANDI), ("tetaneutral.toml", TETANEUTRAL)]);
        let e = remove_host(d.path(), "nope").unwrap_err();
        assert!(
            e.contains("no host `nope` in the inventory")
                && e.contains("hosts: ekumen, ekumen2, marylou, marylou3"),
            "{e}"
        );
        // A relay's nickname is not a host.
        assert!(remove_host(d.path(), "marylou1").is_err());
    }
}
