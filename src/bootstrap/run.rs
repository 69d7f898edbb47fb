//! bootstrap's I/O: load the fleet, reach the host (one connection), one round trip for the
//! preflight facts, one for the install. The decisions are the pure functions of the module.

use super::{Facts, Install, Row, Wanted};
use crate::fleet::{load, Loaded, Paths};
use crate::gather::{Reach, Target};
use crate::transport::Transport;
use std::path::PathBuf;

/// What bootstrap needs: the inputs and how to reach the host.
#[derive(Debug, Clone)]
pub struct Options {
    pub paths: Paths,
    /// `ssh -F FILE` for the connection.
    pub ssh_config: Option<PathBuf>,
    /// The host's name in the inventory.
    pub host: String,
}

/// One host being bootstrapped: the loaded fleet and the open connection.
pub struct Session {
    loaded: Loaded,
    host: usize,
    transport: Transport,
    /// The facts of the last preflight.
    facts: Option<Facts>,
}

/// Why bootstrap could not go on (already reported when `None` is the message).
#[derive(Debug)]
pub struct Refused(pub Option<String>);

impl Session {
    /// Loads the inventory and roles (errors reported) and connects to the host.
    pub fn open(o: &Options, rt: &tokio::runtime::Runtime) -> Result<Session, Refused> {
        // No identity checks: bootstrap deploys no key (apply does, and checks them then).
        let loaded = load(&o.paths, false).ok_or(Refused(None))?;
        let fleet = loaded.fleet();
        let Some(host) = fleet.hosts.iter().position(|h| h.name == o.host) else {
            let names: Vec<&str> = fleet.hosts.iter().map(|h| h.name.as_str()).collect();
            let hint = crate::diagnostic::suggest(&o.host, names.iter().copied())
                .map(|s| format!(" (did you mean `{s}`?)"))
                .unwrap_or_default();
            return Err(Refused(Some(format!(
                "no host `{}` in the inventory{hint}; add it with `oignon host add`; hosts: {}",
                crate::inventory::text::escaped_cut(&o.host),
                names.join(", ")
            ))));
        };
        let spec = &fleet.hosts[host];
        let reach = Reach::new(None, o.ssh_config.as_deref(), &[spec], 1)
            .map_err(|e| Refused(Some(e.to_string())))?;
        let target = Target::from(spec);
        let transport = rt.block_on(reach.open(&target)).map_err(|e| {
            Refused(Some(format!(
                "host `{}` ({}): {e}",
                spec.name,
                reach.describe(&target)
            )))
        })?;
        Ok(Session {
            loaded,
            host,
            transport,
            facts: None,
        })
    }

    fn wanted(&self) -> Wanted<'_> {
        let fleet = self.loaded.fleet();
        let host = &fleet.hosts[self.host];
        let file = self
            .loaded
            .inventory
            .sources
            .get(host.origin.source)
            .map_or("the inventory".to_string(), |s| {
                s.path.display().to_string()
            });
        Wanted { fleet, host, file }
    }

    /// The host's name.
    pub fn host(&self) -> &str {
        &self.loaded.fleet().hosts[self.host].name
    }

    /// One round trip: the host's facts, compared with the inventory. Changes nothing.
    pub fn preflight(&mut self, rt: &tokio::runtime::Runtime) -> Result<Vec<Row>, String> {
        let req = crate::remote::preflight::requests().map_err(|e| e.to_string())?;
        let out = rt
            .block_on(
                self.transport
                    .run("preflight", crate::remote::PREFLIGHT, &[], req),
            )
            .map_err(|e| e.to_string())?;
        if !out.success() {
            return Err(format!(
                "the preflight script failed on `{}` (exit {}): {}",
                self.host(),
                out.status.map_or("signal".into(), |c| c.to_string()),
                out.stderr_text()
            ));
        }
        let facts = crate::remote::preflight::parse(&out.stdout)
            .map_err(|e| format!("host `{}`: {e}", self.host()))?;
        let rows = super::rows(&facts, &self.wanted());
        self.facts = Some(facts);
        Ok(rows)
    }

    /// What the install will make true (after a preflight: it needs the host's release).
    pub fn install_plan(&self) -> Result<Install, String> {
        let facts = self
            .facts
            .as_ref()
            .ok_or("bootstrap installs only after a preflight")?;
        let w = self.wanted();
        let mut packages = vec![];
        for name in &w.host.roles {
            if let Some(role) = self.loaded.roles.roles.iter().find(|r| &r.name == name) {
                packages.extend(role.packages.iter().cloned());
            }
        }
        let keyring = match &w.fleet.tor_source {
            crate::inventory::TorSource::Debian => None,
            crate::inventory::TorSource::TorProject { keyring, .. } => {
                Some(std::fs::read(keyring).map_err(|e| {
                    format!(
                        "cannot read tor_keyring {}: {e} (the Tor Project's archive keyring; see README.md, \"Onboard a new hoster\")",
                        keyring.display()
                    )
                })?)
            }
        };
        Ok(super::install(
            w.fleet,
            &packages,
            keyring.as_deref(),
            &facts.codename,
            &facts.arch,
        ))
    }

    /// One round trip: installs. Returns the changes made (none: the host held everything).
    pub fn install(&self, rt: &tokio::runtime::Runtime) -> Result<Vec<String>, String> {
        let plan = self.install_plan()?;
        let req = crate::remote::bootstrap::requests(&plan).map_err(|e| e.to_string())?;
        let out = rt
            .block_on(
                self.transport
                    .run("bootstrap", crate::remote::BOOTSTRAP, &[], req),
            )
            .map_err(|e| e.to_string())?;
        let done = crate::remote::bootstrap::parse(&out.stdout)
            .map_err(|e| format!("host `{}`: {e}", self.host()))?;
        let so_far = if done.changes.is_empty() {
            String::new()
        } else {
            format!(" (done before it stopped: {})", done.changes.join("; "))
        };
        if let Some(e) = done.error {
            return Err(format!(
                "bootstrap stopped on `{}`: {e}{so_far}",
                self.host()
            ));
        }
        if !out.success() || !done.complete {
            return Err(format!(
                "bootstrap failed on `{}` (exit {}): {}{so_far}",
                self.host(),
                out.status.map_or("signal".into(), |c| c.to_string()),
                out.stderr_text()
            ));
        }
        let min = self.loaded.fleet().min_tor_version;
        match done.tor_version.as_deref().and_then(super::tor_version) {
            Some(v) if v >= min => Ok(done.changes),
            found => Err(format!(
                "tor on `{}` is {} after bootstrap, older than min_tor_version {min}: its apt sources offer no newer tor; set tor_source = \"torproject\" in [fleet]{so_far}",
                self.host(),
                found.map_or("missing".to_string(), |v| v.to_string())
            )),
        }
    }

    /// Closes the connection.
    pub fn close(self, rt: &tokio::runtime::Runtime) {
        rt.block_on(self.transport.close());
    }
}
