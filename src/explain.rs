//! `check --explain NICKNAME`: a relay's exit policy as tor would enforce it, read from the
//! relay's rendered torrc (not from the inventory): what the relay would really do is what the
//! file says. The command prints [`Explanation`]'s `Display`; errors say what to do.

use crate::desired::Desired;
use crate::exit_policy::{self, Family, PortRange, Rule};
use crate::inventory::Fleet;
use crate::role::ValidatorKind;
use std::fmt;

/// Why a relay's policy cannot be explained.
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    /// No relay has that nickname; `hint` may suggest the closest one.
    #[error("no relay is nicknamed `{}`{}; relays: {}", crate::inventory::text::escaped_cut(.nick), .hint.as_ref().map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default(), .relays.join(", "))]
    UnknownRelay {
        nick: String,
        hint: Option<String>,
        relays: Vec<String>,
    },
    /// The host renders no torrc for the relay.
    #[error(
        "`{nick}` on host `{host}` has no rendered torrc (is the tor role in the host's roles?)"
    )]
    NoTorrc { nick: String, host: String },
    /// The rendered torrc does not parse as tor reads it.
    #[error("tor cannot read {path}: {why}")]
    Unreadable { path: String, why: String },
    /// An `ExitPolicy` value is not a rule tor accepts.
    #[error("ExitPolicy `{rule}` in {path}: {why}")]
    BadRule {
        rule: String,
        path: String,
        why: String,
    },
}

/// What one relay's rendered torrc makes it accept.
#[derive(Debug)]
pub struct Explanation {
    pub nickname: String,
    pub host: String,
    pub hoster: String,
    pub policy_name: String,
    /// The torrc's path on the host.
    pub path: String,
    /// `None` when `ExitRelay 0`: the relay exits nowhere.
    pub exit: Option<ExitView>,
}

/// The effective policy of an exit and the ports it accepts.
#[derive(Debug)]
pub struct ExitView {
    /// First match wins.
    pub effective: Vec<Rule>,
    pub v4_ports: Vec<PortRange>,
    /// `None` when `IPv6Exit` is off.
    pub v6_ports: Option<Vec<PortRange>>,
}

/// Explains the exit policy of relay `nick` (case-insensitive), from its rendered torrc.
pub fn explain(fleet: &Fleet, desired: &Desired, nick: &str) -> Result<Explanation, ExplainError> {
    let found = fleet
        .hosts
        .iter()
        .flat_map(|h| h.relays.iter().map(move |r| (h, r)))
        .find(|(_, r)| r.nickname.eq_ignore_ascii_case(nick));
    let Some((host, relay)) = found else {
        let relays: Vec<String> = fleet
            .hosts
            .iter()
            .flat_map(|h| h.relays.iter().map(|r| r.nickname.clone()))
            .collect();
        return Err(ExplainError::UnknownRelay {
            nick: nick.to_string(),
            hint: crate::diagnostic::suggest(nick, relays.iter().map(String::as_str))
                .map(str::to_string),
            relays,
        });
    };
    let file = desired
        .hosts
        .iter()
        .filter(|h| h.name == host.name)
        .flat_map(|h| h.files.iter())
        .find(|f| {
            f.validate == Some(ValidatorKind::Torrc)
                && f.instance.as_deref() == Some(relay.nickname.as_str())
        })
        .ok_or_else(|| ExplainError::NoTorrc {
            nick: relay.nickname.clone(),
            host: host.name.clone(),
        })?;
    let text = String::from_utf8_lossy(file.content.bytes());
    let torrc = crate::torrc::parse(&text).map_err(|e| ExplainError::Unreadable {
        path: file.path.clone(),
        why: e.to_string(),
    })?;
    // The last value of a singleton option wins in tor; a list option keeps every line in order.
    let values = |name: &str| -> Vec<&str> {
        torrc
            .entries
            .iter()
            .filter(|e| {
                crate::torrc::canonical(&e.key).is_some_and(|r| r.name.eq_ignore_ascii_case(name))
            })
            .map(|e| e.value.as_str())
            .collect()
    };
    let flag = |name: &str, default: bool| values(name).last().map_or(default, |v| v.trim() == "1");
    let mut rules = vec![];
    for v in values("ExitPolicy") {
        // One ExitPolicy value may hold several rules, comma-separated.
        for part in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (rule, _) = exit_policy::parse_rule(part).map_err(|e| ExplainError::BadRule {
                rule: part.to_string(),
                path: file.path.clone(),
                why: e.message,
            })?;
            rules.push(rule);
        }
    }
    let exit = flag("ExitRelay", true).then(|| {
        let effective = exit_policy::effective(&rules, flag("ExitPolicyRejectPrivate", true));
        ExitView {
            v4_ports: exit_policy::accepted_ports(&effective, Family::V4),
            v6_ports: flag("IPv6Exit", false)
                .then(|| exit_policy::accepted_ports(&effective, Family::V6)),
            effective,
        }
    });
    Ok(Explanation {
        nickname: relay.nickname.clone(),
        host: host.name.clone(),
        hoster: host.hoster.clone(),
        policy_name: relay.exit_policy_name.clone(),
        path: file.path.clone(),
        exit,
    })
}

fn ports(p: &[PortRange]) -> String {
    if p.is_empty() {
        "none".into()
    } else {
        exit_policy::format_ports(p)
    }
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} on {} ({}), exit policy `{}`, as tor reads {}",
            self.nickname, self.host, self.hoster, self.policy_name, self.path
        )?;
        let Some(exit) = &self.exit else {
            return writeln!(
                f,
                "not an exit: ExitRelay 0 (tor exits nowhere, whatever its ExitPolicy)"
            );
        };
        writeln!(f, "\neffective policy (first match wins):")?;
        for r in &exit.effective {
            writeln!(f, "  {r}")?;
        }
        writeln!(f, "\naccepted ports, IPv4: {}", ports(&exit.v4_ports))?;
        match &exit.v6_ports {
            Some(v6) => writeln!(f, "accepted ports, IPv6: {}", ports(v6)),
            None => writeln!(f, "IPv6 exit: off"),
        }
    }
}
