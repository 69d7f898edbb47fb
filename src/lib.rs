//! oignon: declarative provisioning and configuration management for Tor relay fleets.
//!
//! The library is the pipeline: inventory → validated fleet → rendered desired state → gathered
//! observed state → plan → apply. The binary (`src/main.rs`, `src/cli.rs`, `src/commands/`) only
//! turns flags into the options these modules take; nothing here knows the command line.

pub mod apply;
#[cfg(test)]
mod architecture;
pub mod bootstrap;
pub mod desired;
pub mod diagnostic;
pub mod diff;
pub mod error;
pub mod exit_policy;
pub mod explain;
pub mod fleet;
pub mod gather;
pub mod hardening;
pub mod inventory;
pub mod migrate;
pub mod monitoring;
pub mod observed;
pub mod onboard;
pub mod plan;
pub mod progress;
pub mod remote;
pub mod render;
pub mod role;
pub mod saved;
pub mod secret;
pub mod secrets;
pub mod show;
pub mod status;
pub mod text;
pub mod tor;
pub mod torrc;
pub mod transport;
pub mod util;
