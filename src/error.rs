//! Errors that cross stages for one host: from reaching and gathering it, through planning, to
//! applying its plan. Each names the host it happened on and keeps what caused it; its `Display`
//! is the sentence the user reads (what went wrong, what to do), word for word what the stages
//! printed when these were plain strings. The process exit status is decided from these errors in
//! one place, [`exit_code`].

use crate::transport::TransportError;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why one host could not be planned or applied.
#[derive(Debug, Clone, thiserror::Error)]
pub enum HostError {
    /// No connection could be opened (SSH handshake, host key, missing local image...).
    #[error("{source}")]
    Unreachable {
        host: String,
        #[source]
        source: TransportError,
    },
    /// Connected, but gather.sh failed or answered something unreadable.
    #[error("{source}")]
    GatherFailed {
        host: String,
        #[source]
        source: crate::gather::GatherError,
    },
    /// A path oignon manages is a directory, a symlink... on the host: never touched.
    #[error("{path} is a {kind} on the host, where oignon manages a file: move it away by hand, then plan again")]
    NotAFile {
        host: String,
        path: String,
        kind: String,
    },
    /// The plan would replace relay identities that differ from secrets/ (no --replace-identity).
    #[error(
        "refused: the identity of {} on this host differs from secrets/; nothing was written. If secrets/ is right, apply with {}",
        .instances.join(", "),
        .instances.iter().map(|n| format!("--replace-identity {n}")).collect::<Vec<_>>().join(" ")
    )]
    IdentityConflict {
        host: String,
        instances: Vec<String>,
    },
    /// `apply FILE`: the selected host is not in the saved plan.
    #[error("not in the saved plan; plan it again")]
    NotInSavedPlan { host: String },
    /// `apply FILE`: the saved plan recorded an error for this host.
    #[error(
        "not applied: this host could not be planned when the plan was saved ({saved}); plan again"
    )]
    UnplannedWhenSaved { host: String, saved: String },
    /// The host moved since its plan: `paths` changed (before apply.sh, against a saved plan; or
    /// found by apply.sh itself when `by_script`). Nothing was written.
    #[error("{}", stale_text(.paths, *.by_script))]
    Stale {
        host: String,
        paths: Vec<String>,
        by_script: bool,
    },
    /// Another apply holds the host's lock.
    #[error("another apply holds the lock on this host: {holder}; wait for it, or if it died, run apply again (a dead holder's lock is taken over)")]
    Locked { host: String, holder: String },
    /// A validator refused new files (its words in `words`); nothing was written.
    #[error("validation failed for {}, nothing was written (the old files stay active):\n{words}", .paths.join(", "))]
    Invalid {
        host: String,
        paths: Vec<String>,
        words: String,
    },
    /// A handler failed; it stays pending on the host.
    #[error("handler `{command}` failed: {words}; it stays pending and runs on the next apply")]
    HandlerFailed {
        host: String,
        command: String,
        words: String,
    },
    /// apply.sh refused a record before changing anything.
    #[error("refused by the host script, nothing was changed: {why}")]
    Refused { host: String, why: String },
    /// Backing up a file to be replaced failed; nothing was replaced.
    #[error("backing up {path} under /var/backups/oignon failed, nothing was replaced (the old files stay active): {words}; free space there, then apply again")]
    BackupFailed {
        host: String,
        path: String,
        words: String,
    },
    /// systemd refused a relay under new unit files, which were put back.
    #[error("{}", rolled_back_text(.unit, .paths, .words))]
    RolledBack {
        host: String,
        unit: String,
        paths: Vec<String>,
        words: String,
    },
    /// apply.sh failed otherwise (a write failed, or an exit status it does not document).
    #[error("apply failed (exit {code}): {words}")]
    ApplyFailed {
        host: String,
        code: i32,
        words: String,
    },
    /// The remote shell was killed mid-apply.
    #[error("the apply was interrupted (the remote shell was killed); files are each wholly old or wholly new: plan again")]
    Interrupted { host: String },
    /// The connection failed while applying.
    #[error("{source} (files are each wholly old or wholly new; plan again to see where the host stands)")]
    Lost {
        host: String,
        #[source]
        source: TransportError,
    },
    /// The records for apply.sh could not be made (a value holding a control character, or
    /// content that is not the one planned); nothing was sent.
    #[error("{source}")]
    Payload {
        host: String,
        #[source]
        source: crate::remote::apply::PayloadError,
    },
    /// `--reboot`: the host did not reboot, or did not come back in time.
    #[error("{why}")]
    Reboot { host: String, why: String },
    /// The host has no open connection to apply through.
    #[error("not connected")]
    NotConnected { host: String },
    /// A firewall was loaded but not confirmed over a new connection: the host restores the old
    /// ruleset by itself when its window ends.
    #[error("the new firewall was loaded but could not be confirmed over a new SSH connection ({why}); the host puts the previous ruleset back by itself within {window_s} s. Fix the rules (the role's template or the inventory), then apply again")]
    FirewallUnconfirmed {
        host: String,
        why: String,
        window_s: u64,
    },
    /// A bug: a host task panicked, or a state that cannot happen did.
    #[error("{why}")]
    Internal { host: String, why: String },
    /// Relays of the plan left this host (migrated or retired: their tombstone is here); creating
    /// or starting them again would run a second copy of an identity that lives elsewhere.
    #[error(
        "refused: {} left this host ({}); an older inventory must not bring it back, and nothing was written. If it must run here again, apply with {}",
        .instances.join(", "),
        .why.join("; "),
        .instances.iter().map(|n| format!("--resurrect {n}")).collect::<Vec<_>>().join(" ")
    )]
    Tombstoned {
        host: String,
        instances: Vec<String>,
        /// Per instance, what its tombstone says (where it went, when).
        why: Vec<String>,
    },
    /// A relay migrated to this host is missing from the inventory here: the inventory is older
    /// than the migration; removing it would take the relay down.
    #[error("refused: {instance} was migrated to this host from {from} at {when}, and this inventory does not have it here: it is older than the migration (pull the current one); nothing was written. To end {instance} here, `oignon retire {instance}`")]
    Arrived {
        host: String,
        instance: String,
        from: String,
        when: String,
    },
    /// The same relay identity is active on this host and another one: the directory
    /// authorities punish two copies of one relay.
    #[error("refused: the identity of {instance} here (ed25519 master key sha256 {id_sha:.16}…) is also active on host {other} (as {other_instance}): one identity must run in one place; stop one copy (`oignon retire` or `oignon migrate`), then plan again")]
    DuplicateIdentity {
        host: String,
        instance: String,
        other: String,
        other_instance: String,
        id_sha: String,
    },
    /// The plan would start an instance here with an identity that is active on another host:
    /// two copies of one relay, which the directory authorities punish.
    #[error("refused: {instance} would start here with the identity (ed25519 master key sha256 {id_sha:.16}…) that is active on host {other} (as {other_instance}); nothing was written. One identity runs in one place: {}; `oignon migrate` moves a relay with its identity in one plan, never two copies",
        if *.stopped_there {
            format!("this plan stops it on {other} (it left the inventory there): apply {other} first (`oignon apply --host {other}`), then {host}")
        } else {
            format!("stop it on {other} first, then plan again")
        }
    )]
    StartsElsewhereActive {
        host: String,
        instance: String,
        other: String,
        other_instance: String,
        id_sha: String,
        /// The other host's plan removes that instance (the relay moved by hand in the inventory).
        stopped_there: bool,
    },
    /// An error read back from a saved plan, where only its text is kept.
    #[error("{text}")]
    Saved { host: String, text: String },
}

