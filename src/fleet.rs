//! The fleet as the commands see it: loading the inventory, roles and secrets store
//! ([`load`]), selecting hosts ([`HostFilter`]), and planning the selected hosts end to end
//! ([`plan`]: render, connect, gather, plan), with the connections it opened kept for apply.
//!
//! Everything here takes plain typed options ([`Paths`], [`PlanOptions`]), never the command line.

use crate::desired::{Desired, DesiredHost};
use crate::diagnostic::{report, summary};
use crate::gather::{Gathered, Reach};
use crate::inventory::{self, Fleet, HostSpec, Inventory};
use crate::plan::{HostPlan, Plan, SCHEMA};
use crate::role::Roles;
use std::path::PathBuf;
use std::sync::Arc;

/// Where the inputs live: the inventory, roles and secrets directories.
#[derive(Debug, Clone)]
pub struct Paths {
    pub inventory: PathBuf,
    pub roles: PathBuf,
    pub secrets: PathBuf,
}

/// A loaded, validated fleet with its roles; on errors, they have been reported.
pub struct Loaded {
    pub inventory: Inventory,
    pub roles: Roles,
    pub store: crate::secrets::Store,
}

impl Loaded {
    /// Keys for rendering without decrypting anything (check, render): FamilyId and MyFamily only.
    pub fn public_keys(&self) -> crate::render::Keys<'_> {
        crate::render::Keys {
            store: &self.store,
            identity: None,
        }
    }

    /// Renders the selected hosts; on errors, reports them all and returns None.
    pub fn render(
        &self,
        select: impl Fn(&HostSpec) -> bool,
        keys: &crate::render::Keys,
    ) -> Option<Desired> {
        match crate::render::render(&self.inventory, self.fleet(), &self.roles, select, keys) {
            Ok(d) => Some(d),
            Err(diags) => {
                report(&diags);
                eprintln!("{}", summary(&diags));
                None
            }
        }
    }

    /// The resolved fleet.
    pub fn fleet(&self) -> &Fleet {
        // Invariant: `load` only returns Loaded when the fleet resolved without errors.
        self.inventory
            .fleet
            .as_ref()
            .expect("load returns a resolved fleet")
    }
}

/// Loads inventory and roles; reports every finding and returns None when any is an error.
/// `identities`: also run the identity checks (`secrets` commands skip them: they are how
/// identities get made).
pub fn load(paths: &Paths, identities: bool) -> Option<Loaded> {
    let inventory = inventory::load(&paths.inventory);
    let roles = Roles::load(&paths.roles);
    let mut diags = inventory.diagnostics.clone();
    if let Err(d) = &roles {
        diags.extend(d.iter().cloned());
    }
    report(&diags);
    if diags.iter().any(|d| d.is_error()) || inventory.fleet.is_none() {
        eprintln!("{}", summary(&diags));
        return None;
    }
    let roles = roles.ok()?;
    let store = crate::secrets::Store::open(&paths.secrets);
    if let (Some(fleet), true) = (&inventory.fleet, identities) {
        let findings = crate::secrets::check::findings(&inventory, fleet, &store);
        report(&findings);
        if findings.iter().any(|d| d.is_error()) {
            eprintln!("{}", summary(&findings));
            return None;
        }
    }
    Some(Loaded {
        inventory,
        roles,
        store,
    })
}

/// A selection of hosts by name globs (`--host`) and hoster names or domains (`--hoster`),
/// compiled once; an empty list selects everything on its side.
#[derive(Debug, Clone, Default)]
pub struct HostFilter {
    /// Each `--host` as given, with its compiled pattern.
    hosts: Vec<(String, glob::Pattern)>,
    /// Each `--hoster`, as given and lowercased.
    hosters: Vec<(String, String)>,
}

impl HostFilter {
    /// Compiles the patterns; one that is not a valid glob matches itself literally.
    pub fn new(hosts: &[String], hosters: &[String]) -> HostFilter {
        HostFilter {
            hosts: hosts.iter().map(|h| (h.clone(), pattern(h))).collect(),
            hosters: hosters
                .iter()
                .map(|h| (h.clone(), h.to_lowercase()))
                .collect(),
        }
    }

