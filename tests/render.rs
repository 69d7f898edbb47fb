//! `oignon render`: stable output, and every torrc of the shipped fleet accepted by the real tor
//! with Debian's instance defaults expanded exactly as tor@.service does.

use std::path::Path;
use std::process::Command;

fn render_to(out: &Path) {
    crate::harness::run_in(
        &crate::harness::repo(),
        &["render", "--out", out.to_str().unwrap()],
    )
    .code(0)
    .out_has(&["rendered 18 files for 4 hosts"]);
}

fn tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v = vec![];
    fn walk(d: &Path, root: &Path, v: &mut Vec<(String, Vec<u8>)>) {
        let mut es: Vec<_> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        es.sort();
        for p in es {
            if p.is_dir() {
                walk(&p, root, v);
            } else {
                v.push((
                    p.strip_prefix(root).unwrap().display().to_string(),
                    std::fs::read(&p).unwrap(),
                ));
            }
        }
    }
    walk(dir, dir, &mut v);
    v
}

#[test]
fn render_is_byte_identical_from_run_to_run() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    render_to(a.path());
    render_to(b.path());
    let (ta, tb) = (tree(a.path()), tree(b.path()));
    assert_eq!(ta.len(), 18);
    assert!(ta == tb, "two renders differ");
    let names: Vec<&str> = ta.iter().map(|(n, _)| n.as_str()).collect();
    assert!(
        names.contains(&"ekumen/etc/tor/instances/ekumen/torrc"),
        "{names:?}"
    );
    assert!(
        names.contains(&"marcuse/etc/tor/instances/marcuse2/torrc"),
        "{names:?}"
    );
    assert!(
        names.contains(&"marylou/etc/default/grub.d/oignon.cfg"),
        "{names:?}"
    );
    assert!(
        names.contains(&"algrothendieck/etc/systemd/system/tor@.service.d/oignon.conf"),
        "{names:?}"
    );
}

#[test]
fn every_shipped_torrc_passes_tor_verify_config_with_debian_instance_defaults() {
    let out = tempfile::tempdir().unwrap();
    render_to(out.path());
    let template = std::fs::read_to_string("/usr/share/tor/tor-service-defaults-torrc-instances")
        .expect("tor's Debian instance defaults: run ./scripts/test, which installs tor");
    let mut checked = 0;
    for (name, content) in tree(out.path()) {
        let Some(instance) = name
            .strip_suffix("/torrc")
            .and_then(|p| p.rsplit('/').next())
        else {
            continue;
        };
        let work = tempfile::tempdir().unwrap();
        // As tor@.service: sed 's/@@NAME@@/%i/g'. The User line is dropped (no _tor-NAME user here)
        // and DataDirectory points where nothing exists, so tor neither fails on it nor chmods it.
        let defaults: String = template
            .replace("@@NAME@@", instance)
            .lines()
            .filter(|l| !l.starts_with("User "))
            .map(|l| {
                if l.starts_with("DataDirectory ") {
                    format!("DataDirectory {}/absent\n", work.path().display())
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
        std::fs::write(work.path().join("defaults"), defaults).unwrap();
        std::fs::write(work.path().join("torrc"), &content).unwrap();
        let o = Command::new("tor")
            .args([
                "--defaults-torrc",
                "defaults",
                "-f",
                "torrc",
                "--verify-config",
            ])
            .current_dir(work.path())
            .output()
            .expect("run tor");
        let stdout = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success() && stdout.contains("Configuration was valid"),
            "{name}:\n{stdout}"
        );
        checked += 1;
    }
    assert_eq!(checked, 6, "one torrc per relay instance");
}

#[test]
fn torrc_carries_what_an_operator_expects() {
    let run = crate::harness::run_in(&crate::harness::repo(), &["render", "--host", "marcuse"]);
    run.code(0).out_has(&[
        "==> marcuse:/etc/tor/instances/marcuse1/torrc (644 root:root) <==",
        "Nickname marcuse1\n",
        "ContactInfo email:abuse[]nos-oignons.net url:https://nos-oignons.net proof:uri-rsa hoster:ielo-liazo.com uplinkbw:49 ciissversion:2\n",
        // CIISS uplinkbw: RelayBandwidthRate as tor gets it, 6103 KBytes = 49.99 Mbit/s, rounded down.
        // DoS defences follow the consensus unless the inventory pins them.
        "DoSCircuitCreationEnabled auto\nDoSConnectionEnabled auto\nDoSStreamCreationEnabled auto\n",
        "ORPort 192.0.2.10:443\n",
        "ORPort [2001:db8:10::1]:443\n",
        // 50 Mbit/s (half of 100) = 6,250,000 bytes/s = 6103 KBytes, rounded down.
        "RelayBandwidthRate 6103 KBytes\n",
        "ExitPolicy reject *:25\nExitPolicy reject *:445\nExitPolicy accept *:20-23\n",
        "ExitPolicy reject *:*\n",
        "MetricsPort 127.0.0.1:9035\nMetricsPortPolicy accept 127.0.0.1\n",
        "MetricsPort 127.0.0.1:9036\n",
        "GRUB_CMDLINE_LINUX=\"$GRUB_CMDLINE_LINUX slab_nomerge init_on_alloc=1",
        "kernel.kptr_restrict = 2\n",
    ]);
    assert!(
        !run.stdout.contains("==> ekumen:"),
        "--host selects one host"
    );
}

#[test]
fn render_unknown_host_is_refused_with_suggestion() {
    crate::harness::run_in(&crate::harness::repo(), &["render", "--host", "ekumn"])
        .code(1)
        .err_has(&["--host ekumn matches no host", "did you mean `ekumen`?"]);
}
