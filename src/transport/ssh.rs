//! The SSH transport: the system OpenSSH client through the `openssh` crate, one ControlMaster
//! connection per host, every command multiplexed over it. The user's ssh config, agent and
//! known_hosts apply; `--ssh-config FILE` is passed as `ssh -F FILE`.
//!
//! Host keys are always checked strictly (never trust-on-first-use). A host whose inventory entry
//! pins `host_key` is checked against that key only, whatever form its destination takes
//! (`host`, `user@host`, `ssh://user@host:port`, `[IPv6]`, an alias of the ssh config): its
//! connection gets an ssh config file of its own whose first lines, outside any `Host` block, set
//! `HostKeyAlias`, a known_hosts file holding only the pinned key, and turn off every other source
//! of trusted keys; the user's config is included after them (ssh keeps the first value it reads
//! for an option, so nothing there can loosen the pin). No `Host` pattern has to match the
//! destination for the pin to apply.
//!
//! The destination is parsed first ([`Destination`]): ssh gets `-l`, `-p` and a checked host name,
//! so nothing in the inventory can become an option of ssh.
//!
//! Masters end on their own after `--ssh-persist` seconds idle and are reused by the next run
//! within that time (see [`super::masters`]).

use super::destination::Destination;
use super::masters::{self, Masters};
use super::{Activity, Output, TransportError, CONNECT_TIMEOUT};
use openssh::{KnownHosts, Session, SessionBuilder, Stdio};
use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use super::masters::{set_persist, DEFAULT_PERSIST_S};

/// A master whose connection died (a host that went away, a NAT that forgot it) notices within
/// three of these and ends, rather than leaving a reused connection hanging.
const SERVER_ALIVE: Duration = Duration::from_secs(5);

/// The name under which a pinned key is looked up: the pinned connection's known_hosts holds
/// this one name, so ssh's "Host key for … has changed" names it.
const PIN_ALIAS: &str = "oignon-pinned-host-key";

/// A connected host.
pub struct SshHost {
    pub destination: String,
    session: tokio::sync::Mutex<Arc<Session>>,
    /// How to start a new master if this one ended during the run (boxed: the builder is large).
    relaunch: Box<Relaunch>,
    /// Leave the master running at the end (`--ssh-persist` > 0).
    keep: bool,
    /// The master is an earlier run's: this run made no handshake.
    pub reused: bool,
    /// The run's directory holding this master's socket (when masters are not kept).
    _dir: Option<Arc<tempfile::TempDir>>,
}

/// What [`launch`] needs, kept for a second master within a run.
struct Relaunch {
    builder: SessionBuilder,
    host_arg: String,
    pinned_key: Option<String>,
}

/// SSH settings shared by every host of a run.
pub struct SshSetup {
    /// `--ssh-config`, absolute.
    user_config: Option<PathBuf>,
    /// The generated ssh config of each pinned destination (as written in the inventory).
    pinned: HashMap<String, Pinned>,
    masters: Masters,
}

/// The files that make one destination's pin hold.
struct Pinned {
    config: PathBuf,
    known_hosts: PathBuf,
    /// `TYPE BASE64`.
    key: String,
}