    /// Whether nothing narrows the selection.
    pub fn is_everything(&self) -> bool {
        self.hosts.is_empty() && self.hosters.is_empty()
    }

    /// Whether the host is selected.
    pub fn matches(&self, h: &HostSpec) -> bool {
        (self.hosts.is_empty() || self.hosts.iter().any(|(_, p)| p.matches(&h.name)))
            && (self.hosters.is_empty() || self.hosters.iter().any(|(_, x)| hoster_is(h, x)))
    }

    /// Every `--host`/`--hoster` must match something: a typo must not silently select nothing.
    pub fn check(&self, fleet: &Fleet) -> Result<(), String> {
        for (given, p) in &self.hosts {
            if !fleet.hosts.iter().any(|x| p.matches(&x.name)) {
                let names: Vec<&str> = fleet.hosts.iter().map(|x| x.name.as_str()).collect();
                let hint = crate::diagnostic::suggest(given, names.iter().copied())
                    .map(|s| format!(" (did you mean `{s}`?)"))
                    .unwrap_or_default();
                return Err(format!(
                    "--host {given} matches no host of the inventory{hint}; hosts: {}",
                    names.join(", ")
                ));
            }
        }
        for (given, x) in &self.hosters {
            if !fleet.hosts.iter().any(|h| hoster_is(h, x)) {
                let mut names: Vec<&str> = fleet.hosts.iter().map(|h| h.hoster.as_str()).collect();
                names.dedup();
                return Err(format!(
                    "--hoster {given} matches no hoster of the inventory; hosters: {}",
                    names.join(", ")
                ));
            }
        }
        // Each matches something, but together nothing: a run on 0 hosts would look like success.
        if !self.hosts.is_empty()
            && !self.hosters.is_empty()
            && !fleet.hosts.iter().any(|h| self.matches(h))
        {
            let hosts: Vec<&str> = self.hosts.iter().map(|(g, _)| g.as_str()).collect();
            let hosters: Vec<&str> = self.hosters.iter().map(|(g, _)| g.as_str()).collect();
            return Err(format!(
                "no host is both --host {} and --hoster {}: nothing to do; drop one of the filters or fix it",
                hosts.join(" --host "),
                hosters.join(" --hoster ")
            ));
        }
        Ok(())
    }
}

fn pattern(h: &str) -> glob::Pattern {
    glob::Pattern::new(h).unwrap_or_else(|_| {
        glob::Pattern::new(&glob::Pattern::escape(h)).expect("an escaped pattern is valid")
    })
}

/// `lowered` is a `--hoster` already lowercased: the hoster's name or its domain.
fn hoster_is(h: &HostSpec, lowered: &str) -> bool {
    lowered == h.hoster.to_lowercase() || lowered == h.hoster_domain.to_lowercase()
}

/// What planning the fleet needs: the inputs, the key to decrypt relay keys, which hosts and how
/// to reach them.
#[derive(Debug, Clone)]
pub struct PlanOptions {
    pub paths: Paths,
    /// The identity that decrypts secrets (None: the default places).
    pub identity: Option<PathBuf>,
    /// `ssh -F FILE` for every connection.
    pub ssh_config: Option<PathBuf>,
    /// Local transport: host H is the directory DIR/H instead of an SSH destination.
    pub local: Option<PathBuf>,
    /// `--host` patterns, as given.
    pub hosts: Vec<String>,
    /// `--hoster` names, as given.
    pub hosters: Vec<String>,
    /// How many hosts to work on at once.
    pub parallel: usize,
    /// `--resurrect NICKNAME`: relays whose tombstone on a host may be overridden.
    pub resurrect: Vec<String>,
}

impl PlanOptions {
    /// The host selection of these options, compiled.
    pub fn filter(&self) -> HostFilter {
        HostFilter::new(&self.hosts, &self.hosters)
    }
}

