//! Issue 8 item 4: torrc line injection from inventory strings, and `torrc_extra` lines that set
//! what oignon manages under another spelling. Each test replays an attack (or a neighbour of
//! one) that `check` used to pass, and asserts the refusal and its message.

use crate::harness::{lab_of, oignon, Fixture, LabFleet};

/// Edits a copy of the shipped inventory, runs `check --no-tor`: exit 1 and every needle in stderr.
macro_rules! refused {
    ($name:ident, $file:expr, $from:expr, $to:expr, [$($needle:expr),+ $(,)?]) => {
        #[test]
        fn $name() {
            let f = Fixture::shipped();
            f.edit($file, $from, $to);
            f.run(&["check", "--no-tor"]).code(1).err_has(&[$($needle),+]);
        }
    };
}

const FLEET: &str = "inventory/fleet.toml";
const GANDI: &str = "inventory/gandi.toml";
const URL: &str = "url = \"https://nos-oignons.net\"";

/// A `torrc_extra` line on ekumen's relay entry.
macro_rules! extra_refused {
    ($name:ident, $line:expr, [$($needle:expr),+ $(,)?]) => {
        refused!(
            $name,
            GANDI,
            "orport = 443",
            &format!("orport = 443\ntorrc_extra = [{}]", toml_string($line)),
            [$($needle),+]
        );
    };
}

/// `s` as a TOML basic string.
fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

// --- The reproduced attack and its neighbours in [fleet] ------------------------------------

refused!(
    url_with_a_line_break_cannot_open_the_exit,
    FLEET,
    URL,
    "url = \"https://nos-oignons.net\\nExitPolicy accept *:*\\n#\"",
    [
        "error: `fleet.url` = `https://nos-oignons.net\\nExitPolicy accept *:*\\n#` contains a line feed (U+000A) at character 24",
        "inventory/fleet.toml:6:7 (field `fleet.url`)",
        "inventory strings are single lines of printable text",
    ]
);
refused!(
    url_with_a_carriage_return_is_refused,
    FLEET,
    URL,
    "url = \"https://nos-oignons.net\\rExitPolicy accept *:*\"",
    [
        "`fleet.url`",
        "contains a carriage return (U+000D) at character 24"
    ]
);
refused!(
    url_with_a_nul_is_refused,
    FLEET,
    URL,
    "url = \"https://nos-oignons.net\\u0000\"",
    ["`fleet.url`", "contains a NUL byte (U+0000)"]
);
refused!(
    url_with_a_tab_is_refused,
    FLEET,
    URL,
    "url = \"https://nos-oignons.net\\tExitPolicy\"",
    ["`fleet.url`", "contains a tab (U+0009)"]
);
refused!(
    url_with_a_next_line_character_is_refused,
    FLEET,
    URL,
    "url = \"https://nos-oignons.net\\u0085ExitPolicy accept *:*\"",
    ["`fleet.url`", "contains a next-line character (U+0085)"]
);
refused!(
    url_with_a_line_separator_is_refused,
    FLEET,
    URL,
    "url = \"https://nos-oignons.net\\u2028ExitPolicy accept *:*\"",
    ["`fleet.url`", "contains a line separator (U+2028)"]
);
refused!(
    url_with_a_hash_would_cut_contactinfo_and_is_refused,
    FLEET,
    URL,
    "url = \"https://nos-oignons.net/#x\"",
    [
        "url `https://nos-oignons.net/#x` cannot go into ContactInfo: `#` is not allowed",
        "inventory/fleet.toml:6:7",
    ]
);
refused!(
    url_with_a_space_would_add_a_ciiss_field_and_is_refused,
    FLEET,
    URL,
    "url = \"https://nos-oignons.net proof:dns-rsa\"",
    ["cannot go into ContactInfo: ` ` is not allowed"]
);
refused!(
    url_ending_in_a_backslash_is_refused,
    FLEET,
    URL,
    "url = \"https://nos-oignons.net\\\\\"",
    ["cannot go into ContactInfo: `\\\\` is not allowed"]
);
refused!(
    email_with_a_line_break_is_refused,
    FLEET,
    "email = \"abuse@nos-oignons.net\"",
    "email = \"abuse@nos-oignons.net\\nExitPolicy accept *:*\"",
    ["`fleet.email`", "contains a line feed (U+000A)"]
);
refused!(
    email_with_a_hash_is_refused,
    FLEET,
    "email = \"abuse@nos-oignons.net\"",
    "email = \"ab#use@nos-oignons.net\"",
    ["email `ab#use@nos-oignons.net` cannot go into ContactInfo: `#` starts a comment"]
);
refused!(
    email_without_at_is_refused,
    FLEET,
    "email = \"abuse@nos-oignons.net\"",
    "email = \"abuse\"",
    [
        "email `abuse` cannot go into ContactInfo: it has no `@`",
        "(field `fleet.email`)"
    ]
);
refused!(
    proof_outside_ciiss_is_refused,
    FLEET,
    "proof = \"uri-rsa\"",
    "proof = \"uri-rsa ciissversion:3\"",
    ["proof `uri-rsa ciissversion:3` is not a CIISS proof"]
);
refused!(
    operator_with_a_line_break_is_refused,
    FLEET,
    "operator = \"Nos oignons\"",
    "operator = \"Nos oignons\\nExitPolicy accept *:*\"",
    ["`fleet.operator`", "contains a line feed"]
);
refused!(
    operator_with_a_bidi_override_is_refused,
    FLEET,
    "operator = \"Nos oignons\"",
    "operator = \"Nos \\u202Eoignons\"",
    [
        "`fleet.operator`",
        "a bidirectional control character (U+202E)"
    ]
);

