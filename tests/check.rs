//! `oignon check` on the shipped fleet and on bad inputs: each finding says what, where and what to do.

use crate::harness::Fixture;

/// One bad input: edit a copy of the shipped inventory, run `check`, assert exit 1 and the message.
macro_rules! bad_input {
    ($name:ident, $file:expr, $from:expr, $to:expr, [$($needle:expr),+ $(,)?]) => {
        #[test]
        fn $name() {
            let f = Fixture::shipped();
            f.edit($file, $from, $to);
            f.run(&["check", "--no-tor"]).code(1).err_has(&[$($needle),+]);
        }
    };
}

#[test]
fn shipped_inventory_passes_check_and_tor_verifies_every_torrc() {
    let run = crate::harness::run_in(&crate::harness::repo(), &["check"]);
    run.code(0)
        .out_has(&["ok: 4 hosts, 6 relays", "6 torrc verified by tor"]);
}

bad_input!(
    toml_syntax_error_is_located,
    "inventory/gandi.toml",
    "name = \"Gandi\"",
    "name = \"Gandi",
    ["error: invalid TOML", "inventory/gandi.toml:2:"]
);
bad_input!(
    unknown_relay_key_suggests_the_closest,
    "inventory/gandi.toml",
    "nickname = \"ekumen\"",
    "nikname = \"ekumen\"",
    [
        "unknown key `nikname`",
        "inventory/gandi.toml:12:1",
        "did you mean `nickname`?"
    ]
);
bad_input!(
    unknown_defaults_key_suggests_the_closest,
    "inventory/fleet.toml",
    "exit_policy = \"reduced\"",
    "exit_polcy = \"reduced\"",
    [
        "unknown key `exit_polcy`",
        "inventory/fleet.toml:13:1",
        "field `defaults.exit_polcy`",
        "did you mean `exit_policy`?"
    ]
);
bad_input!(
    unknown_table_suggests_the_closest,
    "inventory/gandi.toml",
    "[hoster]",
    "[hostr]",
    [
        "unknown key `hostr`",
        "inventory/gandi.toml:1:2",
        "did you mean `hoster`?"
    ]
);
bad_input!(
    nickname_with_a_dash_is_refused_as_tor_would,
    "inventory/ielo-liazo.toml",
    "\"marcuse1\"",
    "\"marcuse-1\"",
    [
        "nickname `marcuse-1` contains `-`",
        "inventory/ielo-liazo.toml:12:12",
        "1 to 19 letters and digits"
    ]
);
bad_input!(
    nickname_longer_than_19_is_refused,
    "inventory/gandi.toml",
    "nickname = \"ekumen\"",
    "nickname = \"ekumenekumenekumenekum\"",
    [
        "is 22 characters long (at most 19)",
        "inventory/gandi.toml:12:12"
    ]
);
bad_input!(
    empty_nickname_is_refused,
    "inventory/gandi.toml",
    "nickname = \"ekumen\"",
    "nickname = \"\"",
    ["nickname `` is empty", "inventory/gandi.toml:12:12"]
);
bad_input!(
    nicknames_are_unique_case_insensitively,
    "inventory/ielo-liazo.toml",
    "nickname = \"marcuse1\"",
    "nickname = \"Ekumen\"",
    [
        "nickname `Ekumen` is already used by `ekumen`",
        "inventory/ielo-liazo.toml:12:12",
        "inventory/gandi.toml:12"
    ]
);
bad_input!(
    orport_clash_on_one_host_is_refused,
    "inventory/ielo-liazo.toml",
    "orport = 9001",
    "orport = 443",
    [
        "192.0.2.10:443 is already the ORPort of `marcuse1` on host `marcuse`",
        "inventory/ielo-liazo.toml:17:10"
    ]
);
bad_input!(
    orport_zero_is_refused,
    "inventory/gandi.toml",
    "orport = 443",
    "orport = 0",
    ["ORPort 0 disables the relay", "inventory/gandi.toml:13:10"]
);
bad_input!(
    orport_out_of_range_is_a_located_type_error,
    "inventory/gandi.toml",
    "orport = 443",
    "orport = 70000",
    ["wrong value", "inventory/gandi.toml:13:10"]
);
bad_input!(
    mbps_uplink_is_refused_with_advice,
    "inventory/gandi.toml",
    "\"25 Mbit/s\"",
    "\"25 Mbps\"",
    [
        "tor itself rejects `Mbps`",
        "Mbit/s",
        "inventory/gandi.toml:9:10"
    ]
);
bad_input!(
    uplink_without_unit_is_refused,
    "inventory/gandi.toml",
    "\"25 Mbit/s\"",
    "\"25\"",
    ["has no unit", "inventory/gandi.toml:9:10"]
);
bad_input!(
    rate_below_tor_minimum_is_refused,
    "inventory/gandi.toml",
    "\"25 Mbit/s\"",
    "\"0.5 Mbit/s\"",
    ["`ekumen` would get 61 KBytes/s, below tor's minimum of 75 KBytes/s"]
);
bad_input!(
    burst_below_rate_is_refused,
    "inventory/gandi.toml",
    "orport = 443",
    "orport = 443\nbandwidth_burst = \"10 Mbit/s\"",
    [
        "burst (1220 KBytes/s) is below the rate (3051 KBytes/s)",
        "inventory/gandi.toml:14:19"
    ]
);
bad_input!(
    burst_factor_below_one_is_refused,
    "inventory/fleet.toml",
    "burst_factor = 1.0",
    "burst_factor = 0.5",
    ["burst_factor 0.5 is below 1", "inventory/fleet.toml:18:16"]
);
bad_input!(
    bandwidth_share_above_one_is_refused,
    "inventory/gandi.toml",
    "orport = 443",
    "orport = 443\nbandwidth_share = 1.5",
    [
        "bandwidth_share 1.5 is not in (0, 1]",
        "inventory/gandi.toml:14:19"
    ]
);
bad_input!(
    unknown_exit_policy_suggests_the_closest,
    "inventory/fleet.toml",
    "exit_policy = \"reduced\"",
    "exit_policy = \"reduce\"",
    [
        "unknown exit policy `reduce`",
        "inventory/fleet.toml:13:15",
        "did you mean `reduced`?"
    ]
);
bad_input!(
    exit_policy_port_zero_has_a_caret,
    "inventory/fleet.toml",
    "\"reject *:445\"",
    "\"reject *:0\"",
    [
        "exit policy rule `reject *:0`",
        "inventory/fleet.toml:20:49"
    ]
);
bad_input!(
    exit_policy_open_range_is_refused,
    "inventory/fleet.toml",
    "\"reject *:445\"",
    "\"reject *:80-\"",
    [
        "exit policy rule `reject *:80-`",
        "inventory/fleet.toml:20:"
    ]
);
bad_input!(
    exit_policy_bad_mask_is_refused,
    "inventory/fleet.toml",
    "\"reject *:445\"",
    "\"reject 192.0.2.0/33:*\"",
    [
        "exit policy rule `reject 192.0.2.0/33:*`",
        "inventory/fleet.toml:20:"
    ]
);
bad_input!(
    exit_policy_unknown_action_is_refused,
    "inventory/fleet.toml",
    "\"reject *:445\"",
    "\"deny *:445\"",
    [
        "exit policy rule `deny *:445`",
        "inventory/fleet.toml:20:40"
    ]
);
bad_input!(
    exit_without_exit_policy_role_is_refused,
    "inventory/fleet.toml",
    "\"exit-policy\", ",
    "",
    [
        "`marcuse1` is an exit but host `marcuse` has no exit-policy role",
        "add \"exit-policy\" to the host's roles"
    ]
);
bad_input!(
    unknown_role_suggests_the_closest,
    "inventory/fleet.toml",
    "\"hardening\"]",
    "\"hardenning\"]",
    [
        "unknown role `hardenning`",
        "inventory/fleet.toml:11:42",
        "did you mean `hardening`?"
    ]
);
bad_input!(
    metrics_port_in_torrc_extra_is_refused_as_managed,
    "inventory/fleet.toml",
    "metrics_port = 9035 ",
    "torrc_extra = [\"MetricsPort 127.0.0.1:9100\"] ",
    [
        "`MetricsPort` is managed by oignon and cannot be set in torrc_extra",
        "it comes from `metrics_port`",
        "inventory/fleet.toml:14:16"
    ]
);
bad_input!(
    address_in_torrc_extra_is_refused_as_managed,
    "inventory/gandi.toml",
    "orport = 443",
    "orport = 443\ntorrc_extra = [\"Address 192.0.2.99\"]",
    [
        "`Address` is managed by oignon",
        "inventory/gandi.toml:14:16"
    ]
);
bad_input!(
    managed_option_in_torrc_extra_is_refused,
    "inventory/gandi.toml",
    "orport = 443",
    "orport = 443\ntorrc_extra = [\"Nickname other\"]",
    [
        "`Nickname` is managed by oignon",
        "inventory/gandi.toml:14:16"
    ]
);
bad_input!(
    bad_ipv4_is_refused,
    "inventory/gandi.toml",
    "\"192.0.2.20\"",
    "\"192.0.2.300\"",
    [
        "`192.0.2.300` is not an IPv4 address",
        "inventory/gandi.toml:7:8"
    ]
);
bad_input!(
    bad_ipv6_is_refused,
    "inventory/gandi.toml",
    "\"2001:db8:20::1\"",
    "\"[2001:db8:20::1]\"",
    [
        "is not an IPv6 address",
        "without brackets",
        "inventory/gandi.toml:8:8"
    ]
);
bad_input!(
    bad_host_name_is_refused,
    "inventory/gandi.toml",
    "name = \"ekumen\"",
    "name = \"Ekumen_1\"",
    [
        "host name `Ekumen_1` is not a valid host name",
        "inventory/gandi.toml:6:8"
    ]
);
bad_input!(
    duplicate_host_is_refused,
    "inventory/ielo-liazo.toml",
    "name = \"marcuse\"",
    "name = \"ekumen\"",
    [
        "host `ekumen` is defined twice",
        "inventory/ielo-liazo.toml:6:8",
        "already defined at inventory/gandi.toml:6"
    ]
);
bad_input!(
    kernel_param_with_quote_is_refused,
    "inventory/gandi.toml",
    "uplink = \"25 Mbit/s\"",
    "uplink = \"25 Mbit/s\"\n[host.defaults]\nkernel_params = [\"pti=on\\\"x\"]",
    [
        "cannot be put on a command line",
        "inventory/gandi.toml:11:"
    ]
);
bad_input!(
    wrong_type_is_located,
    "inventory/fleet.toml",
    "exit = true",
    "exit = \"yes\"",
    ["wrong value", "inventory/fleet.toml:12:8"]
);
bad_input!(
    missing_required_field_is_named,
    "inventory/gandi.toml",
    "uplink = \"25 Mbit/s\"\n",
    "",
    [
        "missing key `uplink` in this table",
        "inventory/gandi.toml:5:1",
        "add `uplink`"
    ]
);
bad_input!(
    bad_boot_loader_is_refused,
    "inventory/gandi.toml",
    "uplink = \"25 Mbit/s\"",
    "uplink = \"25 Mbit/s\"\nboot = \"lilo\"",
    ["unknown boot loader `lilo`", "inventory/gandi.toml:10:8"]
);
bad_input!(
    bad_sysctl_key_is_refused,
    "inventory/gandi.toml",
    "uplink = \"25 Mbit/s\"",
    "uplink = \"25 Mbit/s\"\n[host.defaults]\nsysctl = { \"kernel..x\" = 1 }",
    [
        "sysctl `kernel..x = 1` is not a valid setting",
        "inventory/gandi.toml:11:"
    ]
);
bad_input!(
    template_syntax_error_names_template_and_line,
    "roles/tor/templates/torrc.tera",
    "SocksPort 0",
    "SocksPort {{ 0",
    [
        "template `tor/torrc.tera`",
        "roles/tor/templates/torrc.tera:17:1"
    ]
);
bad_input!(
    template_unknown_variable_names_template_and_relay,
    "roles/tor/templates/torrc.tera",
    "SocksPort 0",
    "SocksPort {{ relay.socks }}",
    ["template `tor/torrc.tera`", "relay `ekumen`"]
);
bad_input!(
    role_manifest_bad_mode_is_refused,
    "roles/kernel/role.toml",
    "mode = \"0644\"",
    "mode = \"0999\"",
    [
        "mode \"0999\" is not an octal file mode",
        "roles/kernel/role.toml:7:8 (field `file.0.mode`)"
    ]
);
bad_input!(
    role_manifest_unknown_key_is_located,
    "roles/kernel/role.toml",
    "mode = \"0644\"",
    "mod = \"0644\"",
    [
        "bad role manifest",
        "unknown field `mod`",
        "roles/kernel/role.toml:7:1"
    ]
);
bad_input!(
    hosts_need_a_hoster,
    "inventory/gandi.toml",
    "[hoster]\nname = \"Gandi\"\ndomain = \"gandi.net\"\n",
    "",
    [
        "hosts must be listed in their hoster's file",
        "inventory/gandi.toml"
    ]
);

