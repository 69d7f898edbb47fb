//! Small helpers shared by several stages.

use sha2::{Digest, Sha256};

/// sha256 of `data` as lowercase hex.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}
