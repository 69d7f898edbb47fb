//! The integration tests: one binary (as just's tests/lib.rs), one module per behaviour, one
//! helper folder (`harness`). One binary links once instead of eighteen times, and its tests
//! share the machine's threads: a slow lab test no longer leaves the other binaries waiting.
//!
//! Filters work on module paths: `cargo test --test integration lab_apply::` runs one file,
//! `cargo test handler_calls` any test whose name holds the words. Everything here runs in one
//! process: a test must never change the process's environment or working directory
//! (`std::env::set_var`, `set_current_dir`); give them to the `oignon` child instead
//! (`harness::run_in_env`).

mod harness;

mod check;
mod check_secrets;
mod cli;
mod injection;
mod lab_apply;
mod lab_attacks;
mod lab_hermetic;
mod lab_plan;
mod local;
mod migrate;
mod monitoring;
mod onboard;
mod real_apply;
mod real_bootstrap;
mod real_firewall;
mod real_migrate;
mod real_retire;
mod real_status;
mod real_vm;
mod render;
mod saved_plan;
mod secret_hygiene;
mod secrets;
mod secrets_more;
mod ssh_masters;
mod ssh_pins;
