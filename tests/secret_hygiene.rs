//! Decrypted relay keys never outlive the run that needed them: not in a scratch directory after
//! a SIGKILL (the next start sweeps it) or a Ctrl-C (wiped before exit), not in a core file.

use crate::harness::{age_keygen, Fixture, BIN};
use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const RELAYS: &[&str] = &[
    "ekumen", "marcuse1", "marcuse2", "marylou1", "marylou2", "hygiene6",
];

/// A store of fresh keys of our own (so that no other test's keys can match the canaries), a
/// TMPDIR inside the fixture, and the canaries: raw pieces of two relays' decrypted keys.
struct Store {
    f: Fixture,
    identity: PathBuf,
    tmp: PathBuf,
    canaries: Vec<Vec<u8>>,
}

fn store() -> Store {
    let f = Fixture::shipped();
    let identity = f.path("admin.key");
    let pubkey = age_keygen(&identity);
    std::fs::remove_dir_all(f.path("secrets")).unwrap();
    f.write("secrets/recipients.txt", &format!("# admin\n{pubkey}\n"));
    let mut args = vec![
        "--identity",
        identity.to_str().unwrap(),
        "secrets",
        "keygen",
    ];
    args.extend_from_slice(RELAYS);
    f.run(&args).code(0);
    let tmp = f.path("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let mut canaries = vec![];
    for relay in ["ekumen", "marylou2"] {
        for (file, tail) in [
            ("secret_id_key", false),
            ("ed25519_master_id_secret_key", true),
        ] {
            let o = Command::new("age")
                .args(["-d", "-i"])
                .arg(&identity)
                .arg(f.path(&format!("secrets/relays/{relay}/{file}.age")))
                .output()
                .unwrap();
            assert!(o.status.success());
            let plain = o.stdout;
            if tail {
                canaries.push(plain[plain.len() - 32..].to_vec());
            } else {
                // A line of the PEM body: base64 of the key itself.
                let text = String::from_utf8(plain).unwrap();
                canaries.push(text.lines().nth(3).unwrap().as_bytes().to_vec());
            }
        }
    }
    Store {
        f,
        identity,
        tmp,
        canaries,
    }
}

impl Store {
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.arg("--identity")
            .arg(&self.identity)
            .args(args)
            .current_dir(self.f.dir.path())
            .env("HOME", self.f.dir.path())
            .env("TMPDIR", &self.tmp)
            .env_remove("XDG_RUNTIME_DIR")
            .env_remove("OIGNON_IDENTITY")
            .env_remove("OIGNON_SECRETS")
            .env_remove("OIGNON_INVENTORY")
            .env_remove("OIGNON_ROLES")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// Files under TMPDIR and /dev/shm holding a canary.
    fn leaks(&self) -> Vec<PathBuf> {
        let mut found = vec![];
        for root in [self.tmp.as_path(), Path::new("/dev/shm")] {
            scan(root, &self.canaries, &mut found);
        }
        found
    }
}

fn scan(dir: &Path, needles: &[Vec<u8>], found: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        let Ok(m) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if m.is_dir() {
            scan(&p, needles, found);
        } else if m.is_file() && m.len() < 4 << 20 {
            if let Ok(bytes) = std::fs::read(&p) {
                if needles
                    .iter()
                    .any(|n| bytes.windows(n.len()).any(|w| w == n.as_slice()))
                {
                    found.push(p);
                }
            }
        }
    }
}

/// The scratch directories of process `pid` that hold a key file with content, wherever they are.
fn scratch_with_keys(pid: u32, tmp: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    for root in [Path::new("/dev/shm"), tmp] {
        let Ok(rd) = std::fs::read_dir(root) else {
            continue;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            // Before the fix: tempfile's `oignon-keysXXXXXX` in TMPDIR, with no pid in the name.
            let mine = name.contains(&format!(".{pid}."))
                || (root == tmp && name.starts_with("oignon-keys"));
            if mine
                && std::fs::metadata(e.path().join("data/keys/secret_id_key"))
                    .is_ok_and(|m| m.len() > 0)
            {
                out.push(e.path());
            }
        }
    }
    out
}