#[test]
fn every_error_is_reported_at_once_across_files() {
    let f = Fixture::shipped();
    f.edit(
        "inventory/gandi.toml",
        "nickname = \"ekumen\"",
        "nikname = \"ekumen\"",
    );
    f.edit("inventory/ielo-liazo.toml", "\"marcuse1\"", "\"marcuse-1\"");
    f.edit(
        "inventory/fleet.toml",
        "exit_policy = \"reduced\"",
        "exit_policy = \"nope\"",
    );
    let run = f.run(&["check", "--no-tor"]);
    run.code(1).err_has(&[
        "unknown key `nikname`",
        "nickname `marcuse-1`",
        "unknown exit policy `nope`",
    ]);
    assert!(run.stderr.contains(" errors, "), "{}", run.stderr);
}

#[test]
fn missing_fleet_table_is_explained() {
    let f = Fixture::shipped();
    std::fs::remove_file(f.path("inventory/fleet.toml")).unwrap();
    f.run(&["check"])
        .code(1)
        .err_has(&["no [fleet] table in the inventory", "add fleet.toml"]);
}

#[test]
fn missing_inventory_directory_is_explained() {
    let f = Fixture::shipped();
    f.run(&["--inventory", "nope", "check"]).code(1).err_has(&[
        "cannot read the inventory directory nope",
        "--inventory DIR",
    ]);
}

