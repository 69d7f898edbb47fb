//! `oignon render`: each host's desired files, to stdout or under `--out DIR/HOST/<path>`.

use crate::cli::Global;
use oignon::error::Outcome;
use oignon::text::plural;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only these hosts (repeatable; globs such as `mar*` work).
    #[arg(long = "host", value_name = "HOST")]
    pub hosts: Vec<String>,
    /// Write files under DIR/HOST/<absolute path> instead of printing them.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

pub fn run(g: &Global, a: Args) -> anyhow::Result<Outcome> {
    let Some(loaded) = oignon::fleet::load(&g.paths(), true) else {
        return Ok(Outcome::Failed);
    };
    let fleet = loaded.fleet();
    let filter = oignon::fleet::HostFilter::new(&a.hosts, &[]);
    if let Err(msg) = filter.check(fleet) {
        eprintln!("error: {msg}");
        return Ok(Outcome::Failed);
    }
    let Some(desired) = loaded.render(|h| filter.matches(h), &loaded.public_keys()) else {
        return Ok(Outcome::Failed);
    };
    match a.out {
        Some(dir) => {
            oignon::render::write_tree(&desired, &dir)
                .map_err(|e| anyhow::anyhow!("cannot write under {}: {e}", dir.display()))?;
            let n: usize = desired.hosts.iter().map(|h| h.files.len()).sum();
            println!(
                "rendered {n} file{} for {} host{} under {}",
                plural(n),
                desired.hosts.len(),
                plural(desired.hosts.len()),
                dir.display()
            );
        }
        None => {
            use std::io::Write;
            // `oignon render | head`: a reader that stops early is no error; end as a tool
            // killed by SIGPIPE would (141), quietly.
            let quiet = |e: std::io::Error| -> anyhow::Error {
                if e.kind() == std::io::ErrorKind::BrokenPipe {
                    std::process::exit(141);
                }
                e.into()
            };
            let mut out = std::io::stdout().lock();
            for h in &desired.hosts {
                for f in &h.files {
                    writeln!(
                        out,
                        "==> {}:{} ({:o} {}:{}) <==",
                        h.name, f.path, f.mode, f.owner, f.group
                    )
                    .map_err(quiet)?;
                    if f.content.is_secret() {
                        writeln!(out, "(secret, sha256 {})", f.sha256()).map_err(quiet)?;
                    } else {
                        out.write_all(f.content.bytes()).map_err(quiet)?;
                    }
                    writeln!(out).map_err(quiet)?;
                }
            }
        }
    }
    Ok(Outcome::Clean)
}
