//! A `host_key` pinned in the inventory holds for every destination form ssh takes, against real
//! lab hosts: a wrong pin is refused (in ssh's words) even where the user's own known_hosts trusts
//! the host, and the right one is accepted. And an `ssh` field can never become an option of ssh.

use crate::harness::lab::Lab;
use crate::harness::{Fixture, Run};
use std::path::PathBuf;
use std::process::Command;

/// A lab host also reachable on `[::1]:port6`, and a client config that reaches it every way:
/// the alias `lab1`, `127.0.0.1` and `::1` by their `Port` lines. The user's known_hosts trusts the
/// host's real key under both addresses, so only a pin that holds can refuse a connection.
struct Setup {
    lab: Lab,
    f: Fixture,
    port: u16,
    port6: u16,
    config: PathBuf,
    right: String,
    wrong: String,
}

fn free_port_v6() -> u16 {
    let l = std::net::TcpListener::bind("[::1]:0").expect("::1 on this machine");
    l.local_addr().unwrap().port()
}

/// None where the lab cannot run (not root): the test is then skipped, said on stderr.
fn setup() -> Option<Setup> {
    let lab = Lab::start_or_skip(1)?;
    let f = Fixture::shipped();
    let h = lab.host("lab1").clone();
    // A second sshd of the same host (same host key) on ::1, inside the host's namespace, so
    // `lab stop` ends it with the rest.
    let port6 = free_port_v6();
    let sshd_config = std::fs::read_to_string(h.root.join("sshd_config")).unwrap();
    let v6_config = h.root.join("sshd6_config");
    let v6: String = sshd_config
        .lines()
        .filter(|l| {
            !l.starts_with("ListenAddress") && !l.starts_with("Port") && !l.starts_with("PidFile")
        })
        .map(|l| format!("{l}\n"))
        .collect::<String>()
        + &format!(
            "ListenAddress ::1\nPort {port6}\nPidFile {}\n",
            h.root.join("sshd6.pid").display()
        );
    std::fs::write(&v6_config, v6).unwrap();
    let out = lab.exec_argv(
        "lab1",
        &["/usr/sbin/sshd", "-f", v6_config.to_str().unwrap()],
    );
    assert!(out.status.success(), "sshd on ::1: {out:?}");
    let known = f.path("user_known_hosts");
    std::fs::write(
        &known,
        format!(
            "[127.0.0.1]:{p} {k}\n[::1]:{port6} {k}\n",
            p = h.port,
            k = h.host_key
        ),
    )
    .unwrap();
    let config = f.path("client.ssh_config");
    std::fs::write(
        &config,
        format!(
            "Host lab1\n  HostName 127.0.0.1\n  Port {p}\n\
             Host 127.0.0.1\n  Port {p}\n\
             Host ::1\n  Port {port6}\n\
             Host *\n  User root\n  IdentityFile {id}\n  IdentitiesOnly yes\n  UserKnownHostsFile {known}\n\
             \x20 GlobalKnownHostsFile /dev/null\n  StrictHostKeyChecking yes\n  BatchMode yes\n  LogLevel ERROR\n",
            p = h.port,
            id = lab.identity().display(),
            known = known.display(),
        ),
    )
    .unwrap();
    // Wait for the ::1 sshd to listen.
    for _ in 0..100 {
        if std::net::TcpStream::connect(("::1", port6)).is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Some(Setup {
        port: h.port,
        port6,
        config,
        right: h.host_key.clone(),
        wrong: new_host_key(&f),
        lab,
        f,
    })
}

/// A fresh ed25519 public key that no lab host has.
fn new_host_key(f: &Fixture) -> String {
    let p = f.path("other_host_key");
    let o = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "", "-f"])
        .arg(&p)
        .output()
        .unwrap();
    assert!(o.status.success());
    let pubkey = std::fs::read_to_string(p.with_extension("pub")).unwrap();
    pubkey
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

impl Setup {
    /// `plan --host ekumen` with ekumen's `ssh` and `host_key` set as given.
    fn plan(&self, ssh: &str, host_key: Option<&str>) -> Run {
        let text = std::fs::read_to_string(self.f.path("inventory/gandi.toml")).unwrap();
        let mut host = format!("name = \"ekumen\"\nssh = \"{ssh}\"\n");
        if let Some(k) = host_key {
            host.push_str(&format!("host_key = \"{k}\"\n"));
        }
        let start = text.find("name = \"ekumen\"\n").unwrap();
        let end = text[start..].find("ipv4").unwrap() + start;
        let new = format!("{}{host}{}", &text[..start], &text[end..]);
        std::fs::write(self.f.path("inventory/gandi.toml"), new).unwrap();
        self.f
            .run_over(&self.config, &["plan", "--host", "ekumen", "--brief"])
    }

    fn forms(&self) -> Vec<String> {
        let (p, p6) = (self.port, self.port6);
        vec![
            "lab1".into(),
            "root@lab1".into(),
            "127.0.0.1".into(),
            "root@127.0.0.1".into(),
            format!("ssh://root@127.0.0.1:{p}"),
            format!("ssh://127.0.0.1:{p}"),
            "[::1]".into(),
            "root@[::1]".into(),
            "::1".into(),
            format!("ssh://root@[::1]:{p6}"),
        ]
    }
}