// --- Hoster, host, relay, kernel and sysctl strings ------------------------------------------

refused!(
    hoster_name_with_a_line_break_cannot_open_the_exit,
    GANDI,
    "name = \"Gandi\"",
    "name = \"Gandi\\nExitPolicy accept *:*\\n#\"",
    [
        "`hoster.name` = `Gandi\\nExitPolicy accept *:*\\n#` contains a line feed (U+000A) at character 6",
        "inventory/gandi.toml:2:8",
    ]
);
refused!(
    hoster_name_with_a_line_separator_is_refused,
    GANDI,
    "name = \"Gandi\"",
    "name = \"Gandi\\u2029x\"",
    ["`hoster.name`", "a paragraph separator (U+2029)"]
);
refused!(
    hoster_domain_with_a_line_break_is_refused,
    GANDI,
    "domain = \"gandi.net\"",
    "domain = \"gandi.net\\nExitPolicy accept *:*\"",
    ["`hoster.domain`", "contains a line feed"]
);
refused!(
    hoster_domain_with_a_scheme_is_refused,
    GANDI,
    "domain = \"gandi.net\"",
    "domain = \"https://gandi.net\"",
    [
        "hoster domain `https://gandi.net` must be a bare domain name",
        "(field `hoster.domain`)"
    ]
);
refused!(
    host_name_with_a_line_break_is_refused,
    GANDI,
    "name = \"ekumen\"",
    "name = \"ekumen\\nExitPolicy accept *:*\"",
    ["`host.0.name`", "contains a line feed"]
);
refused!(
    ssh_destination_with_a_line_break_is_refused,
    GANDI,
    "name = \"ekumen\"",
    "name = \"ekumen\"\nssh = \"ekumen\\nProxyCommand touch /tmp/x\"",
    ["`host.0.ssh`", "contains a line feed"]
);
refused!(
    ssh_destination_starting_with_a_dash_is_refused,
    GANDI,
    "name = \"ekumen\"",
    "name = \"ekumen\"\nssh = \"-oProxyCommand=touch /tmp/x\"",
    ["ssh destination `-oProxyCommand=touch /tmp/x` is not a destination ssh can take safely"]
);
refused!(
    nickname_with_a_line_break_is_refused,
    GANDI,
    "nickname = \"ekumen\"",
    "nickname = \"ekumen\\nExitPolicy accept *:*\"",
    ["`host.0.relay.0.nickname`", "contains a line feed"]
);
refused!(
    uplink_with_a_line_break_is_refused,
    GANDI,
    "uplink = \"25 Mbit/s\"",
    "uplink = \"25 Mbit/s\\nExitPolicy accept *:*\"",
    ["`host.0.uplink`", "contains a line feed"]
);
refused!(
    ipv6_with_a_carriage_return_is_refused,
    GANDI,
    "ipv6 = \"2001:db8:20::1\"",
    "ipv6 = \"2001:db8:20::1\\r\"",
    ["`host.0.ipv6`", "contains a carriage return"]
);
refused!(
    exit_policy_prepend_with_a_line_break_is_refused,
    FLEET,
    "exit_policy_prepend = [\"reject *:25\", \"reject *:445\"]",
    "exit_policy_prepend = [\"reject *:25\\nExitPolicy accept *:*\", \"reject *:445\"]",
    ["`defaults.exit_policy_prepend.0`", "contains a line feed"]
);
refused!(
    sysctl_key_with_a_line_break_is_refused,
    GANDI,
    "uplink = \"25 Mbit/s\"",
    "uplink = \"25 Mbit/s\"\n[host.defaults]\nsysctl = { \"kernel.x\\nkernel.y\" = 1 }",
    ["the key `kernel.x\\nkernel.y`", "contains a line feed"]
);
refused!(
    kernel_param_with_a_line_break_is_refused,
    GANDI,
    "uplink = \"25 Mbit/s\"",
    "uplink = \"25 Mbit/s\"\n[host.defaults]\nkernel_params = [\"quiet\\nGRUB_X=1\"]",
    ["`host.0.defaults.kernel_params.0`", "contains a line feed"]
);
refused!(
    role_name_with_a_line_break_is_refused,
    FLEET,
    "roles = [\"tor\", \"exit-policy\", \"kernel\", \"hardening\"]",
    "roles = [\"tor\", \"exit-policy\\nx\", \"kernel\", \"hardening\"]",
    ["`defaults.roles.1`", "contains a line feed"]
);

