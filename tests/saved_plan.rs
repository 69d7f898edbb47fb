//! Saved plans (`plan --out FILE`, `apply FILE`) against real lab hosts: a saved plan is a record
//! to review, not a program. Each test edits a saved plan the way an attacker with write access to
//! it would (or edits the inputs after planning), and checks that apply refuses it and that nothing
//! was written or run on the host.

use crate::harness::lab::Lab;
use crate::harness::{lab_of, oignon, sha, Fixture, LabFleet, Run};
use base64::Engine as _;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

const TORRC: &str = "/etc/tor/instances/ekumen/torrc";

/// `plan --host ekumen --out plan.json` over SSH; the path of the saved plan.
fn save_plan(f: &Fixture, lab: &Lab) -> PathBuf {
    let saved = f.path("plan.json");
    oignon(
        f,
        lab,
        &[
            "plan",
            "--host",
            "ekumen",
            "--brief",
            "--out",
            saved.to_str().unwrap(),
        ],
    )
    .code(0);
    saved
}

/// Edits the saved plan's JSON as an attacker with write access to the file would.
fn tamper(saved: &Path, edit: impl FnOnce(&mut Value)) {
    let mut v: Value = serde_json::from_slice(&std::fs::read(saved).unwrap()).unwrap();
    edit(&mut v);
    std::fs::write(saved, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
}

/// The change of the first host whose target is `target`.
fn change<'a>(v: &'a mut Value, target: &str) -> &'a mut Value {
    v["hosts"][0]["changes"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|c| c["target"] == target)
        .unwrap_or_else(|| panic!("no change for {target}"))
}

fn apply_saved(f: &Fixture, lab: &Lab, saved: &Path) -> Run {
    oignon(
        f,
        lab,
        &["apply", saved.to_str().unwrap(), "--yes", "--brief"],
    )
}

/// Nothing of the plan reached the host: no file written, no handler run, no manifest.
#[track_caller]
fn assert_untouched(lab: &Lab) {
    let host = lab_of("ekumen");
    for path in [
        TORRC,
        "/etc/sysctl.d/90-oignon.conf",
        "/var/lib/oignon/managed",
        "/root/PWNED",
    ] {
        assert!(lab.read(host, path).is_none(), "{path} was written");
    }
    let calls: Vec<String> = lab
        .systemctl_log(host)
        .into_iter()
        .filter(|l| !l.starts_with("is-"))
        .collect();
    assert!(calls.is_empty(), "handlers ran: {calls:?}");
}

#[test]
fn a_handler_added_to_a_saved_plan_is_refused_and_never_runs() {
    let Some(LabFleet { lab, f }) = LabFleet::start(1) else {
        return;
    };
    let saved = save_plan(&f, &lab);
    tamper(&saved, |v| {
        v["hosts"][0]["handlers"]
            .as_array_mut()
            .unwrap()
            .push(json!({"command": ["touch", "/root/PWNED"], "reason": "new instance"}));
    });
    apply_saved(&f, &lab, &saved).code(1).err_has(&[
        "plan.json is not what oignon plans now",
        "nothing was applied",
        "ekumen: handler `touch /root/PWNED` is in the saved plan, not in a fresh plan",
        "Plan again and review the new plan",
    ]);
    assert_untouched(&lab);
}

#[test]
fn a_create_of_root_authorized_keys_added_to_a_saved_plan_is_refused() {
    let Some(LabFleet { lab, f }) = LabFleet::start(1) else {
        return;
    };
    let host = lab_of("ekumen");
    let before = lab.read(host, "/root/.ssh/authorized_keys");
    let saved = save_plan(&f, &lab);
    let key =
        b"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAttackerAttackerAttackerAttackerAttacker evil\n";
    tamper(&saved, |v| {
        let mut c = change(v, TORRC).clone();
        c["target"] = json!("/root/.ssh/authorized_keys");
        c["reason"] = json!("new file");
        c["mode"] = json!(0o600);
        c["validate"] = Value::Null;
        c["instance"] = Value::Null;
        c["new_sha256"] = json!(sha(key));
        c["content_base64"] = json!(base64::engine::general_purpose::STANDARD.encode(key));
        v["hosts"][0]["changes"].as_array_mut().unwrap().push(c);
    });
    apply_saved(&f, &lab, &saved).code(1).err_has(&[
        "nothing was applied",
        "ekumen: `create /root/.ssh/authorized_keys` is in the saved plan, not in a fresh plan",
    ]);
    assert_eq!(lab.read(host, "/root/.ssh/authorized_keys"), before);
    assert_untouched(&lab);
}

