//! `oignon bootstrap`: from a fresh Debian host to one `oignon apply` can take over.
//!
//! This module is the pure part: the host's preflight [`Facts`] (gathered in one round trip by
//! `remote/preflight.sh`) compared with the inventory give the table's [`Row`]s and the verdict;
//! the inventory and the roles give the [`Install`] (files, packages, masked units) that
//! `remote/bootstrap.sh` makes true. The I/O is in [`run`].

pub mod run;

use crate::inventory::{Boot, Fleet, HostSpec, TorSource, TorVersion};
use std::net::IpAddr;

/// Free space `bootstrap` wants on `/` and on `/var` (tor's DataDirectories, apt's cache).
pub const MIN_FREE_KIB: u64 = 1024 * 1024;

/// Where the torproject source's keyring goes on a host (Debian's place for keyrings an admin
/// manages, not `/usr/share/keyrings`, which belongs to packages).
pub const KEYRING_PATH: &str = "/etc/apt/keyrings/oignon-torproject.gpg";
/// The torproject source, deb822.
pub const SOURCES_PATH: &str = "/etc/apt/sources.list.d/tor.sources";
/// unattended-upgrades settings, read after Debian's 50unattended-upgrades.
pub const UNATTENDED_PATH: &str = "/etc/apt/apt.conf.d/52oignon";
/// Debian's single-instance units: they must never run beside the instances.
pub const MASKED_UNITS: &[&str] = &["tor.service", "tor@default.service"];

/// What a host reported before bootstrap (see `remote/preflight.sh` for each fact's source).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    pub os_id: String,
    pub version_id: String,
    pub codename: String,
    pub arch: String,
    /// The command of PID 1.
    pub init: String,
    /// `systemd-detect-virt --container`: `none`, or the container kind.
    pub container: String,
    /// Addresses on the host's interfaces.
    pub addresses: Vec<IpAddr>,
    /// The default routes, as `ip route` prints them (empty: none).
    pub route4: String,
    pub route6: String,
    pub grub_cfg: bool,
    /// Installed GRUB packages.
    pub grub_pkgs: Vec<String>,
    /// Free KiB of the file system holding each requested path.
    pub free_kib: Vec<(String, u64)>,
    /// timedatectl's `NTPSynchronized` (None: unknown) and `NTP` (a time service is on).
    pub ntp_synchronized: Option<bool>,
    pub ntp: Option<bool>,
    pub listening: Vec<Listener>,
    /// `command -v tor`, and the first line of its `--version`.
    pub tor_path: Option<String>,
    pub tor_version_line: Option<String>,
    /// The installed `tor` package's version.
    pub tor_pkg: Option<String>,
    /// apt sources: (file, URI, suite).
    pub sources: Vec<(String, String, String)>,
}

/// A listening TCP socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub addr: IpAddr,
    pub port: u16,
    /// The systemd unit of its process (`tor@x.service`), `process NAME`, or `-`.
    pub who: String,
}

/// How a fact stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    /// Bootstrap refuses to change anything while this holds.
    Blocking,
    /// Worth knowing; does not stop bootstrap.
    Note,
}

/// One line of the preflight table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub fact: String,
    pub wanted: String,
    pub found: String,
    pub status: Status,
    /// What to do (empty when nothing is to be done).
    pub fix: String,
}

fn row(fact: &str, wanted: impl Into<String>, found: impl Into<String>) -> Row {
    Row {
        fact: fact.into(),
        wanted: wanted.into(),
        found: found.into(),
        status: Status::Ok,
        fix: String::new(),
    }
}

impl Row {
    fn blocking_if(mut self, bad: bool, fix: impl Into<String>) -> Row {
        if bad {
            self.status = Status::Blocking;
            self.fix = fix.into();
        }
        self
    }
}

/// The inventory's side of the comparison: the host, the fleet's settings, and the file the host
/// is written in (for fix lines that say where to edit).
pub struct Wanted<'a> {
    pub fleet: &'a Fleet,
    pub host: &'a HostSpec,
    pub file: String,
}

/// The version a `tor --version` first line or a dpkg version names.
pub fn tor_version(s: &str) -> Option<TorVersion> {
    let s = s.trim();
    let s = s.strip_prefix("Tor version ").unwrap_or(s);
    TorVersion::parse(s)
}

/// Compares the facts with the inventory: one row per fact, in the order.
pub fn rows(f: &Facts, w: &Wanted) -> Vec<Row> {
    let mut out = vec![];
    for section in [
        release,
        addresses,
        routes,
        grub,
        disk,
        clock,
        ports,
        init,
        tor,
        apt_sources,
    ] {
        section(f, w, &mut out);
    }
    out
}

