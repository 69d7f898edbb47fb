//! Rendering: a validated [`Fleet`] and the [`Roles`] → each host's [`Desired`] files.
//!
//! Pure: no network, no clock, no randomness. The same inventory renders byte-identical files.

use crate::desired::{Content, Desired, DesiredFile, DesiredHost, Handler};
use crate::diagnostic::Diagnostic;
use crate::inventory::{bandwidth, Boot, Fleet, HostSpec, Inventory, RelaySpec};
use crate::role::{Each, Roles};
use serde::Serialize;
use std::path::Path;

/// What a relay's templates see, beyond the [`RelaySpec`] itself.
#[derive(Serialize)]
struct RelayView<'a> {
    #[serde(flatten)]
    spec: &'a RelaySpec,
    rate_kbytes: u64,
    burst_kbytes: u64,
    contact_info: String,
    /// `ExitPolicy` values, in order.
    exit_policy_lines: Vec<String>,
    /// `FamilyId` and `MyFamily` lines; empty until relay identities are managed (secrets).
    family_lines: Vec<String>,
}

#[derive(Serialize)]
struct HostView<'a> {
    #[serde(flatten)]
    spec: &'a HostSpec,
    kernel_cmdline: String,
    has_exit_policy_role: bool,
    /// The host's relay nicknames, in inventory order.
    instances: Vec<&'a str>,
}

#[derive(Serialize)]
struct FleetView<'a> {
    operator: &'a str,
    email: &'a str,
    url: &'a str,
}

/// CIISS v2 ContactInfo for one relay.
pub fn contact_info(fleet: &Fleet, host: &HostSpec, relay: &RelaySpec) -> String {
    format!(
        "email:{} url:{} proof:{} hoster:{} uplinkbw:{} ciissversion:2",
        fleet.email.replace('@', "[]"),
        fleet.url,
        fleet.proof,
        host.hoster_domain,
        relay.uplink_mbit
    )
}

/// Renders the hosts selected by `select` (all when it returns true for each).
/// Relay identities for rendering: the store (public parts: FamilyId, fingerprints) and, when key
/// files are to be deployed (plan, apply), the identity that decrypts them.
pub struct Keys<'a> {
    pub store: &'a crate::secrets::Store,
    pub identity: Option<&'a crate::secrets::Identity>,
}

