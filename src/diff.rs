//! Unified diffs of text files, coloured on a terminal.

use similar::TextDiff;

/// A unified diff (3 lines of context) from `old` (on the host) to `new` (desired).
pub fn unified(path: &str, old: &[u8], new: &[u8]) -> String {
    let old = String::from_utf8_lossy(old);
    let new = String::from_utf8_lossy(new);
    TextDiff::from_lines(old.as_ref(), new.as_ref())
        .unified_diff()
        .context_radius(3)
        .header(&format!("{path} (on host)"), &format!("{path} (desired)"))
        .to_string()
}

/// Colours a unified diff's lines (no-op when colours are off), indenting each by `indent`.
pub fn paint(diff: &str, indent: &str) -> String {
    let mut out = String::new();
    for line in diff.lines() {
        let styled = if line.starts_with("+++") || line.starts_with("---") {
            console::style(line).bold().to_string()
        } else if line.starts_with('+') {
            console::style(line).green().to_string()
        } else if line.starts_with('-') {
            console::style(line).red().to_string()
        } else if line.starts_with("@@") {
            console::style(line).cyan().to_string()
        } else {
            line.to_string()
        };
        out.push_str(indent);
        out.push_str(&styled);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn diff_shows_changed_line_with_context() {
        let d = super::unified("/etc/x", b"a\nb\nc\n", b"a\nB\nc\n");
        assert!(
            d.contains("--- /etc/x (on host)\n+++ /etc/x (desired)\n"),
            "{d}"
        );
        assert!(d.contains("-b\n+B\n"), "{d}");
    }
}