/// Starts `secrets verify` and returns it once tor's scratch directory holds a decrypted key, or
/// None if the run ended before (then the caller tries again).
fn verify_caught_with_keys_out(s: &Store) -> Option<Child> {
    let mut child = s.command(&["secrets", "verify"]).spawn().unwrap();
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if !scratch_with_keys(pid, &s.tmp).is_empty() {
            return Some(child);
        }
        if child.try_wait().unwrap().is_some() {
            return None;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

fn caught(s: &Store) -> Child {
    for _ in 0..20 {
        if let Some(c) = verify_caught_with_keys_out(s) {
            return c;
        }
    }
    panic!("secrets verify never showed its scratch keys in 20 runs");
}

#[test]
fn sigkill_during_secrets_verify_leaves_keys_only_until_the_next_start() {
    let s = store();
    let mut child = caught(&s);
    let pid = child.id();
    child.kill().unwrap();
    child.wait().unwrap();
    // Nothing can run on SIGKILL: the keys stay until an oignon starts again...
    let left = scratch_with_keys(pid, &s.tmp);
    assert!(!left.is_empty(), "the kill came too late to test anything");
    for d in &left {
        assert!(
            d.starts_with("/dev/shm"),
            "{} is not on a tmpfs",
            d.display()
        );
    }
    // ...which sweeps them: any command, as its first act.
    let out = s.command(&["--version"]).output().unwrap();
    assert!(out.status.success());
    for d in &left {
        assert!(!d.exists(), "{} survived the next start", d.display());
    }
    let leaks = s.leaks();
    assert!(leaks.is_empty(), "decrypted keys left in {leaks:?}");
}

#[test]
fn ctrl_c_term_and_hangup_during_secrets_verify_wipe_the_keys_before_exit() {
    let s = store();
    for (sig, name, code) in [
        ("INT", "SIGINT", 130),
        ("TERM", "SIGTERM", 143),
        ("HUP", "SIGHUP", 129),
    ] {
        let mut child = caught(&s);
        let pid = child.id();
        let k = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(pid.to_string())
            .status()
            .unwrap();
        assert!(k.success());
        let status = child.wait().unwrap();
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        assert_eq!(status.code(), Some(code), "{name}: {status:?} {stderr}");
        assert!(
            stderr.contains(&format!("interrupted ({name})")),
            "{name}: {stderr}"
        );
        // Right after exit, with no other oignon started since: nothing left.
        let left = scratch_with_keys(pid, &s.tmp);
        assert!(left.is_empty(), "{name}: scratch keys left in {left:?}");
        let leaks = s.leaks();
        assert!(leaks.is_empty(), "{name}: decrypted keys left in {leaks:?}");
    }
}

fn boot8() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .unwrap()
        .chars()
        .filter(|c| c.is_ascii_hexdigit())
        .take(8)
        .collect()
}

fn start_time(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 1..];
    after.split_whitespace().nth(19).unwrap().parse().unwrap()
}

fn plant(dir: &Path, key: &[u8]) -> PathBuf {
    std::fs::create_dir_all(dir.join("data/keys")).unwrap();
    std::fs::write(dir.join("data/keys/secret_id_key"), key).unwrap();
    dir.to_path_buf()
}

#[test]
fn the_next_start_sweeps_dead_runs_scratch_dirs_and_never_a_live_runs() {
    let s = store();
    let key = [
        b"-----BEGIN RSA PRIVATE KEY-----\n".as_slice(),
        &s.canaries[0],
    ]
    .concat();
    let boot = boot8();
    // A pid that has exited.
    let mut gone = Command::new("true").spawn().unwrap();
    let dead_pid = gone.id();
    gone.wait().unwrap();
    let me = std::process::id();
    let my_start = start_time(me);
    let shm = Path::new("/dev/shm");
    let tag = rand_suffix();
    let dead = plant(
        &shm.join(format!("oignon-keys.{boot}.{dead_pid}.1.d{tag}")),
        &key,
    );
    let reused_pid = plant(
        &shm.join(format!("oignon-keys.{boot}.{me}.{}.r{tag}", my_start + 1)),
        &key,
    );
    let other_boot = plant(
        &shm.join(format!("oignon-keys.00000000.{me}.{my_start}.b{tag}")),
        &key,
    );
    let live = plant(
        &shm.join(format!("oignon-keys.{boot}.{me}.{my_start}.l{tag}")),
        &key,
    );
    // Versions before the naming: tempfile's `oignon-keysXXXXXX`, swept once an hour old.
    let legacy_old = plant(&s.tmp.join(format!("oignon-keysO{}", &tag[..5])), &key);
    let legacy_new = plant(&s.tmp.join(format!("oignon-keysN{}", &tag[..5])), &key);
    let t = Command::new("touch")
        .args(["-d", "2 hours ago"])
        .arg(&legacy_old)
        .status()
        .unwrap();
    assert!(t.success());
    let out = s.command(&["--version"]).output().unwrap();
    assert!(out.status.success());
    for d in [&dead, &reused_pid, &other_boot, &legacy_old] {
        assert!(
            !d.exists(),
            "{} (its run is gone) was not swept",
            d.display()
        );
    }
    for d in [&live, &legacy_new] {
        assert!(
            d.join("data/keys/secret_id_key").exists(),
            "{} (a live run's) was swept",
            d.display()
        );
    }
    std::fs::remove_dir_all(&live).unwrap();
}

