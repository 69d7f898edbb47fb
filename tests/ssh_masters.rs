//! ssh master connections have a bounded life (`--ssh-persist`), live in a private directory of
//! oignon's, and a run within that time reuses them instead of a new handshake; an interrupted run
//! says what each host was doing.

use crate::harness::lab::Lab;
use crate::harness::{Fixture, BIN};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A fleet on the lab with a runtime dir of its own (so the masters' directory is the test's),
/// reached through a copy of the lab's ssh config (the masters' command lines name it: that is
/// how the test finds them, whatever directory they use).
struct Fleet {
    lab: Lab,
    f: Fixture,
    config: PathBuf,
    runtime: PathBuf,
}

/// None where the lab cannot run (not root): the test is then skipped, said on stderr.
fn fleet() -> Option<Fleet> {
    let lab = Lab::start_or_skip(4)?;
    let f = Fixture::shipped_on_lab();
    let config = f.path("lab.ssh_config");
    std::fs::copy(lab.ssh_config(), &config).unwrap();
    let runtime = f.path("run");
    std::fs::create_dir(&runtime).unwrap();
    std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o700)).unwrap();
    Some(Fleet {
        lab,
        f,
        config,
        runtime,
    })
}

impl Fleet {
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.arg("--ssh-config")
            .arg(&self.config)
            .args(args)
            .current_dir(self.f.dir.path())
            .env("HOME", self.f.dir.path())
            .env("XDG_RUNTIME_DIR", &self.runtime)
            .env("NO_COLOR", "1")
            .env_remove("OIGNON_SSH_PERSIST")
            .env_remove("OIGNON_SSH_CONFIG")
            .env_remove("OIGNON_IDENTITY")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// Pids of the ssh masters this fleet's runs started (their command line names its config).
    fn masters(&self) -> Vec<u32> {
        masters_naming(&self.config)
    }

    fn sockets(&self) -> usize {
        let root = self.runtime.join("oignon/ssh");
        let mut n = 0;
        for slot in std::fs::read_dir(&root).into_iter().flatten().flatten() {
            for sub in std::fs::read_dir(slot.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                if sub.path().join("master").exists() {
                    n += 1;
                }
            }
        }
        n
    }
}

fn masters_naming(config: &Path) -> Vec<u32> {
    let needle = config.to_str().unwrap();
    let mut pids = vec![];
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let is_master = args.first().is_some_and(|a| a.ends_with("ssh"))
            && args.iter().any(|a| a == "-M")
            && args.iter().any(|a| a == needle);
        if is_master {
            pids.push(pid);
        }
    }
    pids.sort();
    pids
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A host whose ssh destination accepts connections and never answers: a run stays on it.
fn hang_one_host(fl: &Fleet, listener: &std::net::TcpListener) {
    let port = listener.local_addr().unwrap().port();
    fl.f.edit(
        "inventory/globenet.toml",
        "ssh = \"lab2\"",
        &format!("ssh = \"ssh://root@127.0.0.1:{port}\""),
    );
}

fn wait_for(what: &str, secs: u64, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("timed out waiting for {what}");
}

#[test]
fn a_killed_plan_leaves_no_master_beyond_its_persist_time() {
    let Some(fl) = fleet() else {
        return;
    };
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    hang_one_host(&fl, &listener);
    let mut child: Child = fl.command(&["--ssh-persist", "2", "plan"]).spawn().unwrap();
    // The three reachable hosts' masters are up; the fourth host keeps the plan waiting.
    wait_for("three masters", 20, || fl.sockets() >= 3);
    child.kill().unwrap();
    child.wait().unwrap();
    // The fourth host's ssh is still waiting for a banner: not a master (its ConnectTimeout
    // ends it), so not counted.
    let hung = format!("{}", listener.local_addr().unwrap().port());
    let masters = || -> Vec<u32> {
        fl.masters()
            .into_iter()
            .filter(|pid| {
                let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                !cmdline.split(|b| *b == 0).any(|a| a == hung.as_bytes())
            })
            .collect()
    };
    let left = masters();
    assert_eq!(left.len(), 3, "masters right after the kill: {left:?}");
    // Idle for 2 s, they end; 4 s of margin for ssh's one-second timer and a loaded machine.
    std::thread::sleep(Duration::from_secs(6));
    let left = masters();
    assert!(
        left.is_empty(),
        "masters outlived --ssh-persist 2: {left:?}"
    );
    let _ = &fl.lab;
}

