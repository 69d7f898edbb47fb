//! Format-preserving edits of the inventory: `hoster add` writes a new hoster file, `host add`
//! appends a `[[host]]` with its `[[host.relay]]`s to its hoster's file (toml_edit: every other
//! byte of the file, comments and layout included, stays as written).
//!
//! An edit is made in memory, then checked by loading the whole inventory with the edited file in
//! place through the same loader and resolver as `oignon check` ([`super::load_texts`]): what
//! `check` would refuse is refused before anything is written. Only then is the one file written,
//! atomically (a temporary file in the same directory, fsync, rename).

use super::text::shown as q;
use crate::diagnostic::Diagnostic;
use std::path::{Path, PathBuf};

/// One edited (or new) inventory file, not written yet.
#[derive(Debug)]
pub struct Edit {
    pub path: PathBuf,
    /// The file's whole new text.
    pub text: String,
    /// Whether the file is new.
    pub created: bool,
    /// The relays the edit adds, as (nickname, ORPort).
    pub relays: Vec<(String, u16)>,
    /// The whole inventory with the edit in place, as (path, text): what was checked, for the
    /// later stages' checks (render, tor) before anything is written.
    pub inventory: Vec<(PathBuf, String)>,
}

/// Why an edit was refused: a message, or what the loader found in the edited inventory.
#[derive(Debug)]
pub enum EditError {
    Refused(String),
    /// The edited inventory fails the checks of `oignon check` (errors only).
    Invalid(Vec<Diagnostic>),
}

impl From<String> for EditError {
    fn from(s: String) -> Self {
        EditError::Refused(s)
    }
}

/// What `host add` adds.
#[derive(Debug, Clone, Default)]
pub struct NewHost {
    pub name: String,
    /// The hoster's name or domain (case-insensitive).
    pub hoster: String,
    pub ipv4: String,
    pub ipv6: Option<String>,
    pub uplink: String,
    /// How many relay instances (at least 1).
    pub relays: usize,
    /// Nicknames chosen by the user; empty: the fleet's pattern (see [`nicknames_for`]).
    pub nicknames: Vec<String>,
    pub ssh: Option<String>,
    /// `grub` or `none`; None leaves the key out (the default, grub).
    pub boot: Option<String>,
}

/// The inventory's `*.toml` files directly in `dir`, in name order, with their text.
fn read_texts(dir: &Path) -> Result<Vec<(PathBuf, String)>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        format!(
            "cannot read the inventory directory {}: {e} (pass it with --inventory DIR)",
            dir.display()
        )
    })?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            std::fs::read_to_string(&p)
                .map(|t| (p.clone(), t))
                .map_err(|e| format!("cannot read {}: {e}", p.display()))
        })
        .collect()
}

/// The inventory as it is now, which must load without errors: an edit is checked against it.
fn current(dir: &Path) -> Result<(Vec<(PathBuf, String)>, super::Fleet), EditError> {
    let inv = super::load(dir);
    let errors: Vec<Diagnostic> = inv
        .diagnostics
        .iter()
        .filter(|d| d.is_error())
        .cloned()
        .collect();
    let Some(fleet) = inv.fleet.filter(|_| errors.is_empty()) else {
        let mut errors = errors;
        errors.push(
            Diagnostic::error(format!(
                "the inventory in {} has errors already; nothing was changed",
                dir.display()
            ))
            .help("fix them first (`oignon check` lists them), then run this again"),
        );
        return Err(EditError::Invalid(errors));
    };
    Ok((read_texts(dir)?, fleet))
}

/// The file name of a hoster's file: its domain without the top-level label (`aquilenet.fr` →
/// `aquilenet.toml`, as `gandi.net` → `gandi.toml` in the shipped fleet).
pub fn hoster_file_name(domain: &str) -> String {
    let d = domain.trim().trim_end_matches('.').to_ascii_lowercase();
    let stem = match d.rsplit_once('.') {
        Some((s, _)) if !s.is_empty() => s.to_string(),
        _ => d,
    };
    let slug: String = stem
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    format!("{}.toml", slug.trim_matches('-'))
}