/// Everything planning produced: the plan, and per host its open transport and desired state.
pub struct Planned {
    pub plan: Plan,
    pub hosts: Vec<(DesiredHost, Gathered)>,
    /// How the hosts were reached, to reach them again (`apply --reboot` reconnects after a reboot).
    pub reach: Arc<Reach>,
    /// Each selected host's name and SSH destination.
    pub targets: Vec<crate::gather::Target>,
}

/// Why a plan could not start, once the inventory loaded.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The inputs' digest (inventory, roles, secrets' public parts) could not be read.
    #[error("{0}")]
    Inputs(String),
    /// `--local` / `--ssh-config` do not name a usable transport.
    #[error("{0}")]
    Transport(String),
    /// The SSH setup (config, pinned host keys, master directory) failed.
    #[error(transparent)]
    Reach(#[from] crate::transport::TransportError),
}

/// Loads, renders and gathers the selected hosts; None when the inventory had errors (reported).
/// `before_gather` sees the loaded fleet first and may refuse the run (its message is printed).
pub fn plan(
    o: &PlanOptions,
    rt: &tokio::runtime::Runtime,
    before_gather: &dyn Fn(&Fleet) -> Result<(), String>,
) -> Result<Option<Planned>, PlanError> {
    let Some(loaded) = load(&o.paths, true) else {
        return Ok(None);
    };
    // Digested after loading succeeded (its errors say it better), from the same files.
    let inputs = crate::saved::Inputs::read(&o.paths.inventory, &o.paths.roles, &o.paths.secrets)
        .map_err(PlanError::Inputs)?;
    let run_transport =
        crate::saved::RunTransport::new(o.local.as_deref(), o.ssh_config.as_deref())
            .map_err(PlanError::Transport)?;
    let fleet = loaded.fleet();
    if let Err(msg) = before_gather(fleet) {
        eprintln!("error: {msg}");
        return Ok(None);
    }
    let filter = o.filter();
    if let Err(msg) = filter.check(fleet) {
        eprintln!("error: {msg}");
        return Ok(None);
    }
    // Plan and apply deploy key files: they need the identity that decrypts them.
    let identity = if fleet.manage_identities {
        match crate::secrets::Identity::find(o.identity.as_deref(), &loaded.store) {
            Ok(id) => Some(id),
            Err(e) => {
                eprintln!("error: {e}\n  = help: relay keys are deployed from {}; or set manage_identities = false in [fleet]", loaded.store.dir.display());
                return Ok(None);
            }
        }
    } else {
        None
    };
    let keys = crate::render::Keys {
        store: &loaded.store,
        identity: identity.as_ref(),
    };
    let Some(desired) = loaded.render(|h| filter.matches(h), &keys) else {
        return Ok(None);
    };
    let specs: Vec<&HostSpec> = fleet.hosts.iter().filter(|h| filter.matches(h)).collect();
    // The recorded (absolute) paths: the plan names the directories it went to, wherever it is read.
    let reach = Reach::new(
        run_transport.local.clone(),
        run_transport.ssh_config.as_deref(),
        &specs,
        o.parallel,
    )?;
    let progress = crate::progress::Progress::new(false);
    let targets = specs
        .iter()
        .map(|s| crate::gather::Target::from(*s))
        .collect();
    let pairs: Vec<_> = specs.iter().copied().zip(desired.hosts).collect();
    let reach = Arc::new(reach);
    let gathered = rt.block_on(crate::gather::gather_all(reach.clone(), pairs, &progress));
    progress.finish();
    let hosts: Vec<HostPlan> = gathered
        .iter()
        .map(|(d, gh)| match &gh.observed {
            Ok(o) => crate::plan::plan_host(d, o, &gh.transport_name),
            Err(e) => HostPlan::failed(&gh.transport_name, e.clone()),
        })
        .collect();
    let mut plan = Plan {
        schema: SCHEMA.into(),
        inputs,
        transport: run_transport,
        hosts,
    };
    // The guards of "one identity, one running place" (see plan.rs).
    crate::plan::allow_resurrect(&mut plan, &o.resurrect);
    let observed: Vec<(&str, &crate::observed::Observed)> = gathered
        .iter()
        .filter_map(|(d, g)| g.observed.as_ref().ok().map(|o| (d.name.as_str(), o)))
        .collect();
    crate::plan::refuse_duplicate_identities(&mut plan, &observed);
    let both: Vec<_> = gathered
        .iter()
        .filter_map(|(d, g)| g.observed.as_ref().ok().map(|o| (d, o)))
        .collect();
    crate::plan::refuse_starting_elsewhere(&mut plan, &both);
    Ok(Some(Planned {
        plan,
        hosts: gathered,
        reach,
        targets,
    }))
}