#[test]
fn a_tampered_mode_or_owner_in_a_saved_plan_is_refused() {
    let Some(LabFleet { lab, f }) = LabFleet::start(1) else {
        return;
    };
    let saved = save_plan(&f, &lab);
    let pristine = std::fs::read(&saved).unwrap();
    tamper(&saved, |v| change(v, TORRC)["mode"] = json!(0o4777));
    apply_saved(&f, &lab, &saved).code(1).err_has(&[
        "ekumen: /etc/tor/instances/ekumen/torrc: mode `4777` in the saved plan, `0644` in a fresh plan",
    ]);
    assert_untouched(&lab);
    std::fs::write(&saved, &pristine).unwrap();
    tamper(&saved, |v| {
        let c = change(v, "/var/lib/tor-instances/ekumen/keys/secret_id_key");
        c["owner"] = json!("nobody");
        c["group"] = json!("nogroup");
    });
    apply_saved(&f, &lab, &saved).code(1).err_has(&[
        "ekumen: /var/lib/tor-instances/ekumen/keys/secret_id_key: owner `nobody` in the saved plan, `_tor-ekumen` in a fresh plan",
        "secret_id_key: group `nogroup` in the saved plan",
    ]);
    assert_untouched(&lab);
}

#[test]
fn tampered_content_in_a_saved_plan_is_never_written() {
    let Some(LabFleet { lab, f }) = LabFleet::start(1) else {
        return;
    };
    let saved = save_plan(&f, &lab);
    let pristine = std::fs::read(&saved).unwrap();
    // An open exit, with a matching hash: the file is self-consistent, and still refused.
    let open = b"Nickname ekumen\nExitRelay 1\nExitPolicy accept *:*\n";
    tamper(&saved, |v| {
        let c = change(v, TORRC);
        c["content_base64"] = json!(base64::engine::general_purpose::STANDARD.encode(open));
        c["new_sha256"] = json!(sha(open));
    });
    apply_saved(&f, &lab, &saved).code(1).err_has(&[
        "ekumen: /etc/tor/instances/ekumen/torrc: new sha256",
        "ekumen: /etc/tor/instances/ekumen/torrc: the content_base64 differs from a fresh plan's",
    ]);
    assert_untouched(&lab);
    // Only the content, the hash left alone: refused as well, the content is never the source.
    std::fs::write(&saved, &pristine).unwrap();
    tamper(&saved, |v| {
        change(v, TORRC)["content_base64"] =
            json!(base64::engine::general_purpose::STANDARD.encode(open));
    });
    apply_saved(&f, &lab, &saved)
        .code(1)
        .err_has(&["the content_base64 differs from a fresh plan's"]);
    assert_untouched(&lab);
}

#[test]
fn a_change_removed_from_a_saved_plan_is_refused() {
    let Some(LabFleet { lab, f }) = LabFleet::start(1) else {
        return;
    };
    let saved = save_plan(&f, &lab);
    tamper(&saved, |v| {
        v["hosts"][0]["changes"]
            .as_array_mut()
            .unwrap()
            .retain(|c| c["target"] != "/etc/sysctl.d/90-oignon.conf");
    });
    apply_saved(&f, &lab, &saved).code(1).err_has(&[
        "ekumen: `create /etc/sysctl.d/90-oignon.conf` is in a fresh plan, not in the saved one",
    ]);
    assert_untouched(&lab);
}

#[test]
fn an_inventory_edited_after_the_plan_is_refused_naming_the_file() {
    let Some(LabFleet { lab, f }) = LabFleet::start(1) else {
        return;
    };
    let saved = save_plan(&f, &lab);
    f.edit(
        "inventory/gandi.toml",
        "uplink = \"25 Mbit/s\"",
        "uplink = \"30 Mbit/s\"",
    );
    apply_saved(&f, &lab, &saved).code(1).err_has(&[
        "plan.json cannot be applied, nothing was done: the inventory changed since the plan was saved: inventory/gandi.toml edited",
        "plan again (`oignon plan --out",
    ]);
    assert_untouched(&lab);
    // Undone, the plan applies again: the digest is of the content, not of a time stamp.
    f.edit(
        "inventory/gandi.toml",
        "uplink = \"30 Mbit/s\"",
        "uplink = \"25 Mbit/s\"",
    );
    apply_saved(&f, &lab, &saved)
        .code(0)
        .out_has(&["✓ ekumen: applied"]);
}