fn stale_text(paths: &[String], by_script: bool) -> String {
    if by_script {
        format!(
            "the host changed since the plan, nothing was written: {}; plan again",
            paths.join(", ")
        )
    } else {
        format!(
            "stale plan: {} changed on the host since the plan was saved; plan again",
            paths.join(", ")
        )
    }
}

fn rolled_back_text(unit: &str, paths: &[String], words: &str) -> String {
    format!(
        "refused by systemd at start: {unit} failed under the new {}, so {} rolled back and {unit} started again under the old one; nothing of it is left changed. Fix the drop-in (the role's template or the inventory), then apply again:\n{words}",
        paths.join(", "),
        if paths.len() == 1 { "it was" } else { "they were" }
    )
}

impl HostError {
    /// The host the error happened on.
    pub fn host(&self) -> &str {
        use HostError::*;
        match self {
            Unreachable { host, .. }
            | GatherFailed { host, .. }
            | NotAFile { host, .. }
            | IdentityConflict { host, .. }
            | NotInSavedPlan { host }
            | UnplannedWhenSaved { host, .. }
            | Stale { host, .. }
            | Locked { host, .. }
            | Invalid { host, .. }
            | HandlerFailed { host, .. }
            | Refused { host, .. }
            | BackupFailed { host, .. }
            | RolledBack { host, .. }
            | ApplyFailed { host, .. }
            | Interrupted { host }
            | Lost { host, .. }
            | Payload { host, .. }
            | Reboot { host, .. }
            | FirewallUnconfirmed { host, .. }
            | NotConnected { host }
            | Internal { host, .. }
            | Tombstoned { host, .. }
            | Arrived { host, .. }
            | DuplicateIdentity { host, .. }
            | StartsElsewhereActive { host, .. }
            | Saved { host, .. } => host,
        }
    }

