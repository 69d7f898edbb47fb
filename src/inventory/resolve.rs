//! The resolver: inventory files in, a validated [`Fleet`] out. Applies inheritance (fleet →
//! hoster → host → relay) and checks everything tor would refuse or an operator would regret,
//! collecting every finding with its location.

use super::ciiss;
use super::file::{self, DosSetting, InventoryFile, Settings};
use super::source::{Seg, SourceFile};
use super::text::shown as q;
use super::{
    bandwidth, locate, Boot, DosDefense, DosFirewall, Fleet, HostSpec, Origin, RelaySpec,
    DEFAULT_KERNEL_PARAMS, DEFAULT_ROLES,
};
use crate::diagnostic::{suggest, Diagnostic};
use crate::exit_policy;
use crate::path;
use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, Ipv6Addr};

pub(super) struct Resolver<'a> {
    pub(super) sources: &'a [SourceFile],
    pub(super) diags: Vec<Diagnostic>,
}

/// A settings layer and where it was written.
type Layer<'a> = (&'a Settings, Origin);

/// One `dos_firewall` key: its name, how to read it, its bounds and the help of an error.
type DosFirewallKey = (
    &'static str,
    fn(&file::DosFirewallSetting) -> Option<u32>,
    u32,
    u32,
    &'static str,
);

/// What a host gives each of its relays: the layers they inherit, the host's addresses (the
/// default of each relay's), and the uplink the relays share.
#[derive(Clone, Copy)]
struct HostCx<'a> {
    host: &'a file::Host,
    layers: &'a [Layer<'a>],
    ipv4: Ipv4Addr,
    ipv6: Option<Ipv6Addr>,
    uplink_bits: u64,
    n_relays: f64,
}

/// Names already taken across the inventory, with where each was first defined.
#[derive(Default)]
struct Seen {
    /// Hoster names, lowercased.
    hosters: HashMap<String, Origin>,
    hosts: HashMap<String, Origin>,
    /// Relay nicknames (tor compares them without case) → (host, where).
    nicknames: HashMap<String, (String, Origin)>,
}

