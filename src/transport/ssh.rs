//! The SSH transport: the system OpenSSH client through the `openssh` crate, one ControlMaster
//! connection per host, every command multiplexed over it. The user's ssh config, agent and
//! known_hosts apply; `--ssh-config FILE` is passed as `ssh -F FILE`.
//!
//! Host keys are always checked strictly (never trust-on-first-use). A host whose inventory entry
//! pins `host_key` is checked against that key only: oignon writes its own known_hosts and an ssh
//! config that sets `HostKeyAlias` for that host, placed before the user's config (ssh keeps the
//! first value it reads for an option).

use super::{Output, TransportError, CONNECT_TIMEOUT};
use openssh::{KnownHosts, Session, SessionBuilder, Stdio};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A connected host.
pub struct SshHost {
    pub destination: String,
    session: Arc<Session>,
}

/// SSH settings shared by every host of a run.
pub struct SshSetup {
    config: Option<PathBuf>,
    /// Holds the generated config and known_hosts for pinned hosts; removed at the end of the run.
    _dir: Option<tempfile::TempDir>,
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
        if pins.is_empty() {
            return Ok(SshSetup {
                config: user_config.map(absolute),
                _dir: None,
            });
        }
        let dir = tempfile::Builder::new()
            .prefix("oignon-ssh")
            .tempdir()
            .map_err(|e| TransportError {
                what: "cannot create a temp dir for ssh".into(),
                detail: e.to_string(),
            })?;
        let known = dir.path().join("known_hosts");
        let mut kh = String::new();
        let mut cfg = String::from(
            "# Written by oignon for this run: pinned host keys first, then the user's config.\n",
        );
        for (dest, key) in pins {
            let alias = format!("oignon-pinned-{dest}");
            let _ = writeln!(kh, "{alias} {}", key.trim());
            let _ = writeln!(
                cfg,
                "Host {dest}\n  HostKeyAlias {alias}\n  UserKnownHostsFile {}\n  StrictHostKeyChecking yes\n",
                known.display()
            );
        }
        cfg.push_str("Host *\n");
        match user_config {
            Some(c) => {
                let _ = writeln!(cfg, "Include {}", absolute(c).display());
            }
            None => {
                if let Some(home) = std::env::var_os("HOME") {
                    let user = Path::new(&home).join(".ssh/config");
                    if user.is_file() {
                        let _ = writeln!(cfg, "Include {}", user.display());
                    }
                }
                cfg.push_str("Include /etc/ssh/ssh_config\n");
            }
        }
        let write = |p: &Path, s: &str| {
            std::fs::write(p, s).map_err(|e| TransportError {
                what: format!("cannot write {}", p.display()),
                detail: e.to_string(),
            })
        };
        write(&known, &kh)?;
        let config = dir.path().join("ssh_config");
        write(&config, &cfg)?;
        Ok(SshSetup {
            config: Some(config),
            _dir: Some(dir),
        })
    }

    /// Opens the master connection to `destination` (one SSH handshake).
    pub async fn connect(&self, destination: &str) -> Result<SshHost, TransportError> {
        let mut b = SessionBuilder::default();
        b.known_hosts_check(KnownHosts::Strict)
            .connect_timeout(CONNECT_TIMEOUT);
        if let Some(c) = &self.config {
            b.config_file(c);
        }
        let session = b
            .connect_mux(destination)
            .await
            .map_err(|e| TransportError {
                what: format!("cannot connect with ssh to `{destination}`"),
                detail: error_chain(&e),
            })?;
        Ok(SshHost {
            destination: destination.to_string(),
            session: Arc::new(session),
        })
    }
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
        let mut cmd = self.session.clone().arc_command("sh");
        // `arg` quotes for the remote shell: the script and its arguments arrive as data, never spliced.
        cmd.arg("-c")
            .arg(script)
            .arg(format!("oignon-{name}"))
            .arg("")
            .args(args);
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().await.map_err(fail)?;
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

    pub async fn close(self) {
        if let Ok(s) = Arc::try_unwrap(self.session) {
            let _ = s.close().await;
        }
    }
}
