//! One progress line per host on a terminal (indicatif). Without a terminal there are no bars:
//! each host's outcome is logged at `-v` instead (see gather.rs and apply.rs).

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::time::Duration;

/// Progress for a fleet operation.
pub struct Progress {
    multi: Option<MultiProgress>,
}

impl Progress {
    /// Bars on a terminal; nothing otherwise, or when `quiet`.
    pub fn new(quiet: bool) -> Progress {
        let multi = (!quiet && std::io::stderr().is_terminal())
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Progress { multi }
    }

    pub fn host(&self, name: &str, state: &str) -> HostProgress {
        let bar = self.multi.as_ref().map(|m| {
            let b = m.add(ProgressBar::new_spinner());
            b.set_style(
                ProgressStyle::with_template("{spinner} {prefix:.bold} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            b.set_prefix(name.to_string());
            b.set_message(state.to_string());
            b.enable_steady_tick(Duration::from_millis(120));
            b
        });
        HostProgress { bar }
    }

    /// Clears the bars before the plan is printed.
    pub fn finish(&self) {
        if let Some(m) = &self.multi {
            let _ = m.clear();
        }
    }
}

/// One host's line.
pub struct HostProgress {
    bar: Option<ProgressBar>,
}

impl HostProgress {
    pub fn set(&self, state: &str) {
        if let Some(b) = &self.bar {
            b.set_message(state.to_string());
        }
    }
    pub fn done(&self, msg: &str) {
        // Without a terminal, gather.rs logs each host's outcome at -v instead.
        if let Some(b) = &self.bar {
            b.finish_with_message(msg.to_string());
        }
    }
    pub fn fail(&self, msg: &str) {
        if let Some(b) = &self.bar {
            b.finish_with_message(format!("failed: {msg}"));
        }
    }
}
