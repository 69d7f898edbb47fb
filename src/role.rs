//! Roles: `roles/NAME/role.toml` manifests (which files a role produces, with owner, mode, handler
//! and validator) and their Tera templates in `roles/NAME/templates/`.

use crate::diagnostic::{suggest, Diagnostic};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// What must run on a host after a file changed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HandlerKind {
    /// `systemctl reload tor@NAME`, or restart when an option tor cannot change at runtime changed.
    TorReload,
    /// `systemctl daemon-reload`, then restart every tor instance of the host.
    TorRestartAll,
    /// `sysctl --system`.
    Sysctl,
    /// `update-grub`; the new command line is live only after a reboot.
    UpdateGrub,
    /// Load every `/etc/nftables.d/oignon-*.nft` with confirm-or-revert: the host saves its
    /// running ruleset, arms a timer that restores it, loads the new one; oignon confirms over a
    /// NEW SSH connection, and without that the host puts the old ruleset back by itself.
    NftLoad,
    /// `systemctl reload-or-restart nginx` (the monitoring role's TLS proxy).
    NginxReload,
    /// `systemctl restart prometheus-node-exporter` (it reads its ARGS only at start).
    NodeExporterRestart,
}

/// How a file is checked before it replaces the old one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ValidatorKind {
    /// `tor --verify-config` with the instance's expanded Debian defaults.
    Torrc,
    /// `sh -n` and the expected `GRUB_CMDLINE_LINUX` assignment.
    Grub,
    /// Every key exists under `/proc/sys`.
    Sysctl,
    /// `systemd-analyze verify` where available.
    Systemd,
    /// `nft -c -f`: the ruleset parses and the running kernel accepts it, without loading it.
    Nft,
}

impl ValidatorKind {
    /// The validator's name in apply.sh's records (as in role.toml).
    pub fn name(self) -> &'static str {
        match self {
            ValidatorKind::Torrc => "torrc",
            ValidatorKind::Grub => "grub",
            ValidatorKind::Sysctl => "sysctl",
            ValidatorKind::Systemd => "systemd",
            ValidatorKind::Nft => "nft",
        }
    }
}

/// Whether a file is rendered once per host or once per relay instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Each {
    Host,
    Relay,
}

/// One file a role produces.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSpec {
    /// Absolute path on the host; a Tera template itself (`{{ relay.nickname }}`).
    pub path: String,
    pub template: String,
    pub each: Each,
    #[serde(default = "root")]
    pub owner: String,
    #[serde(default = "root")]
    pub group: String,
    /// Octal, as a string: `"0644"`.
    #[serde(default = "mode_644")]
    pub mode: String,
    pub handler: Option<HandlerKind>,
    pub validate: Option<ValidatorKind>,
    #[serde(default)]
    pub reboot_required: bool,
}

fn root() -> String {
    "root".into()
}
fn mode_644() -> String {
    "0644".into()
}

/// A secret file a role deploys: the age file `secrets/SOURCE.age`, decrypted only to deploy it
/// (plan and apply, with the identity), never shown. `{host}` in SOURCE is the host's name, so each
/// host can have its own (a TLS key, a password file).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretSpec {
    /// Absolute path on the host (no template).
    pub path: String,
    /// Under secrets/, without `.age`: `monitoring/{host}/tls.key`.
    pub source: String,
    #[serde(default = "root")]
    pub owner: String,
    #[serde(default = "root")]
    pub group: String,
    #[serde(default = "mode_600")]
    pub mode: String,
    pub handler: Option<HandlerKind>,
}

fn mode_600() -> String {
    "0600".into()
}

/// A role manifest.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Role {
    #[serde(skip)]
    pub name: String,
    pub description: String,
    #[serde(default, rename = "file")]
    pub files: Vec<FileSpec>,
    /// Debian packages the role needs on a host (`nftables`…): `oignon bootstrap` installs the
    /// union of the host's roles' lists. Each must be a Debian package name.
    #[serde(default)]
    pub packages: Vec<String>,
    /// Secret files deployed from secrets/ (`[[secret]]`).
    #[serde(default, rename = "secret")]
    pub secrets: Vec<SecretSpec>,
}