/// `hoster add NAME --domain DOMAIN`: a new file with `[hoster]` and a commented
/// `[hoster.defaults]`.
pub fn hoster_add(dir: &Path, name: &str, domain: &str) -> Result<Edit, EditError> {
    let (mut texts, fleet) = current(dir)?;
    for h in &fleet.hosts {
        if h.hoster.eq_ignore_ascii_case(name) || h.hoster_domain.eq_ignore_ascii_case(domain) {
            return Err(EditError::Refused(format!(
                "hoster {} ({}) is already in the inventory; add its hosts with `oignon host add NAME --hoster {}`",
                q(&h.hoster),
                h.hoster_domain,
                h.hoster_domain
            )));
        }
    }
    // A hoster without hosts yet is not in `fleet.hosts`: look at the files too.
    for (p, t) in &texts {
        if let Ok(doc) = t.parse::<toml_edit::DocumentMut>() {
            let field = |k: &str| {
                doc.get("hoster")
                    .and_then(|h| h.get(k))
                    .and_then(|v| v.as_str())
                    .map(str::to_string)
            };
            let same = |k: &str, v: &str| field(k).is_some_and(|x| x.eq_ignore_ascii_case(v));
            if same("name", name) || same("domain", domain) {
                return Err(EditError::Refused(format!(
                    "hoster {} is already in {}; add its hosts with `oignon host add NAME --hoster {}`",
                    q(name),
                    p.display(),
                    q(domain)
                )));
            }
        }
    }
    let file = hoster_file_name(domain);
    if file == ".toml" || file == "fleet.toml" {
        return Err(EditError::Refused(format!(
            "domain {} does not name a hoster file; write the hoster's domain, such as aquilenet.fr",
            q(domain)
        )));
    }
    let path = dir.join(&file);
    if path.exists() || std::fs::symlink_metadata(&path).is_ok() {
        return Err(EditError::Refused(format!(
            "{} exists already; nothing was changed (one file per hoster: edit it, or remove it first)",
            path.display()
        )));
    }
    let text = format!(
        "[hoster]\nname = {}\ndomain = {}\n\n\
         # Settings for every host of this hoster, over the fleet's [defaults] (README.md, \"The\n\
         # inventory\"). Uncomment what differs here, for example:\n\
         # [hoster.defaults]\n\
         # exit_policy_prepend = [\"reject *:22\"]\n\
         # kernel_params_remove = [\"mitigations=auto,nosmt\"]\n",
        toml_edit::Value::from(name),
        toml_edit::Value::from(domain),
    );
    texts.push((path.clone(), text.clone()));
    validate(texts.clone())?;
    Ok(Edit {
        path,
        text,
        created: true,
        relays: vec![],
        inventory: texts,
    })
}

/// The nicknames the fleet's pattern gives `n` relays on host `host`: the host's name (letters
/// and digits only) for one relay (`ekumen`), the name and 1, 2, … for several (`marcuse1`,
/// `marcuse2`), cut to tor's 19 characters.
pub fn nicknames_for(host: &str, n: usize) -> Vec<String> {
    let base: String = host.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    if n <= 1 {
        return vec![base.chars().take(19).collect()];
    }
    (1..=n)
        .map(|i| {
            let suffix = i.to_string();
            let keep = 19usize.saturating_sub(suffix.len());
            format!("{}{suffix}", base.chars().take(keep).collect::<String>())
        })
        .collect()
}

/// The fleet's ORPort convention: 443 for a host's first relay, then 9001, 9002, …
pub fn orports_for(n: usize) -> Vec<u16> {
    (0..n)
        .map(|i| if i == 0 { 443 } else { 9000 + i as u16 })
        .collect()
}

