//! `oignon plan` against real lab hosts: real sshd in mount namespaces, the real ssh client.

use crate::harness::lab::Lab;
use crate::harness::{lab_of, oignon, Fixture, LabFleet, Run};

fn plan(f: &Fixture, lab: &Lab, extra: &[&str]) -> Run {
    let mut args = vec!["plan"];
    args.extend_from_slice(extra);
    oignon(f, lab, &args)
}

fn apply(f: &Fixture, lab: &Lab, extra: &[&str]) -> Run {
    let mut args = vec!["apply", "--yes", "--brief"];
    args.extend_from_slice(extra);
    oignon(f, lab, &args)
}

#[test]
fn plan_on_empty_hosts_creates_everything_and_exits_2() {
    let Some(LabFleet { lab, f }) = LabFleet::start(4) else {
        return;
    };
    let run = plan(&f, &lab, &["--detailed-exitcode"]);
    run.code(2).out_has(&[
        "ekumen (ssh lab1)",
        "+ instance ekumen (new relay instance",
        "+ /etc/tor/instances/ekumen/torrc (new file, 0644 root:root)",
        "+Nickname ekumen",
        "+ /etc/sysctl.d/90-oignon.conf",
        "> run `systemctl enable --now tor@marcuse2` (new instance)",
        "marcuse: 15 to create, 0 to update, 0 to remove, 5 handlers",
        "Fleet: 4 hosts, 4 with changes, 0 unchanged, 0 failed.",
    ]);
}

#[test]
fn plan_shows_drift_on_the_edited_host_only() {
    let Some(LabFleet { lab, f }) = LabFleet::start(4) else {
        return;
    };
    apply(&f, &lab, &[]).code(0);
    lab.write(
        lab_of("marylou"),
        "/etc/sysctl.d/90-oignon.conf",
        b"kernel.kptr_restrict = 0\n",
    );
    let run = plan(&f, &lab, &["--detailed-exitcode"]);
    run.code(2).out_has(&[
        "~ /etc/sysctl.d/90-oignon.conf (drift: edited on the host since the last apply)",
        "-kernel.kptr_restrict = 0",
        "+kernel.kptr_restrict = 2",
        "> run `sysctl --system`",
        "marylou: 0 to create, 1 to update, 0 to remove, 1 handler (1 drifted)",
        "ekumen: no changes",
        "marcuse: no changes",
        "Fleet: 4 hosts, 1 with changes, 3 unchanged, 0 failed.",
    ]);
}

#[test]
fn plan_with_one_host_down_plans_the_others_and_exits_1() {
    let Some(LabFleet { lab, f }) = LabFleet::start(4) else {
        return;
    };
    lab.stop_host(lab_of("algrothendieck"));
    let run = plan(&f, &lab, &[]);
    run.code(1).out_has(&[
        "algrothendieck (ssh lab2)",
        "error: cannot connect with ssh to `lab2`",
        "Connection refused",
        "ekumen: 9 to create",
        "Fleet: 4 hosts, 3 with changes, 0 unchanged, 1 failed.",
    ]);
}

#[test]
fn pinned_host_key_mismatch_is_refused_and_the_right_one_is_accepted() {
    let Some(LabFleet { lab, f }) = LabFleet::start(4) else {
        return;
    };
    // ekumen pins lab2's key: ssh must refuse lab1's.
    let wrong = lab
        .hosts
        .iter()
        .find(|h| h.name == "lab2")
        .unwrap()
        .host_key
        .clone();
    f.edit(
        "inventory/gandi.toml",
        "ssh = \"lab1\"\n",
        &format!("ssh = \"lab1\"\nhost_key = \"{wrong}\"\n"),
    );
    plan(&f, &lab, &["--host", "ekumen"]).code(1).out_has(&[
        "error: cannot connect with ssh to `lab1`",
        "Host key verification failed",
    ]);
    let right = lab
        .hosts
        .iter()
        .find(|h| h.name == "lab1")
        .unwrap()
        .host_key
        .clone();
    f.edit("inventory/gandi.toml", &wrong, &right);
    plan(&f, &lab, &["--host", "ekumen"])
        .code(0)
        .out_has(&["ekumen: 9 to create"]);
}

#[test]
fn json_plan_round_trips_and_names_its_schema() {
    let Some(LabFleet { lab, f }) = LabFleet::start(4) else {
        return;
    };
    let run = plan(&f, &lab, &["--json", "--host", "mar*"]);
    run.code(0);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).expect("plan --json is JSON");
    assert_eq!(v["schema"], "oignon.plan/2");
    assert_eq!(v["transport"]["local"], serde_json::Value::Null);
    assert!(v["inputs"]["inventory"]["files"]["gandi.toml"].is_string());
    let hosts = v["hosts"].as_array().unwrap();
    assert_eq!(
        hosts
            .iter()
            .map(|h| h["host"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["marcuse", "marylou"]
    );
    let torrc = hosts[0]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["target"] == "/etc/tor/instances/marcuse1/torrc")
        .unwrap();
    assert_eq!(torrc["kind"], "create");
    assert_eq!(torrc["mode"], 0o644);
    // Serialising what was parsed gives the same document.
    let again: serde_json::Value =
        serde_json::from_str(&serde_json::to_string(&v).unwrap()).unwrap();
    assert_eq!(v, again);
}

#[test]
fn hoster_filter_selects_its_hosts() {
    let Some(LabFleet { lab, f }) = LabFleet::start(4) else {
        return;
    };
    let run = plan(&f, &lab, &["--hoster", "gandi.net", "--brief"]);
    run.code(0)
        .out_has(&["ekumen (ssh lab1)", "Fleet: 1 host, 1 with changes"]);
    assert!(!run.stdout.contains("marcuse"), "{}", run.stdout);
}