#[test]
fn a_plan_within_the_persist_time_reuses_the_masters_and_skips_the_handshake() {
    let Some(fl) = fleet() else {
        return;
    };
    let cold = fl.run(&["-v", "plan", "--brief"]);
    assert_eq!(cold.status.code(), Some(0), "{}", stderr(&cold));
    assert_eq!(
        stderr(&cold).matches("connection=\"new\"").count(),
        4,
        "{}",
        stderr(&cold)
    );
    let first = fl.masters();
    assert_eq!(first.len(), 4, "masters kept for the next run: {first:?}");
    // oignon's own directory, closed to others.
    let root = fl.runtime.join("oignon/ssh");
    let mode = std::fs::metadata(&root).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "{}", root.display());
    assert_eq!(fl.sockets(), 4);

    let warm = fl.run(&["-v", "plan", "--brief"]);
    assert_eq!(warm.status.code(), Some(0), "{}", stderr(&warm));
    let log = stderr(&warm);
    assert_eq!(log.matches("connection=\"reused\"").count(), 4, "{log}");
    assert_eq!(log.matches("round_trips=1").count(), 4, "{log}");
    assert_eq!(
        String::from_utf8_lossy(&warm.stdout),
        String::from_utf8_lossy(&cold.stdout)
    );
    assert_eq!(
        fl.masters(),
        first,
        "the warm plan started masters of its own"
    );

    // A destination that now resolves elsewhere (another port for lab1) is not the same
    // connection: only ekumen's master is new.
    let text = std::fs::read_to_string(&fl.config).unwrap();
    let (p1, p2) = (fl.lab.host("lab1").port, fl.lab.host("lab2").port);
    std::fs::write(
        &fl.config,
        text.replacen(&format!("Port {p1}\n"), &format!("Port {p2}\n"), 1),
    )
    .unwrap();
    let moved = fl.run(&["-v", "plan", "--brief"]);
    let log = stderr(&moved);
    assert_eq!(log.matches("connection=\"reused\"").count(), 3, "{log}");
    assert!(
        log.lines()
            .any(|l| l.contains("host=\"ekumen\"") && l.contains("connection=\"new\"")),
        "{log}"
    );
    std::fs::write(&fl.config, text).unwrap();

    // --ssh-persist 0: no reuse, and nothing of this run stays.
    let before = fl.masters();
    let closed = fl.run(&["-v", "--ssh-persist", "0", "plan", "--brief"]);
    assert_eq!(closed.status.code(), Some(0), "{}", stderr(&closed));
    assert_eq!(stderr(&closed).matches("connection=\"new\"").count(), 4);
    assert_eq!(fl.masters(), before, "--ssh-persist 0 left masters running");
}

#[test]
fn a_master_that_ended_while_apply_waited_for_yes_is_replaced() {
    let Some(fl) = fleet() else {
        return;
    };
    // `script` gives apply the terminal it asks on; the answer comes after the masters' 1 s.
    let cmd = format!(
        "{BIN} --ssh-config {} --ssh-persist 1 apply --brief --host ekumen",
        fl.config.display()
    );
    let mut child = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .current_dir(fl.f.dir.path())
        .env("HOME", fl.f.dir.path())
        .env("XDG_RUNTIME_DIR", &fl.runtime)
        .env("NO_COLOR", "1")
        .env_remove("OIGNON_SSH_PERSIST")
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("ekumen's master", 20, || !fl.masters().is_empty());
    wait_for("the master to end, idle", 20, || fl.masters().is_empty());
    use std::io::Write;
    child.stdin.as_mut().unwrap().write_all(b"yes\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        fl.lab
            .read("lab1", "/etc/tor/instances/ekumen/torrc")
            .is_some(),
        "apply did not reach the host: {text}"
    );
}

#[test]
fn ctrl_c_says_what_each_host_was_doing() {
    let Some(fl) = fleet() else {
        return;
    };
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    hang_one_host(&fl, &listener);
    let child = fl.command(&["plan"]).spawn().unwrap();
    wait_for("three masters", 20, || fl.sockets() >= 3);
    std::thread::sleep(Duration::from_millis(500));
    let k = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(k.success());
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(err.contains("oignon: interrupted (SIGINT)"), "{err}");
    for lab in ["lab1", "lab3", "lab4"] {
        let line = err
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("ssh {lab}: ")))
            .unwrap_or_else(|| panic!("no line for {lab}: {err}"));
        assert!(
            line.contains("gather finished") || line.contains("nothing was changed there"),
            "{line}"
        );
    }
    assert!(
        err.contains(&format!(
            "ssh ssh://root@127.0.0.1:{port}: was connecting; nothing ran there"
        )),
        "{err}"
    );
    assert!(
        err.contains("ssh connections end on their own after 60 s unused"),
        "{err}"
    );
}