#[test]
fn non_utf8_file_is_located() {
    let f = Fixture::shipped();
    std::fs::write(f.path("inventory/bad.toml"), b"[hoster]\nname = \"\xff\"\n").unwrap();
    f.run(&["check"])
        .code(1)
        .err_has(&["not valid UTF-8", "inventory/bad.toml:2:9"]);
}

#[test]
fn ipv4_in_accept6_is_a_warning_not_an_error() {
    let f = Fixture::shipped();
    f.edit(
        "inventory/fleet.toml",
        "\"reject *:445\"",
        "\"reject *:445\", \"accept6 192.0.2.1:80\"",
    );
    let run = f.run(&["check", "--no-tor"]);
    run.code(0)
        .err_has(&["warning:", "inventory/fleet.toml:20:"])
        .out_has(&["1 warning"]);
}

#[test]
fn tor_rejects_a_bad_option_value_with_its_own_message() {
    require_tor();
    let f = Fixture::shipped();
    // An option oignon lets through (tor knows it), with a value only tor checks.
    f.edit(
        "inventory/gandi.toml",
        "orport = 443",
        "orport = 443\ntorrc_extra = [\"ConnLimit abc\"]",
    );
    f.run(&["check"]).code(1).err_has(&[
        "tor rejects the torrc of `ekumen` on host `ekumen`",
        "Could not parse ConnLimit",
    ]);
}