pub fn render(
    inv: &Inventory,
    fleet: &Fleet,
    roles: &Roles,
    select: impl Fn(&HostSpec) -> bool,
    keys: &Keys,
) -> Result<Desired, Vec<Diagnostic>> {
    let mut diags = vec![];
    let all_nicks: Vec<&str> = fleet
        .hosts
        .iter()
        .flat_map(|h| h.relays.iter().map(|r| r.nickname.as_str()))
        .collect();
    let mut family_secret: Option<crate::secret::Secret> = None;
    let mut desired = Desired::default();
    let fleet_view = FleetView {
        operator: &fleet.operator,
        email: &fleet.email,
        url: &fleet.url,
    };
    let mut policy_text = PolicyText::new();
    for host in fleet.hosts.iter().filter(|h| select(h)) {
        let has_exit_policy_role = host.roles.iter().any(|r| r == "exit-policy");
        let host_view = HostView {
            spec: host,
            kernel_cmdline: host.kernel_params.join(" "),
            has_exit_policy_role,
            instances: host.relays.iter().map(|r| r.nickname.as_str()).collect(),
        };
        // Contexts are built once per host and per relay: serialising them per file dominated the
        // render time of large fleets.
        let mut host_ctx = tera::Context::new();
        host_ctx.insert("fleet", &fleet_view);
        host_ctx.insert("host", &host_view);
        let mut relay_ctxs: Vec<tera::Context> = Vec::with_capacity(host.relays.len());
        for r in &host.relays {
            let mut c = host_ctx.clone();
            let mut view = relay_view(fleet, host, r, has_exit_policy_role, &mut policy_text);
            if fleet.manage_identities {
                view.family_lines =
                    crate::secrets::family_lines(keys.store, &all_nicks, &r.nickname);
            }
            c.insert("relay", &view);
            relay_ctxs.push(c);
        }
        let mut files = vec![];
        for (ri, role_name) in host.roles.iter().enumerate() {
            let Some(role) = roles.get(role_name) else {
                let d = roles.unknown(role_name).field("roles");
                diags.push(match &host.roles_origin {
                    Some(o) => {
                        let mut o = o.clone();
                        o.path.push(crate::inventory::source::Seg::Index(ri));
                        inv.locate(d, &o, false)
                    }
                    None => d,
                });
                continue;
            };
            if role_name == "kernel" && host.boot == Boot::None {
                continue;
            }
            for (fi, spec) in role.files.iter().enumerate() {
                let targets: Vec<(Option<&RelaySpec>, &tera::Context)> = match spec.each {
                    Each::Host => vec![(None, &host_ctx)],
                    Each::Relay => host
                        .relays
                        .iter()
                        .zip(&relay_ctxs)
                        .map(|(r, c)| (Some(r), c))
                        .collect(),
                };
                for (relay, ctx) in targets {
                    let tname = format!("{}/{}", role.name, spec.template);
                    let file = roles
                        .dir
                        .join(&role.name)
                        .join("templates")
                        .join(&spec.template);
                    let content = match roles.tera.render(&tname, ctx) {
                        Ok(c) => c,
                        Err(e) => {
                            diags.push(crate::role::template_error(&e, &file, &tname).help(
                                format!(
                                    "rendering it for host `{}`{}",
                                    host.name,
                                    relay
                                        .map(|r| format!(", relay `{}`", r.nickname))
                                        .unwrap_or_default()
                                ),
                            ));
                            continue;
                        }
                    };
                    let path = match roles
                        .tera
                        .render(&crate::role::path_template(&role.name, fi), ctx)
                    {
                        Ok(p) => p,
                        Err(e) => {
                            diags.push(crate::role::template_error(
                                &e,
                                &roles.dir.join(&role.name).join("role.toml"),
                                &spec.path,
                            ));
                            continue;
                        }
                    };
                    // Paths travel as whitespace-separated fields to the host scripts.
                    if !path.starts_with('/')
                        || path.contains("..")
                        || path.chars().any(|c| c.is_whitespace() || c.is_control())
                    {
                        diags.push(
                            Diagnostic::error(format!("role `{}` renders the path {path:?}, which is not a plain absolute path", role.name))
                                .in_file(&roles.dir.join(&role.name).join("role.toml"))
                                .help("paths must be absolute, without `..`, spaces or control characters"),
                        );
                        continue;
                    }
                    files.push(DesiredFile {
                        path,
                        content: Content::Plain(content.into_bytes()),
                        owner: spec.owner.clone(),
                        group: spec.group.clone(),
                        mode: u32::from_str_radix(&spec.mode, 8).unwrap_or(0o644),
                        role: role.name.clone(),
                        handler: spec.handler.clone().map(|kind| Handler {
                            kind,
                            instance: relay.map(|r| r.nickname.clone()),
                        }),
                        validate: spec.validate,
                        reboot_required: spec.reboot_required,
                        instance: relay.map(|r| r.nickname.clone()),
                    });
                }
            }
        }
        // Identity and family keys into each relay's KeyDirectory: decrypted only to deploy them.
        if let (true, Some(id)) = (fleet.manage_identities, keys.identity) {
            for r in &host.relays {
                let user = format!("_tor-{}", r.nickname);
                let mut push = |name: &str, secret: crate::secret::Secret| {
                    files.push(DesiredFile {
                        path: format!("/var/lib/tor-instances/{}/keys/{name}", r.nickname),
                        content: Content::Secret(secret),
                        owner: user.clone(),
                        group: user.clone(),
                        mode: 0o600,
                        role: "secrets".into(),
                        handler: Some(Handler {
                            kind: crate::role::HandlerKind::TorReload,
                            instance: Some(r.nickname.clone()),
                        }),
                        validate: None,
                        reboot_required: false,
                        instance: Some(r.nickname.clone()),
                    })
                };
                let deployed = if r.offline_master_key {
                    crate::secrets::OFFLINE_FILES
                } else {
                    crate::secrets::IDENTITY_FILES
                };
                for name in deployed {
                    match id.decrypt(
                        &keys
                            .store
                            .relay_dir(&r.nickname)
                            .join(format!("{name}.age")),
                    ) {
                        Ok(s) => push(name, s),
                        Err(e) => diags.push(Diagnostic::error(e.to_string())),
                    }
                }
                if keys.store.has_family_key() {
                    if family_secret.is_none() {
                        match id.decrypt(&keys.store.dir.join("family.secret_family_key.age")) {
                            Ok(s) => family_secret = Some(s),
                            Err(e) => diags.push(Diagnostic::error(e.to_string())),
                        }
                    }
                    if let Some(s) = &family_secret {
                        push(crate::secrets::FAMILY_KEY_FILE, s.clone());
                    }
                }
            }
        }
        let kernel_on = host.roles.iter().any(|r| r == "kernel") && host.boot == Boot::Grub;
        let notices = host
            .relays
            .iter()
            .filter(|r| fleet.manage_identities && r.offline_master_key)
            .map(|r| match keys.store.signing_expiry(&r.nickname) {
                Some(e) => format!("{} (OfflineMasterKey): signing certificate valid until {e}; renew before with `oignon secrets renew-signing {}`", r.nickname, r.nickname),
                None => format!("{} (OfflineMasterKey): signing certificate expiry unknown; run `oignon secrets renew-signing {}`", r.nickname, r.nickname),
            })
            .collect();
        desired.hosts.push(DesiredHost {
            name: host.name.clone(),
            files,
            instances: host.relays.iter().map(|r| r.nickname.clone()).collect(),
            kernel_params: kernel_on.then(|| host.kernel_params.clone()),
            notices,
        });
    }
    // An inherited roles list fails once per host: report it once.
    let mut seen = std::collections::HashSet::new();
    diags.retain(|d| seen.insert(d.to_string()));
    if diags.is_empty() {
        Ok(desired)
    } else {
        Err(diags)
    }
}

