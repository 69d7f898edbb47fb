//! The tests' one helper folder. Here: driving the real `oignon` binary (a copy of an inventory
//! to edit, arguments, and the outcome) and `LabFleet`, the shipped fleet on lab hosts. The hosts
//! themselves: `lab` (real sshd in mount namespaces) and `real` (Debian containers and a VM).
#![allow(dead_code)]

pub mod lab;
pub mod real;
pub mod repo;
mod script;

use std::path::{Path, PathBuf};
use std::process::Command;

pub const BIN: &str = env!("CARGO_BIN_EXE_oignon");

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The outcome of one run.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Asserts stderr contains every needle, printing everything on failure.
    #[track_caller]
    pub fn err_has(&self, needles: &[&str]) -> &Self {
        for n in needles {
            assert!(
                self.stderr.contains(n),
                "stderr lacks {n:?}\n--- stderr:\n{}\n--- stdout:\n{}",
                self.stderr,
                self.stdout
            );
        }
        self
    }
    #[track_caller]
    pub fn out_has(&self, needles: &[&str]) -> &Self {
        for n in needles {
            assert!(
                self.stdout.contains(n),
                "stdout lacks {n:?}\n--- stdout:\n{}\n--- stderr:\n{}",
                self.stdout,
                self.stderr
            );
        }
        self
    }
    #[track_caller]
    pub fn code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "exit code\n--- stdout:\n{}\n--- stderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

/// A scratch copy of the shipped inventory and roles, to break on purpose.
pub struct Fixture {
    pub dir: tempfile::TempDir,
}

impl Fixture {
    pub fn shipped() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        copy_dir(&repo().join("inventory"), &dir.path().join("inventory"));
        copy_dir(&repo().join("roles"), &dir.path().join("roles"));
        copy_dir(&repo().join("secrets"), &dir.path().join("secrets"));
        Fixture { dir }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Replaces the first `from` with `to` in `rel`; panics if `from` is absent (a test that cannot fail is a defect).
    pub fn edit(&self, rel: &str, from: &str, to: &str) -> &Self {
        let p = self.path(rel);
        let text = std::fs::read_to_string(&p).expect("read fixture file");
        assert!(text.contains(from), "{rel} lacks {from:?}");
        std::fs::write(&p, text.replacen(from, to, 1)).expect("write");
        self
    }

    pub fn write(&self, rel: &str, content: &str) -> &Self {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, content).expect("write");
        self
    }

    /// Runs oignon in the fixture directory (so default paths and messages are relative).
    pub fn run(&self, args: &[&str]) -> Run {
        run_in(self.dir.path(), args)
    }

    /// `run` with `--ssh-config FILE` first (a lab's ssh_config).
    pub fn run_over(&self, ssh_config: &Path, args: &[&str]) -> Run {
        let mut all = vec!["--ssh-config", ssh_config.to_str().expect("a UTF-8 path")];
        all.extend_from_slice(args);
        self.run(&all)
    }
}

pub fn run_in(cwd: &Path, args: &[&str]) -> Run {
    run_in_env(cwd, args, &[])
}

/// `run_in` with extra environment variables (set after the clean-up below).
pub fn run_in_env(cwd: &Path, args: &[&str], env: &[(&str, &Path)]) -> Run {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .current_dir(cwd)
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        // Nothing from the developer's environment: no identity, no OIGNON_* settings, a HOME of its own.
        .env_remove("OIGNON_IDENTITY")
        .env_remove("OIGNON_SECRETS")
        .env_remove("OIGNON_INVENTORY")
        .env_remove("OIGNON_ROLES")
        .env_remove("OIGNON_SSH_CONFIG")
        .env_remove("OIGNON_SSH_PERSIST")
        .env("HOME", cwd)
        // No terminal on stdin, even when the tests run from one: apply must never wait for an answer.
        .stdin(std::process::Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run oignon");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read_dir") {
        let e = e.expect("entry");
        let dest = to.join(e.file_name());
        if e.file_type().expect("type").is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).expect("copy");
        }
    }
}

/// The shipped fleet's hosts, in inventory order, and the lab host each one is mapped to.
pub const LAB_MAP: &[(&str, &str, &str)] = &[
    ("ekumen", "lab1", "inventory/gandi.toml"),
    ("algrothendieck", "lab2", "inventory/globenet.toml"),
    ("marcuse", "lab3", "inventory/ielo-liazo.toml"),
    ("marylou", "lab4", "inventory/tetaneutral.toml"),
];

impl Fixture {
    /// The shipped fleet, each host reached through its lab alias (`ssh = "labN"`).
    pub fn shipped_on_lab() -> Fixture {
        let f = Fixture::shipped();
        for (host, lab, file) in LAB_MAP {
            f.edit(
                file,
                &format!("name = \"{host}\"\n"),
                &format!("name = \"{host}\"\nssh = \"{lab}\"\n"),
            );
        }
        f
    }
}

impl Fixture {
    /// The shipped fleet for real hosts (`real.rs`). `scripts/lab-real` names each
    /// host after the inventory, so `ssh` keeps its default (the host's name, an alias of the
    /// lab's ssh_config). One line is added to every torrc: `ShutdownWaitLength 0`. tor waits
    /// that long (30 s by default) after the SIGINT of every stop, restart and reboot; the
    /// restarts the tests check are real, only that wait is cut.
    pub fn shipped_on_real() -> Fixture {
        let f = Fixture::shipped();
        f.edit(
            "inventory/fleet.toml",
            "burst_factor = 1.0\n",
            "burst_factor = 1.0\n# Tests only: restarts without tor's 30 s wait for circuits to close.\ntorrc_extra = [\"ShutdownWaitLength 0\"]\n",
        );
        f
    }

