//! Wording for messages people read: counts with the right noun, numbers and durations as
//! people say them.

/// `1 file`, `3 files`, `0 files`.
pub fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else if let Some(stem) = word.strip_suffix('y') {
        format!("{n} {stem}ies")
    } else {
        format!("{n} {word}s")
    }
}

/// A number as people read it in an explanation: `93.2`, `0.0123`, `8123456789`, `1.23e-9`;
/// at least three significant digits at every size, so a small value is never shown as `0`
/// (issue 28). Below a thousandth the zeros would have to be counted: the exponent says it.
pub fn format_value(v: f64) -> String {
    let text = if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else if v.abs() >= 1e-3 {
        // Three significant digits: 0.5 has two decimals to fill, 0.00123 five.
        let decimals = 2 - v.abs().log10().floor() as i32;
        format!("{v:.*}", decimals.clamp(3, 5) as usize)
    } else {
        let text = format!("{v:.2e}");
        return match text.split_once('e') {
            Some((mantissa, exponent)) if mantissa.contains('.') => format!(
                "{}e{exponent}",
                mantissa.trim_end_matches('0').trim_end_matches('.')
            ),
            _ => text,
        };
    };
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

/// `2m`, `1h5m`, `3d2h`: a duration as people say it, to the coarsest two units.
pub fn format_for(secs: i64) -> String {
    let secs = secs.max(0);
    let (d, h, m, s) = (
        secs / 86_400,
        secs % 86_400 / 3_600,
        secs % 3_600 / 60,
        secs % 60,
    );
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) if s > 0 && m < 10 => format!("{m}m{s}s"),
        (0, 0, _) => format!("{m}m"),
        (0, _, 0) => format!("{h}h"),
        (0, _, _) => format!("{h}h{m}m"),
        (_, 0, _) => format!("{d}d"),
        _ => format!("{d}d{h}h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_read_naturally() {
        assert_eq!(plural(1, "file"), "1 file");
        assert_eq!(plural(0, "archive"), "0 archives");
        assert_eq!(plural(2, "entry"), "2 entries");
    }

    #[test]
    fn numbers_and_durations_for_people() {
        assert_eq!(format_value(93.24), "93.2");
        assert_eq!(format_value(85.0), "85");
        assert_eq!(format_value(0.01234), "0.0123");
        assert_eq!(format_value(0.5), "0.5");
        assert_eq!(format_value(0.123456), "0.123");
        assert_eq!(format_value(0.00123456), "0.00123");
        // Small values keep their digits (they read 0 before issue 28).
        assert_eq!(format_value(1.234e-9), "1.23e-9");
        assert_eq!(format_value(-1.234e-9), "-1.23e-9");
        assert_eq!(format_value(1e-9), "1e-9");
        assert_eq!(format_value(5.5e-4), "5.5e-4");
        assert_eq!(format_value(2.5e-300), "2.5e-300");
        assert_eq!(format_value(0.0), "0");
        assert_eq!(format_value(2.5), "2.5");
        assert_eq!(format_value(8123456789.0), "8123456789");
        assert_eq!(format_for(42), "42s");
        assert_eq!(format_for(125), "2m5s");
        assert_eq!(format_for(900), "15m");
        assert_eq!(format_for(3_900), "1h5m");
        assert_eq!(format_for(7_200), "2h");
        assert_eq!(format_for(93_600), "1d2h");
    }
}