/// `host add`: a `[[host]]` with its relays appended to the hoster's file.
pub fn host_add(dir: &Path, h: &NewHost) -> Result<Edit, EditError> {
    let (mut texts, fleet) = current(dir)?;
    let n = if h.nicknames.is_empty() {
        h.relays.max(1)
    } else {
        h.nicknames.len()
    };
    if !h.nicknames.is_empty() && h.relays != 0 && h.relays != h.nicknames.len() {
        return Err(EditError::Refused(format!(
            "--relays {} but {} --nickname given; give one --nickname per relay, or leave --relays out",
            h.relays,
            h.nicknames.len()
        )));
    }
    if n > 64 {
        return Err(EditError::Refused(format!(
            "--relays {n}: more relay instances than a host can usefully run; the fleet runs 1 or 2 per host"
        )));
    }
    let nicks = if h.nicknames.is_empty() {
        nicknames_for(&h.name, n)
    } else {
        h.nicknames.clone()
    };
    for nick in &nicks {
        if let Some((host, r)) = fleet
            .hosts
            .iter()
            .flat_map(|x| x.relays.iter().map(move |r| (x, r)))
            .find(|(_, r)| r.nickname.eq_ignore_ascii_case(nick))
        {
            return Err(EditError::Refused(format!(
                "nickname {} is taken by relay {} on host {}; nicknames are unique fleet-wide: choose others with --nickname (one per relay)",
                q(nick),
                r.nickname,
                host.name
            )));
        }
    }
    let Some(i) = texts.iter().position(|(_, t)| {
        t.parse::<toml_edit::DocumentMut>().is_ok_and(|doc| {
            let hoster = doc.get("hoster");
            ["name", "domain"].iter().any(|k| {
                hoster
                    .and_then(|x| x.get(k))
                    .and_then(|v| v.as_str())
                    .is_some_and(|v| v.eq_ignore_ascii_case(&h.hoster))
            })
        })
    }) else {
        let mut known: Vec<String> = fleet
            .hosts
            .iter()
            .map(|x| format!("{} ({})", x.hoster, x.hoster_domain))
            .collect();
        known.dedup();
        return Err(EditError::Refused(format!(
            "no hoster named {} in the inventory; hosters: {}; add one with `oignon hoster add NAME --domain DOMAIN`",
            q(&h.hoster),
            known.join(", ")
        )));
    };
    let (path, old) = texts[i].clone();
    let mut doc: toml_edit::DocumentMut = old
        .parse()
        .map_err(|e| EditError::Refused(format!("{}: not TOML: {e}", path.display())))?;
    let ports = orports_for(n);
    let mut table = toml_edit::Table::new();
    table.insert("name", toml_edit::value(h.name.as_str()));
    if let Some(ssh) = &h.ssh {
        table.insert("ssh", toml_edit::value(ssh.as_str()));
    }
    table.insert("ipv4", toml_edit::value(h.ipv4.as_str()));
    if let Some(v6) = &h.ipv6 {
        table.insert("ipv6", toml_edit::value(v6.as_str()));
    }
    table.insert("uplink", toml_edit::value(h.uplink.as_str()));
    if let Some(boot) = &h.boot {
        table.insert("boot", toml_edit::value(boot.as_str()));
    }
    let mut relays = toml_edit::ArrayOfTables::new();
    for (nick, port) in nicks.iter().zip(&ports) {
        let mut r = toml_edit::Table::new();
        r.insert("nickname", toml_edit::value(nick.as_str()));
        r.insert("orport", toml_edit::value(i64::from(*port)));
        // A blank line before each `[[host.relay]]`, as in the shipped files.
        r.decor_mut().set_prefix("\n");
        relays.push(r);
    }
    table.insert("relay", toml_edit::Item::ArrayOfTables(relays));
    // Whatever ends the file (comments, such as hoster add's commented [hoster.defaults]) stays
    // where it is, before the new table: the old text is then a prefix of the new, byte for byte.
    let trailing = doc.trailing().as_str().unwrap_or("").to_string();
    let sep = if trailing.is_empty() || trailing.ends_with('\n') {
        ""
    } else {
        "\n"
    };
    table.decor_mut().set_prefix(format!("{trailing}{sep}\n"));
    doc.set_trailing("");
    match doc.get_mut("host") {
        None => {
            let mut hosts = toml_edit::ArrayOfTables::new();
            hosts.push(table);
            doc.insert("host", toml_edit::Item::ArrayOfTables(hosts));
        }
        Some(toml_edit::Item::ArrayOfTables(hosts)) => hosts.push(table),
        Some(_) => {
            return Err(EditError::Refused(format!(
                "{}: `host` is not written as [[host]] tables; add the host by hand",
                path.display()
            )))
        }
    }
    let text = doc.to_string();
    texts[i].1 = text.clone();
    validate(texts.clone())?;
    Ok(Edit {
        path,
        text,
        created: false,
        relays: nicks.into_iter().zip(ports).collect(),
        inventory: texts,
    })
}

/// Loads the edited inventory in memory, as `check` would: refused on any error.
fn validate(texts: Vec<(PathBuf, String)>) -> Result<(), EditError> {
    let inv = super::load_texts(texts);
    let errors: Vec<Diagnostic> = inv
        .diagnostics
        .into_iter()
        .filter(|d| d.is_error())
        .collect();
    if !errors.is_empty() || inv.fleet.is_none() {
        return Err(EditError::Invalid(errors));
    }
    Ok(())
}