impl SshSetup {
    /// `user_config`: `--ssh-config`; `pins`: (ssh destination, pinned key) of hosts that pin one.
    pub fn new(
        user_config: Option<&Path>,
        pins: &[(String, String)],
    ) -> Result<SshSetup, TransportError> {
        if let Some(c) = user_config {
            if !c.is_file() {
                return Err(TransportError {
                    what: format!("--ssh-config {}", c.display()),
                    detail: "no such file".into(),
                });
            }
        }
        let user_config = user_config.map(absolute);
        let masters = Masters::new()?;
        let mut pinned: HashMap<String, Pinned> = HashMap::new();
        let mut keys: HashMap<&str, String> = HashMap::new();
        for (dest, key) in pins {
            let key = pinned_key_line(key).map_err(|detail| TransportError {
                what: format!("the host_key pinned for `{dest}`"),
                detail,
            })?;
            if let Some(other) = keys.get(dest.as_str()) {
                if *other != key {
                    return Err(TransportError {
                        what: format!("two hosts reach `{dest}` with different pinned host keys"),
                        detail:
                            "one ssh destination has one host key: fix host_key in the inventory"
                                .into(),
                    });
                }
                continue;
            }
            keys.insert(dest, key.clone());
            let dir = masters.dir().join("pins");
            make_dir(&dir)?;
            // Named after their content: runs at once share them, and a kept master's resolved
            // config (ssh -G) names the same files as long as the pin is the same.
            let known_text = format!("{PIN_ALIAS} {key}\n");
            let known_hosts = dir.join(format!("{}.known_hosts", short_hash(&known_text)));
            write_file(&known_hosts, &known_text)?;
            let cfg_text = pinned_config(&known_hosts, user_config.as_deref())?;
            let config = dir.join(format!("{}.ssh_config", short_hash(&cfg_text)));
            write_file(&config, &cfg_text)?;
            pinned.insert(
                dest.clone(),
                Pinned {
                    config,
                    known_hosts,
                    key,
                },
            );
        }
        Ok(SshSetup {
            user_config,
            pinned,
            masters,
        })
    }

    /// What one connection to `destination` (host `host`) is made with: the parsed destination
    /// (refused with the inventory field to fix), the host's pinned key if any, and the ssh
    /// config (the pinned host's generated one, else `--ssh-config`).
    fn reach(
        &self,
        host: &str,
        destination: &str,
    ) -> Result<(Destination, Option<&Pinned>, Option<&Path>), TransportError> {
        let dest = Destination::parse(destination).map_err(|e| TransportError {
            what: format!("host `{host}`: refusing its ssh destination"),
            detail: format!("{e} (the `ssh` field of host `{host}` in the inventory)"),
        })?;
        let pinned = self.pinned.get(destination);
        let config = pinned
            .map(|p| p.config.as_path())
            .or(self.user_config.as_deref());
        Ok((dest, pinned, config))
    }

    /// Runs `script` (`sh -c`) over a connection of its own: a NEW TCP connection and handshake,
    /// never a ControlMaster's (an established connection outlives firewall rules that a new one
    /// meets), with the same config, pinned key and strict host key checking as [`connect`].
    /// Returns ssh's status and output; a connection that cannot be made is an error.
    ///
    /// [`connect`]: SshSetup::connect
    pub async fn run_fresh(
        &self,
        host: &str,
        destination: &str,
        script: &str,
    ) -> Result<(bool, String), TransportError> {
        let (dest, pinned, config) = self.reach(host, destination)?;
        let mut c = tokio::process::Command::new("ssh");
        if let Some(cfg) = config {
            c.arg("-F").arg(cfg);
        }
        if let Some(p) = pinned {
            c.arg("-o")
                .arg(format!("UserKnownHostsFile={}", p.known_hosts.display()));
        }
        c.args([
            "-o",
            "ControlMaster=no",
            "-o",
            "ControlPath=none",
            "-o",
            "BatchMode=yes",
        ])
        .args(["-o", "StrictHostKeyChecking=yes"])
        .arg("-o")
        .arg(format!("ConnectTimeout={}", CONNECT_TIMEOUT.as_secs()));
        if let Some(u) = &dest.user {
            c.arg("-l").arg(u);
        }
        if let Some(p) = dest.port {
            c.arg("-p").arg(p.to_string());
        }
        // The remote command is one word for the remote shell: `sh -c` and the script quoted.
        c.arg("--")
            .arg(&dest.host)
            .arg(format!("sh -c '{}'", script.replace('\'', "'\\''")))
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        let out = c.output().await.map_err(|e| TransportError {
            what: format!("ssh {destination}"),
            detail: format!("cannot run ssh: {e}"),
        })?;
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        // 255: ssh itself failed (no connection, refused key): not the script's answer.
        if out.status.code() == Some(255) {
            return Err(TransportError {
                what: format!("ssh {destination} (a new connection)"),
                detail: text.trim().to_string(),
            });
        }
        Ok((out.status.success(), text.trim().to_string()))
    }

