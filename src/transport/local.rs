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
    pub async fn open(root: PathBuf) -> Result<LocalHost, TransportError> {
        tokio::fs::create_dir_all(&root)
            .await
            .map_err(|e| TransportError {
                what: format!("cannot use {} as a host root", root.display()),
                detail: e.to_string(),
            })?;
        let root = root.canonicalize().map_err(|e| TransportError {
            what: format!("cannot resolve {}", root.display()),
            detail: e.to_string(),
        })?;
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
