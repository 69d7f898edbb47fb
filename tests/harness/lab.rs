//! A lab of real SSH test hosts on this machine, for integration tests.
//!
//! `Lab::start(n)` runs `scripts/lab start` into a fresh temporary directory:
//! hosts `lab1`..`labN`, each a real `sshd` on `127.0.0.1:PORT` inside its own
//! mount namespace, where a private `/etc` (overlay or copy), `/root`, `/home`,
//! `/var/lib/tor-instances`, `/var/backups`, `/run/tor-instances`,
//! `/var/lib/oignon`, `/var/lib/oignon-lab` and `/usr/local/sbin` hide the real
//! ones. What a test does on "the host" never reaches this machine's `/etc`.
//! `/usr/local/sbin` holds recording stand-ins for `systemctl` (also over
//! `/usr/bin/systemctl`), `sysctl` (writes only), `update-grub`, `apt-get`/`apt`
//! and `reboot`/`shutdown`/`poweroff`/`halt`; see the header of `scripts/lab`.
//!
//! Needs root, `unshare`/`nsenter`, `sshd` and `ssh`. Dropping the `Lab` (also
//! while a test panics) runs `scripts/lab stop`, which kills exactly the lab's
//! processes; if the test process dies without unwinding, a watchdog started
//! with `--owner` stops the lab within about a second.
//!
//! ```ignore
//! use crate::harness::lab::Lab;
//!
//! let lab = Lab::start(2);
//! let out = lab.ssh("lab1", "mkdir -p /etc/tor/x && echo hi >/etc/tor/x/f");
//! assert!(out.status.success());
//! assert_eq!(lab.read("lab1", "/etc/tor/x/f").as_deref(), Some(&b"hi\n"[..]));
//! ```

use super::script::{self, describe, on_path, Script};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub struct Lab {
    /// The lab directory: `ssh_config`, `known_hosts`, `id_ed25519`,
    /// `hosts.tsv`, `hosts/NAME/`.
    pub dir: PathBuf,
    pub hosts: Vec<LabHost>,
    _tmp: tempfile::TempDir,
}

#[derive(Clone, Debug)]
pub struct LabHost {
    /// `lab1`, `lab2`, ...: the `Host` names of `Lab::ssh_config`.
    pub name: String,
    pub port: u16,
    /// The sshd's pid, as recorded at start (stale once the host is stopped).
    pub pid: u32,
    /// The host's directory in the lab; its private files are under `fs/`.
    pub root: PathBuf,
    /// The host's public key, `ssh-ed25519 AAAA...` (no comment).
    pub host_key: String,
}

impl LabHost {
    /// The host's line for a known_hosts file: `[127.0.0.1]:PORT ssh-ed25519 AAAA...`.
    pub fn known_hosts_line(&self) -> String {
        format!("[127.0.0.1]:{} {}", self.port, self.host_key)
    }
}

/// The `scripts/lab` to run: `$OIGNON_LAB_SCRIPT`, else the crate's own.
pub fn script_path() -> PathBuf {
    match std::env::var_os("OIGNON_LAB_SCRIPT") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/lab"),
    }
}

