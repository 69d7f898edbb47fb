//! How oignon reaches a host: over SSH (the system OpenSSH client, one multiplexed connection per
//! host) or into a local directory root (a mounted VM image, or the demo). Callers never know which:
//! both run the same embedded shell scripts (`src/remote/`), with the root prefix as an argument.

pub mod destination;
pub mod local;
pub mod ssh;

use std::time::Duration;

/// What a remote script printed and how it ended.
#[derive(Debug)]
pub struct Output {
    pub status: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status == Some(0)
    }
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).trim().to_string()
    }
}

/// A failure to reach a host or to run a command there, with the underlying tool's own words.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {detail}")]
pub struct TransportError {
    pub what: String,
    pub detail: String,
}

/// An open connection to one host.
pub enum Transport {
    Ssh(ssh::SshHost),
    Local(local::LocalHost),
}

impl Transport {
    /// Runs `script` with `sh -c`, `$1` = the root prefix ("" on a real host), then `args`, with
    /// `stdin` as its standard input. One call is one round trip.
    pub async fn run(
        &self,
        name: &str,
        script: &str,
        args: &[String],
        stdin: Vec<u8>,
    ) -> Result<Output, TransportError> {
        let started = std::time::Instant::now();
        let out = match self {
            Transport::Ssh(h) => h.run(name, script, args, stdin).await,
            Transport::Local(h) => h.run(name, script, args, stdin).await,
        };
        tracing::debug!(host = self.describe(), script = name, elapsed = ?started.elapsed(), "round trip");
        out
    }

    /// `ssh DEST` or `local DIR`, for messages.
    pub fn describe(&self) -> String {
        match self {
            Transport::Ssh(h) => format!("ssh {}", h.destination),
            Transport::Local(h) => format!("local {}", h.root.display()),
        }
    }

    /// Closes the connection (the SSH master), reporting nothing: the work is done by then.
    pub async fn close(self) {
        if let Transport::Ssh(h) = self {
            h.close().await;
        }
    }
}

/// Feeds `bytes` to a child's stdin from a task of its own, so that reading the child's stdout
/// meanwhile keeps either side from filling a pipe and waiting on the other. A script that exits
/// early closes its stdin: that shows in its status, not here.
pub fn feed<W>(stdin: Option<W>, bytes: Vec<u8>) -> Option<tokio::task::JoinHandle<()>>
where
    W: tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use tokio::io::AsyncWriteExt;
    stdin.map(|mut w| {
        tokio::spawn(async move {
            let _ = w.write_all(&bytes).await;
            let _ = w.shutdown().await;
        })
    })
}

/// How long a connection attempt may take before the host counts as unreachable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
