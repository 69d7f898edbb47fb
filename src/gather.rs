//! Reaching hosts and gathering their state, all hosts at once (bounded by `--parallel`), one
//! connection and one round trip per host. One host's failure never stops the others.

use crate::desired::DesiredHost;
use crate::error::HostError;
use crate::inventory::HostSpec;
use crate::observed::Observed;
use crate::remote::record::RecordError;
use crate::transport::{local::LocalHost, ssh::SshSetup, Transport, TransportError};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

/// How to reach hosts.
pub struct Reach {
    /// `--local DIR`: every host is the directory DIR/HOST instead of an SSH destination.
    pub local: Option<PathBuf>,
    pub ssh: Option<SshSetup>,
    pub parallel: usize,
}

impl Reach {
    pub fn new(
        local: Option<PathBuf>,
        ssh_config: Option<&std::path::Path>,
        hosts: &[&HostSpec],
        parallel: usize,
    ) -> Result<Reach, TransportError> {
        let ssh = match &local {
            Some(_) => None,
            None => {
                let pins: Vec<(String, String)> = hosts
                    .iter()
                    .filter_map(|h| h.host_key.clone().map(|k| (h.ssh.clone(), k)))
                    .collect();
                Some(SshSetup::new(ssh_config, &pins)?)
            }
        };
        Ok(Reach {
            local,
            ssh,
            parallel: parallel.max(1),
        })
    }

    /// Opens one host's transport (for SSH: the handshake).
    pub async fn open(&self, host: &Target) -> Result<Transport, TransportError> {
        match (&self.local, &self.ssh) {
            (Some(dir), _) => LocalHost::open(dir.join(&host.name))
                .await
                .map(Transport::Local),
            (None, Some(ssh)) => ssh.connect(&host.name, &host.ssh).await.map(Transport::Ssh),
            (None, None) => Err(TransportError {
                what: host.name.clone(),
                detail: "no transport configured".into(),
            }),
        }
    }

    /// `ssh DEST` / `local DIR/HOST`, before connecting.
    pub fn describe(&self, host: &Target) -> String {
        match &self.local {
            Some(dir) => format!("local {}", dir.join(&host.name).display()),
            None => format!("ssh {}", host.ssh),
        }
    }
}

/// The name and SSH destination of a host: all a transport needs.
#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    pub ssh: String,
}

impl From<&HostSpec> for Target {
    fn from(h: &HostSpec) -> Self {
        Target {
            name: h.name.clone(),
            ssh: h.ssh.clone(),
        }
    }
}

/// One host after gathering: its open transport (to apply through) and what was found.
pub struct Gathered {
    pub name: String,
    pub transport_name: String,
    pub transport: Option<Transport>,
    /// What was found, or why the host could not be reached or gathered.
    pub observed: Result<Observed, HostError>,
}

/// Why one host's gather failed after it was reached.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GatherError {
    /// A request could not be encoded (a value holding a control character); nothing was sent.
    #[error(transparent)]
    Request(#[from] RecordError),
    /// The connection failed while gathering.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// gather.sh failed; `status` is its exit code (`None`: killed by a signal).
    #[error("gathering state failed (exit {}): {words}", .status.map_or("signal".into(), |c| c.to_string()))]
    Script { status: Option<i32>, words: String },
    /// gather.sh's answer is not what it documents; the parser's words.
    #[error("{0}")]
    Answer(String),
}

/// Gathers one host over an open transport: a single round trip.
pub async fn gather(t: &Transport, desired: &DesiredHost) -> Result<Observed, GatherError> {
    gather_asking(t, desired, Vec::new()).await
}

/// [`gather`], with more requests in the same round trip (`oignon status`'s `q` lines).
pub async fn gather_asking(
    t: &Transport,
    desired: &DesiredHost,
    extra: Vec<u8>,
) -> Result<Observed, GatherError> {
    let mut requests = crate::remote::gather::requests(desired)?;
    requests.extend(extra);
    let out = t
        .run("gather", crate::remote::GATHER, &[], requests)
        .await?;
    if !out.success() {
        return Err(GatherError::Script {
            status: out.status,
            words: out.stderr_text(),
        });
    }
    crate::remote::gather::parse(&out.stdout).map_err(GatherError::Answer)
}

/// Connects to and gathers every host in parallel; results come back in input order.
pub async fn gather_all(
    reach: Arc<Reach>,
    hosts: Vec<(&HostSpec, DesiredHost)>,
    progress: &crate::progress::Progress,
) -> Vec<(DesiredHost, Gathered)> {
    let hosts = hosts.into_iter().map(|(s, d)| (s, d, Vec::new())).collect();
    gather_all_asking(reach, hosts, progress).await
}

/// [`gather_all`], each host with more requests in its one round trip (see [`gather_asking`]).
pub async fn gather_all_asking(
    reach: Arc<Reach>,
    hosts: Vec<(&HostSpec, DesiredHost, Vec<u8>)>,
    progress: &crate::progress::Progress,
) -> Vec<(DesiredHost, Gathered)> {
    let sem = Arc::new(tokio::sync::Semaphore::new(reach.parallel));
    let mut tasks = vec![];
    for (spec, desired, extra) in hosts {
        let reach = reach.clone();
        let sem = sem.clone();
        let target = Target::from(spec);
        let transport_name = reach.describe(&target);
        let bar = progress.host(&target.name, "connecting");
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire_owned().await;
            let started = Instant::now();
            let (transport, observed) = match reach.open(&target).await {
                Err(source) => (
                    None,
                    Err(HostError::Unreachable {
                        host: target.name.clone(),
                        source,
                    }),
                ),
                Ok(t) => {
                    bar.set("gathering");
                    let o = gather_asking(&t, &desired, extra).await.map_err(|source| {
                        HostError::GatherFailed {
                            host: target.name.clone(),
                            source,
                        }
                    });
                    (Some(t), o)
                }
            };
            let elapsed = started.elapsed();
            // A connection an earlier run left up (--ssh-persist) cost no handshake.
            let connection = if transport.as_ref().is_some_and(|t| t.reused()) {
                "reused"
            } else {
                "new"
            };
            match &observed {
                Ok(_) => bar.done(&format!(
                    "gathered in {:.2}s ({connection} connection, 1 round trip)",
                    elapsed.as_secs_f64()
                )),
                Err(e) => bar.fail(&e.to_string()),
            }
            tracing::info!(
                host = target.name,
                ssh = target.ssh,
                connection,
                round_trips = 1,
                ?elapsed,
                "gathered"
            );
            (
                desired,
                Gathered {
                    name: target.name,
                    transport_name,
                    transport,
                    observed,
                },
            )
        }));
    }
    let mut out = vec![];
    for t in tasks {
        match t.await {
            Ok(r) => out.push(r),
            // A panicking task is a bug; report it for its host rather than losing the others.
            Err(e) => tracing::error!("a host task failed: {e}"),
        }
    }
    out
}