    /// Opens the master connection to `destination`, the `ssh` of inventory host `host` (one SSH
    /// handshake), or takes over an earlier run's that is still up (none).
    pub async fn connect(&self, host: &str, destination: &str) -> Result<SshHost, TransportError> {
        let activity = format!("ssh {destination}");
        super::note(&activity, Activity::Connecting);
        let connected = self.connect_inner(host, destination).await;
        super::note(
            &activity,
            match &connected {
                Ok(_) => Activity::Connected,
                Err(_) => Activity::Unreachable,
            },
        );
        connected
    }

    async fn connect_inner(
        &self,
        host: &str,
        destination: &str,
    ) -> Result<SshHost, TransportError> {
        let (dest, pinned, config) = self.reach(host, destination)?;
        let mut b = SessionBuilder::default();
        b.known_hosts_check(KnownHosts::Strict)
            .connect_timeout(CONNECT_TIMEOUT)
            .server_alive_interval(SERVER_ALIVE)
            .control_persist(self.masters.control_persist());
        if let Some(u) = &dest.user {
            b.user(u.clone());
        }
        if let Some(p) = dest.port {
            b.port(p);
        }
        if let Some(c) = config {
            b.config_file(c);
        }
        if let Some(p) = pinned {
            // `-o UserKnownHostsFile` on the command line as well: it outranks any config.
            b.user_known_hosts_file(&p.known_hosts);
        }
        let salt = format!(
            "{dest}\0{}\0{}",
            config.map(|c| c.display().to_string()).unwrap_or_default(),
            pinned.map(|p| p.key.as_str()).unwrap_or("")
        );
        let slot = self
            .masters
            .slot(&resolve_args(config, &dest), &salt)
            .await?;
        b.control_directory(&slot);
        let keep = self.masters.kept();
        let pinned_key = pinned.map(|p| p.key.clone());
        let earlier = if keep {
            masters::reuse(&slot).await
        } else {
            None
        };
        let reused = earlier.is_some();
        let session = match earlier {
            Some(s) => {
                tracing::debug!(
                    host,
                    destination,
                    "reusing an ssh connection of an earlier run"
                );
                s
            }
            None => launch(&b, &dest.host, destination, pinned_key.as_deref()).await?,
        };
        Ok(SshHost {
            destination: destination.to_string(),
            session: tokio::sync::Mutex::new(Arc::new(session)),
            relaunch: Box::new(Relaunch {
                builder: b,
                host_arg: dest.host,
                pinned_key,
            }),
            keep,
            reused,
            _dir: self.masters.hold(),
        })
    }
}

/// Starts a master (the handshake). `host_arg` was checked not to start with `-`: ssh cannot take
/// it for an option.
async fn launch(
    b: &SessionBuilder,
    host_arg: &str,
    destination: &str,
    pinned_key: Option<&str>,
) -> Result<Session, TransportError> {
    b.connect_mux(host_arg).await.map_err(|e| {
        let mut detail = error_chain(&e);
        if let Some(key) = pinned_key {
            if detail.contains("Host key verification failed") {
                detail = pin_mismatch(&detail, key);
            }
        }
        TransportError {
            what: format!("cannot connect with ssh to `{destination}`"),
            detail,
        }
    })
}

/// `ssh -G` with what the connection passes: what ssh resolves for this destination.
fn resolve_args(config: Option<&Path>, dest: &Destination) -> Vec<OsString> {
    let mut a: Vec<OsString> = vec!["-G".into()];
    if let Some(c) = config {
        a.push("-F".into());
        a.push(c.into());
    }
    if let Some(u) = &dest.user {
        a.push("-l".into());
        a.push(u.into());
    }
    if let Some(p) = dest.port {
        a.push("-p".into());
        a.push(p.to_string().into());
    }
    a.push("--".into());
    a.push((&dest.host).into());
    a
}

fn short_hash(text: &str) -> String {
    crate::util::sha256_hex(text.as_bytes())[..16].to_string()
}

fn make_dir(d: &Path) -> Result<(), TransportError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(d)
        .map_err(|e| TransportError {
            what: format!("cannot create {}", d.display()),
            detail: e.to_string(),
        })
}