/// Reads one role's manifest (`d/role.toml`) and checks its files; None (with the finding in
/// `diags`) when it cannot be read or parsed.
fn read_manifest(d: &Path, name: &str, diags: &mut Vec<Diagnostic>) -> Option<Role> {
    let manifest = d.join("role.toml");
    let text = match std::fs::read_to_string(&manifest) {
        Ok(t) => t,
        Err(e) => {
            diags.push(
                Diagnostic::error(format!("cannot read {}: {e}", manifest.display()))
                    .in_file(&manifest)
                    .help("every directory under roles/ is a role and needs a role.toml"),
            );
            return None;
        }
    };
    match toml::from_str::<Role>(&text) {
        Ok(mut role) => {
            role.name = name.to_string();
            diags.extend(check_files(&role, &manifest));
            diags.extend(check_packages(&role, &manifest));
            Some(role)
        }
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            diags.push(
                Diagnostic::error(format!("bad role manifest: {}", e.message().trim()))
                    .help("see README.md, \"Roles\"")
                    .at(&manifest, &text, span),
            );
            None
        }
    }
}

/// A role's template files (`d/templates/*`, sorted) with their Tera names, `ROLE/FILE`.
fn template_files(d: &Path, name: &str) -> Vec<(PathBuf, String)> {
    let mut out = vec![];
    if let Ok(entries) = std::fs::read_dir(d.join("templates")) {
        let mut files: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        files.sort();
        for f in files {
            if let Some(fname) = f.file_name().map(|n| n.to_string_lossy().into_owned()) {
                out.push((f, format!("{name}/{fname}")));
            }
        }
    }
    out
}

/// Reads a template file into `tera` as `tname`; a file that cannot be read, is not UTF-8 (said
/// where) or does not parse is a finding in `diags`.
fn add_template(tera: &mut tera::Tera, file: &Path, tname: &str, diags: &mut Vec<Diagnostic>) {
    match std::fs::read(file) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(text) => {
                if let Err(e) = tera.add_raw_template(tname, &text) {
                    diags.push(template_error(&e, file, tname));
                }
            }
            Err(e) => {
                // Where the text stops being UTF-8: line and column of the first bad byte.
                let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
                let line = good.iter().filter(|&&b| b == b'\n').count() + 1;
                let col =
                    good.len() - good.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1) + 1;
                diags.push(
                    Diagnostic::error(format!(
                        "template `{tname}` is not UTF-8: invalid byte at {}:{line}:{col}",
                        file.display()
                    ))
                    .in_file(file)
                    .help("save the template as UTF-8"),
                );
            }
        },
        Err(e) => diags.push(
            Diagnostic::error(format!("cannot read template {}: {e}", file.display()))
                .in_file(file),
        ),
    }
}

/// A finding for each file of a role whose template is not among `templates`.
fn missing_templates(
    dir: &Path,
    roles: &[Role],
    templates: &[(PathBuf, String)],
) -> Vec<Diagnostic> {
    let mut diags = vec![];
    for role in roles {
        for (i, f) in role.files.iter().enumerate() {
            let tname = format!("{}/{}", role.name, f.template);
            if !templates.iter().any(|(_, n)| n == &tname) {
                let manifest = dir.join(&role.name).join("role.toml");
                diags.push(
                    locate_key(
                        Diagnostic::error(format!(
                            "role `{}` names template `{}`, which does not exist",
                            role.name, f.template
                        ))
                        .field(format!("file.{i}.template")),
                        &manifest,
                        i,
                        "template",
                    )
                    .help(format!(
                        "add {}/{}/templates/{}",
                        dir.display(),
                        role.name,
                        f.template
                    )),
                );
            }
        }
    }
    diags
}

/// Every role of a roles directory, with its templates loaded into one Tera instance.
pub struct Roles {
    pub dir: PathBuf,
    pub roles: Vec<Role>,
    pub tera: tera::Tera,
}

