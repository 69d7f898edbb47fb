//! How oignon reaches a host: over SSH (the system OpenSSH client, one multiplexed connection per
//! host) or into a local directory root (a mounted VM image, or the demo). Callers never know which:
//! both run the same embedded shell scripts (`src/remote/`), with the root prefix as an argument.

pub mod destination;
pub mod local;
pub mod masters;
pub mod ssh;

use std::sync::Mutex;
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
#[derive(Debug, Clone, thiserror::Error)]
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
        let who = self.describe();
        note(&who, Activity::Running(name.to_string()));
        let out = match self {
            Transport::Ssh(h) => h.run(name, script, args, stdin).await,
            Transport::Local(h) => h.run(name, script, args, stdin).await,
        };
        note(
            &who,
            Activity::Finished(name.to_string(), out.as_ref().ok().and_then(|o| o.status)),
        );
        tracing::debug!(host = who, script = name, elapsed = ?started.elapsed(), "round trip");
        out
    }

    /// Whether the connection is an earlier run's, still up: this run made no handshake.
    pub fn reused(&self) -> bool {
        matches!(self, Transport::Ssh(h) if h.reused)
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

/// What a host's connection was last doing, for the message of an interrupted run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Activity {
    Connecting,
    Connected,
    Unreachable,
    /// A script (`gather`, `apply`, `import`…) is running there.
    Running(String),
    /// A script ended, with its exit status (None: the transport failed or a signal ended it).
    Finished(String, Option<i32>),
}

/// Each host's last activity, by `describe()`, in the order hosts first showed up.
static ACTIVITY: Mutex<Vec<(String, Activity)>> = Mutex::new(Vec::new());

/// Records what `who` (`ssh DEST`, `local DIR`) is doing now.
pub fn note(who: &str, a: Activity) {
    let mut all = ACTIVITY.lock().unwrap_or_else(|e| e.into_inner());
    match all.iter_mut().find(|(w, _)| w == who) {
        Some(slot) => slot.1 = a,
        None => all.push((who.to_string(), a)),
    }
}

/// One line per host that oignon reached for or worked on: the state an interrupt left it in.
pub fn interrupted_report() -> Vec<String> {
    let all = ACTIVITY.lock().unwrap_or_else(|e| e.into_inner());
    all.iter().map(|(who, a)| report_line(who, a)).collect()
}

fn report_line(who: &str, a: &Activity) -> String {
    let what = match a {
        Activity::Connecting => "was connecting; nothing ran there".to_string(),
        Activity::Connected => "connected; nothing ran there yet".to_string(),
        Activity::Unreachable => "not reached".to_string(),
        Activity::Running(s) if s == "apply" => {
            "was applying: the host-side script goes on to its \
            end or, losing this connection, stops on its own (its temp files and lock are removed \
            either way); `oignon plan` shows what it changed"
                .to_string()
        }
        Activity::Running(s) if s == "gather" || s == "import" => {
            format!("was reading its state ({s}); nothing was changed there")
        }
        Activity::Running(s) => format!("was running {s}"),
        Activity::Finished(s, Some(0)) => format!("{s} finished"),
        Activity::Finished(s, Some(c)) => format!("{s} finished with exit status {c}"),
        Activity::Finished(s, None) => format!("{s} failed"),
    };
    format!("{who}: {what}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_interrupted_host_is_told_by_what_it_was_doing() {
        let line = |a: Activity| report_line("ssh lab1", &a);
        assert_eq!(
            line(Activity::Connecting),
            "ssh lab1: was connecting; nothing ran there"
        );
        assert_eq!(
            line(Activity::Running("gather".into())),
            "ssh lab1: was reading its state (gather); nothing was changed there"
        );
        assert!(line(Activity::Running("apply".into()))
            .contains("goes on to its end or, losing this connection, stops on its own"));
        assert_eq!(
            line(Activity::Finished("apply".into(), Some(0))),
            "ssh lab1: apply finished"
        );
        assert_eq!(
            line(Activity::Finished("apply".into(), Some(5))),
            "ssh lab1: apply finished with exit status 5"
        );
    }
}
