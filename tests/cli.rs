//! The command line itself: help, completions and the man page come from one definition.

#[test]
fn completions_and_man_page_are_generated_from_the_cli() {
    let root = crate::harness::repo();
    let bash = crate::harness::run_in(&root, &["completions", "bash"]);
    bash.code(0).out_has(&[
        "_oignon()",
        "plan",
        "apply",
        "--detailed-exitcode",
        "--replace-identity",
    ]);
    crate::harness::run_in(&root, &["completions", "zsh"])
        .code(0)
        .out_has(&["#compdef oignon"]);
    crate::harness::run_in(&root, &["man"])
        .code(0)
        .out_has(&[".TH oignon", "plan", "secrets"]);
}

#[test]
fn unknown_subcommand_suggests_and_exits_2() {
    let run = crate::harness::run_in(&crate::harness::repo(), &["plna"]);
    run.code(2)
        .err_has(&["unrecognized subcommand 'plna'", "plan"]);
}

#[test]
fn render_into_a_reader_that_stops_early_ends_quietly_with_141() {
    use std::io::Read;
    // A fleet whose render (about 2 MB) is far larger than a pipe's buffer.
    let f = crate::harness::Fixture::shipped();
    let inv = f.path("big");
    let gen = std::process::Command::new(crate::harness::repo().join("scripts/gen-fleet"))
        .args(["100", inv.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(gen.status.success(), "{gen:?}");
    let mut child = std::process::Command::new(crate::harness::BIN)
        .args(["--inventory", "big", "render"])
        .current_dir(f.dir.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 16];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap();
    // The reader is gone (as `| head -1` is once it has its line).
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(141), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "",
        "no 'Broken pipe' message"
    );
}

#[test]
fn host_and_hoster_filters_that_share_no_host_are_an_error() {
    let f = crate::harness::Fixture::shipped();
    f.run(&[
        "plan", "--local", "images", "--host", "ekumen", "--hoster", "Globenet",
    ])
    .code(1)
    .err_has(&["no host is both --host ekumen and --hoster Globenet: nothing to do"]);
    assert!(!f.path("images").exists(), "no host was touched");
}

#[test]
fn renew_signing_is_refused_for_a_relay_without_offline_master_key() {
    let f = crate::harness::Fixture::shipped();
    f.run(&["secrets", "renew-signing", "ekumen"])
        .code(1)
        .err_has(&[
            "ekumen does not use OfflineMasterKey",
            "offline_master_key = true",
        ]);
    f.run(&["secrets", "renew-signing", "nosuchrelay"])
        .code(1)
        .err_has(&["no relay `nosuchrelay` in the inventory"]);
}

#[test]
fn counts_of_one_are_singular() {
    let f = crate::harness::Fixture::shipped();
    let out = f.path("one");
    f.run(&["render", "--host", "ekumen", "--out", out.to_str().unwrap()])
        .code(0)
        .out_has(&["for 1 host under"]);
}