#[test]
fn explain_shows_the_reduced_policy_ports() {
    let run = crate::harness::run_in(&crate::harness::repo(), &["check", "--explain", "ekumen"]);
    run.code(0).out_has(&[
        "exit policy `reduced`",
        "reject *:25",
        "accepted ports, IPv4: 20-23, 43, 53, 79-81",
    ]);
    // The fleet prepends `reject *:445`, so 445 is not among the reduced ports any more.
    let ports = run
        .stdout
        .lines()
        .find(|l| l.starts_with("accepted ports, IPv4"))
        .unwrap();
    assert!(
        ports.contains(" 443, 464-465, 531") && !ports.contains(" 445"),
        "{ports}"
    );
}

#[test]
fn explain_unknown_nickname_suggests() {
    crate::harness::run_in(&crate::harness::repo(), &["check", "--explain", "ekumenn"])
        .code(1)
        .err_has(&["no relay is nicknamed `ekumenn`", "did you mean `ekumen`?"]);
}

fn require_tor() {
    let ok = std::process::Command::new("tor")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "tor is not installed: run ./scripts/test, which installs it"
    );
}

#[test]
fn an_orport_clash_is_reported_once_not_once_per_address_family() {
    let f = Fixture::shipped();
    f.edit("inventory/ielo-liazo.toml", "orport = 9001", "orport = 443");
    let run = f.run(&["check", "--no-tor"]);
    run.code(1);
    assert_eq!(
        run.stderr.matches("is already the ORPort").count(),
        1,
        "{}",
        run.stderr
    );
}