fn lab_command() -> Command {
    script::command(&script_path())
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

impl Lab {
    /// Whether a lab can run here (root, unshare, nsenter, sshd, ssh,
    /// ssh-keygen, ss), or why not.
    pub fn available() -> Result<(), String> {
        let uid = Command::new("id")
            .arg("-u")
            .output()
            .map_err(|e| format!("id -u: {e}"))?;
        if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
            return Err("the lab needs root".into());
        }
        for program in [
            "unshare",
            "nsenter",
            "sshd",
            "ssh",
            "ssh-keygen",
            "ss",
            "bash",
        ] {
            if !on_path(program) {
                return Err(format!("the lab needs {program}"));
            }
        }
        if !script_path().is_file() {
            return Err(format!("no lab script at {}", script_path().display()));
        }
        Ok(())
    }

    /// Starts `n` hosts; None, said on stderr, where the lab cannot run at all because this is not
    /// root (mount namespaces and sshd need it): the test then ends as skipped, with its reason.
    /// As root, any failure to start is a test failure (`start`).
    pub fn start_or_skip(n: usize) -> Option<Lab> {
        if !is_root() {
            eprintln!(
                "SKIPPED: the lab needs root (it runs real sshd hosts in mount namespaces); run ./scripts/test as root"
            );
            return None;
        }
        Some(Lab::start(n))
    }

    /// Starts `n` hosts; panics with the script's output if that fails.
    pub fn start(n: usize) -> Lab {
        Lab::try_start(n).unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn try_start(n: usize) -> Result<Lab, String> {
        let tmp =
            script::lab_dir("oignon-lab-").map_err(|e| format!("lab: temporary directory: {e}"))?;
        let dir = tmp.path().to_path_buf();
        let out = lab_command()
            .arg("start")
            .arg(&dir)
            .arg(n.to_string())
            .arg("--owner")
            .arg(std::process::id().to_string())
            .output()
            .map_err(|e| format!("lab: running {}: {e}", script_path().display()))?;
        let mut lab = Lab {
            dir,
            hosts: Vec::new(),
            _tmp: tmp,
        };
        if !out.status.success() {
            // `lab` is dropped here: whatever did start is stopped.
            return Err(describe(&format!("lab start {n} failed"), &out));
        }
        lab.reload()?;
        if lab.hosts.len() != n {
            return Err(format!(
                "lab: {} hosts in hosts.tsv, wanted {n}",
                lab.hosts.len()
            ));
        }
        Ok(lab)
    }

    /// Re-reads `hosts.tsv` (the script rewrites it when a host restarts).
    fn reload(&mut self) -> Result<(), String> {
        let tsv = self.dir.join("hosts.tsv");
        let text = std::fs::read_to_string(&tsv).map_err(|e| format!("{}: {e}", tsv.display()))?;
        self.hosts = text
            .lines()
            .filter(|l| !l.is_empty())
            .map(|line| {
                let f: Vec<&str> = line.split('\t').collect();
                let bad = || format!("{}: bad line {line:?}", tsv.display());
                if f.len() != 5 {
                    return Err(bad());
                }
                Ok(LabHost {
                    name: f[0].to_string(),
                    port: f[1].parse().map_err(|_| bad())?,
                    pid: f[2].parse().map_err(|_| bad())?,
                    root: PathBuf::from(f[3]),
                    host_key: f[4].to_string(),
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(())
    }

    /// `ssh -F` this file reaches `lab1`..`labN` as root, with strict host
    /// key checking against `known_hosts`, in batch mode.
    pub fn ssh_config(&self) -> PathBuf {
        self.dir.join("ssh_config")
    }

    pub fn known_hosts(&self) -> PathBuf {
        self.dir.join("known_hosts")
    }

    /// The client's private key, authorized for root on every host.
    pub fn identity(&self) -> PathBuf {
        self.dir.join("id_ed25519")
    }

    pub fn host(&self, name: &str) -> &LabHost {
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .unwrap_or_else(|| panic!("lab: no host {name}"))
    }

    /// Runs `argv` inside the host's namespaces (no ssh), as
    /// `scripts/lab exec` does.
    pub fn exec_argv(&self, host: &str, argv: &[&str]) -> Output {
        self.script().exec_argv(host, argv)
    }

    /// Runs `sh -c cmd` inside the host's namespaces (no ssh).
    pub fn exec(&self, host: &str, cmd: &str) -> Output {
        self.exec_argv(host, &["sh", "-c", cmd])
    }

    /// Runs `cmd` on the host over ssh, with `ssh_config`.
    pub fn ssh(&self, host: &str, cmd: &str) -> Output {
        self.script().ssh(host, cmd)
    }

    /// A file as the host sees it; `None` if it does not exist there.
    pub fn read(&self, host: &str, path: &str) -> Option<Vec<u8>> {
        self.script().read(host, path)
    }

    pub fn read_string(&self, host: &str, path: &str) -> Option<String> {
        self.script().read_string(host, path)
    }

    /// Writes a file as the host sees it, creating its parent directories.
    pub fn write(&self, host: &str, path: &str, content: &[u8]) {
        self.script().write(host, path, content)
    }

    /// Lines of a stand-in's record in the host's `/var/lib/oignon-lab/`:
    /// `systemctl`, `sysctl`, `update-grub`, `apt` or `power`. Empty if the
    /// stand-in never ran.
    pub fn stand_in_log(&self, host: &str, name: &str) -> Vec<String> {
        self.read_string(host, &format!("/var/lib/oignon-lab/{name}.log"))
            .map(|s| s.lines().map(str::to_string).collect())
            .unwrap_or_default()
    }

    /// One line per `systemctl` call on the host: its arguments, space-separated.
    pub fn systemctl_log(&self, host: &str) -> Vec<String> {
        self.stand_in_log(host, "systemctl")
    }

    fn lab_verb(&self, verb: &str, host: &str) {
        self.script().verb(verb, host)
    }

    /// This lab as its script sees it.
    fn script(&self) -> Script<'_> {
        Script {
            name: "lab",
            path: script_path(),
            dir: &self.dir,
        }
    }

    /// Kills the host's sshd and everything in its namespace: a host down.
    /// Its files stay (`read`/`write`/`exec` still work); `start_host`
    /// brings it back on the same port.
    pub fn stop_host(&self, host: &str) {
        self.lab_verb("stop-host", host);
    }

    /// Starts a stopped host again, with the same port, key and files.
    pub fn start_host(&mut self, host: &str) {
        self.lab_verb("start-host", host);
        self.reload().unwrap_or_else(|e| panic!("{e}"));
    }

    /// Kills the host's ssh sessions (and any other process in its
    /// namespace) but keeps its sshd listening.
    pub fn kill_sessions(&self, host: &str) {
        // No retry: a session that exits while the process table is read is no error for the
        // script (a retry here once hid exactly that bug).
        self.lab_verb("kill-sessions", host);
    }

    /// Stops every host now (also done on drop).
    pub fn stop(&self) -> Result<(), String> {
        self.script().stop()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Never panic here: this also runs while a test panics. The TempDir
        // field removes the directory afterwards.
        if let Err(e) = self.stop() {
            eprintln!("{e}");
        }
    }
}
