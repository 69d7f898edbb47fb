//! Bandwidth as people write it (decimal, "100 Mbit/s") and as tor reads it (binary, bytes).
//!
//! Hosters sell decimal megabits: 100 Mbit/s is 100·10⁶ bits/s = 12,500,000 bytes/s. Tor's units are
//! binary and in bytes (`KBytes` = 1024 bytes) and it rejects `Mbps`. oignon converts deliberately:
//! bits/s ÷ 8 = bytes/s, then rounds DOWN to whole KBytes so a relay never exceeds what was sold.
//! 100 Mbit/s → `12207 KBytes`.

/// Tor's floor for a relay's rate: 75 KBytes/s.
pub const MIN_RELAY_BYTES: u64 = 75 * 1024;

/// Parses `"100 Mbit/s"` (also `kbit/s`, `Gbit/s`, decimal fractions) into bits per second.
pub fn parse_bits(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let unit = unit.trim();
    let value: f64 = num
        .parse()
        .map_err(|_| format!("{} does not start with a number", super::text::shown(text)))?;
    let mult: f64 = match unit {
        "kbit/s" | "Kbit/s" => 1e3,
        "Mbit/s" => 1e6,
        "Gbit/s" => 1e9,
        "Mbps" | "MBps" | "mbps" | "Mb/s" | "MB/s" => {
            return Err(format!(
                "unit `{unit}` is ambiguous (tor itself rejects `Mbps`); write decimal megabits as `Mbit/s`"
            ))
        }
        "" => return Err(format!("{} has no unit; write e.g. `100 Mbit/s`", super::text::shown(text))),
        other => return Err(format!("unknown unit {}; use kbit/s, Mbit/s or Gbit/s", super::text::shown(other))),
    };
    let bits = value * mult;
    if !bits.is_finite() || !(1.0..=1e13).contains(&bits) {
        return Err(format!(
            "{} is out of range (1 bit/s to 10 Tbit/s)",
            super::text::shown(text)
        ));
    }
    Ok(bits as u64)
}

/// Bytes per second → tor's `N KBytes`, rounded down.
pub fn tor_kbytes(bytes_per_sec: u64) -> u64 {
    bytes_per_sec / 1024
}

/// Bits per second → whole decimal Mbit/s, for CIISS `uplinkbw:`.
pub fn mbit(bits: u64) -> u64 {
    bits / 1_000_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hundred_megabits_is_12207_kbytes() {
        let bits = parse_bits("100 Mbit/s").unwrap();
        assert_eq!(bits, 100_000_000);
        assert_eq!(tor_kbytes(bits / 8), 12207);
    }

    #[test]
    fn mbps_is_refused_with_advice() {
        let e = parse_bits("100 Mbps").unwrap_err();
        assert!(e.contains("Mbit/s"), "{e}");
    }

    #[test]
    fn fractions_and_gigabits() {
        assert_eq!(parse_bits("0.5 Gbit/s").unwrap(), 500_000_000);
        assert!(parse_bits("abc").is_err());
        assert!(parse_bits("100").is_err());
        assert!(parse_bits("1e400 Mbit/s").is_err());
    }
}