#[test]
fn a_role_path_with_spaces_is_refused() {
    let f = Fixture::shipped();
    f.edit(
        "roles/kernel/role.toml",
        "path = \"/etc/default/grub.d/oignon.cfg\"",
        "path = \"/etc/default/grub.d/oignon {{ host.name }}.cfg\"",
    );
    f.run(&["check", "--no-tor"]).code(1).err_has(&[
        "path \"/etc/default/grub.d/oignon {{ host.name }}.cfg\" holds ' '",
        "roles/kernel/role.toml:4:8 (field `file.0.path`)",
    ]);
}

#[test]
fn a_missing_template_is_located_at_its_manifest_line() {
    let f = Fixture::shipped();
    f.edit(
        "roles/kernel/role.toml",
        "template = \"grub.cfg.tera\"",
        "template = \"grub.cfg.ter\"",
    );
    f.run(&["check", "--no-tor"]).code(1).err_has(&[
        "role `kernel` names template `grub.cfg.ter`, which does not exist",
        "roles/kernel/role.toml:",
        "field `file.0.template`",
    ]);
}

#[test]
fn a_non_utf8_template_is_located_at_its_first_bad_byte() {
    let f = Fixture::shipped();
    let p = f.path("roles/kernel/templates/grub.cfg.tera");
    let mut bytes = std::fs::read(&p).unwrap();
    bytes.extend_from_slice(b"\nGRUB_X=\xff\n");
    let line = bytes.iter().filter(|&&b| b == b'\n').count() - 1 + 1;
    std::fs::write(&p, bytes).unwrap();
    f.run(&["check", "--no-tor"]).code(1).err_has(&[
        &format!("template `kernel/grub.cfg.tera` is not UTF-8: invalid byte at roles/kernel/templates/grub.cfg.tera:{line}:8"),
    ]);
}

