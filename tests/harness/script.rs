//! What the two lab scripts share (`scripts/lab` for the namespace lab, `scripts/lab-real` for
//! real hosts): their verbs, and a host's files read and written through their `exec`, so both
//! tiers reach a host the same way.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Exit status `read` uses for "no such file" inside the host.
const MISSING: i32 = 44;

/// One running lab as its script sees it.
pub struct Script<'a> {
    /// How messages name it: `lab` or `lab-real`.
    pub name: &'static str,
    /// The script to run (`bash SCRIPT VERB DIR ...`).
    pub path: PathBuf,
    /// The lab directory.
    pub dir: &'a Path,
}

impl Script<'_> {
    /// `bash SCRIPT`, stdin closed.
    pub fn command(&self) -> Command {
        command(&self.path)
    }

    /// Runs `argv` inside the host, as `SCRIPT exec DIR HOST ARGV...` does (no ssh).
    pub fn exec_argv(&self, host: &str, argv: &[&str]) -> Output {
        self.command()
            .arg("exec")
            .arg(self.dir)
            .arg(host)
            .args(argv)
            .output()
            .unwrap_or_else(|e| panic!("{} exec {host}: {e}", self.name))
    }

    /// Runs `cmd` on the host over ssh, with the lab's `ssh_config`.
    pub fn ssh(&self, host: &str, cmd: &str) -> Output {
        Command::new("ssh")
            .arg("-F")
            .arg(self.dir.join("ssh_config"))
            .arg(host)
            .arg(cmd)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("ssh {host}: {e}"))
    }

    /// A file as the host sees it; `None` if it does not exist there.
    pub fn read(&self, host: &str, path: &str) -> Option<Vec<u8>> {
        let out = self.exec_argv(
            host,
            &[
                "sh",
                "-c",
                &format!("[ -e \"$1\" ] || exit {MISSING}; exec cat -- \"$1\""),
                "sh",
                path,
            ],
        );
        match out.status.code() {
            Some(0) => Some(out.stdout),
            Some(MISSING) => None,
            _ => panic!(
                "{}",
                describe(&format!("{}: reading {path} on {host}", self.name), &out)
            ),
        }
    }

    /// `read`, as UTF-8 text.
    pub fn read_string(&self, host: &str, path: &str) -> Option<String> {
        self.read(host, path).map(|b| {
            String::from_utf8(b).unwrap_or_else(|e| panic!("{host}:{path}: not UTF-8: {e}"))
        })
    }

    /// Writes a file as the host sees it (as root), creating its parent directories.
    pub fn write(&self, host: &str, path: &str, content: &[u8]) {
        let mut child = self
            .command()
            .arg("exec")
            .arg(self.dir)
            .arg(host)
            .args([
                "sh",
                "-c",
                "mkdir -p -- \"$(dirname -- \"$1\")\" && cat >\"$1\"",
                "sh",
                path,
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{} exec {host}: {e}", self.name));
        let written = child.stdin.take().expect("stdin").write_all(content);
        let out = child
            .wait_with_output()
            .unwrap_or_else(|e| panic!("{} exec: {e}", self.name));
        if written.is_err() || !out.status.success() {
            panic!(
                "{}",
                describe(&format!("{}: writing {path} on {host}", self.name), &out)
            );
        }
    }

    /// `SCRIPT VERB DIR HOST`, which must succeed.
    pub fn verb(&self, verb: &str, host: &str) {
        let out = self
            .command()
            .arg(verb)
            .arg(self.dir)
            .arg(host)
            .output()
            .unwrap_or_else(|e| panic!("{} {verb} {host}: {e}", self.name));
        if !out.status.success() {
            panic!(
                "{}",
                describe(&format!("{} {verb} {host}", self.name), &out)
            );
        }
    }

    /// Stops every host of the lab.
    pub fn stop(&self) -> Result<(), String> {
        let out = self
            .command()
            .arg("stop")
            .arg(self.dir)
            .output()
            .map_err(|e| format!("{} stop: {e}", self.name))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(describe(&format!("{} stop", self.name), &out))
        }
    }
}

/// `bash SCRIPT`, stdin closed.
pub fn command(script: &Path) -> Command {
    let mut cmd = Command::new("bash");
    cmd.arg(script).stdin(Stdio::null());
    cmd
}

/// A failed command, with everything it said.
pub fn describe(what: &str, out: &Output) -> String {
    format!(
        "{what}: {}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Whether `program` is on PATH or in the sbin directories (root's tools, absent from a user's PATH).
pub fn on_path(program: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .any(|dir| dir.join(program).is_file())
}

/// A fresh lab directory, on tmpfs when there is one: creating and removing a lab's files is
/// several times faster there than on this VM's ext4, and a real host's writes stay in RAM.
pub fn lab_dir(prefix: &str) -> std::io::Result<tempfile::TempDir> {
    let mut builder = tempfile::Builder::new();
    builder.prefix(prefix);
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        builder.tempdir_in(shm)
    } else {
        builder.tempdir()
    }
}