impl Resolver<'_> {
    fn err(&mut self, origin: &Origin, field: &str, msg: String, help: impl Into<String>) {
        let d = Diagnostic::error(msg).field(field).help(help);
        self.diags.push(locate(self.sources, d, origin, false));
    }

    /// An error at a key of one source file (most findings are "this key, in this file").
    fn err_at(
        &mut self,
        source: usize,
        path: Vec<Seg>,
        field: &str,
        msg: String,
        help: impl Into<String>,
    ) {
        self.err(&Origin { source, path }, field, msg, help);
    }

    pub(super) fn resolve(&mut self, files: &[(usize, InventoryFile)]) -> Option<Fleet> {
        let (fleet_meta, fleet_defaults) = self.fleet_tables(files);
        let Some((meta, meta_src)) = fleet_meta else {
            self.diags.push(
                Diagnostic::error("no [fleet] table in the inventory")
                    .help("add fleet.toml with [fleet] operator, email and url (see README.md)"),
            );
            return None;
        };
        self.check_contact(meta, meta_src);
        let (tor_source, min_tor_version) = self.bootstrap_settings(meta, meta_src);
        let mut hosts = vec![];
        let mut seen = Seen::default();
        for (src, f) in files {
            self.hoster_file(*src, f, meta, &fleet_defaults, &mut seen, &mut hosts);
        }
        Some(Fleet {
            operator: meta.operator.clone(),
            email: meta.email.clone(),
            url: meta.url.clone(),
            proof: meta.proof.clone().unwrap_or_else(|| "uri-rsa".into()),
            manage_identities: meta.manage_identities.unwrap_or(true),
            hosts,
            tor_source,
            min_tor_version,
        })
    }

    /// The one `[fleet]` table and the one fleet-wide `[defaults]` (a second of either, or
    /// `[defaults]` in a hoster's file, is an error).
    fn fleet_tables<'f>(
        &mut self,
        files: &'f [(usize, InventoryFile)],
    ) -> (Option<(&'f file::FleetMeta, usize)>, Option<Layer<'f>>) {
        let mut fleet_meta = None;
        let mut fleet_defaults: Option<Layer> = None;
        for (src, f) in files {
            if let Some(meta) = &f.fleet {
                if fleet_meta.is_some() {
                    self.err_at(
                        *src,
                        path!["fleet"],
                        "fleet",
                        "a second [fleet] table".into(),
                        "keep one [fleet] table, in fleet.toml",
                    );
                } else {
                    fleet_meta = Some((meta, *src));
                }
            }
            if let Some(d) = &f.defaults {
                if f.hoster.is_some() {
                    self.err_at(
                        *src,
                        path!["defaults"],
                        "defaults",
                        "[defaults] in a hoster's file would apply to the whole fleet".into(),
                        "move it to fleet.toml, or write [hoster.defaults] for this hoster only",
                    );
                } else if fleet_defaults.is_some() {
                    self.err_at(
                        *src,
                        path!["defaults"],
                        "defaults",
                        "a second fleet-wide [defaults] table".into(),
                        "keep one, in fleet.toml",
                    );
                } else {
                    fleet_defaults = Some((
                        d,
                        Origin {
                            source: *src,
                            path: path!["defaults"],
                        },
                    ));
                }
            }
        }
        (fleet_meta, fleet_defaults)
    }

    /// One hoster's file: its `[hoster]` table checked, then each `[[host]]` resolved with the
    /// layers fleet → hoster → host, into `hosts`.
    fn hoster_file(
        &mut self,
        src: usize,
        f: &InventoryFile,
        meta: &file::FleetMeta,
        fleet_defaults: &Option<Layer>,
        seen: &mut Seen,
        hosts: &mut Vec<HostSpec>,
    ) {
        let Some(hoster) = &f.hoster else {
            if !f.host.is_empty() {
                self.err_at(src, path!["host", 0], "host", "hosts must be listed in their hoster's file".into(),
                    "add a [hoster] table (name, domain) to this file, or move the hosts to their hoster's file");
            }
            return;
        };
        let hoster_origin = Origin {
            source: src,
            path: path!["hoster", "name"],
        };
        if let Some(prev) = seen
            .hosters
            .insert(hoster.name.to_lowercase(), hoster_origin.clone())
        {
            let where_ = self.where_(&prev);
            self.err(
                &hoster_origin,
                "hoster.name",
                format!("hoster {} is defined twice", q(&hoster.name)),
                format!("it is already defined at {where_}; keep one file per hoster"),
            );
        }
        if let Err(why) = ciiss::dns_name(&hoster.domain) {
            self.err_at(
                src,
                path!["hoster", "domain"],
                "hoster.domain",
                format!("hoster domain {} {why}", q(&hoster.domain)),
                "write the hoster's domain as CIISS `hoster:` wants it, e.g. `gandi.net`",
            );
        }
        let hoster_layer = hoster.defaults.as_ref().map(|d| {
            (
                d,
                Origin {
                    source: src,
                    path: path!["hoster", "defaults"],
                },
            )
        });
        for (hi, h) in f.host.iter().enumerate() {
            let name_origin = Origin {
                source: src,
                path: path!["host", hi, "name"],
            };
            if !valid_hostname(&h.name) {
                self.err(
                    &name_origin,
                    "host.name",
                    format!("host name {} is not a valid host name", q(&h.name)),
                    "use lowercase letters, digits and '-' (it names directories and SSH aliases)",
                );
            }
            if let Some(prev) = seen.hosts.insert(h.name.clone(), name_origin.clone()) {
                let where_ = self.where_(&prev);
                self.err(
                    &name_origin,
                    "host.name",
                    format!("host {} is defined twice", q(&h.name)),
                    format!("it is already defined at {where_}"),
                );
            }
            let mut layers: Vec<Layer> = vec![];
            layers.extend(fleet_defaults.clone());
            layers.extend(hoster_layer.clone());
            if let Some(d) = &h.defaults {
                layers.push((
                    d,
                    Origin {
                        source: src,
                        path: path!["host", hi, "defaults"],
                    },
                ));
            }
            let origin = Origin {
                source: src,
                path: path!["host", hi],
            };
            if let Some(host) =
                self.host(&meta.email, hoster, h, origin, &layers, &mut seen.nicknames)
            {
                hosts.push(host);
            }
        }
    }

    /// `[fleet]`'s `tor_source`, `tor_keyring` and `min_tor_version` (what `bootstrap` installs).
    /// The keyring's path is relative to the inventory directory, the directory of `src`'s file.
    fn bootstrap_settings(
        &mut self,
        meta: &file::FleetMeta,
        src: usize,
    ) -> (super::TorSource, super::TorVersion) {
        use super::{TorSource, TorVersion, DEFAULT_MIN_TOR_VERSION};
        let at = |k: &str| Origin {
            source: src,
            path: path!["fleet", k],
        };
        let min = match &meta.min_tor_version {
            None => DEFAULT_MIN_TOR_VERSION,
            // Digits and dots only: `0.4.9-dev` is what a binary prints, not a minimum to write.
            Some(v) => match TorVersion::parse(v)
                .filter(|_| v.trim().chars().all(|c| c.is_ascii_digit() || c == '.'))
            {
                Some(t) if t < DEFAULT_MIN_TOR_VERSION => {
                    self.err(
                        &at("min_tor_version"),
                        "fleet.min_tor_version",
                        format!("min_tor_version {} is older than the 0.4.9 series, which the directory authorities reject", q(v)),
                        "write \"0.4.9\" or later (or remove the key: the default is the 0.4.9 series)",
                    );
                    DEFAULT_MIN_TOR_VERSION
                }
                Some(t) => t,
                None => {
                    self.err(
                        &at("min_tor_version"),
                        "fleet.min_tor_version",
                        format!("min_tor_version {} is not a tor version", q(v)),
                        "write a version such as \"0.4.9\" or \"0.4.9.12\"",
                    );
                    DEFAULT_MIN_TOR_VERSION
                }
            },
        };
        let keyring = meta.tor_keyring.as_ref().map(|k| {
            let dir = self
                .sources
                .get(src)
                .and_then(|s| s.path.parent().map(|p| p.to_path_buf()))
                .unwrap_or_default();
            dir.join(k)
        });
        let source = match (meta.tor_source.as_deref(), keyring) {
            (None | Some("debian"), None) => {
                if meta.tor_repository.is_some() {
                    self.err(
                        &at("tor_repository"),
                        "fleet.tor_repository",
                        "tor_repository is set but tor_source is not \"torproject\"".into(),
                        "set tor_source = \"torproject\" (with tor_keyring), or remove tor_repository",
                    );
                }
                TorSource::Debian
            }
            (None | Some("debian"), Some(_)) => {
                self.err(
                    &at("tor_keyring"),
                    "fleet.tor_keyring",
                    "tor_keyring is set but tor_source is not \"torproject\"".into(),
                    "set tor_source = \"torproject\" to install tor from deb.torproject.org, or remove tor_keyring",
                );
                TorSource::Debian
            }
            (Some("torproject"), Some(keyring)) => {
                let uri = meta
                    .tor_repository
                    .clone()
                    .unwrap_or_else(|| super::TORPROJECT_REPOSITORY.to_string());
                let scheme_ok = [
                    "https://",
                    "http://",
                    "tor+https://",
                    "tor+http://",
                    "file:/",
                ]
                .iter()
                .any(|s| uri.starts_with(s));
                if !scheme_ok || uri.chars().any(|c| c.is_whitespace() || c.is_control()) {
                    self.err(
                        &at("tor_repository"),
                        "fleet.tor_repository",
                        format!("tor_repository {} is not a repository URI apt can take", q(&uri)),
                        "write an https://, http://, tor+http:// or file:/ URI without spaces (default: https://deb.torproject.org/torproject.org)",
                    );
                }
                if !keyring.is_file() {
                    self.err(
                        &at("tor_keyring"),
                        "fleet.tor_keyring",
                        format!("tor_keyring {} is not a file", q(&keyring.display().to_string())),
                        "put the Tor Project's archive keyring (binary OpenPGP, as in deb.torproject.org-keyring) there; the path is relative to the inventory directory",
                    );
                }
                TorSource::TorProject { keyring, uri }
            }
            (Some("torproject"), None) => {
                self.err(
                    &at("tor_source"),
                    "fleet.tor_source",
                    "tor_source = \"torproject\" needs tor_keyring".into(),
                    "add tor_keyring = \"PATH\" (the Tor Project's archive keyring, relative to the inventory directory; see README.md, \"Onboard a new hoster\")",
                );
                TorSource::Debian
            }
            (Some(other), _) => {
                self.err(
                    &at("tor_source"),
                    "fleet.tor_source",
                    format!("unknown tor_source {}", q(other)),
                    "use \"debian\" (the release's package) or \"torproject\" (deb.torproject.org)",
                );
                TorSource::Debian
            }
        };
        (source, min)
    }

    /// The `[fleet]` fields that go into every relay's ContactInfo, by their CIISS grammar.
    fn check_contact(&mut self, meta: &file::FleetMeta, src: usize) {
        let at = |k: &str| Origin {
            source: src,
            path: path!["fleet", k],
        };
        if let Err(why) = ciiss::email(&meta.email) {
            self.err(
                &at("email"),
                "fleet.email",
                format!("email {} cannot go into ContactInfo: {why}", q(&meta.email)),
                "write the abuse address as `abuse@example.org` (ContactInfo shows it as `abuse[]example.org`)",
            );
        }
        if let Err(why) = ciiss::url(&meta.url) {
            self.err(
                &at("url"),
                "fleet.url",
                format!("url {} cannot go into ContactInfo: {why}", q(&meta.url)),
                "write the operator's website, e.g. `https://example.org` (CIISS `url:`)",
            );
        }
        if let Some(p) = &meta.proof {
            if let Err(why) = ciiss::proof(p) {
                self.err(
                    &at("proof"),
                    "fleet.proof",
                    format!("proof {} is not a CIISS proof: {why}", q(p)),
                    "use `uri-rsa` (fingerprints at https://URL/.well-known/tor-relay/rsa-fingerprint.txt) or `dns-rsa`",
                );
            }
        }
    }

    fn where_(&self, o: &Origin) -> String {
        let d = locate(self.sources, Diagnostic::error(""), o, true);
        match &d.file {
            Some(f) => format!("{}:{}", f.display(), d.line),
            None => "another file".into(),
        }
    }

    fn host(
        &mut self,
        _email: &str,
        hoster: &file::Hoster,
        h: &file::Host,
        origin: Origin,
        layers: &[Layer],
        nicknames: &mut HashMap<String, (String, Origin)>,
    ) -> Option<HostSpec> {
        let at = |leaf: &str| child(&origin, leaf);
        let mut ok = true;
        let ipv4 = match h.ipv4.parse::<Ipv4Addr>() {
            Ok(a) => Some(a),
            Err(_) => {
                self.err(
                    &at("ipv4"),
                    "host.ipv4",
                    format!("{} is not an IPv4 address", q(&h.ipv4)),
                    "write a dotted address such as 192.0.2.10",
                );
                None
            }
        };
        let ipv6 = match &h.ipv6 {
            None => None,
            Some(s) => match s.parse::<Ipv6Addr>() {
                Ok(a) => Some(a),
                Err(_) => {
                    self.err(
                        &at("ipv6"),
                        "host.ipv6",
                        format!("{} is not an IPv6 address", q(s)),
                        "write it without brackets, such as 2001:db8::10",
                    );
                    ok = false;
                    None
                }
            },
        };
        let uplink_bits = match bandwidth::parse_bits(&h.uplink) {
            Ok(b) => b,
            Err(e) => {
                self.err(
                    &at("uplink"),
                    "host.uplink",
                    format!("bad uplink: {e}"),
                    "write the hoster's figure, e.g. \"100 Mbit/s\"",
                );
                ok = false;
                0
            }
        };
        let boot = match h.boot.as_deref() {
            None | Some("grub") => Boot::Grub,
            Some("none") => Boot::None,
            Some(other) => {
                self.err(
                    &at("boot"),
                    "host.boot",
                    format!("unknown boot loader {}", q(other)),
                    "use \"grub\" (kernel command line managed) or \"none\"",
                );
                Boot::Grub
            }
        };
        ok &= self.ssh_access(h, &at);
        let (roles, roles_origin) = match last(layers, |s| s.roles.clone()) {
            Some((v, mut o)) => {
                o.path.push(Seg::Key("roles".into()));
                (v, Some(o))
            }
            None => (DEFAULT_ROLES.iter().map(|s| s.to_string()).collect(), None),
        };
        let kernel_params = self.kernel_params(layers);
        let sysctl = self.sysctl(layers);
        let ipv4 = ipv4?;
        let n = h.relay.len().max(1) as f64;
        let mut relays = vec![];
        let mut ports: HashMap<(String, u16), (String, Origin)> = HashMap::new();
        for (ri, r) in h.relay.iter().enumerate() {
            let mut rp = origin.path.clone();
            rp.extend(path!["relay", ri]);
            let ro = Origin {
                source: origin.source,
                path: rp,
            };
            let cx = HostCx {
                host: h,
                layers,
                ipv4,
                ipv6,
                uplink_bits,
                n_relays: n,
            };
            if let Some(relay) = self.relay(&cx, ri, r, ro, nicknames, &mut ports) {
                relays.push(relay);
            }
        }
        if !ok {
            return None;
        }
        Some(HostSpec {
            name: h.name.clone(),
            hoster: hoster.name.clone(),
            hoster_domain: hoster.domain.clone(),
            ssh: h.ssh.clone().unwrap_or_else(|| h.name.clone()),
            host_key: h.host_key.clone(),
            ipv4,
            ipv6,
            uplink_bits,
            boot,
            roles,
            roles_origin,
            kernel_params,
            sysctl,
            relays,
            origin,
        })
    }

    /// The ssh destination and pinned host key of a host: whether the destination is safe to hand
    /// to ssh (a bad host key is reported but does not stop the host from resolving).
    fn ssh_access(&mut self, h: &file::Host, at: &dyn Fn(&str) -> Origin) -> bool {
        let mut ok = true;
        if let Some(d) = &h.ssh {
            // ssh reads a leading `-` as an option (`-oProxyCommand=…` runs a command).
            if d.is_empty() || d.starts_with('-') || d.chars().any(char::is_whitespace) {
                self.err(
                &at("ssh"),
                "host.ssh",
                format!("ssh destination {} is not a destination ssh can take safely", q(d)),
                "write `host`, `user@host` or `ssh://user@host:port`: not empty, no leading `-`, no spaces",
            );
                ok = false;
            }
        }
        if let Some(k) = &h.host_key {
            let parts: Vec<&str> = k.split_whitespace().collect();
            if parts.len() < 2 || !parts[0].starts_with("ssh-") && !parts[0].starts_with("ecdsa-") {
                self.err(&at("host_key"), "host.host_key", "host_key is not an SSH public key".into(),
                "paste the host's key as `ssh-ed25519 AAAA…` (from /etc/ssh/ssh_host_ed25519_key.pub)");
            }
        }
        ok
    }

    /// The kernel command line: the last layer's list (or the defaults), each parameter checked
    /// for what a command line cannot hold, minus every layer's `kernel_params_remove`.
    fn kernel_params(&mut self, layers: &[Layer]) -> Vec<String> {
        let mut kernel_params = last(layers, |s| s.kernel_params.clone())
            .map(|(v, _)| v)
            .unwrap_or_else(|| {
                DEFAULT_KERNEL_PARAMS
                    .iter()
                    .map(|s| s.to_string())
                    .collect()
            });
        for (s, o) in layers {
            for (i, p) in s.kernel_params.iter().flatten().enumerate() {
                if p.is_empty()
                    || p.chars()
                        .any(|c| c.is_whitespace() || "\"'`$\\".contains(c))
                {
                    let mut o = o.clone();
                    o.path.extend(path!["kernel_params", i]);
                    self.err(
                        &o,
                        "kernel_params",
                        format!("kernel parameter {} cannot be put on a command line", q(p)),
                        "one parameter per string, without spaces, quotes, `$` or backslashes",
                    );
                }
            }
        }
        let removes: Vec<String> = layers
            .iter()
            .flat_map(|(s, _)| s.kernel_params_remove.clone().unwrap_or_default())
            .collect();
        kernel_params.retain(|p| {
            let key = p.split('=').next().unwrap_or(p);
            !removes.iter().any(|r| r == p || r == key)
        });
        kernel_params
    }

    /// The sysctl settings: the defaults, then each layer's settings (checked) and removals.
    fn sysctl(&mut self, layers: &[Layer]) -> BTreeMap<String, String> {
        let mut sysctl = default_sysctl();
        for (s, o) in layers {
            for (k, v) in s.sysctl.iter().flatten() {
                let v = v.to_string();
                if !valid_sysctl_key(k) || v.contains('\n') || v.trim().is_empty() {
                    let mut o = o.clone();
                    o.path.extend(path!["sysctl", k.as_str()]);
                    self.err(
                        &o,
                        "sysctl",
                        format!("sysctl {} is not a valid setting", q(&format!("{k} = {v}"))),
                        "keys are dotted names like kernel.kptr_restrict, values a single line",
                    );
                }
                sysctl.insert(k.clone(), v);
            }
            // A kernel without a feature (e.g. no Yama LSM) has no key for it: drop it by name.
            for k in s.sysctl_remove.iter().flatten() {
                sysctl.remove(k);
            }
        }
        sysctl
    }

    /// A relay's RelayBandwidthRate and Burst in bytes/s: an explicit rate wins, else its share of
    /// the host's uplink; the burst from bandwidth_burst or the burst factor. Clears `ok` on an
    /// error (the values returned are then stand-ins that let the other checks go on).
    fn bandwidth(
        &mut self,
        r: &file::Relay,
        at: &dyn Fn(&str) -> Origin,
        layers: &[Layer],
        uplink_bits: u64,
        n_relays: f64,
        ok: &mut bool,
    ) -> (u64, u64) {
        // Bandwidth: an explicit rate wins; else the instance's share of the uplink.
        let share_o = at("bandwidth_share");
        let share = match r.bandwidth_share {
            Some(s) if !(s > 0.0 && s <= 1.0) => {
                self.err(
                    &share_o,
                    "relay.bandwidth_share",
                    format!("bandwidth_share {s} is not in (0, 1]"),
                    "it is the fraction of the host's uplink for this instance, e.g. 0.5",
                );
                *ok = false;
                1.0 / n_relays
            }
            Some(s) => s,
            None => 1.0 / n_relays,
        };
        let share_bits = (uplink_bits as f64 * share) as u64;
        // A bad value is reported and stands in as the default, so the other checks go on.
        let bytes =
            |this: &mut Self, ok: &mut bool, key: &str, text: &str, example: &str, dflt: u64| {
                bandwidth::parse_bits(text).map_or_else(
                    |e| {
                        let field = format!("relay.{key}");
                        this.err(&at(key), &field, format!("bad {key}: {e}"), example);
                        *ok = false;
                        dflt
                    },
                    |b| b / 8,
                )
            };
        let rate = match &r.bandwidth_rate {
            Some(s) => bytes(
                self,
                ok,
                "bandwidth_rate",
                s,
                "e.g. \"40 Mbit/s\"",
                share_bits / 8,
            ),
            None => share_bits / 8,
        };
        let factor = last(layers, |s| s.burst_factor);
        if let Some((f, fo)) = &factor {
            if !(*f >= 1.0 && *f <= 100.0) {
                let mut fo = fo.clone();
                fo.path.push(Seg::Key("burst_factor".into()));
                self.err(&fo, "burst_factor", format!("burst_factor {f} is below 1 (RelayBandwidthBurst must be ≥ RelayBandwidthRate)"),
                    "use a factor from 1.0 to 100");
                *ok = false;
            }
        }
        let burst = match &r.bandwidth_burst {
            Some(s) => bytes(self, ok, "bandwidth_burst", s, "e.g. \"50 Mbit/s\"", rate),
            None => (rate as f64 * factor.map_or(1.0, |(f, _)| f.max(1.0))) as u64,
        };
        let rate_o = if r.bandwidth_rate.is_some() {
            at("bandwidth_rate")
        } else {
            share_o
        };
        if bandwidth::tor_kbytes(rate) * 1024 < bandwidth::MIN_RELAY_BYTES {
            self.err(
                &rate_o,
                "relay.bandwidth",
                format!(
                    "`{}` would get {} KBytes/s, below tor's minimum of 75 KBytes/s",
                    r.nickname,
                    bandwidth::tor_kbytes(rate)
                ),
                "raise the host's uplink or this instance's share",
            );
            *ok = false;
        }
        if burst < rate {
            self.err(&at("bandwidth_burst"), "relay.bandwidth_burst", format!(
                "burst ({} KBytes/s) is below the rate ({} KBytes/s); tor requires RelayBandwidthBurst ≥ RelayBandwidthRate",
                bandwidth::tor_kbytes(burst), bandwidth::tor_kbytes(rate)),
                "raise bandwidth_burst or remove it (it then equals the rate)");
            *ok = false;
        }
        (rate, burst)
    }

    /// The relay's nickname (tor's rules, unique fleet-wide in any case) and its ORPort. Clears
    /// `ok` on an error.
    fn name_and_orport(
        &mut self,
        r: &file::Relay,
        at: &dyn Fn(&str) -> Origin,
        nicknames: &mut HashMap<String, (String, Origin)>,
        ok: &mut bool,
    ) {
        let nick_o = at("nickname");
        if let Err(e) = check_nickname(&r.nickname) {
            self.err(
                &nick_o,
                "relay.nickname",
                format!("nickname {} {e}", q(&r.nickname)),
                "tor accepts 1 to 19 letters and digits, e.g. `marcuse1`",
            );
            *ok = false;
        } else if let Some((prev, prev_o)) = nicknames.insert(
            r.nickname.to_lowercase(),
            (r.nickname.clone(), nick_o.clone()),
        ) {
            let where_ = self.where_(&prev_o);
            self.err(&nick_o, "relay.nickname",
                format!("nickname `{}` is already used by `{prev}` (nicknames are unique fleet-wide, case-insensitively)", r.nickname),
                format!("the other one is at {where_}; pick another nickname"));
            *ok = false;
        }
        if r.orport == 0 {
            self.err(
                &at("orport"),
                "relay.orport",
                "ORPort 0 disables the relay".into(),
                "use a port such as 443 or 9001",
            );
            *ok = false;
        }
    }

    /// The relay's addresses: its own, else the host's. Clears `ok` on an error (the host's
    /// address then stands in, so the port checks go on).
    fn addresses(
        &mut self,
        r: &file::Relay,
        at: &dyn Fn(&str) -> Origin,
        host_v4: Ipv4Addr,
        host_v6: Option<Ipv6Addr>,
        ok: &mut bool,
    ) -> (Ipv4Addr, Option<Ipv6Addr>) {
        let ipv4 = match &r.ipv4 {
            None => host_v4,
            Some(s) => match s.parse() {
                Ok(a) => a,
                Err(_) => {
                    self.err(
                        &at("ipv4"),
                        "relay.ipv4",
                        format!("{} is not an IPv4 address", q(s)),
                        "write a dotted address such as 192.0.2.11",
                    );
                    *ok = false;
                    host_v4
                }
            },
        };
        let ipv6 = match &r.ipv6 {
            None => host_v6,
            Some(s) => match s.parse() {
                Ok(a) => Some(a),
                Err(_) => {
                    self.err(
                        &at("ipv6"),
                        "relay.ipv6",
                        format!("{} is not an IPv6 address", q(s)),
                        "write it without brackets, such as 2001:db8::11",
                    );
                    *ok = false;
                    host_v6
                }
            },
        };
        (ipv4, ipv6)
    }

    /// Claims the relay's ORPort (on each address) and MetricsPort against the host's other
    /// instances: one finding per clash. Clears `ok` on a clash.
    fn claim_ports(
        &mut self,
        r: &file::Relay,
        at: &dyn Fn(&str) -> Origin,
        h: &file::Host,
        (ipv4, ipv6, metrics_port): (Ipv4Addr, Option<Ipv6Addr>, Option<u16>),
        ports: &mut HashMap<(String, u16), (String, Origin)>,
        ok: &mut bool,
    ) {
        let mut claims = vec![(
            ipv4.to_string(),
            r.orport,
            "ORPort".to_string(),
            at("orport"),
        )];
        if let Some(v6) = ipv6 {
            claims.push((format!("[{v6}]"), r.orport, "ORPort".into(), at("orport")));
        }
        if let Some(p) = metrics_port {
            claims.push((
                "127.0.0.1".into(),
                p,
                "MetricsPort".into(),
                at("metrics_port"),
            ));
        }
        let mut clashed: Vec<String> = vec![];
        for (addr, port, what, o) in claims {
            let who = format!("{what} of `{}`", r.nickname);
            if let Some((prev, _)) = ports.get(&(addr.clone(), port)) {
                // One finding per clash, not one per address family of the same port.
                if !clashed.contains(&what) {
                    self.err(
                        &o,
                        "relay.orport",
                        format!("{addr}:{port} is already the {prev} on host `{}`", h.name),
                        "give each instance its own port (or its own address)",
                    );
                    clashed.push(what);
                }
                *ok = false;
            } else {
                ports.insert((addr, port), (who, o));
            }
        }
    }

    /// The relay's exit policy: every level's prepended rules, then the named policy. Returns
    /// the policy's name and its rules; clears `ok` on a rule or name that is wrong.
    fn exit_policy(
        &mut self,
        r: &file::Relay,
        origin: &Origin,
        layers: &[Layer],
        ok: &mut bool,
    ) -> (String, Vec<exit_policy::Rule>) {
        let (policy_name, policy_o) = last(layers, |s| s.exit_policy.clone())
            .unwrap_or_else(|| ("reduced".into(), origin.clone()));
        let mut rules = vec![];
        for (s, o) in layers {
            for (i, text) in s.exit_policy_prepend.iter().flatten().enumerate() {
                let mut p = o.path.clone();
                p.extend(path!["exit_policy_prepend", i]);
                let ro = Origin {
                    source: o.source,
                    path: p,
                };
                match exit_policy::parse_rule(text) {
                    Ok((rule, warnings)) => {
                        for w in warnings {
                            self.policy_finding(
                                Diagnostic::warning(w.message),
                                w.help,
                                &ro,
                                w.offset,
                                w.len,
                            );
                        }
                        rules.push(rule);
                    }
                    Err(e) => {
                        self.policy_finding(
                            Diagnostic::error(format!(
                                "exit policy rule {}: {}",
                                q(text),
                                e.message
                            )),
                            e.help,
                            &ro,
                            e.offset,
                            e.len,
                        );
                        *ok = false;
                    }
                }
            }
        }
        match exit_policy::named(&policy_name) {
            Some(named) => rules.extend(named),
            None => {
                let mut po = policy_o.clone();
                if po.path != origin.path || r.exit_policy.is_some() {
                    po.path.push(Seg::Key("exit_policy".into()));
                }
                let help = match suggest(&policy_name, exit_policy::NAMED.iter().copied()) {
                    Some(s) => format!(
                        "did you mean `{s}`? known policies: {}",
                        exit_policy::NAMED.join(", ")
                    ),
                    None => format!("known policies: {}", exit_policy::NAMED.join(", ")),
                };
                self.err(
                    &po,
                    "exit_policy",
                    format!("unknown exit policy {}", q(&policy_name)),
                    help,
                );
                *ok = false;
            }
        }
        (policy_name, rules)
    }

    /// dos_firewall: each key from the most specific level that sets it, torutils' value
    /// otherwise; each within its bounds. Clears `ok` on a value out of them.
    fn dos_firewall(&mut self, layers: &[Layer], ok: &mut bool) -> DosFirewall {
        let mut out = DosFirewall::default();
        let keys: [DosFirewallKey; 5] = [
            (
                "per_minute",
                |d| d.per_minute,
                1,
                600,
                "new connections a minute from one source, e.g. 8 (torutils)",
            ),
            (
                "burst",
                |d| d.burst,
                1,
                1000,
                "connections allowed at once before the rate applies, e.g. 8",
            ),
            (
                "concurrent",
                |d| d.concurrent,
                1,
                10_000,
                "connections one source may hold at once, e.g. 8",
            ),
            (
                "block_hours",
                |d| d.block_hours,
                1,
                720,
                "hours a source over a limit stays dropped, e.g. 24",
            ),
            (
                "confirm_seconds",
                |d| d.confirm_seconds,
                10,
                3600,
                "seconds the host waits for oignon's confirmation of a new ruleset before it puts the old one back, e.g. 60: under 10 s a new SSH connection may not make it in time",
            ),
        ];
        for (key, get, min, max, help) in keys {
            let found = layers
                .iter()
                .rev()
                .find_map(|(s, o)| s.dos_firewall.as_ref().and_then(get).map(|v| (v, o)));
            let Some((v, o)) = found else { continue };
            if !(min..=max).contains(&v) {
                let mut at = o.clone();
                at.path.push(Seg::Key("dos_firewall".into()));
                at.path.push(Seg::Key(key.into()));
                self.err(
                    &at,
                    "dos_firewall",
                    format!("dos_firewall.{key} = {v} is out of bounds ({min} to {max})"),
                    help,
                );
                *ok = false;
                continue;
            }
            match key {
                "per_minute" => out.per_minute = v,
                "burst" => out.burst = v,
                "concurrent" => out.concurrent = v,
                "block_hours" => out.block_hours = v,
                _ => out.confirm_seconds = v,
            }
        }
        out
    }

    /// dos_defense: a flag or auto/on/off, auto by default. Clears `ok` on another word.
    fn dos_defense(&mut self, layers: &[Layer], ok: &mut bool) -> DosDefense {
        match last(layers, |s| s.dos_defense.clone()) {
            None => DosDefense::Auto,
            Some((setting, o)) => match setting {
                DosSetting::Flag(true) => DosDefense::On,
                DosSetting::Flag(false) => DosDefense::Off,
                DosSetting::Word(w) => match w.as_str() {
                    "auto" => DosDefense::Auto,
                    "on" => DosDefense::On,
                    "off" => DosDefense::Off,
                    _ => {
                        let mut at = o.clone();
                        at.path.push(Seg::Key("dos_defense".into()));
                        self.err(
                            &at,
                            "dos_defense",
                            format!("dos_defense {} is not auto, on or off", q(&w)),
                            "auto (tor's default: the consensus decides), on (pinned on) or off",
                        );
                        *ok = false;
                        DosDefense::Auto
                    }
                },
            },
        }
    }

    /// One relay of a host: its layers, name, addresses and ports (claimed against the host's and
    /// the fleet's), bandwidth, exit policy and torrc lines.
    fn relay(
        &mut self,
        cx: &HostCx,
        index: usize,
        r: &file::Relay,
        origin: Origin,
        nicknames: &mut HashMap<String, (String, Origin)>,
        ports: &mut HashMap<(String, u16), (String, Origin)>,
    ) -> Option<RelaySpec> {
        let HostCx {
            host: h,
            layers: host_layers,
            ipv4: host_v4,
            ipv6: host_v6,
            uplink_bits,
            n_relays,
        } = *cx;
        let at = |leaf: &str| child(&origin, leaf);
        // The relay's own keys are the last, most specific layer.
        let own = Settings {
            exit: r.exit,
            exit_policy: r.exit_policy.clone(),
            exit_policy_prepend: r.exit_policy_prepend.clone(),
            ipv6_exit: r.ipv6_exit,
            metrics_port: r.metrics_port,
            torrc_extra: r.torrc_extra.clone(),
            offline_master_key: r.offline_master_key,
            ..Settings::default()
        };
        let mut layers: Vec<Layer> = host_layers.to_vec();
        layers.push((&own, origin.clone()));

        let mut ok = true;
        self.name_and_orport(r, &at, nicknames, &mut ok);
        let (ipv4, ipv6) = self.addresses(r, &at, host_v4, host_v6, &mut ok);
        let metrics_port = last(&layers, |s| s.metrics_port).map(|(p, o)| {
            // A port set on the relay itself is used as is; an inherited one is a base for the host.
            if o.path == origin.path {
                p
            } else {
                p.saturating_add(index as u16)
            }
        });
        self.claim_ports(r, &at, h, (ipv4, ipv6, metrics_port), ports, &mut ok);

        let (rate, burst) = self.bandwidth(r, &at, &layers, uplink_bits, n_relays, &mut ok);

        // Exit policy: the named policy, after every level's prepended rules.
        let exit = last(&layers, |s| s.exit).is_none_or(|(v, _)| v);
        let ipv6_exit = last(&layers, |s| s.ipv6_exit).map_or(exit && ipv6.is_some(), |(v, _)| v);
        let (policy_name, rules) = self.exit_policy(r, &origin, &layers, &mut ok);
        if exit && !h_roles(host_layers).iter().any(|r| r == "exit-policy") {
            self.err(
                &at("nickname"),
                "relay.exit",
                format!(
                    "`{}` is an exit but host `{}` has no exit-policy role",
                    r.nickname, h.name
                ),
                "add \"exit-policy\" to the host's roles, or set exit = false",
            );
            ok = false;
        }

        let torrc_extra: Vec<String> = layers
            .iter()
            .flat_map(|(s, _)| s.torrc_extra.clone().unwrap_or_default())
            .collect();
        ok &= self.check_extra(&layers);

        let bool_of = |f: fn(&Settings) -> Option<bool>, dflt: bool| {
            last(&layers, f).map_or(dflt, |(v, _)| v)
        };
        let dos_defense = self.dos_defense(&layers, &mut ok);
        let dos_firewall = self.dos_firewall(&layers, &mut ok);
        if !ok {
            return None;
        }
        Some(RelaySpec {
            nickname: r.nickname.clone(),
            orport: r.orport,
            ipv4,
            ipv6,
            rate,
            burst,
            // CIISS uplinkbw: the smaller of the link and RelayBandwidthRate as tor gets it (whole
            // KBytes, rounded down), in whole Mbit/s rounded down: 349 for a 350 Mbit/s share.
            uplink_mbit: bandwidth::mbit(bandwidth::tor_kbytes(rate) * 1024 * 8).max(1),
            metrics_port,
            exit,
            ipv6_exit: ipv6_exit && ipv6.is_some(),
            exit_policy_name: policy_name,
            exit_policy: rules,
            sandbox: bool_of(|s| s.sandbox, true),
            noexec: bool_of(|s| s.noexec, true),
            dos_defense,
            dos_firewall,
            offline_master_key: bool_of(|s| s.offline_master_key, false),
            torrc_extra,
            origin,
        })
    }

    fn policy_finding(
        &mut self,
        d: Diagnostic,
        help: Option<String>,
        o: &Origin,
        offset: usize,
        len: usize,
    ) {
        let d = match help {
            Some(h) => d.help(h),
            None => d,
        }
        .field("exit_policy_prepend");
        let Some(src) = self.sources.get(o.source) else {
            self.diags.push(d);
            return;
        };
        let span = src.span(&o.path);
        // The value span includes the opening quote: shift into the string itself.
        let start = span.start + 1 + offset;
        self.diags
            .push(d.at(&src.path, &src.text, start..start + len.max(1)));
    }

    /// Each `torrc_extra` string is one torrc line, read with tor's own grammar (see
    /// [`crate::torrc`]): it must set one option tor knows, by its full name, that oignon does not
    /// manage, and must not reach into the lines around it.
    fn check_extra(&mut self, layers: &[Layer]) -> bool {
        let mut ok = true;
        for (s, o) in layers {
            for (i, l) in s.torrc_extra.iter().flatten().enumerate() {
                let mut p = o.path.clone();
                p.extend(path!["torrc_extra", i]);
                let o = Origin {
                    source: o.source,
                    path: p,
                };
                if let Err((msg, help)) = extra_line(l) {
                    self.err(&o, "torrc_extra", msg, help);
                    ok = false;
                }
            }
        }
        ok
    }
}