#[test]
fn a_megabyte_value_is_quoted_in_a_few_characters() {
    let f = Fixture::shipped();
    let long = "a".repeat(1 << 20);
    f.edit(FLEET, URL, &format!("url = \"https://{long}\\n\""));
    let run = f.run(&["check", "--no-tor"]);
    run.code(1).err_has(&["more characters)"]);
    assert!(
        run.stderr.len() < 4096,
        "{} bytes of stderr for one long value",
        run.stderr.len()
    );
}

// --- torrc_extra: managed options under any spelling ----------------------------------------

extra_refused!(
    extra_abbreviated_exit_policy_is_refused,
    "ExitPolic accept *:*",
    [
        "`ExitPolicy` is managed by oignon and cannot be set in torrc_extra (tor reads `ExitPolic` as `ExitPolicy`",
        "inventory/gandi.toml:14:16 (field `torrc_extra`)",
        "it comes from `exit_policy` and `exit_policy_prepend`",
    ]
);
extra_refused!(
    extra_appended_exit_policy_is_refused,
    "+ExitPolicy accept *:*",
    ["`ExitPolicy` is managed by oignon and cannot be set in torrc_extra (a `+` line adds to it)"]
);
extra_refused!(
    extra_cleared_exit_policy_is_refused,
    "/ExitPolicy",
    ["`ExitPolicy` is managed by oignon and cannot be set in torrc_extra (a `/` line clears it)"]
);
extra_refused!(
    extra_abbreviated_sandbox_is_refused,
    "Sandbo 0",
    [
        "`Sandbox` is managed by oignon",
        "tor reads `Sandbo` as `Sandbox`",
        "it comes from `sandbox`"
    ]
);
extra_refused!(
    extra_include_is_refused,
    "%include /etc/tor/extra",
    ["`%include` makes tor read another file, which oignon neither renders nor checks"]
);
extra_refused!(
    extra_include_with_a_prefix_is_refused,
    "+%include /etc/tor/extra",
    ["`%include` makes tor read another file"]
);
extra_refused!(
    extra_lowercase_exit_policy_is_refused_by_its_canonical_name,
    "exitpolicy accept *:*",
    ["`ExitPolicy` is managed by oignon"]
);
extra_refused!(
    extra_uppercase_abbreviation_is_refused,
    "EXITPOL accept *:*",
    [
        "`ExitPolicy` is managed by oignon",
        "tor reads `EXITPOL` as `ExitPolicy`"
    ]
);
extra_refused!(
    extra_reduced_exit_policy_is_refused,
    "ReducedExitPolicy 1",
    ["`ReducedExitPolicy` is managed by oignon"]
);
extra_refused!(
    extra_exit_policy_reject_private_off_is_refused,
    "ExitPolicyRejectPrivate 0",
    ["`ExitPolicyRejectPrivate` is managed by oignon"]
);
extra_refused!(
    extra_socks_port_by_prefix_is_refused,
    "SocksPor 9050",
    [
        "`SocksPort` is managed by oignon",
        "tor reads `SocksPor` as `SocksPort`"
    ]
);
extra_refused!(
    extra_family_id_is_refused,
    "FamilyId abc",
    ["`FamilyId` is managed by oignon", "it comes from secrets/"]
);
extra_refused!(
    extra_ending_in_a_backslash_would_swallow_the_next_line,
    "Log notice stdout \\",
    ["torrc_extra line `Log notice stdout \\` ends with a backslash"]
);
extra_refused!(
    extra_with_a_glued_hash_is_refused,
    "Log notice file /var/log/tor/a#b",
    [
        "tor reads `#` as the start of a comment",
        "tor would read the value as `notice file /var/log/tor/a`",
    ]
);
extra_refused!(
    extra_unknown_option_is_refused_before_tor_sees_it,
    "NoSuchOption 1",
    ["tor has no option `NoSuchOption`"]
);
extra_refused!(
    extra_abbreviation_of_an_unmanaged_option_is_refused,
    "ConnLimi 1000",
    [
        "tor reads `ConnLimi` as `ConnLimit`",
        "write the full name `ConnLimit`"
    ]
);
extra_refused!(
    extra_obsolete_option_is_refused,
    "AllowDotExit 1",
    ["`AllowDotExit` is obsolete or virtual"]
);
extra_refused!(
    extra_with_a_line_break_is_refused,
    "Log notice stdout\nExitPolicy accept *:*",
    ["`host.0.relay.0.torrc_extra.0`", "contains a line feed"]
);
extra_refused!(
    extra_quoted_value_with_an_escaped_line_break_is_refused,
    "Log \"notice stdout\\nExitPolicy accept *:*\"",
    ["holds a control character once tor decodes it"]
);

