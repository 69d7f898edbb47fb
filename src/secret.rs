//! Secret bytes: redacted in Debug/Display, zeroed on drop.

use zeroize::Zeroizing;

/// Plaintext key material. Never printed: Debug and Display say `(secret)`.
#[derive(Clone)]
pub struct Secret(Zeroizing<Vec<u8>>);

impl Secret {
    pub fn new(bytes: Vec<u8>) -> Self {
        Secret(Zeroizing::new(bytes))
    }
    /// The plaintext, for writing it to its destination only.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("(secret)")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("(secret)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_redact() {
        let s = Secret::new(b"CANARY-123".to_vec());
        assert_eq!(format!("{s:?} {s}"), "(secret) (secret)");
        assert_eq!(s.expose(), b"CANARY-123");
    }
}
