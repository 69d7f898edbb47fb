//! One module per subcommand, each with its clap `Args` and a `run`. This file dispatches and holds
//! what they share: output set-up and loading the fleet.

pub mod apply;
pub mod check;
pub mod completions;
pub mod plan;
pub mod render;
pub mod secrets;

use crate::cli::{Cli, ColorChoice, Command, Global};
use crate::diagnostic::Diagnostic;
use crate::inventory::{self, Fleet, Inventory};
use crate::role::Roles;
use std::io::IsTerminal;
use std::process::ExitCode;

/// Colours and logging, from the global flags.
pub fn init_output(g: &Global) {
    let color = match g.color {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
                && std::io::stdout().is_terminal()
        }
    };
    console::set_colors_enabled(color);
    console::set_colors_enabled_stderr(color);
    let level = match g.verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("oignon={level}")));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(color)
        .without_time()
        .try_init();
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Check(a) => check::run(&cli.global, a),
        Command::Render(a) => render::run(&cli.global, a),
        Command::Plan(a) => plan::run(&cli.global, a),
        Command::Apply(a) => apply::run(&cli.global, a),
        Command::Secrets(a) => secrets::run(&cli.global, a),
        Command::Fingerprints(a) => secrets::fingerprints(&cli.global, a),
        Command::Completions(a) => completions::run(a),
        Command::Man => completions::man(),
    }
}

/// Prints findings to stderr, errors and warnings alike.
pub fn report(diags: &[Diagnostic]) {
    for d in diags {
        eprintln!("{d}");
    }
}

/// The summary line after findings.
pub fn summary(diags: &[Diagnostic]) -> String {
    let errors = diags.iter().filter(|d| d.is_error()).count();
    let warnings = diags.len() - errors;
    format!(
        "{errors} error{}, {warnings} warning{}",
        plural(errors),
        plural(warnings)
    )
}

pub fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
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
        select: impl Fn(&inventory::HostSpec) -> bool,
        keys: &crate::render::Keys,
    ) -> Option<crate::desired::Desired> {
        match crate::render::render(&self.inventory, self.fleet(), &self.roles, select, keys) {
            Ok(d) => Some(d),
            Err(diags) => {
                report(&diags);
                eprintln!("{}", summary(&diags));
                None
            }
        }
    }

    pub fn fleet(&self) -> &Fleet {
        // Invariant: `load` only returns Loaded when the fleet resolved without errors.
        self.inventory
            .fleet
            .as_ref()
            .expect("load returns a resolved fleet")
    }
}

/// Loads inventory and roles; reports every finding and returns None when any is an error.
pub fn load(g: &Global) -> Option<Loaded> {
    load_checked(g, true)
}

/// `load`, with or without the identity checks (`secrets` commands are how identities get made).
pub fn load_checked(g: &Global, identities: bool) -> Option<Loaded> {
    let inventory = inventory::load(&g.inventory);
    let roles = Roles::load(&g.roles);
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
    let store = crate::secrets::Store::open(&g.secrets);
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

/// A predicate selecting hosts by name globs (`--host`) and hoster names (`--hoster`); none = all.
pub fn host_filter(hosts: &[String], hosters: &[String]) -> impl Fn(&inventory::HostSpec) -> bool {
    let pats: Vec<glob::Pattern> = hosts
        .iter()
        .map(|h| {
            glob::Pattern::new(h).unwrap_or_else(|_| {
                glob::Pattern::new(&glob::Pattern::escape(h)).expect("an escaped pattern is valid")
            })
        })
        .collect();
    let hosters: Vec<String> = hosters.iter().map(|h| h.to_lowercase()).collect();
    move |h| {
        (pats.is_empty() || pats.iter().any(|p| p.matches(&h.name)))
            && (hosters.is_empty()
                || hosters
                    .iter()
                    .any(|x| *x == h.hoster.to_lowercase() || *x == h.hoster_domain.to_lowercase()))
    }
}

/// Every `--host`/`--hoster` must match something: a typo must not silently select nothing.
pub fn check_filter_matches(
    fleet: &Fleet,
    hosts: &[String],
    hosters: &[String],
) -> Result<(), String> {
    for h in hosts {
        if fleet
            .hosts
            .iter()
            .all(|x| !host_filter(std::slice::from_ref(h), &[])(x))
        {
            let names: Vec<&str> = fleet.hosts.iter().map(|x| x.name.as_str()).collect();
            let hint = crate::diagnostic::suggest(h, names.iter().copied())
                .map(|s| format!(" (did you mean `{s}`?)"))
                .unwrap_or_default();
            return Err(format!(
                "--host {h} matches no host of the inventory{hint}; hosts: {}",
                names.join(", ")
            ));
        }
    }
    for x in hosters {
        if fleet
            .hosts
            .iter()
            .all(|h| !host_filter(&[], std::slice::from_ref(x))(h))
        {
            let mut names: Vec<&str> = fleet.hosts.iter().map(|h| h.hoster.as_str()).collect();
            names.dedup();
            return Err(format!(
                "--hoster {x} matches no hoster of the inventory; hosters: {}",
                names.join(", ")
            ));
        }
    }
    // Each matches something, but together nothing: a run on 0 hosts would look like success.
    if !hosts.is_empty()
        && !hosters.is_empty()
        && !fleet.hosts.iter().any(host_filter(hosts, hosters))
    {
        return Err(format!(
            "no host is both --host {} and --hoster {}: nothing to do; drop one of the filters or fix it",
            hosts.join(" --host "),
            hosters.join(" --hoster ")
        ));
    }
    Ok(())
}