impl Roles {
    /// Loads `dir/*/role.toml` and `dir/*/templates/*.tera` (template names are `ROLE/FILE`).
    pub fn load(dir: &Path) -> Result<Roles, Vec<Diagnostic>> {
        let mut diags = vec![];
        let entries = std::fs::read_dir(dir).map_err(|e| {
            vec![Diagnostic::error(format!(
                "cannot read the roles directory {}: {e}",
                dir.display()
            ))
            .help("pass it with --roles DIR (default: roles/)")]
        })?;
        let mut dirs: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir())
            .collect();
        dirs.sort();
        let mut roles = vec![];
        let mut tera = tera::Tera::default();
        tera.autoescape_on(vec![]);
        let mut templates: Vec<(PathBuf, String)> = vec![];
        for d in dirs {
            let name = d
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if let Some(role) = read_manifest(&d, &name, &mut diags) {
                roles.push(role);
            }
            templates.extend(template_files(&d, &name));
        }
        // File paths are templates too; parsed once here, not per rendered file.
        for role in &roles {
            for (i, f) in role.files.iter().enumerate() {
                let manifest = dir.join(&role.name).join("role.toml");
                if let Err(e) = tera.add_raw_template(&path_template(&role.name, i), &f.path) {
                    diags.push(
                        template_error(&e, &manifest, &f.path).field(format!("file.{i}.path")),
                    );
                }
            }
        }
        for (file, tname) in &templates {
            add_template(&mut tera, file, tname, &mut diags);
        }
        diags.extend(missing_templates(dir, &roles, &templates));
        if diags.is_empty() {
            Ok(Roles {
                dir: dir.to_path_buf(),
                roles,
                tera,
            })
        } else {
            Err(diags)
        }
    }

    pub fn get(&self, name: &str) -> Option<&Role> {
        self.roles.iter().find(|r| r.name == name)
    }

    /// A "no such role" finding with a suggestion.
    pub fn unknown(&self, name: &str) -> Diagnostic {
        let known: Vec<&str> = self.roles.iter().map(|r| r.name.as_str()).collect();
        let help = match suggest(name, known.iter().copied()) {
            Some(s) => format!(
                "did you mean `{s}`? roles in {}: {}",
                self.dir.display(),
                known.join(", ")
            ),
            None => format!("roles in {}: {}", self.dir.display(), known.join(", ")),
        };
        Diagnostic::error(format!("unknown role `{name}`")).help(help)
    }
}

/// Points a finding at `file[i].KEY` of a manifest (file:line:col), or at the file.
fn locate_key(d: Diagnostic, manifest: &Path, i: usize, key: &str) -> Diagnostic {
    let Ok(text) = std::fs::read_to_string(manifest) else {
        return d.in_file(manifest);
    };
    let span = toml_edit::ImDocument::parse(text.as_str())
        .ok()
        .and_then(|doc| {
            doc.get("file")?
                .as_array_of_tables()?
                .get(i)?
                .get(key)?
                .span()
        });
    match span {
        Some(s) => d.at(manifest, &text, s),
        None => d.in_file(manifest),
    }
}

/// Each of a role's `packages` is a Debian package name (policy 5.6.1): the names go to apt-get
/// on hosts, as data, and a name apt cannot take is better found by `check`.
fn check_packages(role: &Role, manifest: &Path) -> Vec<Diagnostic> {
    let bad: Vec<(usize, &String)> = role
        .packages
        .iter()
        .enumerate()
        .filter(|(_, p)| {
            !(p.len() >= 2
                && p.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                && p.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c)))
        })
        .collect();
    if bad.is_empty() {
        return vec![];
    }
    let text = std::fs::read_to_string(manifest).unwrap_or_default();
    let doc = toml_edit::ImDocument::parse(text.as_str()).ok();
    bad.into_iter()
        .map(|(j, p)| {
            let d = Diagnostic::error(format!("package {} is not a Debian package name", quote(p)))
                .field(format!("packages.{j}"))
                .help("lowercase letters, digits, `+`, `-` and `.`, at least two, starting with a letter or digit (`nftables`)");
            let span = doc
                .as_ref()
                .and_then(|doc| doc.get("packages")?.as_array()?.get(j)?.span());
            match span {
                Some(s) => d.at(manifest, &text, s),
                None => d.in_file(manifest),
            }
        })
        .collect()
}