#[test]
fn dos_defense_pinned_on_or_off_is_rendered_and_a_bad_word_is_located() {
    let f = Fixture::shipped();
    f.edit(
        "inventory/fleet.toml",
        "dos_defense = \"auto\"",
        "dos_defense = \"on\"",
    );
    f.run(&["render", "--host", "ekumen"]).code(0).out_has(&[
        "DoSCircuitCreationEnabled 1\nDoSConnectionEnabled 1\nDoSStreamCreationEnabled 1\n",
    ]);
    f.edit(
        "inventory/fleet.toml",
        "dos_defense = \"on\"",
        "dos_defense = false",
    );
    f.run(&["render", "--host", "ekumen"])
        .code(0)
        .out_has(&["DoSCircuitCreationEnabled 0\n"]);
    f.edit(
        "inventory/fleet.toml",
        "dos_defense = false",
        "dos_defense = \"always\"",
    );
    f.run(&["check", "--no-tor"]).code(1).err_has(&[
        "dos_defense `always` is not auto, on or off",
        "inventory/fleet.toml:",
    ]);
}

#[test]
fn inventory_entries_that_are_not_regular_files_are_named_not_skipped() {
    let f = Fixture::shipped();
    std::os::unix::fs::symlink("nowhere.toml", f.path("inventory/dangling.toml")).unwrap();
    std::os::unix::fs::symlink("loop-b.toml", f.path("inventory/loop-a.toml")).unwrap();
    std::os::unix::fs::symlink("loop-a.toml", f.path("inventory/loop-b.toml")).unwrap();
    std::fs::create_dir(f.path("inventory/x.toml")).unwrap();
    f.run(&["check", "--no-tor"]).code(1).err_has(&[
        "inventory/dangling.toml is a symbolic link that leads nowhere readable",
        "inventory/loop-a.toml is a symbolic link that leads nowhere readable",
        "inventory/x.toml is a directory, not a TOML file",
    ]);
}

#[test]
fn check_without_tor_fails_unless_no_tor_is_given() {
    let f = Fixture::shipped();
    let empty = f.path("empty-path");
    std::fs::create_dir(&empty).unwrap();
    crate::harness::run_in_env(f.dir.path(), &["check"], &[("PATH", &empty)])
        .code(1)
        .err_has(&[
            "error: tor is not installed here, so the rendered torrc files cannot be verified by tor",
            "oignon check --no-tor",
        ]);
    crate::harness::run_in_env(f.dir.path(), &["check", "--no-tor"], &[("PATH", &empty)])
        .code(0)
        .out_has(&["ok: 4 hosts, 6 relays"]);
}

#[test]
fn an_undefined_template_variable_is_located_at_its_line() {
    let f = Fixture::shipped();
    f.edit(
        "roles/tor/templates/torrc.tera",
        "SocksPort 0",
        "SocksPort 0\nNickname2 {{ relay.no_such_field }}",
    );
    let line = std::fs::read_to_string(f.path("roles/tor/templates/torrc.tera"))
        .unwrap()
        .lines()
        .position(|l| l.contains("no_such_field"))
        .unwrap()
        + 1;
    f.run(&["check", "--no-tor"]).code(1).err_has(&[
        "template `tor/torrc.tera`",
        "relay.no_such_field",
        &format!("roles/tor/templates/torrc.tera:{line}:"),
    ]);
}

#[test]
fn color_always_colours_checks_diagnostics_and_never_does_not() {
    let f = Fixture::shipped();
    f.edit(
        "inventory/gandi.toml",
        "nickname = \"ekumen\"",
        "nikname = \"ekumen\"",
    );
    let coloured = f.run(&["--color", "always", "check", "--no-tor"]);
    coloured.code(1);
    assert!(
        coloured.stderr.contains("\u{1b}[31m\u{1b}[1merror"),
        "{:?}",
        coloured.stderr
    );
    let plain = f.run(&["--color", "never", "check", "--no-tor"]);
    assert!(!plain.stderr.contains('\u{1b}'), "{:?}", plain.stderr);
}