#[test]
fn a_roles_edit_after_the_plan_is_refused_before_any_host_is_contacted() {
    let Some(LabFleet { lab, f }) = LabFleet::start(1) else {
        return;
    };
    let saved = save_plan(&f, &lab);
    let torrc_tera = f.path("roles/tor/templates/torrc.tera");
    let mut text = std::fs::read_to_string(&torrc_tera).unwrap();
    text.push_str("ExitPolicy accept *:*\n");
    std::fs::write(&torrc_tera, text).unwrap();
    std::fs::write(f.path("roles/tor/templates/extra.tera"), "x\n").unwrap();
    // The host is down: a refusal that came after connecting would say so instead.
    lab.stop_host(lab_of("ekumen"));
    let run = apply_saved(&f, &lab, &saved);
    run.code(1).err_has(&[
        "the roles changed since the plan was saved: roles/tor/templates/extra.tera added; roles/tor/templates/torrc.tera edited",
    ]);
    assert!(
        !run.stdout.contains("connect") && !run.stderr.contains("connect"),
        "{run:?}"
    );
    assert_untouched(&lab);
}

#[test]
fn a_plan_made_with_local_is_applied_locally_never_over_ssh() {
    let Some(LabFleet { lab, f }) = LabFleet::start(1) else {
        return;
    };
    let images = f.path("images");
    std::fs::create_dir_all(&images).unwrap();
    let saved = f.path("plan.json");
    oignon(
        &f,
        &lab,
        &[
            "plan",
            "--local",
            images.to_str().unwrap(),
            "--host",
            "ekumen",
            "--brief",
            "--out",
            saved.to_str().unwrap(),
        ],
    )
    .code(0);
    // Given another directory, or the plan made over SSH given --local: refused, nothing written.
    let other = f.path("other");
    oignon(
        &f,
        &lab,
        &[
            "apply",
            saved.to_str().unwrap(),
            "--local",
            other.to_str().unwrap(),
            "--yes",
        ],
    )
    .code(1)
    .err_has(&[
        "this plan was made with --local",
        "a saved plan is applied the way it was planned",
    ]);
    assert!(!other.join("ekumen/etc/tor").exists());
    // No --local: the plan's own directory, not the host its ssh alias names.
    apply_saved(&f, &lab, &saved)
        .code(0)
        .out_has(&["ekumen (local ", "✓ ekumen: applied"]);
    assert!(images
        .join("ekumen/etc/tor/instances/ekumen/torrc")
        .is_file());
    assert_untouched(&lab);
    let over_ssh = save_plan(&f, &lab);
    oignon(
        &f,
        &lab,
        &[
            "apply",
            over_ssh.to_str().unwrap(),
            "--local",
            other.to_str().unwrap(),
            "--yes",
        ],
    )
    .code(1)
    .err_has(&["this plan was made over SSH, and apply was given --local"]);
    assert!(!other.join("ekumen/etc/tor").exists());
    assert_untouched(&lab);
}

#[test]
fn an_honest_saved_plan_applies_and_converges() {
    let Some(LabFleet { lab, f }) = LabFleet::start(1) else {
        return;
    };
    let saved = save_plan(&f, &lab);
    let text = std::fs::read_to_string(&saved).unwrap();
    assert!(text.contains("\"schema\": \"oignon.plan/2\""), "{text}");
    assert!(
        !text.contains("AGE-SECRET-KEY"),
        "no identity in a saved plan"
    );
    apply_saved(&f, &lab, &saved).code(0).out_has(&[
        "✓ ekumen: applied",
        "wrote /etc/tor/instances/ekumen/torrc",
        "ran `systemctl enable --now tor@ekumen`",
    ]);
    let torrc = lab.read_string(lab_of("ekumen"), TORRC).unwrap();
    assert!(torrc.contains("Nickname ekumen\n"));
    oignon(
        &f,
        &lab,
        &["plan", "--host", "ekumen", "--detailed-exitcode"],
    )
    .code(0)
    .out_has(&["ekumen: no changes"]);
    // Applied once, the same plan is stale: the host moved (it now has the files).
    apply_saved(&f, &lab, &saved).code(1).out_has(&[
        "stale plan: ",
        "changed on the host since the plan was saved",
    ]);
}

