//! Small helpers for the words of user-facing messages.

/// The plural ending of a count: `format!("{n} host{}", plural(n))`.
pub fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn one_is_singular_and_every_other_count_plural() {
        assert_eq!(super::plural(1), "");
        assert_eq!(super::plural(0), "s");
        assert_eq!(super::plural(2), "s");
    }
}