/// Owner, group, mode and path of each file, checked where they are loaded (file:line, field):
/// they travel to apply.sh, which runs as root, and each must be what its field says and nothing
/// more.
fn check_files(role: &Role, manifest: &Path) -> Vec<Diagnostic> {
    let mut diags = vec![];
    let mut push = |i: usize, key: &str, msg: String, help: &str| {
        let d = Diagnostic::error(msg)
            .field(format!("file.{i}.{key}"))
            .help(help.to_string());
        diags.push(locate_key(d, manifest, i, key));
    };
    for (i, f) in role.files.iter().enumerate() {
        for (key, msg) in account_findings(&f.owner, &f.group) {
            push(i, key, msg, ACCOUNT_HELP);
        }
        match parse_mode(&f.mode) {
            Err(why) => push(i, "mode", format!("mode {} {why}", quote(&f.mode)), "write it like \"0644\""),
            Ok(m) if m & 0o7002 != 0 => push(
                i,
                "mode",
                format!("mode {} makes the file {}", quote(&f.mode), if m & 0o7000 != 0 { "set-uid, set-gid or sticky" } else { "writable by every user" }),
                "oignon writes files as root: they may not be writable by all or carry special bits",
            ),
            Ok(_) => {}
        }
        if let Err(why) = check_path_template(&f.path) {
            push(
                i,
                "path",
                format!("path {} {why}", quote(&f.path)),
                "an absolute path of letters, digits and `._@+-/`, without `..`; `{{ … }}` expressions allowed",
            );
        }
    }
    for (i, s) in role.secrets.iter().enumerate() {
        let mut bad = |key: &str, msg: String, help: &str| {
            let d = Diagnostic::error(msg)
                .field(format!("secret.{i}.{key}"))
                .help(help.to_string());
            diags.push(locate_key_in(d, manifest, "secret", i, key));
        };
        for (key, msg) in account_findings(&s.owner, &s.group) {
            bad(key, msg, ACCOUNT_HELP);
        }
        match parse_mode(&s.mode) {
            Ok(m) if m & 0o7037 == 0 => {}
            _ => bad(
                "mode",
                format!(
                    "mode {} lets others than the owner (and its group, to read) at a secret",
                    quote(&s.mode)
                ),
                "write \"0600\", or \"0640\" for a group that must read it",
            ),
        }
        if !s.path.starts_with('/')
            || s.path.contains("/../")
            || s.path.contains("{{")
            || s.path
                .chars()
                .any(|c| !(c.is_ascii_alphanumeric() || "._@+-/".contains(c)))
        {
            bad(
                "path",
                format!("path {} is not an absolute plain path", quote(&s.path)),
                "an absolute path of letters, digits and `._@+-/`, without `..` (no template)",
            );
        }
        let source = s.source.replace("{host}", "host");
        if source.is_empty()
            || s.source.starts_with('/')
            || source.split('/').any(|c| c.is_empty() || c == "..")
            || source
                .chars()
                .any(|c| !(c.is_ascii_alphanumeric() || "._-/".contains(c)))
        {
            bad("source", format!("source {} is not a path under secrets/", quote(&s.source)), "a relative path of letters, digits and `._-/` under secrets/, without `.age`; `{host}` is the host's name");
        }
    }
    diags
}

/// [`locate_key`] for an entry of another array of tables than `[[file]]`.
fn locate_key_in(d: Diagnostic, manifest: &Path, table: &str, i: usize, key: &str) -> Diagnostic {
    let Ok(text) = std::fs::read_to_string(manifest) else {
        return d.in_file(manifest);
    };
    let span = toml_edit::ImDocument::parse(text.as_str())
        .ok()
        .and_then(|doc| {
            doc.get(table)?
                .as_array_of_tables()?
                .get(i)?
                .get(key)?
                .span()
        });
    match span {
        Some(s) => d.at(manifest, &text, s),
        None => d.in_file(manifest),
    }
}

/// A value quoted for a message, capped: a megabyte of input must not print megabytes.
fn quote(v: &str) -> String {
    let mut s: String = v.chars().take(60).collect();
    if v.chars().count() > 60 {
        s.push('…');
    }
    format!("{s:?}")
}