    /// The exit status a run that met this error ends with. Every host error is a failure (1) for
    /// now; a finer scheme (just's `Error::code()`) changes here and nowhere else.
    pub fn code(&self) -> u8 {
        1
    }

    /// Serializes as its text: saved plans (schema `oignon.plan/2`) hold `"error": "…"`.
    pub(crate) fn serialize_text<S: Serializer>(
        e: &Option<HostError>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        e.as_ref().map(ToString::to_string).serialize(s)
    }

    /// Reads the text back as [`HostError::Saved`]; its host is filled in by [`HostError::owned_by`].
    pub(crate) fn deserialize_text<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<HostError>, D::Error> {
        Ok(
            Option::<String>::deserialize(d)?.map(|text| HostError::Saved {
                host: String::new(),
                text,
            }),
        )
    }

    /// Names `host` as the host of an error read back from a saved plan (the plan's JSON keeps
    /// the host beside the error, not inside it).
    pub fn owned_by(&mut self, name: &str) {
        if let HostError::Saved { host, .. } = self {
            *host = name.to_string();
        }
    }
}

/// How a run ended, once its hosts are planned (and applied).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing failed.
    Clean,
    /// Nothing failed and there are changes to apply (`plan --detailed-exitcode`: 2).
    Changes,
    /// Something failed beyond one host's error (a rollout stopped, a refused confirmation).
    Failed,
}

impl Outcome {
    /// `Failed` when `failed`, else `Clean`: for the commands whose failures are counted, not
    /// host errors (check, render, secrets, fingerprints).
    pub fn failed_if(failed: bool) -> Outcome {
        if failed {
            Outcome::Failed
        } else {
            Outcome::Clean
        }
    }
}

/// The exit status of a run, decided from its host errors and its outcome: the one place that
/// maps them to numbers. A host error wins; then a failed run is 1, changes (when asked) 2.
pub fn exit_code<'a>(errors: impl IntoIterator<Item = &'a HostError>, outcome: Outcome) -> u8 {
    let worst = errors.into_iter().map(HostError::code).max().unwrap_or(0);
    if worst > 0 {
        return worst;
    }
    match outcome {
        Outcome::Clean => 0,
        Outcome::Changes => 2,
        Outcome::Failed => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_error_round_trips_as_its_text() {
        #[derive(Serialize, Deserialize)]
        struct P {
            #[serde(
                serialize_with = "HostError::serialize_text",
                deserialize_with = "HostError::deserialize_text"
            )]
            error: Option<HostError>,
        }
        let p = P {
            error: Some(HostError::Locked {
                host: "h".into(),
                holder: "me@ctl".into(),
            }),
        };
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(
            json,
            r#"{"error":"another apply holds the lock on this host: me@ctl; wait for it, or if it died, run apply again (a dead holder's lock is taken over)"}"#
        );
        let mut back: P = serde_json::from_str(&json).unwrap();
        let e = back.error.as_mut().unwrap();
        e.owned_by("h");
        assert_eq!(e.host(), "h");
        assert_eq!(e.to_string(), p.error.unwrap().to_string());
        let none: P = serde_json::from_str(r#"{"error":null}"#).unwrap();
        assert!(none.error.is_none());
    }

    #[test]
    fn a_counted_failure_exits_1_and_a_clean_run_0() {
        assert_eq!(exit_code([], Outcome::failed_if(true)), 1);
        assert_eq!(exit_code([], Outcome::failed_if(false)), 0);
    }

    #[test]
    fn a_host_error_decides_the_exit_code_before_the_outcome() {
        let e = HostError::NotConnected { host: "h".into() };
        assert_eq!(exit_code([&e], Outcome::Changes), 1);
        assert_eq!(exit_code([], Outcome::Changes), 2);
        assert_eq!(exit_code([], Outcome::Clean), 0);
        assert_eq!(exit_code([], Outcome::Failed), 1);
    }

    #[test]
    fn the_lost_connection_keeps_its_source() {
        let e = HostError::Lost {
            host: "h".into(),
            source: TransportError {
                what: "ssh".into(),
                detail: "reset".into(),
            },
        };
        assert!(std::error::Error::source(&e).is_some());
        assert!(e.to_string().starts_with("ssh: reset (files are each"));
    }
}
