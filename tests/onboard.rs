//! `oignon hoster add` and `oignon host add` through the binary, on a copy of the shipped
//! inventory: the edit, `check` passing on the result, the next steps, and the refusals (nothing
//! written). The host-side half, `bootstrap`, is in real_bootstrap.rs.

use crate::harness::Fixture;

fn snapshot(f: &Fixture) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = std::fs::read_dir(f.path("inventory"))
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

#[test]
fn hoster_add_then_host_add_with_keygen_gives_an_inventory_check_accepts() {
    let f = Fixture::shipped();
    let before = snapshot(&f);
    f.run(&["hoster", "add", "Aquilenet", "--domain", "aquilenet.fr"])
        .code(0)
        .out_has(&[
            "Wrote inventory/aquilenet.toml (hoster Aquilenet, aquilenet.fr).",
            "oignon host add NAME --hoster aquilenet.fr",
        ]);
    f.run(&[
        "host", "add", "aquila", "--hoster", "Aquilenet", "--ipv4", "192.0.2.50", "--ipv6",
        "2001:db8:50::1", "--uplink", "200 Mbit/s", "--relays", "2", "--keygen",
    ])
    .code(0)
    .out_has(&[
        "Added host aquila to inventory/aquilenet.toml: aquila1 (ORPort 443), aquila2 (ORPort 9001).",
        "aquila1 ",
        "aquila2 ",
        "Next:\n  oignon check\n  oignon bootstrap aquila\n",
    ]);
    assert_eq!(
        std::fs::read_to_string(f.path("inventory/aquilenet.toml")).unwrap(),
        std::fs::read_to_string(crate::harness::repo().join("tests/golden/aquilenet.toml"))
            .unwrap()
    );
    let after: Vec<_> = snapshot(&f)
        .into_iter()
        .filter(|(n, _)| n != "aquilenet.toml")
        .collect();
    assert_eq!(after, before, "another inventory file changed");
    assert!(f.path("secrets/relays/aquila2/fingerprint").is_file());
    f.run(&["check"])
        .code(0)
        .out_has(&["ok: 5 hosts, 8 relays"]);
}

#[test]
fn host_add_without_keygen_says_to_run_it_and_check_names_the_missing_identity() {
    let f = Fixture::shipped();
    f.run(&["hoster", "add", "Aquilenet", "--domain", "aquilenet.fr"])
        .code(0);
    f.run(&[
        "host",
        "add",
        "aquila",
        "--hoster",
        "aquilenet.fr",
        "--ipv4",
        "192.0.2.50",
        "--uplink",
        "200 Mbit/s",
    ])
    .code(0)
    .out_has(&["aquila (ORPort 443)", "  oignon secrets keygen aquila\n"]);
    f.run(&["check"])
        .code(1)
        .err_has(&["relay `aquila` has no identity in secrets/relays/aquila"]);
}

#[test]
fn refused_edits_say_why_and_write_nothing() {
    let f = Fixture::shipped();
    let before = snapshot(&f);
    f.run(&[
        "host",
        "add",
        "aquila",
        "--hoster",
        "aquilenet.fr",
        "--ipv4",
        "192.0.2.50",
        "--uplink",
        "200 Mbit/s",
    ])
    .code(1)
    .err_has(&["no hoster named `aquilenet.fr`", "oignon hoster add"]);
    f.run(&[
        "host",
        "add",
        "marcuse2",
        "--hoster",
        "gandi.net",
        "--ipv4",
        "192.0.2.21",
        "--uplink",
        "25 Mbit/s",
        "--nickname",
        "marcuse2",
    ])
    .code(1)
    .err_has(&["nickname `marcuse2` is taken by relay marcuse2 on host marcuse"]);
    f.run(&[
        "host",
        "add",
        "ekumen2",
        "--hoster",
        "gandi.net",
        "--ipv4",
        "192.0.2.21",
        "--uplink",
        "25 Mbps",
    ])
    .code(1)
    .err_has(&[
        "inventory/gandi.toml:",
        "bad uplink",
        "the edit is refused and nothing was written",
    ]);
    f.run(&["hoster", "add", "Gandi SAS", "--domain", "gandi.net"])
        .code(1)
        .err_has(&["already in the inventory"]);
    assert_eq!(snapshot(&f), before);
}

#[test]
fn bootstrap_of_a_host_not_in_the_inventory_names_the_hosts() {
    let f = Fixture::shipped();
    f.run(&["bootstrap", "ekumn"])
        .code(1)
        .err_has(&["no host `ekumn` in the inventory (did you mean `ekumen`?)"]);
}

#[test]
fn host_add_with_zero_relays_is_refused() {
    let f = Fixture::shipped();
    f.run(&[
        "host",
        "add",
        "ekumen2",
        "--hoster",
        "gandi.net",
        "--ipv4",
        "192.0.2.21",
        "--uplink",
        "25 Mbit/s",
        "--relays",
        "0",
    ])
    .code(1)
    .err_has(&["--relays 0: a host runs at least one relay"]);
}

#[test]
fn a_roles_packages_must_be_debian_package_names() {
    let f = Fixture::shipped();
    f.edit(
        "roles/tor/role.toml",
        "description = ",
        "packages = [\"nftables\", \"tor; rm -rf /\"]\ndescription = ",
    );
    f.run(&["check", "--no-tor"]).code(1).err_has(&[
        "package \"tor; rm -rf /\" is not a Debian package name",
        "roles/tor/role.toml:1:25 (field `packages.1`)",
    ]);
    f.edit("roles/tor/role.toml", ", \"tor; rm -rf /\"", "");
    f.run(&["check", "--no-tor"]).code(0);
}

#[test]
fn host_add_refuses_a_host_whose_torrc_tor_rejects_and_writes_nothing() {
    let f = Fixture::shipped();
    f.run(&["hoster", "add", "Aquilenet", "--domain", "aquilenet.fr"])
        .code(0);
    // Harmless while the hoster has no host: `check` passes. The first relay inherits it.
    let p = f.path("inventory/aquilenet.toml");
    let mut text = std::fs::read_to_string(&p).unwrap();
    text.push_str("[hoster.defaults]\ntorrc_extra = [\"ConnLimit lots\"]\n");
    std::fs::write(&p, &text).unwrap();
    f.run(&["check"]).code(0);
    f.run(&[
        "host",
        "add",
        "aquila",
        "--hoster",
        "aquilenet.fr",
        "--ipv4",
        "192.0.2.50",
        "--uplink",
        "200 Mbit/s",
    ])
    .code(1)
    .err_has(&[
        "tor rejects the torrc of the new relay `aquila` on host `aquila`",
        "Could not parse ConnLimit",
        "the edit is refused and nothing was written",
    ]);
    assert_eq!(std::fs::read_to_string(&p).unwrap(), text);
}