/// Exit policies already rendered as text, by rules.
type PolicyText = std::collections::HashMap<Vec<crate::exit_policy::Rule>, Vec<String>>;

fn relay_view<'a>(
    fleet: &Fleet,
    host: &HostSpec,
    r: &'a RelaySpec,
    has_policy_role: bool,
    policy_text: &mut PolicyText,
) -> RelayView<'a> {
    let exit_policy_lines = if r.exit && has_policy_role {
        // Most relays share a policy: its text is made once (it was a fifth of a large render).
        policy_text
            .entry(r.exit_policy.clone())
            .or_insert_with(|| r.exit_policy.iter().map(|rule| rule.to_string()).collect())
            .clone()
    } else {
        vec!["reject *:*".to_string()]
    };
    RelayView {
        spec: r,
        rate_kbytes: bandwidth::tor_kbytes(r.rate),
        burst_kbytes: bandwidth::tor_kbytes(r.burst),
        contact_info: contact_info(fleet, host, r),
        exit_policy_lines,
        family_lines: vec![],
    }
}

/// Writes each host's files under `out/HOST/<absolute path>`.
pub fn write_tree(desired: &Desired, out: &Path) -> std::io::Result<()> {
    // Each directory is created once: mkdir dominated the cost of writing large fleets.
    let mut made = std::collections::HashSet::new();
    for h in &desired.hosts {
        for f in &h.files {
            let dest = out.join(&h.name).join(f.path.trim_start_matches('/'));
            if let Some(parent) = dest.parent() {
                if made.insert(parent.to_path_buf()) {
                    std::fs::create_dir_all(parent)?;
                }
            }
            std::fs::write(&dest, f.content.bytes())?;
        }
    }
    Ok(())
}