/// The config of a pinned connection: the pin's options first (outside any `Host` block, so they
/// apply whatever the destination), then the user's own config for everything else.
fn pinned_config(known_hosts: &Path, user_config: Option<&Path>) -> Result<String, TransportError> {
    let mut cfg = String::from(
        "# Written by oignon for one connection: the inventory pins this host's key.\n\
         # These come first, so nothing in the user's config included below can change them.\n",
    );
    let _ = writeln!(cfg, "HostKeyAlias {PIN_ALIAS}");
    let _ = writeln!(cfg, "UserKnownHostsFile {}", config_path(known_hosts)?);
    // Every other source of trusted keys is off: a `*` line in /etc/ssh/ssh_known_hosts, a
    // KnownHostsCommand, SSHFP records or an @cert-authority would otherwise be accepted too.
    cfg.push_str(
        "GlobalKnownHostsFile /dev/null\n\
         StrictHostKeyChecking yes\n\
         KnownHostsCommand none\n\
         VerifyHostKeyDNS no\n\
         UpdateHostKeys no\n\
         CheckHostIP no\n",
    );
    match user_config {
        Some(c) => {
            let _ = writeln!(cfg, "Include {}", config_path(c)?);
        }
        None => {
            // `-F` replaces both of ssh's usual files: include them, in ssh's order.
            if let Some(home) = std::env::var_os("HOME") {
                let user = Path::new(&home).join(".ssh/config");
                if user.is_file() {
                    let _ = writeln!(cfg, "Include {}", config_path(&user)?);
                }
            }
            cfg.push_str("Include /etc/ssh/ssh_config\n");
        }
    }
    Ok(cfg)
}

/// `path` quoted for an ssh config line. ssh expands `%` tokens, `${VAR}`, `~` and globs in
/// these options: a path holding one of them would name another file, so it is refused.
fn config_path(path: &Path) -> Result<String, TransportError> {
    let s = path.to_str().ok_or_else(|| TransportError {
        what: format!("cannot pin host keys with {}", path.display()),
        detail: "the path is not UTF-8".into(),
    })?;
    if let Some(c) = s
        .chars()
        .find(|c| c.is_control() || matches!(c, '"' | '%' | '$' | '*' | '?' | '[' | '~'))
    {
        return Err(TransportError {
            what: format!("cannot pin host keys with {}", path.display()),
            detail: format!(
                "the path holds {c:?}, which ssh would expand in its config; use a path without it (TMPDIR, --ssh-config)"
            ),
        });
    }
    Ok(format!("\"{s}\""))
}

/// The pinned key as a known_hosts key field, `TYPE BASE64`, after checking that it is one
/// public key on one line whose blob says the same type (a comment is dropped).
fn pinned_key_line(key: &str) -> Result<String, String> {
    use base64::Engine as _;
    if key.chars().any(|c| c.is_control() && c != '\n') || key.trim().contains('\n') {
        return Err("must be one line: `ssh-ed25519 AAAA…` (one key)".into());
    }
    let mut words = key.split_whitespace();
    let (Some(kind), Some(b64)) = (words.next(), words.next()) else {
        return Err("is not an SSH public key: write `ssh-ed25519 AAAA…`".into());
    };
    const TYPES: &[&str] = &[
        "ssh-ed25519",
        "ssh-rsa",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "sk-ssh-ed25519@openssh.com",
        "sk-ecdsa-sha2-nistp256@openssh.com",
    ];
    if !TYPES.contains(&kind) {
        return Err(format!(
            "`{kind}` is not an SSH host key type ({})",
            TYPES.join(", ")
        ));
    }
    let blob = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| format!("the key after `{kind}` is not base64"))?;
    let named = blob
        .get(..4)
        .map(|n| u32::from_be_bytes([n[0], n[1], n[2], n[3]]) as usize)
        .and_then(|n| blob.get(4..4 + n));
    if named != Some(kind.as_bytes()) {
        return Err(format!(
            "the key data is not a `{kind}` key (copy the whole line of the host's .pub file)"
        ));
    }
    Ok(format!("{kind} {b64}"))
}