/// The Debian release and the architecture (deb.torproject.org builds for three).
fn release(f: &Facts, w: &Wanted, out: &mut Vec<Row>) {
    let release = if f.os_id.is_empty() {
        "unknown (no /etc/os-release)".to_string()
    } else {
        format!(
            "{} {}{}",
            f.os_id,
            f.version_id,
            if f.codename.is_empty() {
                String::new()
            } else {
                format!(" ({})", f.codename)
            }
        )
    };
    let version: Option<u32> = f.version_id.split('.').next().and_then(|v| v.parse().ok());
    out.push(row("Debian release", "debian 12 or later", release).blocking_if(
        f.os_id != "debian" || version.is_none_or(|v| v < 12),
        "install Debian 12 (bookworm) or later on the host: oignon manages Debian's tor multi-instance layout",
    ));
    let torproject = matches!(w.fleet.tor_source, TorSource::TorProject { .. });
    let arches: &[&str] = if torproject {
        // What deb.torproject.org builds for Debian.
        &["amd64", "arm64", "i386"]
    } else {
        &[]
    };
    out.push(
        row(
            "architecture",
            if arches.is_empty() {
                "any Debian architecture".to_string()
            } else {
                arches.join(", ") + " (deb.torproject.org)"
            },
            if f.arch.is_empty() { "unknown" } else { &f.arch },
        )
        .blocking_if(
            f.arch.is_empty() || (!arches.is_empty() && !arches.contains(&f.arch.as_str())),
            "deb.torproject.org has no packages for this architecture: set tor_source = \"debian\" in [fleet]",
        ),
    );
}

/// Each inventory address (the host's and any relay's own) on an interface.
fn addresses(f: &Facts, w: &Wanted, out: &mut Vec<Row>) {
    let h = w.host;
    let file = &w.file;
    let mut addrs: Vec<IpAddr> = vec![IpAddr::V4(h.ipv4)];
    addrs.extend(h.ipv6.map(IpAddr::V6));
    for r in &h.relays {
        addrs.push(IpAddr::V4(r.ipv4));
        addrs.extend(r.ipv6.map(IpAddr::V6));
    }
    let mut seen = vec![];
    addrs.retain(|a| {
        let new = !seen.contains(a);
        seen.push(*a);
        new
    });
    for a in &addrs {
        let present = f.addresses.contains(a);
        let (fam, len) = if a.is_ipv4() {
            ("IPv4", 32)
        } else {
            ("IPv6", 128)
        };
        out.push(
            row(
                &format!("{fam} {a}"),
                "on an interface",
                if present { "on an interface" } else { "missing" },
            )
            .blocking_if(
                !present,
                format!("configure it on the host (ip addr add {a}/{len} dev IFACE, and in /etc/network/interfaces), or correct the address of host {} in {file}", h.name),
            ),
        );
    }
}

/// The default routes (IPv6 only when the host has IPv6).
fn routes(f: &Facts, w: &Wanted, out: &mut Vec<Row>) {
    let h = w.host;
    out.push(
        row(
            "default route (IPv4)",
            "present",
            if f.route4.is_empty() {
                "none".to_string()
            } else {
                f.route4.clone()
            },
        )
        .blocking_if(
            f.route4.is_empty(),
            "add the hoster's gateway: ip route add default via GATEWAY (and in /etc/network/interfaces)",
        ),
    );
    if h.ipv6.is_some() {
        out.push(
            row(
                "default route (IPv6)",
                "present",
                if f.route6.is_empty() {
                    "none".to_string()
                } else {
                    f.route6.clone()
                },
            )
            .blocking_if(
                f.route6.is_empty(),
                "add the hoster's IPv6 gateway: ip -6 route add default via GATEWAY (and in /etc/network/interfaces)",
            ),
        );
    }
}

/// GRUB where the host boots with it (`boot = "grub"`), or the suggestion of `boot = "none"`.
fn grub(f: &Facts, w: &Wanted, out: &mut Vec<Row>) {
    let h = w.host;
    let file = &w.file;
    let grub = f.grub_cfg && !f.grub_pkgs.is_empty();
    let grub_found = match (f.grub_cfg, f.grub_pkgs.is_empty()) {
        (true, false) => format!("GRUB ({})", f.grub_pkgs.join(", ")),
        (false, true) => "no GRUB (no /boot/grub/grub.cfg, no grub package)".into(),
        (true, true) => "/boot/grub/grub.cfg but no grub package".into(),
        (false, false) => format!("{} but no /boot/grub/grub.cfg", f.grub_pkgs.join(", ")),
    };
    match h.boot {
        Boot::Grub => out.push(
            row("boot loader", "GRUB (boot = \"grub\")", grub_found).blocking_if(
                !grub,
                format!("set boot = \"none\" for host {} in {file} (oignon then leaves the kernel command line alone), or install GRUB (apt-get install grub-pc; grub-install)", h.name),
            ),
        ),
        Boot::None => {
            let mut r = row("boot loader", "none (boot = \"none\")", grub_found);
            if grub {
                r.status = Status::Note;
                r.fix = format!("GRUB is there: boot = \"grub\" for host {} in {file} lets oignon harden the kernel command line", h.name);
            }
            out.push(r);
        }
    }
}

