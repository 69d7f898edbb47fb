//! The command line itself: help, completions and the man page come from one definition.

mod support;

#[test]
fn completions_and_man_page_are_generated_from_the_cli() {
    let root = support::repo();
    let bash = support::run_in(&root, &["completions", "bash"]);
    bash.code(0).out_has(&[
        "_oignon()",
        "plan",
        "apply",
        "--detailed-exitcode",
        "--replace-identity",
    ]);
    support::run_in(&root, &["completions", "zsh"])
        .code(0)
        .out_has(&["#compdef oignon"]);
    support::run_in(&root, &["man"])
        .code(0)
        .out_has(&[".TH oignon", "plan", "secrets"]);
}

#[test]
fn unknown_subcommand_suggests_and_exits_2() {
    let run = support::run_in(&support::repo(), &["plna"]);
    run.code(2)
        .err_has(&["unrecognized subcommand 'plna'", "plan"]);
}