/// What to write for an owner or group, in a finding.
const ACCOUNT_HELP: &str = "a user or group name: letters, digits, `_`, `.` and `-`, not starting with `-`, at most 32 characters";

/// The findings of a file's or secret's `owner` and `group`: (key, what is wrong).
fn account_findings<'a>(owner: &str, group: &str) -> Vec<(&'a str, String)> {
    [("owner", owner), ("group", group)]
        .into_iter()
        .filter_map(|(key, value)| {
            check_account(value)
                .err()
                .map(|why| (key, format!("{key} {} {why}", quote(value))))
        })
        .collect()
}

/// A user or group name as the host scripts accept it.
pub fn check_account(v: &str) -> Result<(), String> {
    if v.is_empty() {
        return Err("is empty".into());
    }
    if let Some(c) = v
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Err(format!(
            "holds {c:?}, which is not allowed in a user or group name"
        ));
    }
    if v.chars().count() > 32 {
        return Err("is longer than 32 characters".into());
    }
    if v.starts_with('-') {
        return Err("starts with `-`".into());
    }
    Ok(())
}

/// An octal file mode: 3 or 4 octal digits.
pub fn parse_mode(v: &str) -> Result<u32, String> {
    if !(3..=4).contains(&v.len()) || !v.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return Err("is not an octal file mode of 3 or 4 digits".into());
    }
    u32::from_str_radix(v, 8).map_err(|e| e.to_string())
}

/// A path template: outside `{{ … }}` expressions, only plain path characters.
fn check_path_template(v: &str) -> Result<(), String> {
    if !v.starts_with('/') {
        return Err("is not absolute".into());
    }
    if let Some(c) = v.chars().find(|c| c.is_control()) {
        return Err(format!("holds the control character U+{:04X}", c as u32));
    }
    let mut plain = String::new();
    let mut rest = v;
    while let Some(open) = rest.find("{{") {
        plain.push_str(&rest[..open]);
        plain.push('x');
        match rest[open..].find("}}") {
            Some(close) => rest = &rest[open + close + 2..],
            None => return Err("has a `{{` without its `}}`".into()),
        }
    }
    plain.push_str(rest);
    if plain.split('/').any(|c| c == "..") {
        return Err("has a `..` component".into());
    }
    match plain
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-' | '@' | '+')))
    {
        Some(c) => Err(format!("holds {c:?}")),
        None => Ok(()),
    }
}

/// The Tera name of a role's i-th file path template.
pub fn path_template(role: &str, i: usize) -> String {
    format!("{role}/#path{i}")
}

/// A Tera error as a finding naming the template file and, when Tera knows it, the line.
pub fn template_error(e: &tera::Error, file: &Path, tname: &str) -> Diagnostic {
    use std::error::Error as _;
    let mut chain = vec![e.to_string()];
    let mut src = e.source();
    while let Some(s) = src {
        chain.push(s.to_string());
        src = s.source();
    }
    let full = chain.join(": ");
    // Tera's parse errors carry " --> LINE:COL"; surface it as file:line.
    let text = std::fs::read_to_string(file).ok();
    let line = full
        .split("--> ")
        .nth(1)
        .and_then(|rest| rest.split(':').next())
        .and_then(|l| l.trim().parse::<usize>().ok())
        // A render-time error ("Variable `relay.foo` not found in context") has no line: the first
        // line of the template that uses the name is where to look.
        .or_else(|| {
            let name = full.split("Variable `").nth(1)?.split('`').next()?;
            text.as_deref()?
                .lines()
                .position(|l| l.contains(name))
                .map(|i| i + 1)
        });
    let mut d = Diagnostic::error(format!(
        "template `{tname}`: {}",
        full.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
    ))
    .help("fix the template (Tera syntax: https://keats.github.io/tera/docs/)")
    .in_file(file);
    if let Some(l) = line {
        if let Some(text) = text {
            let start: usize = text
                .split_inclusive('\n')
                .take(l.saturating_sub(1))
                .map(str::len)
                .sum();
            d = d.at(file, &text, start..start + 1);
        }
    }
    d
}