fn rand_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{:06}", (nanos ^ std::process::id()) % 1_000_000)
}

/// A plan that stays in flight, keys decrypted, until the test signals it: every host's ssh
/// destination is a local port that accepts connections and never answers.
fn plan_in_flight(f: &Fixture, listener: &std::net::TcpListener) -> Child {
    let port = listener.local_addr().unwrap().port();
    for (host, file) in [
        ("ekumen", "inventory/gandi.toml"),
        ("algrothendieck", "inventory/globenet.toml"),
        ("marcuse", "inventory/ielo-liazo.toml"),
        ("marylou", "inventory/tetaneutral.toml"),
    ] {
        f.edit(
            file,
            &format!("name = \"{host}\"\n"),
            &format!("name = \"{host}\"\nssh = \"ssh://root@127.0.0.1:{port}\"\n"),
        );
    }
    let child = Command::new("sh")
        .args(["-c", "ulimit -c unlimited && exec \"$0\" \"$@\""])
        .arg(BIN)
        .arg("plan")
        .current_dir(f.dir.path())
        .env("HOME", f.dir.path())
        .env_remove("OIGNON_IDENTITY")
        .env_remove("OIGNON_SSH_CONFIG")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Keys are decrypted while rendering, before any connection: wait for ssh to connect.
    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut held = vec![];
    while held.is_empty() && Instant::now() < deadline {
        if let Ok((c, _)) = listener.accept() {
            held.push(c);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(!held.is_empty(), "plan never connected");
    std::mem::forget(held);
    child
}

fn cores_in(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n == "core" || n.starts_with("core."))
        })
        .collect()
}

#[test]
fn sigquit_and_sigabrt_during_plan_write_no_core_file() {
    let pattern = std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap_or_default();
    // Where the kernel would write a core of a process in the fixture directory; with a pipe
    // pattern (systemd-coredump, apport), only the limits below can be checked.
    let file_pattern = !pattern.starts_with('|');
    for (sig, code) in [("QUIT", Some(131)), ("ABRT", None)] {
        let f = Fixture::shipped();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut child = plan_in_flight(&f, &listener);
        let pid = child.id();
        let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
        let core_line = limits
            .lines()
            .find(|l| l.starts_with("Max core file size"))
            .unwrap();
        assert_eq!(
            core_line.split_whitespace().collect::<Vec<_>>()[4..6],
            ["0", "0"],
            "RLIMIT_CORE of a running oignon: {core_line}"
        );
        let k = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(pid.to_string())
            .status()
            .unwrap();
        assert!(k.success());
        let status = child.wait().unwrap();
        assert!(
            !status.core_dumped(),
            "SIG{sig}: a core was dumped ({status:?})"
        );
        match code {
            // SIGQUIT is an interrupt like Ctrl-C: keys wiped, a message, 128+3.
            Some(c) => assert_eq!(status.code(), Some(c), "SIG{sig}: {status:?}"),
            None => assert_eq!(status.signal(), Some(6), "SIG{sig}: {status:?}"),
        }
        if file_pattern {
            let cores = cores_in(f.dir.path());
            assert!(
                cores.is_empty(),
                "SIG{sig}: core files {cores:?} (core_pattern {pattern:?})"
            );
        }
    }
}