#[test]
fn a_plain_torrc_extra_option_and_a_spaced_comment_still_pass() {
    let f = Fixture::shipped();
    f.edit(
        GANDI,
        "orport = 443",
        "orport = 443\ntorrc_extra = [\"ConnLimit 2000 # more than the default\", \"# a comment\"]",
    );
    f.run(&["check", "--no-tor"]).code(0);
}

// --- The rendered torrc itself (what gets past the inventory checks) -------------------------

#[test]
fn a_family_id_file_carrying_a_line_is_caught_in_the_rendered_torrc() {
    // secrets/ is not the inventory: only the check of the rendered torrc stands here.
    let f = Fixture::shipped();
    let id = std::fs::read_to_string(f.path("secrets/family.public_family_id")).unwrap();
    f.write(
        "secrets/family.public_family_id",
        &format!("{}\nExitPolicy accept *:*\n", id.trim()),
    );
    f.run(&["check", "--no-tor"]).code(1).err_has(&[
        "the torrc of relay `ekumen` on host `ekumen` (/etc/tor/instances/ekumen/torrc) sets `ExitPolicy` otherwise than oignon means: `ExitPolicy accept *:*` (line",
        "most likely from secrets/ (family.public_family_id",
        "tor would read `FamilyId` at line 96 of the torrc of relay `ekumen`",
        "where the template writes `…0dNBZ8bKYSCE_ExitPolicy accept *:*`",
    ]);
}

#[test]
fn explain_reads_the_policy_from_the_rendered_torrc() {
    let run = crate::harness::run_in(&crate::harness::repo(), &["check", "--explain", "ekumen"]);
    run.code(0).out_has(&[
        "as tor reads /etc/tor/instances/ekumen/torrc",
        "reject *:25",
        "accepted ports, IPv4: 20-23, 43, 53",
    ]);
}

// --- plan and apply refuse too ---------------------------------------------------------------

#[test]
fn plan_refuses_an_injected_url() {
    let f = Fixture::shipped();
    f.edit(
        FLEET,
        URL,
        "url = \"https://nos-oignons.net\\nExitPolicy accept *:*\\n#\"",
    );
    let dir = tempfile::tempdir().unwrap();
    f.run(&["plan", "--local", dir.path().to_str().unwrap()])
        .code(1)
        .err_has(&["`fleet.url`", "contains a line feed"]);
}

#[test]
fn apply_with_an_injected_hoster_name_writes_nothing_on_the_host() {
    let Some(LabFleet { lab, f }) = LabFleet::start(1) else {
        return;
    };
    f.edit(
        GANDI,
        "name = \"Gandi\"",
        "name = \"Gandi\\nExitPolicy accept *:*\\n#\"",
    );
    oignon(&f, &lab, &["apply", "--yes", "--brief", "--host", "ekumen"])
        .code(1)
        .err_has(&["`hoster.name`", "contains a line feed"]);
    assert!(
        lab.read(lab_of("ekumen"), "/etc/tor/instances/ekumen/torrc")
            .is_none(),
        "no torrc written"
    );
    assert!(
        lab.systemctl_log(lab_of("ekumen")).is_empty(),
        "no handler ran"
    );
}