    /// `(host, addresses)` for `RealLab::start`, read from this fixture's inventory: each real
    /// host holds its own inventory addresses (`ipv4`, `ipv6`), so tor binds what its torrc says.
    pub fn real_hosts(&self, names: &[&str]) -> Vec<(String, Vec<String>)> {
        let mut found = vec![];
        for e in std::fs::read_dir(self.path("inventory")).expect("inventory dir") {
            let p = e.expect("entry").path();
            if p.extension().and_then(|x| x.to_str()) != Some("toml") {
                continue;
            }
            let text = std::fs::read_to_string(&p).expect("read inventory");
            let doc: toml::Table = text.parse().expect("inventory TOML");
            let Some(hosts) = doc.get("host").and_then(|h| h.as_array()) else {
                continue;
            };
            for h in hosts {
                let field = |k: &str| h.get(k).and_then(|v| v.as_str()).map(str::to_string);
                let name = field("name").expect("a host name");
                let addrs: Vec<String> = ["ipv4", "ipv6"].iter().filter_map(|k| field(k)).collect();
                found.push((name, addrs));
            }
        }
        names
            .iter()
            .map(|n| {
                found
                    .iter()
                    .find(|(h, _)| h == n)
                    .cloned()
                    .unwrap_or_else(|| panic!("no host {n} in the fixture's inventory"))
            })
            .collect()
    }
}

/// The lab alias of a shipped host.
pub fn lab_of(host: &str) -> &'static str {
    LAB_MAP
        .iter()
        .find(|(h, _, _)| *h == host)
        .map(|(_, l, _)| *l)
        .expect("a shipped host")
}

/// A new age identity at `path` (the real age-keygen); returns its public key.
pub fn age_keygen(path: &Path) -> String {
    let o = Command::new("age-keygen")
        .arg("-o")
        .arg(path)
        .output()
        .expect("age-keygen: ./scripts/test installs age");
    assert!(o.status.success());
    let o = Command::new("age-keygen")
        .arg("-y")
        .arg(path)
        .output()
        .expect("age-keygen -y");
    String::from_utf8(o.stdout)
        .expect("UTF-8 public key")
        .trim()
        .to_string()
}

/// Hosts that `oignon` reaches through an ssh_config of their own: the namespace lab and the
/// real hosts.
pub trait Hosts {
    /// The `ssh -F` file naming every host.
    fn ssh_config(&self) -> PathBuf;
    /// The inventory hosts a run is limited to (`--host`), or none for the whole fleet: a real
    /// lab runs only some of the shipped hosts, and the others are unreachable.
    fn only(&self) -> Vec<String>;
}

impl Hosts for lab::Lab {
    fn ssh_config(&self) -> PathBuf {
        lab::Lab::ssh_config(self)
    }
    /// The namespace lab maps every shipped host (`LAB_MAP`).
    fn only(&self) -> Vec<String> {
        vec![]
    }
}

impl Hosts for real::RealLab {
    fn ssh_config(&self) -> PathBuf {
        real::RealLab::ssh_config(self)
    }
    /// Real hosts are named after the inventory's.
    fn only(&self) -> Vec<String> {
        self.hosts.iter().map(|h| h.name.clone()).collect()
    }
}

/// Runs oignon in `f` against `hosts`: `--ssh-config` first, then `args`, then a `--host` per
/// host when they are only part of the fleet.
pub fn oignon(f: &Fixture, hosts: &impl Hosts, args: &[&str]) -> Run {
    let only = hosts.only();
    let mut all: Vec<&str> = args.to_vec();
    for h in &only {
        all.extend(["--host", h.as_str()]);
    }
    f.run_over(&hosts.ssh_config(), &all)
}

/// The shipped fleet on a namespace lab: `Fixture::shipped_on_lab()` and its lab hosts.
pub struct LabFleet {
    // Fields drop in order: the fixture goes before the lab, as the two locals this replaces did.
    pub f: Fixture,
    pub lab: lab::Lab,
}

impl LabFleet {
    /// Starts `n` lab hosts (`lab1`..) under the shipped fleet; None, said on stderr, where the
    /// lab cannot run because this is not root (`Lab::start_or_skip`).
    pub fn start(n: usize) -> Option<LabFleet> {
        let lab = lab::Lab::start_or_skip(n)?;
        Some(LabFleet {
            f: Fixture::shipped_on_lab(),
            lab,
        })
    }
}

/// Where oignon looks for the admin identity when no `--identity` is given: every run's HOME is
/// the fixture directory, so a key here is the fixture's identity for all its runs.
pub const IDENTITY: &str = ".config/oignon/identity";

impl Fixture {
    /// Replaces the shipped demo store with an empty one encrypted to a fresh age admin key, the
    /// fixture identity (`IDENTITY`): runs decrypt with it without `--identity`. Returns the key's
    /// path, for the age CLI and for other fixtures (`use_identity`).
    pub fn own_store(&self) -> PathBuf {
        let id = self.path(IDENTITY);
        std::fs::create_dir_all(id.parent().expect("parent")).expect("mkdir");
        let pubkey = age_keygen(&id);
        std::fs::remove_dir_all(self.path("secrets")).expect("remove the demo store");
        self.write("secrets/recipients.txt", &format!("# admin\n{pubkey}\n"));
        id
    }

    /// Makes `key` (another fixture's identity) this fixture's identity too.
    pub fn use_identity(&self, key: &Path) -> &Self {
        let id = self.path(IDENTITY);
        std::fs::create_dir_all(id.parent().expect("parent")).expect("mkdir");
        std::fs::copy(key, id).expect("copy the identity");
        self
    }
}

/// The sha256 of `bytes`, in hex: how plans and apply's records name a file's content.
pub fn sha(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}