/// Free space on `/` and `/var`.
fn disk(f: &Facts, _: &Wanted, out: &mut Vec<Row>) {
    for m in ["/", "/var"] {
        let free = f.free_kib.iter().find(|(p, _)| p == m).map(|(_, k)| *k);
        out.push(
            row(
                &format!("free disk on {m}"),
                format!("{} or more", human_kib(MIN_FREE_KIB)),
                free.map_or("unknown".to_string(), human_kib),
            )
            .blocking_if(
                free.is_none_or(|k| k < MIN_FREE_KIB),
                format!("free space on {m} (apt-get clean; journalctl --vacuum-size=100M) or grow the disk"),
            ),
        );
    }
}

/// The clock's synchronisation (a note in a container, which shares the machine's clock).
fn clock(f: &Facts, _: &Wanted, out: &mut Vec<Row>) {
    let in_container = !f.container.is_empty() && f.container != "none";
    let mut clock = row(
        "clock synchronised",
        "NTPSynchronized=yes",
        match f.ntp_synchronized {
            Some(true) => "yes".to_string(),
            Some(false) => format!(
                "no{}",
                if f.ntp == Some(false) {
                    " (no time service on)"
                } else {
                    ""
                }
            ),
            None => "unknown (no timedatectl)".into(),
        },
    );
    if f.ntp_synchronized != Some(true) {
        if in_container {
            // A container keeps the machine's kernel clock: it can neither sync nor skew it.
            clock.status = Status::Note;
            clock.fix = format!(
                "a container ({}): its clock is the machine's; keep the machine's clock synchronised",
                f.container
            );
        } else {
            clock = clock.blocking_if(true, "apt-get install systemd-timesyncd (or chrony), then timedatectl set-ntp true: the network rejects a relay whose clock is off");
        }
    }
    out.push(clock);
}

/// Every relay's ORPorts and MetricsPort free on its addresses (its own `tor@NICK` may hold them).
fn ports(f: &Facts, w: &Wanted, out: &mut Vec<Row>) {
    let h = w.host;
    let file = &w.file;
    for r in &h.relays {
        let mut want: Vec<(IpAddr, u16, &str)> = vec![(IpAddr::V4(r.ipv4), r.orport, "ORPort")];
        if let Some(v6) = r.ipv6 {
            want.push((IpAddr::V6(v6), r.orport, "ORPort"));
        }
        if let Some(m) = r.metrics_port {
            want.push((IpAddr::from([127, 0, 0, 1]), m, "MetricsPort"));
        }
        let own = format!("tor@{}.service", r.nickname);
        for (a, port, what) in want {
            let shown = match a {
                IpAddr::V6(_) => format!("[{a}]:{port}"),
                IpAddr::V4(_) => format!("{a}:{port}"),
            };
            let holder = f
                .listening
                .iter()
                .find(|l| l.port == port && covers(l.addr, a));
            let (found, bad) = match holder {
                None => ("free".to_string(), false),
                Some(l) if l.who == own => (format!("held by {own} (this relay)"), false),
                Some(l) => (
                    format!(
                        "taken by {} on {}",
                        if l.who == "-" {
                            "a process outside the host's view"
                        } else {
                            &l.who
                        },
                        l.addr
                    ),
                    true,
                ),
            };
            out.push(
                row(&format!("{what} {} {shown}", r.nickname), "free", found).blocking_if(
                    bad,
                    format!("stop what listens there (ss -ltnp 'sport = :{port}'), or give {} another {} in {file}", r.nickname, what.to_lowercase()),
                ),
            );
        }
    }
}

/// systemd as PID 1.
fn init(f: &Facts, _: &Wanted, out: &mut Vec<Row>) {
    out.push(
        row(
            "init",
            "systemd",
            if f.init.is_empty() { "unknown" } else { &f.init },
        )
        .blocking_if(
            f.init != "systemd",
            "boot the host with systemd (apt-get install systemd-sysv): tor@NAME instances are systemd units",
        ),
    );
}