/// ssh's words for a pinned key that does not match, without its advice to edit a known_hosts file
/// of this run (the pin lives in the inventory), and with both fingerprints.
fn pin_mismatch(ssh_said: &str, pinned: &str) -> String {
    let lines: Vec<&str> = ssh_said.lines().map(str::trim).collect();
    let presented = lines
        .iter()
        .position(|l| l.starts_with("The fingerprint for the"))
        .map(|i| {
            let kind = lines[i]
                .trim_start_matches("The fingerprint for the ")
                .split(' ')
                .next()
                .unwrap_or("");
            let fp = lines.get(i + 1).unwrap_or(&"").trim_end_matches('.');
            format!("{kind} {fp}")
        })
        .unwrap_or_else(|| "another key".into());
    format!(
        "Host key verification failed: the host's key is not the host_key pinned in the inventory \
         (the host presented {presented}; the pin is {}); if the host's key really changed, set \
         host_key to the new one (the host's /etc/ssh/ssh_host_*_key.pub)",
        fingerprint(pinned)
    )
}

/// `SHA256:…` as ssh prints a key's fingerprint.
fn fingerprint(key_line: &str) -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    let blob = key_line
        .split_whitespace()
        .nth(1)
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .unwrap_or_default();
    let digest = sha2::Sha256::digest(&blob);
    format!(
        "SHA256:{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest)
    )
}

/// Writes through a temp name and a rename: another run reading the file sees it whole.
fn write_file(p: &Path, s: &str) -> Result<(), TransportError> {
    let fail = |e: std::io::Error| TransportError {
        what: format!("cannot write {}", p.display()),
        detail: e.to_string(),
    };
    let tmp = p.with_extension(format!("tmp.{}", std::process::id()));
    std::fs::write(&tmp, s).map_err(fail)?;
    std::fs::rename(&tmp, p).map_err(fail)
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// The whole cause chain: openssh's Display is only "failed to connect to the remote host"; ssh's
/// own words ("Host key verification failed", "Connection refused") are in the sources.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut src = e.source();
    while let Some(s) = src {
        let t = s.to_string();
        if !parts.contains(&t) {
            parts.push(t);
        }
        src = s.source();
    }
    parts.join(": ").trim().to_string()
}

impl SshHost {
    pub async fn run(
        &self,
        name: &str,
        script: &str,
        args: &[String],
        stdin: Vec<u8>,
    ) -> Result<Output, TransportError> {
        let fail = |e: openssh::Error| TransportError {
            what: format!("running {name} on `{}` over ssh failed", self.destination),
            detail: error_chain(&e),
        };
        let session = self.session.lock().await.clone();
        let mut child = match spawn(&session, name, script, args).await {
            Ok(c) => c,
            Err(first) => {
                // The master may have ended (its idle time passed while oignon waited on a
                // prompt, or the host dropped it): nothing was sent yet, so a new master can run
                // the command. A master that is up and still refused is a real failure.
                if session.check().await.is_ok() {
                    return Err(fail(first));
                }
                tracing::info!(
                    destination = self.destination,
                    "the ssh connection had ended; connecting again"
                );
                let r = &self.relaunch;
                let fresh = Arc::new(
                    launch(
                        &r.builder,
                        &r.host_arg,
                        &self.destination,
                        r.pinned_key.as_deref(),
                    )
                    .await?,
                );
                *self.session.lock().await = fresh.clone();
                spawn(&fresh, name, script, args).await.map_err(fail)?
            }
        };
        let writer = super::feed(child.stdin().take(), stdin);
        let out = child.wait_with_output().await.map_err(fail)?;
        if let Some(w) = writer {
            let _ = w.await;
        }
        Ok(Output {
            status: out.status.code(),
            stdout: out.stdout,
            stderr: out.stderr,
        })
    }

