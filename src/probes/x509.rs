//! Just enough DER to read a certificate's `notAfter`: the http probe's `cert_expiry_days`.

use chrono::{DateTime, NaiveDate, Utc};

/// One DER element: its tag and its content.
fn element(der: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *der.first()?;
    let first = *der.get(1)?;
    let (len, header) = if first < 0x80 {
        (first as usize, 2)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for b in der.get(2..2 + n)? {
            len = (len << 8) | *b as usize;
        }
        (len, 2 + n)
    };
    let content = der.get(header..header + len)?;
    Some((tag, content, &der[header + len..]))
}

/// `notAfter` of an X.509 certificate in DER.
pub fn not_after(der: &[u8]) -> Option<DateTime<Utc>> {
    const SEQUENCE: u8 = 0x30;
    let (tag, cert, _) = element(der)?;
    if tag != SEQUENCE {
        return None;
    }
    let (tag, tbs, _) = element(cert)?;
    if tag != SEQUENCE {
        return None;
    }
    let mut rest = tbs;
    // [0] version is optional; then serial, signature algorithm, issuer, validity.
    if rest.first() == Some(&0xa0) {
        rest = element(rest)?.2;
    }
    for _ in 0..3 {
        rest = element(rest)?.2;
    }
    let (tag, validity, _) = element(rest)?;
    if tag != SEQUENCE {
        return None;
    }
    let (_, _, after_not_before) = element(validity)?;
    let (tag, time, _) = element(after_not_before)?;
    parse_time(tag, std::str::from_utf8(time).ok()?)
}

/// UTCTime (`YYMMDDHHMMSSZ`, tag 0x17) or GeneralizedTime (`YYYYMMDDHHMMSSZ`, tag 0x18).
fn parse_time(tag: u8, text: &str) -> Option<DateTime<Utc>> {
    let text = text.strip_suffix('Z')?;
    let (year, rest) = match tag {
        0x17 => {
            let yy: i32 = text.get(..2)?.parse().ok()?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, text.get(2..)?)
        }
        0x18 => (text.get(..4)?.parse().ok()?, text.get(4..)?),
        _ => return None,
    };
    let num = |r: std::ops::Range<usize>| -> Option<u32> { rest.get(r)?.parse().ok() };
    NaiveDate::from_ymd_opt(year, num(0..2)?, num(2..4)?)?
        .and_hms_opt(num(4..6)?, num(6..8)?, num(8..10)?)
        .map(|t| t.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(
            parse_time(0x17, "261231235959Z").map(|t| t.to_rfc3339()),
            Some("2026-12-31T23:59:59+00:00".into())
        );
        assert_eq!(
            parse_time(0x18, "20500101000000Z").map(|t| t.to_rfc3339()),
            Some("2050-01-01T00:00:00+00:00".into())
        );
        assert_eq!(
            parse_time(0x17, "991231235959Z").map(|t| t.format("%Y").to_string()),
            Some("1999".into())
        );
        assert_eq!(parse_time(0x05, "x"), None);
    }

    #[test]
    fn garbage_is_none() {
        assert_eq!(not_after(&[]), None);
        assert_eq!(not_after(&[0x30, 0x82, 0xff]), None);
    }
}
