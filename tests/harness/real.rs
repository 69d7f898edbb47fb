//! Real Debian 12 hosts on this machine, for the tests that must see systemd, journald, tor@
//! and sshd behave for real (the namespace lab of `lab.rs` has recording stand-ins there).
//!
//! `RealLab::start(&[("ekumen", &["192.0.2.20", "2001:db8:20::1"])])` runs `scripts/lab-real
//! start` into a fresh temporary directory: one container per host (`systemd-nspawn -b` on an
//! overlay of a cached debootstrap tree), its network namespace holding the addresses given, its
//! sshd reached as `ssh -F ssh_config NAME` on 127.0.0.1. Real there: systemd and journald,
//! Debian's tor@.service with oignon's drop-in, tor, sshd, useradd, apt/dpkg, nftables and
//! net.* sysctls. Stand-ins (the kernel is this machine's): kernel.*/fs.* sysctl loads and
//! update-grub (see `scripts/lab-real`); the VM tier has a real kernel.
//!
//! Needs root, systemd-nspawn (systemd-container), socat, ip and overlayfs; the first start
//! builds the base tree (debootstrap, a few minutes, cached in /var/cache/oignon-lab). Where
//! that cannot run, `start` fails the test with the reason, unless OIGNON_TEST_SKIP_REAL_HOSTS=1
//! is set: then it says so loudly and returns `None`. Dropping the lab (also while a test
//! panics) stops every host; if the test process dies, a watchdog (`--owner`) does.

use super::script::{self, describe, on_path, Script};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// The environment variable that turns a missing real-host tier into a (loud) skip.
pub const SKIP_ENV: &str = "OIGNON_TEST_SKIP_REAL_HOSTS";

pub struct RealLab {
    /// The lab directory: `ssh_config`, `known_hosts`, `id_ed25519`, `hosts.tsv`, `hosts/NAME/`.
    pub dir: PathBuf,
    pub hosts: Vec<RealHost>,
    _tmp: tempfile::TempDir,
}

#[derive(Clone, Debug)]
pub struct RealHost {
    /// The host's name: its hostname, and its `Host` alias in `ssh_config`.
    pub name: String,
    pub port: u16,
    /// The host's directory in the lab (`upper/` is what the host wrote over the base tree).
    pub root: PathBuf,
    /// The host's public key, `ssh-ed25519 AAAA...` (no comment).
    pub host_key: String,
    /// The network namespace (`ip netns`) holding its addresses.
    pub netns: String,
}

/// The `scripts/lab-real` to run: `$OIGNON_LAB_REAL_SCRIPT`, else the crate's own.
pub fn script_path() -> PathBuf {
    match std::env::var_os("OIGNON_LAB_REAL_SCRIPT") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/lab-real"),
    }
}

fn script() -> Command {
    script::command(&script_path())
}

/// Says, past the test harness's capture (straight to fd 2), that a real-host test did not run.
pub fn say_skipped(test: &str, why: &str) {
    let _ = writeln!(
        std::io::stderr(),
        "\n!!!!!!!! SKIPPED (real hosts): {test}: {why}. {SKIP_ENV}=1 is set, so this is not a failure: nothing here was tested on real systemd and tor. !!!!!!!!\n"
    );
}