    /// Ends the run's use of the master: left running for the next run (it ends on its own after
    /// `--ssh-persist` seconds idle), or closed now with `--ssh-persist 0`.
    pub async fn close(self) {
        let Ok(s) = Arc::try_unwrap(self.session.into_inner()) else {
            return;
        };
        let _dir = self._dir;
        if self.keep {
            let _ = s.detach();
            return;
        }
        // `ssh -O exit`: the master ends now. (The crate's close only asks it to stop listening,
        // after which it would still wait out its ControlPersist time.)
        let _ = tokio::time::timeout(
            Duration::from_secs(5),
            tokio::process::Command::new("ssh")
                .arg("-O")
                .arg("exit")
                .arg("-S")
                .arg(s.control_socket())
                .arg("--")
                .arg(&self.relaunch.host_arg)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status(),
        )
        .await;
        // Removes the master's directory.
        let _ = s.close().await;
    }
}

/// `sh -c SCRIPT oignon-NAME "" ARGS…` on the host.
async fn spawn(
    session: &Arc<Session>,
    name: &str,
    script: &str,
    args: &[String],
) -> Result<openssh::Child<Arc<Session>>, openssh::Error> {
    let mut cmd = session.clone().arc_command("sh");
    // `arg` quotes for the remote shell: the script and its arguments arrive as data, never spliced.
    cmd.arg("-c")
        .arg(script)
        .arg(format!("oignon-{name}"))
        .arg("")
        .args(args);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd.spawn().await
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILzhJo0LdONLxNIY8fVbJhY125o6ObdGqMFr1IvMtNWx";

    #[test]
    fn a_pinned_key_is_one_key_of_its_stated_type() {
        assert_eq!(pinned_key_line(&format!("{ED} root@x\n")).unwrap(), ED);
        for bad in [
            format!("{ED}\n{ED}"),
            format!("{ED}\r* {ED}"),
            "ssh-ed25519".to_string(),
            format!("@cert-authority {ED}"),
            ED.replace("ssh-ed25519", "ssh-rsa"),
            "ssh-ed25519 !!!".to_string(),
        ] {
            assert!(pinned_key_line(&bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn ssh_resolves_the_host_after_a_double_dash() {
        let d = Destination::parse("ssh://admin@[2001:db8::1]:2222").unwrap();
        let args: Vec<String> = resolve_args(Some(Path::new("/c")), &d)
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect();
        assert_eq!(
            args,
            [
                "-G",
                "-F",
                "/c",
                "-l",
                "admin",
                "-p",
                "2222",
                "--",
                "2001:db8::1"
            ]
        );
    }

    #[test]
    fn fingerprints_are_the_ones_ssh_keygen_prints() {
        // ssh-keygen -lf: 256 SHA256:vr7R11+pKRHwqzWQ5JKc50ckY8nE01k0QazJeq04Taw (ED25519)
        assert_eq!(
            fingerprint(ED),
            "SHA256:vr7R11+pKRHwqzWQ5JKc50ckY8nE01k0QazJeq04Taw"
        );
        let said = "@@@\nThe fingerprint for the ED25519 key sent by the remote host is\nSHA256:abc.\nHost key verification failed.";
        let msg = pin_mismatch(said, ED);
        assert!(
            msg.contains("the host presented ED25519 SHA256:abc;"),
            "{msg}"
        );
        assert!(msg.contains("the pin is SHA256:vr7R11"), "{msg}");
    }

    #[test]
    fn the_pin_options_come_before_the_users_config_outside_any_host_block() {
        let cfg = pinned_config(
            Path::new("/run/o/pin0.known_hosts"),
            Some(Path::new("/home/a/ssh config")),
        )
        .unwrap();
        let lines: Vec<&str> = cfg.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            lines,
            [
                "HostKeyAlias oignon-pinned-host-key",
                "UserKnownHostsFile \"/run/o/pin0.known_hosts\"",
                "GlobalKnownHostsFile /dev/null",
                "StrictHostKeyChecking yes",
                "KnownHostsCommand none",
                "VerifyHostKeyDNS no",
                "UpdateHostKeys no",
                "CheckHostIP no",
                "Include \"/home/a/ssh config\"",
            ]
        );
        for bad in [
            "/tmp/a%d",
            "/tmp/${HOME}",
            "/tmp/*",
            "/tmp/a\"b",
            "/tmp/a\nb",
        ] {
            assert!(pinned_config(Path::new(bad), None).is_err(), "{bad}");
        }
    }
}