/// Writes the edit atomically: a temporary file in the same directory (the old file's mode, or
/// 0644 for a new one), fsync'd, renamed over the file. A crash leaves the old file or the new.
pub fn write(edit: &Edit) -> Result<(), String> {
    crate::util::write_atomic(
        &edit.path,
        edit.text.as_bytes(),
        crate::util::Mode::Keep(0o644),
        // Never replace a file that appeared meanwhile.
        edit.created,
    )
    .map_err(|e| format!("cannot write {}: {e}", edit.path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A copy of the shipped inventory in a temporary directory.
    fn shipped() -> tempfile::TempDir {
        let tmp = tempfile::tempdir().unwrap();
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("inventory");
        for e in std::fs::read_dir(&src).unwrap() {
            let p = e.unwrap().path();
            std::fs::copy(&p, tmp.path().join(p.file_name().unwrap())).unwrap();
        }
        tmp
    }

    fn snapshot(dir: &Path) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .map(|p| {
                (
                    p.file_name().unwrap().to_string_lossy().into_owned(),
                    std::fs::read_to_string(&p).unwrap(),
                )
            })
            .collect();
        v.sort();
        v
    }

    fn aquila() -> NewHost {
        NewHost {
            name: "aquila".into(),
            hoster: "aquilenet.fr".into(),
            ipv4: "192.0.2.50".into(),
            ipv6: Some("2001:db8:50::1".into()),
            uplink: "200 Mbit/s".into(),
            relays: 2,
            ..NewHost::default()
        }
    }

    fn refused(r: Result<Edit, EditError>) -> String {
        match r {
            Err(EditError::Refused(m)) => m,
            Err(EditError::Invalid(d)) => d.iter().map(|d| d.to_string()).collect(),
            Ok(e) => panic!("accepted: {}", e.text),
        }
    }

    #[test]
    fn hoster_then_host_add_gives_the_golden_file_and_leaves_every_other_file_byte_for_byte() {
        let tmp = shipped();
        let before = snapshot(tmp.path());
        let e = hoster_add(tmp.path(), "Aquilenet", "aquilenet.fr").unwrap();
        assert_eq!(e.path, tmp.path().join("aquilenet.toml"));
        write(&e).unwrap();
        let e = host_add(tmp.path(), &aquila()).unwrap();
        assert_eq!(
            e.relays,
            vec![("aquila1".to_string(), 443), ("aquila2".to_string(), 9001)]
        );
        write(&e).unwrap();
        let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/aquilenet.toml");
        let got = std::fs::read_to_string(tmp.path().join("aquilenet.toml")).unwrap();
        if std::env::var_os("OIGNON_BLESS").is_some() {
            std::fs::write(&golden, &got).unwrap();
        }
        assert_eq!(got, std::fs::read_to_string(&golden).unwrap());
        let after: Vec<_> = snapshot(tmp.path())
            .into_iter()
            .filter(|(n, _)| n != "aquilenet.toml")
            .collect();
        assert_eq!(after, before, "another inventory file changed");
        // check's loader accepts the result, with the new relays in it.
        let inv = crate::inventory::load(tmp.path());
        assert!(
            inv.diagnostics.iter().all(|d| !d.is_error()),
            "{:?}",
            inv.diagnostics
        );
        let fleet = inv.fleet.unwrap();
        let h = fleet.hosts.iter().find(|h| h.name == "aquila").unwrap();
        assert_eq!(h.hoster, "Aquilenet");
        assert_eq!(h.relays.len(), 2);
        assert_eq!(h.relays[1].metrics_port, Some(9036));
    }

    #[test]
    fn host_add_keeps_the_comments_and_layout_of_the_hoster_file_it_edits() {
        let tmp = shipped();
        let p = tmp.path().join("gandi.toml");
        let old = "# Gandi: the VM that was DDoSed.\n[hoster]\nname   = \"Gandi\"   # aligned\ndomain = \"gandi.net\"\n\n[[host]]\nname = \"ekumen\"\nipv4 = \"192.0.2.20\"\nuplink = \"25 Mbit/s\"\n# one relay\n[[host.relay]]\nnickname = \"ekumen\"\norport = 443";
        std::fs::write(&p, old).unwrap();
        let mut h = aquila();
        h.name = "ekumen2".into();
        h.hoster = "Gandi".into();
        h.relays = 1;
        let e = host_add(tmp.path(), &h).unwrap();
        assert!(e.text.starts_with(old), "{}", e.text);
        assert!(
            e.text.contains("\n[[host]]\nname = \"ekumen2\""),
            "{}",
            e.text
        );
        assert_eq!(e.relays, vec![("ekumen2".to_string(), 443)]);
        write(&e).unwrap();
        assert!(crate::inventory::load(tmp.path()).fleet.is_some());
    }

    #[test]
    fn a_nickname_taken_anywhere_in_the_fleet_is_refused() {
        let tmp = shipped();
        let mut h = aquila();
        h.hoster = "Globenet".into();
        h.nicknames = vec!["Marcuse1".into()];
        h.relays = 0;
        let m = refused(host_add(tmp.path(), &h));
        assert!(
            m.contains("nickname `Marcuse1` is taken by relay marcuse1 on host marcuse"),
            "{m}"
        );
    }

    #[test]
    fn what_check_refuses_is_refused_and_nothing_is_written() {
        let tmp = shipped();
        let before = snapshot(tmp.path());
        let cases: Vec<(NewHost, &str)> = vec![
            (
                NewHost {
                    ipv4: "192.0.2.300".into(),
                    ..aquila()
                },
                "is not an IPv4 address",
            ),
            (
                NewHost {
                    uplink: "200 Mbps".into(),
                    ..aquila()
                },
                "bad uplink",
            ),
            (
                NewHost {
                    name: "marcuse".into(),
                    nicknames: vec!["fresh1".into()],
                    relays: 0,
                    ..aquila()
                },
                "host `marcuse` is defined twice",
            ),
            (
                NewHost {
                    nicknames: vec!["bad-nick".into()],
                    relays: 0,
                    ..aquila()
                },
                "bad-nick",
            ),
            (
                NewHost {
                    ssh: Some("-oProxyCommand=x".into()),
                    ..aquila()
                },
                "is not a destination ssh can take safely",
            ),
            (
                NewHost {
                    boot: Some("lilo".into()),
                    ..aquila()
                },
                "unknown boot loader",
            ),
        ];
        for (mut h, want) in cases {
            h.hoster = "tetaneutral.net".into();
            let m = refused(host_add(tmp.path(), &h));
            assert!(m.contains(want), "want {want:?} in:\n{m}");
        }
        assert_eq!(snapshot(tmp.path()), before);
    }

    #[test]
    fn an_unknown_hoster_is_refused_with_the_known_ones() {
        let tmp = shipped();
        let m = refused(host_add(tmp.path(), &aquila()));
        assert!(m.contains("no hoster named `aquilenet.fr`"), "{m}");
        assert!(m.contains("Gandi (gandi.net)"), "{m}");
        assert!(m.contains("oignon hoster add"), "{m}");
    }

    #[test]
    fn hoster_add_refuses_a_known_hoster_a_bad_domain_and_an_existing_file() {
        let tmp = shipped();
        let m = refused(hoster_add(tmp.path(), "gandi", "gandi.example"));
        assert!(m.contains("already in the inventory"), "{m}");
        let m = refused(hoster_add(tmp.path(), "Other", "GANDI.NET"));
        assert!(m.contains("already in the inventory"), "{m}");
        let m = refused(hoster_add(tmp.path(), "Bad", "not a domain.fr"));
        assert!(m.contains("hoster domain"), "{m}");
        std::fs::write(tmp.path().join("aquilenet.toml"), "# mine\n").unwrap();
        let m = refused(hoster_add(tmp.path(), "Aquilenet", "aquilenet.fr"));
        assert!(m.contains("exists already"), "{m}");
        assert_eq!(
            std::fs::read_to_string(tmp.path().join("aquilenet.toml")).unwrap(),
            "# mine\n"
        );
    }

    #[test]
    fn an_inventory_with_errors_is_not_edited() {
        let tmp = shipped();
        std::fs::write(tmp.path().join("gandi.toml"), "[hoster]\nname = 1\n").unwrap();
        let m = refused(hoster_add(tmp.path(), "Aquilenet", "aquilenet.fr"));
        assert!(m.contains("has errors already"), "{m}");
        assert!(!tmp.path().join("aquilenet.toml").exists());
    }

    #[test]
    fn nicknames_and_orports_follow_the_fleet() {
        assert_eq!(nicknames_for("ekumen", 1), vec!["ekumen"]);
        assert_eq!(nicknames_for("marcuse", 2), vec!["marcuse1", "marcuse2"]);
        assert_eq!(nicknames_for("al-grothendieck", 1), vec!["algrothendieck"]);
        assert_eq!(
            nicknames_for("abcdefghijklmnopqrstuvwxyz", 10)[9],
            "abcdefghijklmnopq10"
        );
        assert_eq!(orports_for(3), vec![443, 9001, 9002]);
        assert_eq!(hoster_file_name("aquilenet.fr"), "aquilenet.toml");
        assert_eq!(hoster_file_name("ielo-liazo.com"), "ielo-liazo.toml");
        assert_eq!(hoster_file_name("tetaneutral.net"), "tetaneutral.toml");
    }
}
