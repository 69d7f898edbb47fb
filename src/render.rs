//! Rendering: a validated [`Fleet`] and the [`Roles`] → each host's [`Desired`] files.
//!
//! Pure: no network, no clock, no randomness. The same inventory renders byte-identical files.

use crate::desired::{Content, Desired, DesiredFile, DesiredHost, Handler};
use crate::diagnostic::Diagnostic;
use crate::inventory::text::shown;
use crate::inventory::{bandwidth, Boot, Fleet, HostSpec, Inventory, RelaySpec};
use crate::role::{Each, Roles, ValidatorKind};
use crate::torrc::{self, Magic};
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

/// The `[[secret]]` files of the host's roles, decrypted from secrets/ to be deployed (plan and
/// apply only: without the identity they are not rendered, as relay keys are not).
fn role_secrets(
    roles: &Roles,
    host: &HostSpec,
    store: &crate::secrets::Store,
    id: &crate::secrets::Identity,
    files: &mut Vec<DesiredFile>,
    diags: &mut Vec<Diagnostic>,
) {
    for role in roles.roles.iter().filter(|r| host.roles.contains(&r.name)) {
        for spec in &role.secrets {
            let source = store
                .dir
                .join(format!("{}.age", spec.source.replace("{host}", &host.name)));
            if !source.is_file() {
                diags.push(
                    Diagnostic::error(format!(
                        "role `{}` deploys {} on host `{}` from {}, which does not exist",
                        role.name,
                        spec.path,
                        host.name,
                        source.display()
                    ))
                    .help(format!(
                        "encrypt it to the store's recipients: age -R {} -o {} FILE (see README, \"Monitoring\")",
                        store.dir.join("recipients.txt").display(),
                        source.display()
                    )),
                );
                continue;
            }
            match id.decrypt(&source) {
                Ok(secret) => files.push(DesiredFile {
                    path: spec.path.clone(),
                    content: Content::secret(secret),
                    owner: spec.owner.clone(),
                    group: spec.group.clone(),
                    // Checked when the manifest was loaded (role.rs); 0600 never loosens it.
                    mode: u32::from_str_radix(&spec.mode, 8).unwrap_or(0o600),
                    role: role.name.clone(),
                    handler: spec.handler.clone().map(|kind| Handler {
                        kind,
                        instance: None,
                    }),
                    validate: None,
                    reboot_required: false,
                    instance: None,
                }),
                Err(e) => diags.push(Diagnostic::error(e.to_string())),
            }
        }
    }
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
    let hosts: Vec<&HostSpec> = fleet.hosts.iter().filter(|h| select(h)).collect();
    // Templates and the torrc check run on every core (they were most of a large render); keys
    // are decrypted after, in order: the identity is not shared between threads.
    let rendered = on_every_core(&hosts, |host, policy_text| {
        let mut host_diags = vec![];
        let files = host_files(
            inv,
            fleet,
            roles,
            &fleet_view,
            keys.store,
            &all_nicks,
            host,
            policy_text,
            &mut host_diags,
        );
        (files, host_diags)
    });
    for (host, (mut files, host_diags)) in hosts.iter().copied().zip(rendered) {
        diags.extend(host_diags);
        // Identity and family keys into each relay's KeyDirectory: decrypted only to deploy them.
        if let (true, Some(id)) = (fleet.manage_identities, keys.identity) {
            for r in &host.relays {
                let user = format!("_tor-{}", r.nickname);
                let mut push = |name: &str, secret: crate::secret::Secret| {
                    files.push(DesiredFile {
                        path: format!("/var/lib/tor-instances/{}/keys/{name}", r.nickname),
                        content: Content::secret(secret),
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
                    // The master public key goes with the secret one: without it tor logs that it
                    // regenerates it. It is made from the ed25519 id kept in clear in secrets/.
                    match crate::secrets::master_public_key(keys.store, &r.nickname) {
                        Ok(k) => push(
                            "ed25519_master_id_public_key",
                            crate::secret::Secret::new(k),
                        ),
                        Err(e) => diags.push(Diagnostic::error(e.to_string())),
                    }
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
        if let Some(id) = keys.identity {
            role_secrets(roles, host, keys.store, id, &mut files, &mut diags);
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
            // One value for the host's relays: none can set dos_firewall on its own.
            firewall_window: host
                .relays
                .iter()
                .map(|r| r.dos_firewall.confirm_seconds)
                .max()
                .map_or(
                    u64::from(crate::inventory::DosFirewall::default().confirm_seconds),
                    u64::from,
                ),
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

/// One host's files from its roles' templates, every rendered torrc checked (see [`Shadow`]).
/// Pure and per host: hosts render in parallel. Findings go to `diags`.
#[allow(clippy::too_many_arguments)]
fn host_files(
    inv: &Inventory,
    fleet: &Fleet,
    roles: &Roles,
    fleet_view: &FleetView,
    store: &crate::secrets::Store,
    all_nicks: &[&str],
    host: &HostSpec,
    policy_text: &mut PolicyText,
    diags: &mut Vec<Diagnostic>,
) -> Vec<DesiredFile> {
    let cx = contexts(fleet, fleet_view, store, all_nicks, host, policy_text);
    // Made on first use, per relay: most relays never need one (see `shadow_context`).
    let mut shadows: Vec<Option<Option<Shadow>>> = vec![None; host.relays.len()];
    let mut files = vec![];
    for (ri, role_name) in host.roles.iter().enumerate() {
        let Some(role) = roles.get(role_name) else {
            diags.push(unknown_role(inv, roles, host, ri, role_name));
            continue;
        };
        if role_name == "kernel" && host.boot == Boot::None {
            continue;
        }
        for (fi, spec) in role.files.iter().enumerate() {
            let targets: Vec<(Option<(usize, &RelaySpec)>, &tera::Context)> = match spec.each {
                Each::Host => vec![(None, &cx.host)],
                Each::Relay => host
                    .relays
                    .iter()
                    .enumerate()
                    .zip(&cx.relays)
                    .map(|(r, c)| (Some(r), c))
                    .collect(),
            };
            for (relay_at, ctx) in targets {
                let relay = relay_at.map(|(_, r)| r);
                let Some((path, content)) = render_file(roles, role, fi, ctx, host, relay, diags)
                else {
                    continue;
                };
                if let (Some(ValidatorKind::Torrc), Some((ri, r))) = (spec.validate, relay_at) {
                    let shadow =
                        shadows[ri].get_or_insert_with(|| shadow_context(ctx, cx.outer_clean));
                    let tname = format!("{}/{}", role.name, spec.template);
                    let shadow_text = match shadow {
                        None => None,
                        Some(sh) => roles.tera.render(&tname, &sh.ctx).ok(),
                    };
                    diags.extend(check_torrc(
                        &content,
                        shadow_text.as_deref(),
                        &cx.intents[ri],
                        shadow.as_ref().map_or(&[][..], |sh| &sh.suspects[..]),
                        &format!("relay `{}` on host `{}` ({path})", r.nickname, host.name),
                    ));
                }
                files.push(desired_file(role, spec, path, content, relay));
            }
        }
    }
    files
}

/// A host's template contexts: its own, and one per relay with what its torrc is meant to say.
struct Contexts {
    host: tera::Context,
    /// Whether the fleet's and the host's strings are free of torrc syntax.
    outer_clean: bool,
    relays: Vec<tera::Context>,
    intents: Vec<Intent>,
}

/// Contexts are built once per host and per relay: serialising them per file dominated the
/// render time of large fleets.
fn contexts(
    fleet: &Fleet,
    fleet_view: &FleetView,
    store: &crate::secrets::Store,
    all_nicks: &[&str],
    host: &HostSpec,
    policy_text: &mut PolicyText,
) -> Contexts {
    let has_exit_policy_role = host.roles.iter().any(|r| r == "exit-policy");
    let host_view = HostView {
        spec: host,
        kernel_cmdline: host.kernel_params.join(" "),
        has_exit_policy_role,
        instances: host.relays.iter().map(|r| r.nickname.as_str()).collect(),
    };
    let mut host_ctx = tera::Context::new();
    host_ctx.insert("fleet", fleet_view);
    host_ctx.insert("host", &host_view);
    // Whether the fleet's and the host's strings are free of torrc syntax: looked at once
    // per host, not again for each of its relays (it was a tenth of a large render).
    let outer_clean = ["fleet", "host"]
        .iter()
        .all(|k| host_ctx.get(k).is_none_or(|v| !has_syntax(v, false)));
    let mut relays: Vec<tera::Context> = Vec::with_capacity(host.relays.len());
    let mut intents: Vec<Intent> = Vec::with_capacity(host.relays.len());
    for r in &host.relays {
        let mut c = host_ctx.clone();
        let mut view = relay_view(fleet, host, r, has_exit_policy_role, policy_text);
        if fleet.manage_identities {
            view.family_lines = crate::secrets::family_lines(store, all_nicks, &r.nickname);
        }
        c.insert("relay", &view);
        relays.push(c);
        intents.push(Intent::of(&view));
    }
    Contexts {
        host: host_ctx,
        outer_clean,
        relays,
        intents,
    }
}

/// The finding for a host's role that the roles directory does not have, at its place in the
/// host's `roles` list when the inventory knows it.
fn unknown_role(
    inv: &Inventory,
    roles: &Roles,
    host: &HostSpec,
    ri: usize,
    role_name: &str,
) -> Diagnostic {
    let d = roles.unknown(role_name).field("roles");
    match &host.roles_origin {
        Some(o) => {
            let mut o = o.clone();
            o.path.push(crate::inventory::source::Seg::Index(ri));
            inv.locate(d, &o, false)
        }
        None => d,
    }
}

/// One file of a role rendered for a host (or one of its relays): its path and its text, or
/// None with the finding in `diags` (a template error, or a path that is not plain).
fn render_file(
    roles: &Roles,
    role: &crate::role::Role,
    fi: usize,
    ctx: &tera::Context,
    host: &HostSpec,
    relay: Option<&RelaySpec>,
    diags: &mut Vec<Diagnostic>,
) -> Option<(String, String)> {
    let spec = &role.files[fi];
    let tname = format!("{}/{}", role.name, spec.template);
    let file = roles
        .dir
        .join(&role.name)
        .join("templates")
        .join(&spec.template);
    let content = match roles.tera.render(&tname, ctx) {
        Ok(c) => c,
        Err(e) => {
            diags.push(crate::role::template_error(&e, &file, &tname).help(format!(
                    "rendering it for host `{}`{}",
                    host.name,
                    relay
                        .map(|r| format!(", relay `{}`", r.nickname))
                        .unwrap_or_default()
                )));
            return None;
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
            return None;
        }
    };
    // Paths travel as whitespace-separated fields to the host scripts.
    if !path.starts_with('/')
        || path.contains("..")
        || path.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        diags.push(
            Diagnostic::error(format!(
                "role `{}` renders the path {path:?}, which is not a plain absolute path",
                role.name
            ))
            .in_file(&roles.dir.join(&role.name).join("role.toml"))
            .help("paths must be absolute, without `..`, spaces or control characters"),
        );
        return None;
    }
    Some((path, content))
}

/// The desired file a role's file spec makes from its rendered path and text.
fn desired_file(
    role: &crate::role::Role,
    spec: &crate::role::FileSpec,
    path: String,
    content: String,
    relay: Option<&RelaySpec>,
) -> DesiredFile {
    DesiredFile {
        path,
        content: Content::plain(content.into_bytes()),
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
    }
}

/// `f` over `items` on every core, results in input order; each thread has its own cache.
fn on_every_core<T: Sync, R: Send>(
    items: &[T],
    f: impl Fn(&T, &mut PolicyText) -> R + Sync,
) -> Vec<R> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per = items.len().div_ceil(cores.max(1)).max(1);
    if items.len() <= per {
        let mut cache = PolicyText::new();
        return items.iter().map(|x| f(x, &mut cache)).collect();
    }
    std::thread::scope(|s| {
        let f = &f;
        let parts: Vec<_> = items
            .chunks(per)
            .map(|part| {
                s.spawn(move || {
                    let mut cache = PolicyText::new();
                    part.iter().map(|x| f(x, &mut cache)).collect::<Vec<R>>()
                })
            })
            .collect();
        parts
            .into_iter()
            // A panicking render thread is a bug: resume its panic here, on the caller's thread.
            .flat_map(|p| p.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    })
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

// ---------------------------------------------------------------------------------------------
// The rendered torrc, read back as tor reads it.
//
// Two questions, two ways of answering:
//
// 1. Does the torrc set exactly the options its template means to set? The template is the
//    operator's (roles/), so "what it means" cannot be a list kept here. Instead the relay's torrc
//    is rendered a second time from a *shadow* context: the same context with every string's
//    torrc-syntax characters (control characters, `#`, `\`, `"`) replaced by `_`. The template and
//    every conditional in it see the same shape of data, but no value can end a line, start a
//    comment, continue a line or open a quoted string. Both texts are parsed with tor's grammar;
//    any difference in the entries (an extra `ExitPolicy accept *:*` line, a value cut at `#`, the
//    next line swallowed by a trailing backslash, a `%include`) is something an inventory (or
//    secrets/) string did to the file, not the template. When no string holds such a character the
//    shadow would be identical, so it is not rendered at all. `torrc_extra` lines are left as
//    they are in the shadow: they are torrc lines by design, checked one by one when loaded.
//
// 2. Do the options oignon manages (`torrc::MANAGED`) have exactly oignon's values? Those are
//    computed here from the relay's view, independently of the template, and compared with what
//    tor would read (canonical names, so `exitpolicy` or `ExitPolic` count as ExitPolicy).
// ---------------------------------------------------------------------------------------------

/// A relay's context with its torrc-syntax characters neutralised, and the strings that had some.
#[derive(Clone)]
struct Shadow {
    ctx: tera::Context,
    /// Context paths (`fleet.url`) of the strings that changed, in context order.
    suspects: Vec<(String, String)>,
}

/// Characters a torrc reads as syntax inside a value.
fn torrc_syntax(c: char) -> bool {
    c.is_control() || matches!(c, '#' | '\\' | '"') || crate::inventory::text::forbidden(c)
}

/// The shadow of `ctx`, or None when no string of it holds a torrc-syntax character (the shadow
/// render would be the same text).
/// `outer_clean`: the fleet's and host's strings are known to be free of it.
fn shadow_context(ctx: &tera::Context, outer_clean: bool) -> Option<Shadow> {
    // Looked at in place first: cloning every relay's context cost more than the render itself.
    let clean = outer_clean && ctx.get("relay").is_none_or(|v| !has_syntax(v, true));
    if clean {
        return None;
    }
    let mut json = ctx.clone().into_json();
    let mut suspects = vec![];
    neutralise(&mut json, &mut String::new(), &mut suspects);
    if suspects.is_empty() {
        return None;
    }
    // Invariant: a context's own JSON (an object) converts back.
    let ctx = tera::Context::from_value(json).ok()?;
    Some(Shadow { ctx, suspects })
}

/// Whether a string under `v` holds a torrc-syntax character (`relay`: skip its `torrc_extra`).
fn has_syntax(v: &serde_json::Value, relay: bool) -> bool {
    use serde_json::Value;
    match v {
        Value::String(s) => s.chars().any(torrc_syntax),
        Value::Array(a) => a.iter().any(|x| has_syntax(x, false)),
        // A relay's exit policy is oignon's own rendering of rules its parser accepted (the
        // grammar has no `#`, `\\` or `"`): not walked, it was most of this walk's time.
        Value::Object(m) => m.iter().any(|(k, x)| {
            !(relay
                && matches!(
                    k.as_str(),
                    "torrc_extra" | "exit_policy" | "exit_policy_lines"
                ))
                && has_syntax(x, false)
        }),
        _ => false,
    }
}

fn neutralise(v: &mut serde_json::Value, path: &mut String, out: &mut Vec<(String, String)>) {
    use serde_json::Value;
    match v {
        Value::String(s) if s.chars().any(torrc_syntax) => {
            out.push((path.clone(), s.clone()));
            *s = s
                .chars()
                .map(|c| if torrc_syntax(c) { '_' } else { c })
                .collect();
        }
        Value::Array(a) => {
            for (i, x) in a.iter_mut().enumerate() {
                let len = path.len();
                path.push_str(&format!(".{i}"));
                neutralise(x, path, out);
                path.truncate(len);
            }
        }
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                // torrc lines by design, checked line by line when the inventory is loaded.
                if path == "relay" && k == "torrc_extra" {
                    continue;
                }
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k);
                neutralise(x, path, out);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

/// The inventory field behind a context path, in the user's words.
fn field_of(path: &str) -> String {
    let (head, rest) = path.split_once('.').unwrap_or((path, ""));
    let leaf = rest.split('.').next().unwrap_or("");
    match (head, leaf) {
        ("fleet", k) => format!("`[fleet] {k}`"),
        ("host", "hoster") => "the hoster's `name`".into(),
        ("host", "hoster_domain") => "the hoster's `domain`".into(),
        ("host", k) => format!("the host's `{k}`"),
        ("relay", "contact_info") => {
            "ContactInfo (from `[fleet]` email, url, proof and the hoster's `domain`)".into()
        }
        ("relay", "family_lines") => {
            "secrets/ (family.public_family_id or a relay's fingerprint)".into()
        }
        ("relay", "exit_policy_lines") => "`exit_policy_prepend`".into(),
        ("relay", k) => format!("the relay's `{k}`"),
        _ => format!("`{path}`"),
    }
}

/// "most likely X (which holds `…`)": the suspect strings, direct inventory fields first.
fn blame(suspects: &[(String, String)]) -> String {
    let derived = |p: &str| p.starts_with("relay.contact_info");
    let mut ordered: Vec<&(String, String)> =
        suspects.iter().filter(|(p, _)| !derived(p)).collect();
    ordered.extend(suspects.iter().filter(|(p, _)| derived(p)));
    match ordered.first() {
        Some((p, v)) => format!("most likely from {} (it holds {})", field_of(p), shown(v)),
        None => "from the role's template".into(),
    }
}

/// What oignon means each managed option of a relay's torrc to be (values in order; empty:
/// not set, tor's default).
struct Intent {
    values: Vec<(&'static str, Vec<String>)>,
}

impl Intent {
    fn of(v: &RelayView) -> Intent {
        let r = v.spec;
        let b = |x: bool| if x { "1" } else { "0" }.to_string();
        let mut address = vec![r.ipv4.to_string()];
        let mut orport = vec![format!("{}:{}", r.ipv4, r.orport)];
        let mut outbound = vec![r.ipv4.to_string()];
        if let Some(v6) = r.ipv6 {
            address.push(v6.to_string());
            orport.push(format!("[{v6}]:{}", r.orport));
            outbound.push(format!("[{v6}]"));
        }
        let family = |key: &str| -> Vec<String> {
            v.family_lines
                .iter()
                .filter_map(|l| l.strip_prefix(key))
                .filter_map(|l| l.strip_prefix(' '))
                .map(str::to_string)
                .collect()
        };
        let when = |on: bool, val: &str| {
            if on {
                vec![val.to_string()]
            } else {
                vec![]
            }
        };
        let values = vec![
            ("Nickname", vec![r.nickname.clone()]),
            ("ContactInfo", vec![v.contact_info.clone()]),
            ("Address", address),
            ("ORPort", orport),
            ("OutboundBindAddress", outbound),
            ("SocksPort", vec!["0".into()]),
            (
                "RelayBandwidthRate",
                vec![format!("{} KBytes", v.rate_kbytes)],
            ),
            (
                "RelayBandwidthBurst",
                vec![format!("{} KBytes", v.burst_kbytes)],
            ),
            ("ExitRelay", vec![b(r.exit)]),
            ("IPv6Exit", vec![b(r.ipv6_exit)]),
            ("ExitPolicy", v.exit_policy_lines.clone()),
            ("ExitPolicyRejectPrivate", vec![]),
            ("ExitPolicyRejectLocalInterfaces", vec![]),
            ("ReducedExitPolicy", vec![]),
            ("FamilyId", family("FamilyId")),
            ("MyFamily", family("MyFamily")),
            (
                "MetricsPort",
                r.metrics_port
                    .map(|p| vec![format!("127.0.0.1:{p}")])
                    .unwrap_or_default(),
            ),
            (
                "MetricsPortPolicy",
                when(r.metrics_port.is_some(), "accept 127.0.0.1"),
            ),
            (
                "DoSCircuitCreationEnabled",
                vec![r.dos_defense.torrc_value().to_string()],
            ),
            (
                "DoSConnectionEnabled",
                vec![r.dos_defense.torrc_value().to_string()],
            ),
            (
                "DoSStreamCreationEnabled",
                when(r.exit, r.dos_defense.torrc_value()),
            ),
            ("OfflineMasterKey", when(r.offline_master_key, "1")),
            ("Sandbox", vec![b(r.sandbox)]),
            ("NoExec", vec![b(r.noexec)]),
            ("DataDirectory", vec![]),
            ("KeyDirectory", vec![]),
            ("FamilyKeyDirectory", vec![]),
        ];
        Intent { values }
    }
}

/// `a` and `b` from a little before where they differ, so a message shows the difference even in
/// a long value.
fn around_difference(a: &str, b: &str) -> (String, String) {
    let common = a.chars().zip(b.chars()).take_while(|(x, y)| x == y).count();
    let from = common.saturating_sub(12);
    let cut = |s: &str| {
        let tail: String = s.chars().skip(from).collect();
        if from > 0 {
            format!("…{tail}")
        } else {
            tail
        }
    };
    (cut(a), cut(b))
}

/// Findings on one rendered torrc; see the comment above [`Shadow`]. `shadow` is None when it
/// would be the same text as `real`. `who` names the relay, host and path.
fn check_torrc(
    real: &str,
    shadow: Option<&str>,
    intent: &Intent,
    suspects: &[(String, String)],
    who: &str,
) -> Vec<Diagnostic> {
    let parsed = match torrc::parse(real) {
        Ok(t) => t,
        Err(e) => {
            return vec![torrc_err(
                format!("tor cannot read the torrc of {who}: {e}"),
                "torrc",
                format!("fix the value it came from, {}", blame(suspects)),
            )]
        }
    };
    let mut out = vec![];
    if let Some(line) = parsed.nul_at_line {
        out.push(torrc_err(
            format!("the torrc of {who} holds a NUL byte at line {line}: tor ignores the rest of the file"),
            "torrc",
            format!("fix the value it came from, {}", blame(suspects)),
        ));
    }
    // 1. Entries the template does not write.
    if let Some(Ok(meant)) = shadow.map(torrc::parse) {
        out.extend(unmeant_entry(&parsed, &meant, who, suspects));
    }
    // 2. Managed options, by the name tor resolves, must hold oignon's values exactly. Each key
    // is resolved once: a torrc has a hundred lines and oignon manages some thirty options.
    let resolved: Vec<Option<torrc::Resolved>> = parsed
        .entries
        .iter()
        .map(|e| {
            (!e.is_include())
                .then(|| torrc::canonical(&e.key))
                .flatten()
        })
        .collect();
    out.extend(unchecked_names(&parsed, &resolved, who, suspects));
    let names: Vec<Option<&'static str>> = resolved.iter().map(|r| r.map(|r| r.name)).collect();
    for (name, meant) in &intent.values {
        out.extend(managed_value(&parsed, &names, name, meant, who, suspects));
    }
    out
}

/// A finding of the rendered-torrc check, on `field`.
fn torrc_err(msg: String, field: &str, help: String) -> Diagnostic {
    Diagnostic::error(msg).field(field.to_string()).help(help)
}

/// How a torrc entry's magic prefix is written (`+Key`, `/Key`).
fn magic_prefix(m: Magic) -> &'static str {
    match m {
        Magic::Normal => "",
        Magic::Append => "+",
        Magic::Clear => "/",
    }
}

/// The first entry where the torrc differs from its shadow rendering (what the template means):
/// an inventory string changed the file's lines.
fn unmeant_entry(
    parsed: &torrc::Torrc,
    meant: &torrc::Torrc,
    who: &str,
    suspects: &[(String, String)],
) -> Option<Diagnostic> {
    let show = |e: &torrc::Entry| shown(&format!("{}{} {}", magic_prefix(e.magic), e.key, e.value));
    let i = (0..parsed.entries.len().max(meant.entries.len())).find(|&i| {
        parsed.entries.get(i).map(|e| (&e.key, e.magic, &e.value))
            != meant.entries.get(i).map(|e| (&e.key, e.magic, &e.value))
    })?;
    let msg = match (parsed.entries.get(i), meant.entries.get(i)) {
        (Some(e), Some(m)) if e.key == m.key && e.magic == m.magic => {
            let (got, meant) = around_difference(&e.value, &m.value);
            format!(
                "tor would read `{}` at line {} of the torrc of {who} as {}, where the template writes {}",
                e.key,
                e.line,
                shown(&got),
                shown(&meant)
            )
        }
        (Some(e), _) => format!(
            "the torrc of {who} has {} at line {}, which its template does not write",
            show(e),
            e.line
        ),
        (None, Some(m)) => format!(
            "the torrc of {who} lacks {}, which its template writes: tor reads it as part of an earlier line",
            show(m)
        ),
        (None, None) => format!("the torrc of {who} differs from what its template writes"),
    };
    Some(torrc_err(
        msg,
        "torrc",
        format!(
            "an inventory value holds a line break, `#`, `\\` or `\"`, which a torrc reads as syntax: {}; fix that value",
            blame(suspects)
        ),
    ))
}

/// Entries whose option oignon cannot check by name: an `%include` of another file, or an
/// abbreviated name tor expands to an option.
fn unchecked_names(
    parsed: &torrc::Torrc,
    resolved: &[Option<torrc::Resolved>],
    who: &str,
    suspects: &[(String, String)],
) -> Vec<Diagnostic> {
    let mut out = vec![];
    for (e, r) in parsed.entries.iter().zip(resolved) {
        if e.is_include() {
            out.push(torrc_err(
                format!("the torrc of {who} has `%include` at line {}: tor would read another file oignon does not check", e.line),
                "torrc",
                format!("remove it from the role's template ({})", blame(suspects)),
            ));
        } else if let Some(r) = r.filter(|r| r.via != torrc::Via::Exact) {
            out.push(torrc_err(
                format!(
                    "the torrc of {who} writes {} at line {}, which tor reads as `{}`",
                    shown(&e.key),
                    e.line,
                    r.name
                ),
                "torrc",
                format!(
                    "write the full option name in the role's template ({})",
                    blame(suspects)
                ),
            ));
        }
    }
    out
}

/// A managed option (`name`, canonical) whose entries in the torrc are not exactly oignon's
/// values `meant`, in order and without magic: the first difference.
fn managed_value(
    parsed: &torrc::Torrc,
    names: &[Option<&'static str>],
    name: &str,
    meant: &[String],
    who: &str,
    suspects: &[(String, String)],
) -> Option<Diagnostic> {
    let got: Vec<&torrc::Entry> = parsed
        .entries
        .iter()
        .zip(names)
        .filter(|(_, n)| **n == Some(name))
        .map(|(e, _)| e)
        .collect();
    let same = got.len() == meant.len()
        && got
            .iter()
            .zip(meant)
            .all(|(e, m)| e.magic == Magic::Normal && e.value == *m);
    if same {
        return None;
    }
    let k = (0..got.len().max(meant.len()))
        .find(|&i| {
            got.get(i).map(|e| (e.magic, e.value.as_str()))
                != meant.get(i).map(|m| (Magic::Normal, m.as_str()))
        })
        .unwrap_or(0);
    let entry = |e: &torrc::Entry| {
        format!(
            "{} (line {})",
            shown(&format!("{}{name} {}", magic_prefix(e.magic), e.value)),
            e.line
        )
    };
    let detail = match (got.get(k), meant.get(k)) {
        (Some(e), Some(m)) => format!("{} where oignon means {}", entry(e), shown(m)),
        (Some(e), None) => format!(
            "{} beyond oignon's {} value{}",
            entry(e),
            meant.len(),
            if meant.len() == 1 { "" } else { "s" }
        ),
        (None, Some(m)) => format!("no {} although oignon means it", shown(m)),
        (None, None) => "its values differ".into(),
    };
    let field = torrc::managed(name).unwrap_or("the role's template");
    Some(torrc_err(
        format!("the torrc of {who} sets `{name}` otherwise than oignon means: {detail}"),
        name,
        format!(
            "`{name}` comes from {field}; the role's template must write it as oignon renders it, and nothing else may set it ({})",
            blame(suspects)
        ),
    ))
}

#[cfg(test)]
mod tests {
    //! The rendered-torrc check on its own: strings are forced into the fleet after the inventory
    //! checks, as a new field or source that those checks do not know would bring them.
    use super::*;
    use std::path::Path;

    fn shipped() -> (Inventory, Roles, crate::secrets::Store) {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let inv = crate::inventory::load(&root.join("inventory"));
        assert!(inv.diagnostics.iter().all(|d| !d.is_error()));
        let roles = Roles::load(&root.join("roles")).unwrap_or_else(|_| panic!("roles load"));
        let store = crate::secrets::Store::open(&root.join("secrets"));
        (inv, roles, store)
    }

    /// Renders the shipped fleet after `edit`, and returns every finding as text.
    fn findings(edit: impl FnOnce(&mut Fleet)) -> String {
        let (mut inv, roles, store) = shipped();
        let mut fleet = inv.fleet.take().unwrap();
        edit(&mut fleet);
        let keys = Keys {
            store: &store,
            identity: None,
        };
        match render(&inv, &fleet, &roles, |_| true, &keys) {
            Ok(_) => String::new(),
            Err(d) => d.iter().map(|d| d.to_string()).collect(),
        }
    }

    #[test]
    fn the_shipped_fleet_renders_without_findings() {
        assert_eq!(findings(|_| {}), "");
    }

    #[test]
    fn a_line_break_in_the_url_is_caught_after_rendering() {
        let out = findings(|f| f.url = "https://x.org\nExitPolicy accept *:*\n#".into());
        assert!(
            out.contains("tor would read `ContactInfo` at line 4 of the torrc of relay `ekumen` on host `ekumen` (/etc/tor/instances/ekumen/torrc) as `…ttps://x.org`, where the template writes `…ttps://x.org_ExitPolicy accept *:*__ proof"),
            "{out}"
        );
        assert!(out.contains("most likely from `[fleet] url`"), "{out}");
        assert!(
            out.contains("sets `ExitPolicy` otherwise than oignon means: `ExitPolicy accept *:*`"),
            "{out}"
        );
    }

    #[test]
    fn a_hash_in_the_hoster_domain_is_caught_as_a_cut_contactinfo() {
        let out = findings(|f| f.hosts[0].hoster_domain = "gandi.net#x".into());
        assert!(
            out.contains(
                "as `…er:gandi.net`, where the template writes `…er:gandi.net_x uplinkbw:24"
            ),
            "{out}"
        );
        assert!(
            out.contains("most likely from the hoster's `domain`"),
            "{out}"
        );
    }

    #[test]
    fn a_trailing_backslash_swallowing_the_next_line_is_caught() {
        // Mid-value a backslash is harmless to tor, but a value that differs from the shadow's is
        // refused all the same: the check does not try to tell harmless syntax from harmful.
        let out = findings(|f| f.proof = "uri-rsa\\".into());
        assert!(out.contains("tor would read `ContactInfo`"), "{out}");
        let out = findings(|f| f.hosts[0].relays[0].nickname = "ekumen\\".into());
        assert!(
            out.contains("lacks") || out.contains("tor would read"),
            "{out}"
        );
    }

    #[test]
    fn a_carriage_return_joining_words_is_caught() {
        let out = findings(|f| f.operator = "x".into());
        assert_eq!(out, "", "operator is not in the torrc");
        let out = findings(|f| f.hosts[0].hoster = "Gandi)\rExitPolicy accept *:*\n".into());
        assert!(out.contains("ExitPolicy accept *:*"), "{out}");
    }

    #[test]
    fn a_managed_option_slipped_into_torrc_extra_is_caught() {
        let out = findings(|f| {
            f.hosts[0].relays[0].torrc_extra = vec!["exitpolicy accept *:*".into()];
        });
        assert!(
            out.contains("sets `ExitPolicy` otherwise than oignon means: `ExitPolicy accept *:*`"),
            "{out}"
        );
        let out = findings(|f| {
            f.hosts[0].relays[0].torrc_extra = vec!["Sandbo 0".into()];
        });
        assert!(out.contains("writes `Sandbo` at line"), "{out}");
        assert!(
            out.contains("sets `Sandbox` otherwise than oignon means"),
            "{out}"
        );
        let out = findings(|f| {
            f.hosts[0].relays[0].torrc_extra = vec!["%include /etc/x".into()];
        });
        assert!(out.contains("has `%include` at line"), "{out}");
    }

    #[test]
    fn managed_names_are_tor_option_names() {
        for (name, _) in torrc::MANAGED {
            let r = torrc::canonical(name).unwrap_or_else(|| panic!("{name} unknown to tor"));
            assert_eq!((r.name, r.via), (*name, torrc::Via::Exact));
        }
    }
}