/// Why one `torrc_extra` line cannot go into a torrc as written, and what to do.
fn extra_line(l: &str) -> Result<(), (String, String)> {
    use crate::torrc::{self, Via};
    if l.chars().any(super::text::forbidden) {
        // Reported for every string, with the character, by the inventory text check.
        return Err((
            format!("torrc_extra line {} is not a single line", q(l)),
            "write one torrc line per string".into(),
        ));
    }
    let parsed = torrc::parse(l).map_err(|e| {
        (
            format!(
                "tor cannot read the torrc_extra line {}: {}",
                q(l),
                e.message
            ),
            "write `Option value`, as in a torrc".to_string(),
        )
    })?;
    let Some(e) = parsed.entries.first() else {
        return Ok(()); // a comment
    };
    if l.trim_end().ends_with('\\') && !e.quoted {
        return Err((
            format!("torrc_extra line {} ends with a backslash", q(l)),
            "tor would continue the line onto the next line of the torrc, taking it into this value: remove the backslash".into(),
        ));
    }
    if !e.quoted {
        let glued = l
            .char_indices()
            .any(|(i, c)| c == '#' && i > 0 && !l[..i].ends_with(char::is_whitespace));
        if glued {
            return Err((
                format!(
                    "in the torrc_extra line {}, tor reads `#` as the start of a comment",
                    q(l)
                ),
                format!(
                    "tor would read the value as {}; quote the value (\"…\") or put a space before a comment",
                    q(&e.value)
                ),
            ));
        }
    }
    if e.is_include() {
        return Err((
            format!("torrc_extra line {}: `%include` makes tor read another file, which oignon neither renders nor checks", q(l)),
            "write the options themselves in torrc_extra".into(),
        ));
    }
    if e.value.chars().any(super::text::forbidden) {
        return Err((
            format!("the quoted value of the torrc_extra line {} holds a control character once tor decodes it", q(l)),
            "write the value without escapes such as \\n or \\x00".into(),
        ));
    }
    let Some(r) = torrc::canonical(&e.key) else {
        let help = match suggest(&e.key, torrc::settable_names()) {
            Some(s) => format!("did you mean `{s}`? (`tor --list-torrc-options` lists them all)"),
            None => "see `tor --list-torrc-options` or man tor".into(),
        };
        return Err((
            format!(
                "tor has no option {} (torrc_extra line {})",
                q(&e.key),
                q(l)
            ),
            help,
        ));
    };
    if let Some(field) = torrc::managed(r.name) {
        let how = match r.via {
            Via::Exact => String::new(),
            Via::Abbreviation => format!(" (tor reads {} as `{}`)", q(&e.key), r.name),
            Via::Prefix => format!(
                " (tor reads {} as `{}`: it takes any unambiguous start of a name)",
                q(&e.key),
                r.name
            ),
        };
        let magic = match e.magic {
            torrc::Magic::Normal => "",
            torrc::Magic::Append => " (a `+` line adds to it)",
            torrc::Magic::Clear => " (a `/` line clears it)",
        };
        return Err((
            format!(
                "`{}` is managed by oignon and cannot be set in torrc_extra{how}{magic}",
                r.name
            ),
            format!("it comes from {field}"),
        ));
    }
    if !r.settable {
        return Err((
            format!(
                "`{}` is obsolete or virtual: tor ignores or refuses it (torrc_extra line {})",
                r.name,
                q(l)
            ),
            "remove the line".into(),
        ));
    }
    if r.via != Via::Exact {
        return Err((
            format!("tor reads {} as `{}` (torrc_extra line {})", q(&e.key), r.name, q(l)),
            format!("write the full name `{}`: tor deprecates abbreviations, and a new option can change what one means", r.name),
        ));
    }
    Ok(())
}

