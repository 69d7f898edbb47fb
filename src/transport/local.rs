//! The local transport: a host whose filesystem is a directory here (a VM image being prepared, or
//! the README demo). Scripts run with `sh` on this machine, every path prefixed by the root.

use super::{Output, TransportError};
use std::path::PathBuf;
use std::process::Stdio;

/// A host rooted at a local directory.
pub struct LocalHost {
    pub root: PathBuf,
}

impl LocalHost {
    /// `root` is `DIR/HOST` of `--local DIR`. DIR must exist (a typo must not plan a fleet of
    /// empty hosts, nor make directories where none were meant); HOST's root need not: a plan
    /// sees an empty host and writes nothing, an apply creates it.
    pub async fn open(root: PathBuf) -> Result<LocalHost, TransportError> {
        let dir = root
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(std::path::Path::new("."));
        if !dir.is_dir() {
            return Err(TransportError {
                what: format!("--local {}", dir.display()),
                detail: "no such directory: give the directory that holds one root per host (DIR/HOST), or create it first".into(),
            });
        }
        let dir = dir.canonicalize().map_err(|e| TransportError {
            what: format!("cannot resolve {}", dir.display()),
            detail: e.to_string(),
        })?;
        let root = match root.file_name() {
            Some(host) => dir.join(host),
            None => dir,
        };
        // A host root that is a link (a mounted image elsewhere) is the operator's choice: resolved
        // once here; below it, the host scripts refuse every link.
        let root = root.canonicalize().unwrap_or(root);
        Ok(LocalHost { root })
    }

    pub async fn run(
        &self,
        name: &str,
        script: &str,
        args: &[String],
        stdin: Vec<u8>,
    ) -> Result<Output, TransportError> {
        let mut child = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg(format!("oignon-{name}"))
            .arg(&self.root)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| TransportError {
                what: format!("cannot run sh for {name}"),
                detail: e.to_string(),
            })?;
        let writer = super::feed(child.stdin.take(), stdin);
        let out = child.wait_with_output().await.map_err(|e| TransportError {
            what: format!("{name} on {} failed", self.root.display()),
            detail: e.to_string(),
        })?;
        if let Some(w) = writer {
            let _ = w.await;
        }
        Ok(Output {
            status: out.status.code(),
            stdout: out.stdout,
            stderr: out.stderr,
        })
    }
}