impl RealLab {
    /// Whether real hosts can run here (root, systemd-nspawn, socat, ip, nsenter, unshare,
    /// overlayfs, cgroups), or why not.
    pub fn available() -> Result<(), String> {
        let uid = Command::new("id")
            .arg("-u")
            .output()
            .map_err(|e| format!("id -u: {e}"))?;
        if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
            return Err("real hosts need root (network namespaces, systemd-nspawn)".into());
        }
        for (program, package) in [
            ("systemd-nspawn", "systemd-container"),
            ("socat", "socat"),
            ("ip", "iproute2"),
            ("nsenter", "util-linux"),
            ("unshare", "util-linux"),
            ("ssh", "openssh-client"),
            ("ssh-keygen", "openssh-client"),
            ("bash", "bash"),
        ] {
            if !on_path(program) {
                return Err(format!(
                    "real hosts need {program} (apt-get install {package}; ./scripts/test installs it)"
                ));
            }
        }
        let fs = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
        if !fs.split_whitespace().any(|w| w == "overlay") {
            return Err("real hosts need overlayfs in this kernel".into());
        }
        if !Path::new("/sys/fs/cgroup/unified/cgroup.procs").exists()
            && !Path::new("/sys/fs/cgroup/cgroup.procs").exists()
        {
            return Err("real hosts need a cgroup2 hierarchy (/sys/fs/cgroup)".into());
        }
        if !script_path().is_file() {
            return Err(format!("no lab script at {}", script_path().display()));
        }
        Ok(())
    }

    /// Starts one real host per `(name, addresses)`. Panics with the reason where real hosts
    /// cannot run, or returns `None` after saying so loudly when OIGNON_TEST_SKIP_REAL_HOSTS=1.
    #[track_caller]
    pub fn start(test: &str, hosts: &[(String, Vec<String>)]) -> Option<RealLab> {
        if let Err(why) = RealLab::available() {
            if std::env::var(SKIP_ENV).as_deref() == Ok("1") {
                say_skipped(test, &why);
                return None;
            }
            panic!("{test}: cannot run real hosts here: {why}. Run ./scripts/test as root, or set {SKIP_ENV}=1 to skip this tier (it is then reported as skipped)");
        }
        Some(RealLab::try_start(hosts).unwrap_or_else(|e| panic!("{e}")))
    }

    /// Boots one VM (qemu under TCG, GRUB and a kernel of its own: `lab-real start --vm`) for
    /// `host`, reached like the containers. Builds the VM image first if missing (minutes). Where
    /// qemu cannot run, says why loudly and returns `None`; without root, as `start`.
    #[track_caller]
    pub fn start_vm(test: &str, host: &(String, Vec<String>)) -> Option<RealLab> {
        if let Err(why) = RealLab::available() {
            if std::env::var(SKIP_ENV).as_deref() == Ok("1") {
                say_skipped(test, &why);
                return None;
            }
            panic!("{test}: cannot run real hosts here: {why}. Run ./scripts/test as root, or set {SKIP_ENV}=1 to skip this tier (it is then reported as skipped)");
        }
        for (program, package) in [
            ("qemu-system-x86_64", "qemu-system-x86"),
            ("qemu-img", "qemu-utils"),
            ("mkfs.ext4", "e2fsprogs"),
            ("sfdisk", "fdisk"),
        ] {
            if !on_path(program) {
                say_skipped(
                    test,
                    &format!("qemu cannot run here: no {program} (apt-get install {package})"),
                );
                return None;
            }
        }
        Some(
            RealLab::try_start_with(&["--vm"], std::slice::from_ref(host))
                .unwrap_or_else(|e| panic!("{e}")),
        )
    }

    pub fn try_start(hosts: &[(String, Vec<String>)]) -> Result<RealLab, String> {
        RealLab::try_start_with(&[], hosts)
    }

    fn try_start_with(flags: &[&str], hosts: &[(String, Vec<String>)]) -> Result<RealLab, String> {
        let tmp = script::lab_dir("oignon-real-")
            .map_err(|e| format!("lab-real: temporary directory: {e}"))?;
        let dir = tmp.path().to_path_buf();
        let mut cmd = script();
        cmd.arg("start").args(flags).arg(&dir);
        for (name, addrs) in hosts {
            cmd.arg(format!("{name}={}", addrs.join(",")));
        }
        let out = cmd
            .arg("--owner")
            .arg(std::process::id().to_string())
            .output()
            .map_err(|e| format!("lab-real: running {}: {e}", script_path().display()))?;
        let mut lab = RealLab {
            dir,
            hosts: Vec::new(),
            _tmp: tmp,
        };
        if !out.status.success() {
            // `lab` is dropped here: whatever did start is stopped.
            return Err(describe("lab-real start failed", &out));
        }
        // The script's timing line (start to sshd per host) goes to the test's output.
        eprint!("{}", String::from_utf8_lossy(&out.stderr));
        lab.reload()?;
        if lab.hosts.len() != hosts.len() {
            return Err(format!(
                "lab-real: {} hosts in hosts.tsv, wanted {}",
                lab.hosts.len(),
                hosts.len()
            ));
        }
        Ok(lab)
    }

    fn reload(&mut self) -> Result<(), String> {
        let tsv = self.dir.join("hosts.tsv");
        let text = std::fs::read_to_string(&tsv).map_err(|e| format!("{}: {e}", tsv.display()))?;
        self.hosts = text
            .lines()
            .filter(|l| !l.is_empty())
            .map(|line| {
                let f: Vec<&str> = line.split('\t').collect();
                let bad = || format!("{}: bad line {line:?}", tsv.display());
                if f.len() != 6 {
                    return Err(bad());
                }
                Ok(RealHost {
                    name: f[0].to_string(),
                    port: f[1].parse().map_err(|_| bad())?,
                    root: PathBuf::from(f[3]),
                    host_key: f[4].to_string(),
                    netns: f[5].to_string(),
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(())
    }

    /// `ssh -F` this file reaches every host by its name, as root, with strict host key checks.
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

    pub fn host(&self, name: &str) -> &RealHost {
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .unwrap_or_else(|| panic!("lab-real: no host {name}"))
    }

    /// Runs `argv` inside the running host (its PID 1's namespaces and root; no ssh), as
    /// `scripts/lab-real exec` does; on a stopped host, chrooted into its files.
    pub fn exec_argv(&self, host: &str, argv: &[&str]) -> Output {
        self.script().exec_argv(host, argv)
    }

    /// Runs `sh -c cmd` inside the host (no ssh).
    pub fn exec(&self, host: &str, cmd: &str) -> Output {
        self.exec_argv(host, &["sh", "-c", cmd])
    }

    /// `exec`, which must succeed: its stdout.
    #[track_caller]
    pub fn run(&self, host: &str, cmd: &str) -> String {
        let out = self.exec(host, cmd);
        if !out.status.success() {
            panic!("{}", describe(&format!("{host}: {cmd}"), &out));
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
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

    /// Writes a file as the host sees it (as root), creating its parent directories.
    pub fn write(&self, host: &str, path: &str, content: &[u8]) {
        self.script().write(host, path, content)
    }

    /// The unit's journal on the host, this boot, one message a line (`journalctl -o cat`).
    pub fn journal(&self, host: &str, unit: &str) -> String {
        self.run(
            host,
            &format!("journalctl --no-pager -b -o cat -u '{unit}' 2>&1 || true"),
        )
    }

    /// `systemctl is-active UNIT` on the host (`active`, `inactive`, `failed`, `activating`...).
    pub fn is_active(&self, host: &str, unit: &str) -> String {
        let out = self.exec_argv(host, &["systemctl", "is-active", unit]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// The unit's MainPID (0 when it has none), as systemd reports it.
    pub fn main_pid(&self, host: &str, unit: &str) -> u32 {
        let out = self.run(
            host,
            &format!("systemctl show --property=MainPID --value '{unit}'"),
        );
        out.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{host}: MainPID of {unit}: {out:?}"))
    }

    /// Waits until the unit is active (tor@ signals readiness a second or two after its start);
    /// panics with its status and journal after `timeout`.
    #[track_caller]
    pub fn wait_active(&self, host: &str, unit: &str, timeout: Duration) {
        let t0 = Instant::now();
        loop {
            let state = self.is_active(host, unit);
            if state == "active" {
                return;
            }
            if t0.elapsed() > timeout || state == "failed" {
                panic!(
                    "{host}: {unit} is {state} after {:?}\n--- status\n{}\n--- journal\n{}",
                    t0.elapsed(),
                    self.run(
                        host,
                        &format!("systemctl status --no-pager '{unit}' 2>&1 || true")
                    ),
                    self.journal(host, unit)
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits until `needle` shows in the unit's journal; panics with the journal after `timeout`.
    #[track_caller]
    pub fn wait_journal(&self, host: &str, unit: &str, needle: &str, timeout: Duration) -> String {
        let t0 = Instant::now();
        loop {
            let j = self.journal(host, unit);
            if j.contains(needle) {
                return j;
            }
            if t0.elapsed() > timeout {
                panic!("{host}: no {needle:?} in the journal of {unit} after {timeout:?}:\n{j}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The running host's boot id (`/proc/sys/kernel/random/boot_id`: nspawn gives each boot of
    /// a container its own).
    pub fn boot_id(&self, host: &str) -> String {
        self.run(host, "cat /proc/sys/kernel/random/boot_id")
            .trim()
            .to_string()
    }

    fn verb(&self, verb: &str, host: &str) {
        self.script().verb(verb, host)
    }

    /// This lab as its script sees it.
    fn script(&self) -> Script<'_> {
        Script {
            name: "lab-real",
            path: script_path(),
            dir: &self.dir,
        }
    }

    /// `systemctl reboot` inside the host, then waits for its new boot (sshd answering).
    pub fn reboot(&self, host: &str) {
        self.verb("reboot", host);
    }

    /// A power cut: the container and everything in it are killed; its files stay.
    pub fn stop_host(&self, host: &str) {
        self.verb("stop-host", host);
    }

    /// Boots a stopped host again, on the same port, key and files.
    pub fn start_host(&mut self, host: &str) {
        self.verb("start-host", host);
        self.reload().unwrap_or_else(|e| panic!("{e}"));
    }

    /// Seconds from each container start to its sshd's banner, one line per boot so far.
    pub fn boot_seconds(&self, host: &str) -> Vec<f64> {
        std::fs::read_to_string(self.host(host).root.join("boot-seconds"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    /// Stops every host now (also done on drop).
    pub fn stop(&self) -> Result<(), String> {
        self.script().stop()
    }
}

impl Drop for RealLab {
    fn drop(&mut self) {
        // Never panic here: this also runs while a test panics. The TempDir field removes the
        // directory afterwards.
        if let Err(e) = self.stop() {
            eprintln!("{e}");
        }
    }
}