/// Closes every open connection.
pub fn close_all(rt: &tokio::runtime::Runtime, hosts: Vec<(DesiredHost, Gathered)>) {
    rt.block_on(async {
        for (_, g) in hosts {
            if let Some(t) = g.transport {
                t.close().await;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shipped inventory: ekumen (Gandi, gandi.net), algrothendieck (Globenet), marcuse
    /// (IELO-LIAZO, ielo-liazo.com), marylou (tetaneutral.net).
    fn fleet() -> Fleet {
        let inv =
            inventory::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("inventory"));
        inv.fleet
            .unwrap_or_else(|| panic!("{:#?}", inv.diagnostics))
    }

    fn names(f: &HostFilter, fleet: &Fleet) -> Vec<String> {
        let mut v: Vec<String> = fleet
            .hosts
            .iter()
            .filter(|h| f.matches(h))
            .map(|h| h.name.clone())
            .collect();
        v.sort();
        v
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn no_filter_selects_every_host() {
        let fl = fleet();
        let f = HostFilter::new(&[], &[]);
        assert!(f.is_everything());
        assert_eq!(
            names(&f, &fl),
            ["algrothendieck", "ekumen", "marcuse", "marylou"]
        );
        assert!(f.check(&fl).is_ok());
    }

    #[test]
    fn host_globs_and_hosters_by_name_or_domain_any_case_intersect() {
        let fl = fleet();
        assert_eq!(
            names(&HostFilter::new(&s(&["mar*"]), &[]), &fl),
            ["marcuse", "marylou"]
        );
        assert_eq!(
            names(&HostFilter::new(&[], &s(&["ielo-liazo"])), &fl),
            ["marcuse"]
        );
        assert_eq!(
            names(&HostFilter::new(&[], &s(&["GANDI.NET"])), &fl),
            ["ekumen"]
        );
        assert_eq!(
            names(
                &HostFilter::new(&s(&["mar*"]), &s(&["tetaneutral.net"])),
                &fl
            ),
            ["marylou"]
        );
    }

    #[test]
    fn an_invalid_glob_matches_itself_literally() {
        let fl = fleet();
        let f = HostFilter::new(&s(&["mar[1"]), &[]);
        assert!(names(&f, &fl).is_empty());
        let e = f.check(&fl).unwrap_err();
        assert!(e.contains("--host mar[1 matches no host"), "{e}");
    }

    #[test]
    fn a_filter_that_selects_nothing_is_refused_saying_why() {
        let fl = fleet();
        let e = HostFilter::new(&s(&["marcus"]), &[])
            .check(&fl)
            .unwrap_err();
        assert!(e.contains("(did you mean `marcuse`?)"), "{e}");
        let e = HostFilter::new(&[], &s(&["ovh"])).check(&fl).unwrap_err();
        assert!(e.contains("--hoster ovh matches no hoster"), "{e}");
        let e = HostFilter::new(&s(&["ekumen"]), &s(&["globenet"]))
            .check(&fl)
            .unwrap_err();
        assert!(
            e.starts_with("no host is both --host ekumen and --hoster globenet"),
            "{e}"
        );
    }
}
