//! Sizes as ops write them: `500KB`, `100MiB`, `1G` (K, M, G alone mean binary units, as in
//! logrotate).

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid size `{text}`: expected a number and a unit such as `100MiB`, `500KB` or `1G`")]
pub struct SizeError {
    pub text: String,
}

const UNITS: &[(&str, u64)] = &[
    ("", 1),
    ("b", 1),
    ("k", 1 << 10),
    ("kib", 1 << 10),
    ("kb", 1_000),
    ("m", 1 << 20),
    ("mib", 1 << 20),
    ("mb", 1_000_000),
    ("g", 1 << 30),
    ("gib", 1 << 30),
    ("gb", 1_000_000_000),
    ("t", 1 << 40),
    ("tib", 1 << 40),
    ("tb", 1_000_000_000_000),
];

/// Bytes in `text`; a bare number is bytes.
pub fn parse_size(text: &str) -> Result<u64, SizeError> {
    let fail = || SizeError {
        text: text.to_string(),
    };
    let trimmed = text.trim();
    let digits = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    if digits == 0 {
        return Err(fail());
    }
    let number: u64 = trimmed[..digits].parse().map_err(|_| fail())?;
    let unit = trimmed[digits..].trim().to_ascii_lowercase();
    let factor = UNITS
        .iter()
        .find(|(name, _)| *name == unit)
        .map(|(_, f)| *f)
        .ok_or_else(fail)?;
    number.checked_mul(factor).ok_or_else(fail)
}

/// `1.5 MiB`: binary units, three significant digits, as people read sizes.
pub fn format_size(bytes: u64) -> String {
    const NAMES: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < NAMES.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else if value >= 100.0 {
        format!("{value:.0} {}", NAMES[unit])
    } else if value >= 10.0 {
        format!("{value:.1} {}", NAMES[unit])
    } else {
        format!("{value:.2} {}", NAMES[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_sizes_for_people() {
        assert_eq!(format_size(0), "0 B");
        assert_eq!(format_size(1023), "1023 B");
        assert_eq!(format_size(1536), "1.50 KiB");
        assert_eq!(format_size(15 << 20), "15.0 MiB");
        assert_eq!(format_size(730 << 20), "730 MiB");
        assert_eq!(format_size(5 << 40), "5.00 TiB");
    }

    #[test]
    fn parses_binary_and_decimal_units() {
        assert_eq!(parse_size("100MiB"), Ok(100 << 20));
        assert_eq!(parse_size("100M"), Ok(100 << 20));
        assert_eq!(parse_size("500KB"), Ok(500_000));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("2 GiB"), Ok(2 << 30));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("5XB").is_err());
    }
}
