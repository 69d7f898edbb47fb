//! The shell scripts that run on hosts, embedded in the binary, and the data they are fed.
//!
//! Scripts are POSIX sh, run as `sh -c SCRIPT NAME ROOT ARGS…`. Everything variable reaches them as
//! data (arguments quoted by the transport, or tab-separated lines on stdin), never spliced into the
//! script text.

pub mod apply;
pub mod bootstrap;
pub mod gather;
pub mod import;
pub mod migrate;
pub mod preflight;
pub mod record;

/// Gathers files and facts (see the header of gather.sh for its protocol).
pub const GATHER: &str = concat!(include_str!("paths.sh"), include_str!("gather.sh"));

/// Applies one host's changes (see the header of apply.sh for its records and answers).
pub const APPLY: &str = concat!(include_str!("paths.sh"), include_str!("apply.sh"));

/// Reads relays' identity keys and fingerprints for `secrets import` (see the header of import.sh).
pub const IMPORT: &str = include_str!("import.sh");

/// Reports a new host's facts for `bootstrap`, changing nothing (see the header of preflight.sh).
pub const PREFLIGHT: &str = include_str!("preflight.sh");

/// Installs what a relay needs (see the header of bootstrap.sh).
pub const BOOTSTRAP: &str = concat!(include_str!("paths.sh"), include_str!("bootstrap.sh"));
/// The host-side steps of `oignon migrate` and `oignon retire` (see the header of migrate.sh).
pub const MIGRATE: &str = concat!(include_str!("paths.sh"), include_str!("migrate.sh"));
