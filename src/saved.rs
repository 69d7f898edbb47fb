//! Saved plans (`plan --out FILE`, `apply FILE`): the plan's JSON, written atomically, read back
//! with its schema checked. A saved plan holds hashes and non-secret content only.

use crate::plan::{Plan, SCHEMA};
use std::path::Path;

/// Writes the plan to `path` (temp file + rename: a crash never leaves half a plan).
pub fn save(plan: &Plan, path: &Path) -> anyhow::Result<()> {
    let json = serde_json::to_vec_pretty(plan)?;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .map_err(|e| anyhow::anyhow!("cannot write the plan in {}: {e}", dir.display()))?;
    std::io::Write::write_all(&mut tmp, &json)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path)
        .map_err(|e| anyhow::anyhow!("cannot save the plan to {}: {e}", path.display()))?;
    Ok(())
}

/// Reads a saved plan; a wrong schema or a damaged file is refused with what to do.
pub fn load(path: &Path) -> anyhow::Result<Plan> {
    let text = std::fs::read(path)
        .map_err(|e| anyhow::anyhow!("cannot read the saved plan {}: {e}", path.display()))?;
    let plan: Plan = serde_json::from_slice(&text).map_err(|e| {
        anyhow::anyhow!(
            "{} is not a saved oignon plan ({e}); make one with `oignon plan --out FILE`",
            path.display()
        )
    })?;
    if plan.schema != SCHEMA {
        anyhow::bail!("{} is a plan of schema `{}`, this oignon reads `{SCHEMA}`; plan again with this version", path.display(), plan.schema);
    }
    Ok(plan)
}
