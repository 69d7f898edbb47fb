//! The "never" rules of README.md's Architecture section, checked on the source text: which module
//! never reaches which. A rule broken here is a design change to make on purpose (and to write
//! down in the README), not by accident.

use std::path::{Path, PathBuf};

/// Every `.rs` file under `src/<rel>` (a file or a directory).
fn files(rel: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let p = root.join(rel);
    if p.is_dir() {
        let mut v: Vec<PathBuf> = std::fs::read_dir(&p)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "rs"))
            .collect();
        v.sort();
        v
    } else {
        vec![root.join(format!("{rel}.rs"))]
    }
}

/// The code of a file as it is built outside tests: comments and test modules left out (tests
/// may use anything to build their fixtures).
fn code(path: &Path) -> String {
    let mut text = std::fs::read_to_string(path).unwrap();
    while let Some(i) = text.find("#[cfg(test)]\nmod ") {
        // The module's block, by its braces (test code's braces balance in practice).
        let open = i + text[i..].find('{').unwrap_or(text.len() - i);
        let mut depth = 0;
        let mut end = text.len();
        for (j, c) in text[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = open + j + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        text.replace_range(i..end, "");
    }
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The modules of this crate and the external crates a file names (`crate::x`, `use x::`, `x::`).
fn names(code: &str) -> Vec<String> {
    let mut out = vec![];
    let bytes = code.as_bytes();
    let mut i = 0;
    while let Some(at) = code[i..].find("::") {
        let end = i + at;
        let mut start = end;
        while start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_') {
            start -= 1;
        }
        let word = &code[start..end];
        if word == "crate" {
            // crate::x or crate::{x, y}
            let rest = &code[end + 2..];
            if let Some(group) = rest.strip_prefix('{') {
                let group = &group[..group.find('}').unwrap_or(group.len())];
                out.extend(
                    group
                        .split(',')
                        .map(|s| s.trim().split("::").next().unwrap_or("").to_string()),
                );
            } else {
                let w: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                out.push(w);
            }
        } else if !word.is_empty() {
            out.push(word.to_string());
        }
        i = end + 2;
    }
    out.sort();
    out.dedup();
    out
}

/// Fails naming each file of `modules` that names one of `never`.
fn never(modules: &[&str], never: &[&str], why: &str) {
    let mut broken = vec![];
    for m in modules {
        for f in files(m) {
            let used = names(&code(&f));
            for n in never {
                if used.iter().any(|u| u == n) {
                    broken.push(format!("{} uses {n}", f.display()));
                }
            }
        }
    }
    assert!(broken.is_empty(), "{why}:\n{}", broken.join("\n"));
}

/// What reaches a host or runs the network: a transport, a host script, a connection.
const HOST_IO: &[&str] = &["transport", "gather", "remote", "apply", "tokio", "openssh"];

#[test]
fn the_library_never_knows_the_command_line() {
    let lib: Vec<String> = std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("src"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter_map(|p| {
            let name = p.file_name()?.to_str()?.to_string();
            let stem = name.strip_suffix(".rs").unwrap_or(&name).to_string();
            let binary = ["main", "cli", "commands"].contains(&stem.as_str());
            (!binary && (p.is_dir() || name.ends_with(".rs"))).then_some(stem)
        })
        .filter(|s| s != "torrc_options.txt")
        .collect();
    let lib: Vec<&str> = lib.iter().map(String::as_str).collect();
    never(
        &lib,
        &["clap", "cli", "commands"],
        "the pipeline takes typed options (fleet::Paths, fleet::PlanOptions), not flags",
    );
    never(
        &lib,
        &["anyhow"],
        "the library's errors are typed (HostError, GatherError, SavedError, AdminError...): only the binary turns them into a message",
    );
}

#[test]
fn rendering_never_touches_a_host() {
    never(
        &["render", "role", "desired", "torrc", "exit_policy", "diff"],
        HOST_IO,
        "render is a pure function of the inventory, roles and secrets",
    );
}

#[test]
fn the_inventory_never_reaches_a_host_nor_a_later_stage() {
    never(
        &["inventory"],
        &[HOST_IO, &["render", "plan", "fleet", "saved", "clap"]].concat(),
        "the inventory is read and validated on its own; later stages depend on it, not it on them",
    );
}

#[test]
fn bootstraps_decisions_never_touch_a_host() {
    never(
        &["bootstrap/mod"],
        HOST_IO,
        "the preflight table and the install are pure functions of the facts and the inventory; bootstrap/run.rs does the I/O",
    );
    never(
        &["onboard"],
        HOST_IO,
        "an inventory edit is checked on this machine (render, tor), before any host is involved",
    );
}

#[test]
fn planning_and_showing_never_touch_a_host() {
    never(
        &["plan", "show", "observed"],
        &["transport", "gather", "remote", "tokio", "openssh", "fleet"],
        "the plan is a pure function of desired and observed state; I/O happens in fleet and gather",
    );
    never(
        &["saved"],
        &["transport", "gather", "remote", "tokio", "openssh"],
        "a saved plan is compared with a fresh one, never applied itself",
    );
}

#[test]
fn the_rule_checker_sees_every_way_of_naming_a_module() {
    let used =
        names("use crate::{render::Keys, transport};\nlet x = crate::gather::y;\ntokio::spawn(1);");
    for n in ["render", "transport", "gather", "tokio"] {
        assert!(used.iter().any(|u| u == n), "{n} in {used:?}");
    }
    // A comment is no use.
    let f = std::env::temp_dir().join(format!("oignon-arch-{}.rs", std::process::id()));
    std::fs::write(&f, "// crate::transport\nfn a() {}\n").unwrap();
    assert!(!names(&code(&f)).iter().any(|u| u == "transport"));
    std::fs::remove_file(&f).unwrap();
}

/// The exit statuses a piece of code picks itself: an `ExitCode::from(N)` or `ExitCode::SUCCESS`
/// that does not go through `exit_code(…)`.
fn own_exit_codes(code: &str) -> Vec<String> {
    let mut out = vec![];
    for (at, _) in code.match_indices("ExitCode::") {
        let rest = &code[at + "ExitCode::".len()..];
        if rest.starts_with("SUCCESS") || rest.starts_with("FAILURE") {
            out.push(rest.chars().take(7).collect());
        } else if let Some(arg) = rest.strip_prefix("from(") {
            if !arg.trim_start().starts_with("exit_code(")
                && !arg.trim_start().starts_with("oignon::error::exit_code(")
            {
                out.push(format!("from({}", arg.chars().take(20).collect::<String>()));
            }
        }
    }
    out
}

#[test]
fn every_command_takes_its_exit_code_from_one_place() {
    let mut bad = vec![];
    for f in files("commands").into_iter().chain(files("main")) {
        for c in own_exit_codes(&code(&f)) {
            bad.push(format!("{}: ExitCode::{c}", f.display()));
        }
    }
    assert!(
        bad.is_empty(),
        "exit codes are decided by error::exit_code from an Outcome or host errors, so that \
         every command maps a failure to the same number; these pick their own:\n{}",
        bad.join("\n")
    );
}

#[test]
fn the_exit_code_checker_sees_a_number_picked_by_hand() {
    assert_eq!(own_exit_codes("Ok(ExitCode::from(1))").len(), 1);
    assert_eq!(own_exit_codes("ExitCode::SUCCESS").len(), 1);
    assert!(own_exit_codes("ExitCode::from(exit_code([], o))").is_empty());
}

#[test]
fn status_and_monitoring_only_look() {
    // `oignon status` gathers (one round trip, as plan) and never applies; the monitoring files
    // are made from the inventory alone, without reaching any host.
    never(
        &["status"],
        &["apply"],
        "status looks at hosts and changes nothing",
    );
    never(
        &["monitoring"],
        HOST_IO,
        "monitoring targets and rules come from the inventory alone",
    );
}