#[test]
fn stale_saved_plan_is_refused_naming_host_and_path() {
    let Some(LabFleet { lab, f }) = LabFleet::start(4) else {
        return;
    };
    oignon(&f, &lab, &["apply", "--yes", "--brief"]).code(0);
    f.edit(
        "inventory/fleet.toml",
        "\"reject *:445\"]",
        "\"reject *:445\", \"reject *:6666\"]",
    );
    let saved = f.path("plan.json");
    oignon(
        &f,
        &lab,
        &["plan", "--out", saved.to_str().unwrap(), "--brief"],
    )
    .code(0);
    lab.write(lab_of("ekumen"), TORRC, b"Nickname edited\n");
    let run = apply_saved(&f, &lab, &saved);
    run.code(1).out_has(&[
        "stale plan: /etc/tor/instances/ekumen/torrc changed on the host since the plan was saved",
        "✓ marcuse: applied",
    ]);
    assert_eq!(
        lab.read(lab_of("ekumen"), TORRC).unwrap(),
        b"Nickname edited\n"
    );
}

#[test]
fn a_saved_plan_of_the_old_schema_is_refused_with_plan_again() {
    let f = Fixture::shipped();
    f.write(
        "old.json",
        r#"{"schema": "oignon.plan/1", "hosts": [{"host": "ekumen", "transport": "ssh ekumen",
            "error": null, "changes": [], "notices": [], "observed": {},
            "handlers": [{"command": ["touch", "/root/PWNED"], "reason": "x"}]}]}"#,
    );
    f.run(&["apply", "old.json", "--yes"]).code(1).err_has(&[
        "old.json is a plan of schema `oignon.plan/1`, this oignon reads `oignon.plan/2`",
        "plan again",
    ]);
}

#[test]
fn a_secrets_edit_after_the_plan_is_refused_and_a_selection_outside_the_plan_too() {
    // The local transport: no lab needed to show the digest of the secrets store.
    let f = Fixture::shipped();
    let images = f.path("images");
    std::fs::create_dir_all(&images).unwrap();
    let images = images.to_str().unwrap();
    f.run(&[
        "plan",
        "--local",
        images,
        "--host",
        "ekumen",
        "--brief",
        "--out",
        "plan.json",
    ])
    .code(0);
    f.run(&["apply", "plan.json", "--host", "marcuse", "--yes"])
        .code(1)
        .err_has(&["--host/--hoster selects marcuse, which the saved plan does not plan"]);
    let recipients = f.path("secrets/recipients.txt");
    let mut text = std::fs::read_to_string(&recipients).unwrap();
    text.push_str("# a comment is an edit too\n");
    std::fs::write(&recipients, text).unwrap();
    f.run(&["apply", "plan.json", "--yes"])
        .code(1)
        .err_has(&["the secrets changed since the plan was saved: secrets/recipients.txt edited"]);
    assert!(!f.path("images/ekumen/etc/tor").exists());
}

#[test]
fn a_transport_written_into_a_saved_plan_is_not_followed() {
    use std::os::unix::fs::PermissionsExt;
    let f = Fixture::shipped();
    let images = f.path("images");
    std::fs::create_dir_all(&images).unwrap();
    f.run(&[
        "plan",
        "--local",
        images.to_str().unwrap(),
        "--host",
        "ekumen",
        "--brief",
        "--out",
        "plan.json",
    ])
    .code(0);
    let pristine = std::fs::read(f.path("plan.json")).unwrap();
    // A directory anyone could have prepared, to collect the relay keys apply would write there.
    let drop = f.path("drop");
    std::fs::create_dir(&drop).unwrap();
    std::fs::set_permissions(&drop, std::fs::Permissions::from_mode(0o777)).unwrap();
    let host_root = format!("local {}", drop.join("ekumen").display());
    tamper(&f.path("plan.json"), |v| {
        v["transport"]["local"] = json!(drop);
        v["hosts"][0]["transport"] = json!(host_root);
    });
    f.run(&["apply", "plan.json", "--yes"])
        .code(1)
        .err_has(&["is writable by others (mode 0777)", "apply it with --local"]);
    assert!(!drop.join("ekumen/var/lib/tor-instances").exists());
    // An ssh configuration: its ProxyCommand would run here, as whoever applies.
    let marker = f.path("proxy-command-ran");
    f.write(
        "evil_ssh_config",
        &format!(
            "Host *\n  ProxyCommand sh -c 'touch {}'\n",
            marker.display()
        ),
    );
    std::fs::write(f.path("plan.json"), &pristine).unwrap();
    tamper(&f.path("plan.json"), |v| {
        v["transport"]["local"] = Value::Null;
        v["transport"]["ssh_config"] = json!(f.path("evil_ssh_config"));
        v["hosts"][0]["transport"] = json!("ssh ekumen");
    });
    f.run(&["apply", "plan.json", "--yes"])
        .code(1)
        .err_has(&["apply it with the same --ssh-config"]);
    assert!(!marker.exists(), "the plan file's ssh config was used");
}