/// The origin of key `leaf` inside the table at `origin`.
fn child(origin: &Origin, leaf: &str) -> Origin {
    let mut path = origin.path.clone();
    path.push(Seg::Key(leaf.into()));
    Origin {
        source: origin.source,
        path,
    }
}

fn h_roles(layers: &[Layer]) -> Vec<String> {
    last(layers, |s| s.roles.clone())
        .map(|(v, _)| v)
        .unwrap_or_else(|| DEFAULT_ROLES.iter().map(|s| s.to_string()).collect())
}

/// The most specific layer's value, and where that layer is.
fn last<T>(layers: &[Layer], get: impl Fn(&Settings) -> Option<T>) -> Option<(T, Origin)> {
    layers
        .iter()
        .rev()
        .find_map(|(s, o)| get(s).map(|v| (v, o.clone())))
}

/// Tor's nickname rule: 1–19 characters of `[A-Za-z0-9]`.
pub fn check_nickname(n: &str) -> Result<(), String> {
    if n.is_empty() {
        return Err("is empty".into());
    }
    if n.chars().count() > 19 {
        return Err(format!(
            "is {} characters long (at most 19)",
            n.chars().count()
        ));
    }
    if let Some(c) = n.chars().find(|c| !c.is_ascii_alphanumeric()) {
        return Err(format!(
            "contains `{}` (only letters and digits are allowed)",
            c.escape_default()
        ));
    }
    Ok(())
}

fn valid_hostname(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 63
        && !n.starts_with('-')
        && n.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

fn valid_sysctl_key(k: &str) -> bool {
    !k.is_empty()
        && !k.starts_with('.')
        && !k.contains("..")
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-/".contains(c))
}

/// KSPP-style sysctl hardening, before inventory overrides.
fn default_sysctl() -> BTreeMap<String, String> {
    [
        ("kernel.kptr_restrict", "2"),
        ("kernel.dmesg_restrict", "1"),
        ("kernel.unprivileged_bpf_disabled", "1"),
        ("net.core.bpf_jit_harden", "2"),
        ("kernel.yama.ptrace_scope", "2"),
        ("fs.protected_hardlinks", "1"),
        ("fs.protected_symlinks", "1"),
        ("fs.protected_fifos", "2"),
        ("fs.protected_regular", "2"),
        ("net.ipv4.tcp_syncookies", "1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}