/// tor on PATH and in dpkg against the fleet's minimum version.
fn tor(f: &Facts, w: &Wanted, out: &mut Vec<Row>) {
    let torproject = matches!(w.fleet.tor_source, TorSource::TorProject { .. });
    let min = w.fleet.min_tor_version;
    let bin = f.tor_version_line.as_deref().and_then(tor_version);
    let pkg = f.tor_pkg.as_deref().and_then(tor_version);
    let found = match (&f.tor_path, &f.tor_version_line, &f.tor_pkg) {
        (None, _, None) => "not installed".to_string(),
        (Some(p), line, pkg) => format!(
            "{} ({p}){}",
            bin.map_or_else(
                || format!("unknown version {:?}", line.as_deref().unwrap_or("")),
                |v| v.to_string()
            ),
            pkg.as_ref()
                .map_or(", no tor package".to_string(), |v| format!(", package {v}"))
        ),
        (None, _, Some(v)) => format!("package {v}, but no tor binary on PATH"),
    };
    // Either is enough: the binary on PATH is what an admin runs, the package what the units run.
    let old = bin.is_some_and(|v| v < min)
        || pkg.is_some_and(|v| v < min)
        || (f.tor_path.is_some() && bin.is_none());
    let how = if torproject {
        "bootstrap installs the repository's tor; remove the older tor first (apt-get purge tor), or any other tor binary on PATH"
    } else {
        "set tor_source = \"torproject\" in [fleet] (deb.torproject.org ships every release), or remove the older tor binary from PATH"
    };
    let mut tor = row(
        "tor",
        format!("{min} or later (min_tor_version)"),
        if f.tor_path.is_none() && f.tor_pkg.is_none() {
            "not installed: bootstrap installs it".to_string()
        } else {
            found
        },
    )
    .blocking_if(old, how);
    if !old && f.tor_pkg.is_none() && f.tor_path.is_none() {
        tor.status = Status::Ok;
    }
    out.push(tor);
}