fn refused(run: &Run, form: &str) -> Result<(), String> {
    let text = format!("{}{}", run.stdout, run.stderr);
    if run.code == 1
        && text.contains(&format!("cannot connect with ssh to `{form}`"))
        && text.contains("Host key verification failed")
        && text.contains("not the host_key pinned in the inventory")
    {
        Ok(())
    } else {
        Err(format!(
            "{form}: a wrong pinned key was not refused (exit {}):\n{text}",
            run.code
        ))
    }
}

fn accepted(run: &Run, form: &str) -> Result<(), String> {
    if run.code == 0 && run.stdout.contains("ekumen: 9 to create") {
        Ok(())
    } else {
        Err(format!(
            "{form}: the right pinned key was not accepted (exit {}):\n{}{}",
            run.code, run.stdout, run.stderr
        ))
    }
}

#[test]
fn a_pinned_host_key_holds_for_every_destination_form() {
    let Some(s) = setup() else {
        return;
    };
    let mut failures = vec![];
    for form in s.forms() {
        // Unpinned, the user's known_hosts lets every form in: the forms really reach the host.
        if let Err(e) = accepted(&s.plan(&form, None), &form) {
            failures.push(format!("unpinned {e}"));
        }
        if let Err(e) = refused(&s.plan(&form, Some(&s.wrong)), &form) {
            failures.push(e);
        }
        if let Err(e) = accepted(&s.plan(&form, Some(&s.right)), &form) {
            failures.push(e);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn a_pin_holds_over_a_user_config_that_trusts_any_key() {
    let Some(s) = setup() else {
        return;
    };
    // Every other way ssh could come to trust a key, offered by the user's config: a wildcard
    // line in a global known_hosts, no strict checking, an alias of its own, a known_hosts
    // command printing the host's real key.
    let global = s.f.path("global_known_hosts");
    std::fs::write(&global, format!("* {}\n", s.right)).unwrap();
    let user_known = s.f.path("user_known_hosts");
    let cmd = s.f.path("known_hosts_command.sh");
    std::fs::write(&cmd, format!("#!/bin/sh\necho \"$1 {}\"\n", s.right)).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&cmd, std::fs::Permissions::from_mode(0o755)).unwrap();
    let text = std::fs::read_to_string(&s.config).unwrap();
    let hostile = text.replace(
        "Host *\n",
        &format!(
            "Host *\n  GlobalKnownHostsFile {}\n  StrictHostKeyChecking no\n  HostKeyAlias lab1\n  KnownHostsCommand {} %H\n  UserKnownHostsFile {}\n",
            global.display(),
            cmd.display(),
            user_known.display()
        ),
    );
    std::fs::write(&s.config, hostile).unwrap();
    std::fs::write(&user_known, format!("lab1 {}\n", s.right)).unwrap();
    for form in ["lab1", "root@127.0.0.1"] {
        refused(&s.plan(form, Some(&s.wrong)), form).unwrap();
        accepted(&s.plan(form, Some(&s.right)), form).unwrap();
    }
}

#[test]
fn a_pinned_key_that_is_not_one_key_is_refused_before_connecting() {
    let Some(s) = setup() else {
        return;
    };
    // A second line would add a key to the pinned known_hosts; the blob must be of the stated type.
    let two = format!("{}\\n* {}", s.wrong, s.right);
    let run = s.plan("lab1", Some(&two));
    assert_eq!(run.code, 1, "{run:?}");
    let text = format!("{}{}", run.stdout, run.stderr);
    // Refused where the inventory is loaded (a line break in any string), or by the pin's own check.
    assert!(
        text.contains("the host_key pinned for `lab1`")
            || (text.contains("host_key") && text.contains("line feed")),
        "{text}"
    );
    assert!(!text.contains("ekumen: 9 to create"), "{text}");
}

#[test]
fn an_ssh_destination_starting_with_a_dash_never_reaches_ssh() {
    let Some(s) = setup() else {
        return;
    };
    let marker = s.f.path("pwned");
    let script = s.f.path("proxy.sh");
    std::fs::write(&script, format!("#!/bin/sh\ntouch {}\n", marker.display())).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let _ = &s.lab;
    for ssh in [
        format!("-oProxyCommand={}", script.display()),
        format!("-oProxyCommand={}@lab1", script.display()),
        format!("ssh://-oProxyCommand={}@lab1", script.display()),
        "-F/dev/null".to_string(),
        "root@-oProxyCommand=x".to_string(),
    ] {
        let run = s.plan(&ssh, None);
        let text = format!("{}{}", run.stdout, run.stderr);
        assert_eq!(run.code, 1, "{ssh}: {text}");
        assert!(!marker.exists(), "{ssh}: ssh ran the ProxyCommand");
        // The host is named, with what is wrong and what to write instead.
        // Named (the host, or its inventory line and field), with what is wrong and what to write.
        assert!(
            (text.contains("ekumen") || text.contains("(field `host.ssh`)"))
                && (text.contains("starts with `-`") || text.contains("no leading `-`"))
                && (text.contains("ssh://[user@]host[:port]")
                    || text.contains("ssh://user@host:port")),
            "{ssh}: {text}"
        );
    }
}