/// The apt source tor comes from.
fn apt_sources(f: &Facts, w: &Wanted, out: &mut Vec<Row>) {
    match &w.fleet.tor_source {
        TorSource::Debian => {
            let debian: Vec<String> = f
                .sources
                .iter()
                .filter(|(_, _, suite)| !f.codename.is_empty() && *suite == f.codename)
                .map(|(_, uri, suite)| format!("{uri} {suite}"))
                .collect();
            out.push(
                row(
                    "apt sources",
                    format!(
                        "the release's own suite ({}), for tor (tor_source = \"debian\")",
                        if f.codename.is_empty() { "?" } else { &f.codename }
                    ),
                    if debian.is_empty() {
                        let all: Vec<String> =
                            f.sources.iter().map(|(_, u, s)| format!("{u} {s}")).collect();
                        if all.is_empty() {
                            "no apt source".to_string()
                        } else {
                            format!("only {}", all.join(", "))
                        }
                    } else {
                        debian.join(", ")
                    },
                )
                .blocking_if(
                    debian.is_empty(),
                    format!("add the hoster's Debian mirror for {} to /etc/apt/sources.list.d/debian.sources", if f.codename.is_empty() { "the release" } else { &f.codename }),
                ),
            );
        }
        TorSource::TorProject { uri, .. } => {
            let there: Vec<&(String, String, String)> = f
                .sources
                .iter()
                .filter(|(file, _, _)| file == SOURCES_PATH)
                .collect();
            let mut r = row(
                "apt sources",
                format!(
                    "{uri} {} in {SOURCES_PATH} (tor_source = \"torproject\")",
                    f.codename
                ),
                if there.is_empty() {
                    "not yet: bootstrap writes it".to_string()
                } else {
                    there
                        .iter()
                        .map(|(_, u, s)| format!("{u} {s}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                },
            );
            let others: Vec<&(String, String, String)> = f
                .sources
                .iter()
                .filter(|(file, u, _)| file != SOURCES_PATH && u.contains("torproject"))
                .collect();
            if !others.is_empty() {
                r.status = Status::Note;
                r.fix = format!(
                    "{} also names a torproject source: remove it, bootstrap manages {SOURCES_PATH}",
                    others[0].0
                );
            }
            out.push(r);
        }
    }
}

/// Whether a socket listening on `l` takes the address `a` (a wildcard takes its whole family;
/// `::` also takes IPv4 unless IPV6_V6ONLY, which `ss` does not show: counted as taken).
fn covers(l: IpAddr, a: IpAddr) -> bool {
    l == a
        || match l {
            IpAddr::V4(v4) => v4.is_unspecified() && a.is_ipv4(),
            IpAddr::V6(v6) => v6.is_unspecified(),
        }
}

fn human_kib(k: u64) -> String {
    if k >= 1024 * 1024 {
        format!("{:.1} GiB", k as f64 / (1024.0 * 1024.0))
    } else {
        format!("{} MiB", k / 1024)
    }
}

/// How many rows block bootstrap.
pub fn blocking(rows: &[Row]) -> usize {
    rows.iter().filter(|r| r.status == Status::Blocking).count()
}

/// The table, columns aligned: fact | wanted | found | ok? | how to fix.
pub fn table(rows: &[Row]) -> String {
    let head = ["fact", "wanted", "found", "ok?", "how to fix"];
    let cells: Vec<[String; 5]> = rows
        .iter()
        .map(|r| {
            [
                r.fact.clone(),
                r.wanted.clone(),
                r.found.clone(),
                match r.status {
                    Status::Ok => "ok",
                    Status::Blocking => "NO",
                    Status::Note => "note",
                }
                .to_string(),
                r.fix.clone(),
            ]
        })
        .collect();
    let mut width = head.map(|h| h.chars().count());
    for c in &cells {
        for i in 0..4 {
            width[i] = width[i].max(c[i].chars().count());
        }
    }
    let line = |c: [&str; 5]| {
        let mut s = String::new();
        for i in 0..4 {
            s.push_str(&format!("{:w$} | ", c[i], w = width[i]));
        }
        s.push_str(c[4]);
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(head);
    out.push_str(&line([
        &"-".repeat(width[0]),
        &"-".repeat(width[1]),
        &"-".repeat(width[2]),
        &"-".repeat(width[3]),
        "----------",
    ]));
    for c in &cells {
        out.push_str(&line([&c[0], &c[1], &c[2], &c[3], &c[4]]));
    }
    out
}

/// A file bootstrap makes hold exactly `content`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallFile {
    pub path: String,
    pub mode: u32,
    pub content: Vec<u8>,
}

/// What bootstrap makes true on a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Install {
    pub files: Vec<InstallFile>,
    /// Installed (the union of the base and the host's roles' `packages`), sorted.
    pub packages: Vec<String>,
    pub mask: Vec<String>,
}

/// Packages every relay host gets: tor with its GeoIP files (without them a sandboxed tor logs
/// a Bug line at every reload) and unattended-upgrades. apt-transport-https is not among them:
/// apt speaks https itself since Debian 10, and bootstrap requires 12.
pub const BASE_PACKAGES: &[&str] = &["tor", "tor-geoipdb", "unattended-upgrades"];

/// The install for `host`: `role_packages` are the `packages` of the host's roles, `keyring`
/// the bytes of `tor_keyring` (torproject only), `codename` and `arch` the host's.
pub fn install(
    fleet: &Fleet,
    role_packages: &[String],
    keyring: Option<&[u8]>,
    codename: &str,
    arch: &str,
) -> Install {
    let mut packages: Vec<String> = BASE_PACKAGES.iter().map(|s| s.to_string()).collect();
    packages.extend(role_packages.iter().cloned());
    packages.sort();
    packages.dedup();
    let mut files = vec![];
    let mut origins = vec![
        // Debian's own: security updates and point releases (tor's stable updates come so).
        "origin=Debian,codename=${distro_codename},label=Debian",
        "origin=Debian,codename=${distro_codename},label=Debian-Security",
        "origin=Debian,codename=${distro_codename}-security,label=Debian-Security",
    ];
    if let TorSource::TorProject { uri, .. } = &fleet.tor_source {
        files.push(InstallFile {
            path: KEYRING_PATH.into(),
            mode: 0o644,
            content: keyring.unwrap_or_default().to_vec(),
        });
        files.push(InstallFile {
            path: SOURCES_PATH.into(),
            mode: 0o644,
            content: format!(
                "# Written by oignon bootstrap (tor_source = \"torproject\" in the inventory's [fleet]).\n\
                 Types: deb\n\
                 URIs: {uri}\n\
                 Suites: {codename}\n\
                 Components: main\n\
                 Architectures: {arch}\n\
                 Signed-By: {KEYRING_PATH}\n"
            )
            .into_bytes(),
        });
        // deb.torproject.org's Release says `Origin: TorProject`.
        origins.push("origin=TorProject,codename=${distro_codename}");
    }
    let mut conf = String::from(
        "// Written by oignon bootstrap: every day, the package lists and unattended-upgrades,\n\
         // with the origins tor comes from, so that relays get tor's updates unattended.\n\
         APT::Periodic::Update-Package-Lists \"1\";\n\
         APT::Periodic::Unattended-Upgrade \"1\";\n\
         Unattended-Upgrade::Origins-Pattern {\n",
    );
    for o in origins {
        conf.push_str(&format!("        \"{o}\";\n"));
    }
    conf.push_str("};\n");
    files.push(InstallFile {
        path: UNATTENDED_PATH.into(),
        mode: 0o644,
        content: conf.into_bytes(),
    });
    Install {
        files,
        packages,
        mask: MASKED_UNITS.iter().map(|s| s.to_string()).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shipped fleet plus Aquilenet's `aquila` (two relays, IPv6), as `host add` writes it.
    fn fleet(extra_fleet: &str, boot: &str) -> Fleet {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("inventory");
        let mut files: Vec<(std::path::PathBuf, String)> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .map(|p| {
                let t = std::fs::read_to_string(&p).unwrap();
                (p, t)
            })
            .collect();
        files.sort();
        for (p, t) in files.iter_mut() {
            if p.ends_with("fleet.toml") {
                *t = t.replace("[defaults]", &format!("{extra_fleet}\n[defaults]"));
            }
        }
        files.push((
            dir.join("aquilenet.toml"),
            format!("[hoster]\nname = \"Aquilenet\"\ndomain = \"aquilenet.fr\"\n\n[[host]]\nname = \"aquila\"\nipv4 = \"192.0.2.50\"\nipv6 = \"2001:db8:50::1\"\nuplink = \"200 Mbit/s\"\n{boot}\n[[host.relay]]\nnickname = \"aquila1\"\norport = 443\n\n[[host.relay]]\nnickname = \"aquila2\"\norport = 9001\n"),
        ));
        let inv = crate::inventory::load_texts(files);
        assert!(
            inv.diagnostics.iter().all(|d| !d.is_error()),
            "{:?}",
            inv.diagnostics
        );
        inv.fleet.unwrap()
    }

    /// A host where everything holds (a VM with GRUB, synchronised, tor 0.4.9.11 installed).
    fn good() -> Facts {
        Facts {
            os_id: "debian".into(),
            version_id: "12".into(),
            codename: "bookworm".into(),
            arch: "amd64".into(),
            init: "systemd".into(),
            container: "none".into(),
            addresses: vec![
                "192.0.2.50".parse().unwrap(),
                "2001:db8:50::1".parse().unwrap(),
            ],
            route4: "default via 192.0.2.1 dev eth0".into(),
            route6: "default via 2001:db8:50::ffff dev eth0".into(),
            grub_cfg: true,
            grub_pkgs: vec!["grub-pc".into()],
            free_kib: vec![("/".into(), 5 << 20), ("/var".into(), 5 << 20)],
            ntp_synchronized: Some(true),
            ntp: Some(true),
            listening: vec![Listener {
                addr: "0.0.0.0".parse().unwrap(),
                port: 22,
                who: "ssh.service".into(),
            }],
            tor_path: Some("/usr/sbin/tor".into()),
            tor_version_line: Some("Tor version 0.4.9.11.".into()),
            tor_pkg: Some("0.4.9.11-0+deb12u1".into()),
            sources: vec![(
                "/etc/apt/sources.list".into(),
                "http://deb.debian.org/debian".into(),
                "bookworm".into(),
            )],
        }
    }

    fn check(f: &Facts, fleet: &Fleet) -> Vec<Row> {
        let host = fleet.hosts.iter().find(|h| h.name == "aquila").unwrap();
        rows(
            f,
            &Wanted {
                fleet,
                host,
                file: "inventory/aquilenet.toml".into(),
            },
        )
    }

    fn blocked(rows: &[Row]) -> Vec<(String, String, String)> {
        rows.iter()
            .filter(|r| r.status == Status::Blocking)
            .map(|r| (r.fact.clone(), r.found.clone(), r.fix.clone()))
            .collect()
    }

    #[test]
    fn a_host_where_everything_holds_blocks_nothing() {
        let fleet = fleet("", "");
        let rows = check(&good(), &fleet);
        assert_eq!(blocking(&rows), 0, "{}", table(&rows));
        // 2 release, 2 addresses, 2 routes, boot, 2 disks, clock, 6 ports, init, tor, apt.
        assert_eq!(rows.len(), 19, "{}", table(&rows));
    }

    #[test]
    fn each_broken_fact_blocks_with_its_fix() {
        let fleet = fleet("", "");
        type Breaker = fn(&mut Facts);
        let cases: Vec<(Breaker, &str, &str)> = vec![
            (
                |f| f.version_id = "11".into(),
                "Debian release",
                "install Debian 12",
            ),
            (
                |f| f.os_id = "ubuntu".into(),
                "Debian release",
                "install Debian 12",
            ),
            (
                |f| f.addresses.pop().map(drop).unwrap_or(()),
                "IPv6 2001:db8:50::1",
                "ip addr add 2001:db8:50::1/128",
            ),
            (
                |f| f.route4.clear(),
                "default route (IPv4)",
                "ip route add default",
            ),
            (
                |f| f.route6.clear(),
                "default route (IPv6)",
                "ip -6 route add default",
            ),
            (
                |f| f.grub_cfg = false,
                "boot loader",
                "set boot = \"none\" for host aquila in inventory/aquilenet.toml",
            ),
            (
                |f| f.free_kib[1].1 = 100 * 1024,
                "free disk on /var",
                "free space on /var",
            ),
            (
                |f| f.ntp_synchronized = Some(false),
                "clock synchronised",
                "systemd-timesyncd",
            ),
            (
                |f| {
                    f.listening.push(Listener {
                        addr: "0.0.0.0".parse().unwrap(),
                        port: 443,
                        who: "nginx.service".into(),
                    })
                },
                "ORPort aquila1 192.0.2.50:443",
                "ss -ltnp 'sport = :443'",
            ),
            (
                |f| {
                    f.listening.push(Listener {
                        addr: "2001:db8:50::1".parse().unwrap(),
                        port: 9001,
                        who: "-".into(),
                    })
                },
                "ORPort aquila2 [2001:db8:50::1]:9001",
                "another orport",
            ),
            (
                |f| {
                    f.listening.push(Listener {
                        addr: "127.0.0.1".parse().unwrap(),
                        port: 9036,
                        who: "prometheus.service".into(),
                    })
                },
                "MetricsPort aquila2 127.0.0.1:9036",
                "another metricsport",
            ),
            (|f| f.init = "init".into(), "init", "systemd-sysv"),
            (
                |f| f.tor_version_line = Some("Tor version 0.4.7.16.".into()),
                "tor",
                "tor_source = \"torproject\"",
            ),
            (
                |f| f.tor_pkg = Some("0.4.8.10-1~d12.bookworm+1".into()),
                "tor",
                "tor_source = \"torproject\"",
            ),
            (
                |f| f.tor_version_line = Some("garbage".into()),
                "tor",
                "tor_source",
            ),
            (
                |f| f.sources[0].2 = "bullseye".into(),
                "apt sources",
                "Debian mirror for bookworm",
            ),
        ];
        for (breaker, fact, fix) in cases {
            let mut f = good();
            breaker(&mut f);
            let b = blocked(&check(&f, &fleet));
            assert_eq!(b.len(), 1, "{fact}: {b:?}");
            assert_eq!(b[0].0, fact);
            assert!(b[0].2.contains(fix), "{fact}: {:?} lacks {fix:?}", b[0].2);
        }
    }

    #[test]
    fn a_wildcard_ipv6_listener_takes_both_families() {
        let fleet = fleet("", "");
        let mut f = good();
        f.listening.push(Listener {
            addr: "::".parse().unwrap(),
            port: 9001,
            who: "-".into(),
        });
        let b = blocked(&check(&f, &fleet));
        assert_eq!(b.len(), 2, "{b:?}");
        assert!(
            b[0].1.contains("a process outside the host's view"),
            "{b:?}"
        );
    }

    #[test]
    fn a_relays_own_port_and_a_containers_clock_do_not_block() {
        let fleet = fleet("", "");
        let mut f = good();
        f.listening.push(Listener {
            addr: "192.0.2.50".parse().unwrap(),
            port: 443,
            who: "tor@aquila1.service".into(),
        });
        f.container = "systemd-nspawn".into();
        f.ntp_synchronized = Some(false);
        let rows = check(&f, &fleet);
        assert_eq!(blocking(&rows), 0, "{}", table(&rows));
        let clock = rows
            .iter()
            .find(|r| r.fact == "clock synchronised")
            .unwrap();
        assert_eq!(clock.status, Status::Note);
        // Another relay's port is another matter.
        f.listening[1].who = "tor@aquila2.service".into();
        assert_eq!(blocking(&check(&f, &fleet)), 1);
    }

    #[test]
    fn no_tor_installed_is_fine_and_a_higher_minimum_refuses_debians() {
        let fleet1 = fleet("", "");
        let mut f = good();
        f.tor_path = None;
        f.tor_version_line = None;
        f.tor_pkg = None;
        let rows = check(&f, &fleet1);
        assert_eq!(blocking(&rows), 0);
        let strict = fleet("min_tor_version = \"0.4.9.12\"", "");
        let b = blocked(&check(&good(), &strict));
        assert_eq!(b[0].0, "tor");
        assert!(b[0].1.contains("0.4.9.11"), "{b:?}");
    }

    #[test]
    fn boot_none_with_grub_present_is_a_note() {
        let fleet = fleet("", "boot = \"none\"");
        let mut f = good();
        let r = check(&f, &fleet);
        let boot = r.iter().find(|r| r.fact == "boot loader").unwrap();
        assert_eq!(boot.status, Status::Note);
        f.grub_cfg = false;
        f.grub_pkgs.clear();
        assert_eq!(blocking(&check(&f, &fleet)), 0);
    }

    #[test]
    fn torproject_wants_its_architectures_and_says_it_writes_the_source() {
        let keyring = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
        let fleet = fleet(
            &format!(
                "tor_source = \"torproject\"\ntor_keyring = {:?}\n",
                keyring.display().to_string()
            ),
            "",
        );
        let mut f = good();
        let rows = check(&f, &fleet);
        assert_eq!(blocking(&rows), 0, "{}", table(&rows));
        let apt = rows.iter().find(|r| r.fact == "apt sources").unwrap();
        assert_eq!(apt.found, "not yet: bootstrap writes it");
        f.arch = "riscv64".into();
        assert_eq!(blocked(&check(&f, &fleet))[0].0, "architecture");
    }

    #[test]
    fn the_install_for_torproject_is_the_deb822_source_the_keyring_and_the_origins() {
        let fleet = fleet(
            "tor_source = \"torproject\"\ntor_keyring = \"../Cargo.toml\"\ntor_repository = \"file:/srv/torproject-repo\"\n",
            "",
        );
        let i = install(
            &fleet,
            &["nftables".into(), "tor".into()],
            Some(b"KEY"),
            "bookworm",
            "amd64",
        );
        assert_eq!(
            i.packages,
            vec!["nftables", "tor", "tor-geoipdb", "unattended-upgrades"]
        );
        assert_eq!(i.mask, vec!["tor.service", "tor@default.service"]);
        assert_eq!(i.files[0].path, KEYRING_PATH);
        assert_eq!(i.files[0].content, b"KEY");
        assert_eq!(
            String::from_utf8(i.files[1].content.clone()).unwrap(),
            "# Written by oignon bootstrap (tor_source = \"torproject\" in the inventory's [fleet]).\nTypes: deb\nURIs: file:/srv/torproject-repo\nSuites: bookworm\nComponents: main\nArchitectures: amd64\nSigned-By: /etc/apt/keyrings/oignon-torproject.gpg\n"
        );
        let conf = String::from_utf8(i.files[2].content.clone()).unwrap();
        assert!(
            conf.contains("\"origin=TorProject,codename=${distro_codename}\";"),
            "{conf}"
        );
        let debian = install(
            &crate::inventory::load(
                &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("inventory"),
            )
            .fleet
            .unwrap(),
            &[],
            None,
            "bookworm",
            "amd64",
        );
        assert_eq!(debian.files.len(), 1);
        assert!(!String::from_utf8(debian.files[0].content.clone())
            .unwrap()
            .contains("TorProject"));
    }

    #[test]
    fn bad_bootstrap_settings_in_fleet_are_errors_at_their_key() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("inventory");
        let fleet_toml = std::fs::read_to_string(dir.join("fleet.toml")).unwrap();
        for (extra, want) in [
            ("tor_source = \"tails\"", "unknown tor_source `tails`"),
            ("tor_source = \"torproject\"", "tor_source = \"torproject\" needs tor_keyring"),
            ("tor_source = \"torproject\"\ntor_keyring = \"missing.gpg\"", "is not a file"),
            ("tor_keyring = \"fleet.toml\"", "tor_keyring is set but tor_source is not"),
            ("tor_source = \"torproject\"\ntor_keyring = \"fleet.toml\"\ntor_repository = \"ftp://x y\"", "is not a repository URI"),
            ("min_tor_version = \"0.4.8\"", "older than the 0.4.9 series"),
            ("min_tor_version = \"0.4.9-dev\"", "is not a tor version"),
        ] {
            let text = fleet_toml.replace("[defaults]", &format!("{extra}\n[defaults]"));
            let inv = crate::inventory::load_texts(vec![(dir.join("fleet.toml"), text)]);
            let all: Vec<String> = inv.diagnostics.iter().map(|d| d.to_string()).collect();
            assert!(all.iter().any(|d| d.contains(want) && d.contains("fleet.toml:")), "{extra}: {all:?}");
        }
    }

    #[test]
    fn versions_parse_from_what_tor_and_dpkg_print() {
        let v = |s| tor_version(s).map(|v| v.to_string());
        assert_eq!(v("Tor version 0.4.9.11."), Some("0.4.9.11".into()));
        assert_eq!(v("0.4.9.11-0+deb12u1"), Some("0.4.9.11".into()));
        assert_eq!(v("0.4.8.10-1~d12.bookworm+1"), Some("0.4.8.10".into()));
        assert_eq!(v("1:0.4.9.12-1"), Some("0.4.9.12".into()));
        assert_eq!(v("0.4.9"), Some("0.4.9".into()));
        assert_eq!(v("garbage"), None);
        assert!(tor_version("0.4.9.11").unwrap() >= crate::inventory::DEFAULT_MIN_TOR_VERSION);
        assert!(tor_version("0.4.8.99").unwrap() < crate::inventory::DEFAULT_MIN_TOR_VERSION);
    }
}
