//! The notations of rule tests: promtool's input series (`50x6 95x20`, `0+10x5`, `_`) and
//! alert references (`disk_full{mount=/var}`) compared with what is there.

use std::collections::BTreeMap;

/// Why a series was not expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeriesError {
    /// A token that is not promtool's notation; the message says which and why.
    Notation(String),
    /// The series is longer than the most it may be: its length, counted from the notation
    /// before anything was expanded (`None`: more than `u64::MAX` values).
    TooLong(Option<u64>),
}

/// One token of a series, parsed but not expanded: `count` values from `first` in steps of
/// `step`, or `count` missing samples when `first` is `None`. A `count` of `None` does not fit
/// in a `u64` (`1x18446744073709551615` is one more than that).
struct Token {
    first: Option<f64>,
    step: f64,
    count: Option<u64>,
}

/// Expands promtool's series notation: `a+bxn` is n+1 values from a in steps of b, `axn` is
/// a n+1 times, `_` a missing sample, `_xn` n missing samples. The length is counted from the
/// notation first, with checked arithmetic, and a series of more than `max` values is refused
/// before any of it is allocated: `_x2000000000` is a short string and 32 GB expanded.
pub fn expand_series(text: &str, max: usize) -> Result<Vec<Option<f64>>, SeriesError> {
    let mut length = Some(0u64);
    for token in text.split_whitespace() {
        let count = parse_token(token).map_err(SeriesError::Notation)?.count;
        length = length.zip(count).and_then(|(sum, n)| sum.checked_add(n));
    }
    let length = match length {
        Some(n) if n <= max as u64 => n,
        other => return Err(SeriesError::TooLong(other)),
    };
    // Every count fits now, and so does their sum: the second pass cannot overflow.
    let mut out = Vec::with_capacity(usize::try_from(length).unwrap_or(max));
    for token in text.split_whitespace() {
        let Token { first, step, count } = parse_token(token).map_err(SeriesError::Notation)?;
        let count = count.unwrap_or(0);
        match first {
            None => out.extend((0..count).map(|_| None)),
            Some(first) => out.extend((0..count).map(|k| Some(first + step * k as f64))),
        }
    }
    Ok(out)
}

fn parse_token(token: &str) -> Result<Token, String> {
    if token == "_" {
        return Ok(Token {
            first: None,
            step: 0.0,
            count: Some(1),
        });
    }
    let Some((start, times)) = token.split_once('x') else {
        return Ok(Token {
            first: Some(parse_number(token)?),
            step: 0.0,
            count: Some(1),
        });
    };
    // Digits that do not fit in a u64 are a length too, not a typo: refused as too long.
    let n: Option<u64> = match times.parse() {
        Ok(n) => Some(n),
        Err(_) if !times.is_empty() && times.bytes().all(|b| b.is_ascii_digit()) => None,
        Err(_) => {
            return Err(format!(
                "`{token}`: the count after `x` must be a whole number"
            ));
        }
    };
    if start == "_" {
        return Ok(Token {
            first: None,
            step: 0.0,
            count: n,
        });
    }
    // The step's sign separates it from the start, which may itself be negative.
    let split = start
        .char_indices()
        .skip(1)
        .find(|(_, c)| *c == '+' || *c == '-')
        .map(|(i, _)| i);
    let (first, step) = match split {
        Some(i) => (parse_number(&start[..i])?, parse_number(&start[i..])?),
        None => (parse_number(start)?, 0.0),
    };
    Ok(Token {
        first: Some(first),
        step,
        count: n.and_then(|n| n.checked_add(1)),
    })
}

fn parse_number(text: &str) -> Result<f64, String> {
    text.trim_start_matches('+').parse().map_err(|_| {
        format!("`{text}` is not a number (series look like `50x6 95x20`, `0+10x5`, `_`)")
    })
}

/// `disk_full{mount=/var}` → (`disk_full`, {mount: /var}).
pub fn parse_alert_ref(text: &str) -> (String, BTreeMap<String, String>) {
    let text = text.trim();
    match text.split_once('{') {
        Some((name, rest)) => {
            let labels = rest
                .trim_end_matches('}')
                .split(',')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.trim().to_string(), v.trim().trim_matches('"').to_string()))
                .collect();
            (name.to_string(), labels)
        }
        None => (text.to_string(), BTreeMap::new()),
    }
}

fn matches_ref(reference: &str, name: &str, labels: &BTreeMap<String, String>) -> bool {
    let (want_name, want_labels) = parse_alert_ref(reference);
    want_name == name && want_labels.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// Compares a list of references with what is there; `None` when they match exactly.
pub fn compare_set(
    what: &str,
    expected: &[String],
    got: &[(String, BTreeMap<String, String>)],
) -> Option<String> {
    let mut unmatched: Vec<&(String, BTreeMap<String, String>)> = got.iter().collect();
    let mut missing = Vec::new();
    for reference in expected {
        match unmatched
            .iter()
            .position(|(n, l)| matches_ref(reference, n, l))
        {
            Some(i) => {
                unmatched.remove(i);
            }
            None => missing.push(reference.clone()),
        }
    }
    if missing.is_empty() && unmatched.is_empty() {
        return None;
    }
    let show = |items: &[(String, BTreeMap<String, String>)]| {
        items
            .iter()
            .map(|(n, l)| {
                if l.is_empty() {
                    n.clone()
                } else {
                    format!(
                        "{n}{{{}}}",
                        l.iter()
                            .map(|(k, v)| format!("{k}={v}"))
                            .collect::<Vec<_>>()
                            .join(",")
                    )
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    Some(format!(
        "{what}: expected [{}], got [{}]",
        expected.join(", "),
        show(got)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_promtool_series() {
        let v = |s: &str| expand_series(s, 100).unwrap();
        assert_eq!(v("0+10x5"), [0.0, 10.0, 20.0, 30.0, 40.0, 50.0].map(Some));
        assert_eq!(v("-2+4x3"), [-2.0, 2.0, 6.0, 10.0].map(Some));
        assert_eq!(v("1-2x4"), [1.0, -1.0, -3.0, -5.0, -7.0].map(Some));
        assert_eq!(v("1x4"), [1.0; 5].map(Some));
        assert_eq!(v("1 _x3 2"), [Some(1.0), None, None, None, Some(2.0)]);
        assert_eq!(v("50x1 95x2").len(), 5);
        assert!(expand_series("5xz", 100).is_err());
        assert!(expand_series("abc", 100).is_err());
        assert!(expand_series("_x-1", 100).is_err());
    }

    #[test]
    fn a_series_is_measured_before_it_is_expanded() {
        let too_long = |s: &str, max: usize| match expand_series(s, max) {
            Err(SeriesError::TooLong(n)) => n,
            other => panic!("{s}: {other:?}"),
        };
        // Each of these would allocate gigabytes, or abort, if it were expanded first.
        assert_eq!(too_long("_x2000000000", 1_000_000), Some(2_000_000_000));
        assert_eq!(too_long("10x4294967296", 840), Some(4_294_967_297));
        assert_eq!(too_long("30x60000000", 1_000_000), Some(60_000_001));
        assert_eq!(too_long("10x60000000", 840), Some(60_000_001));
        assert_eq!(
            too_long("_x18446744073709551615", 1_000_000),
            Some(u64::MAX)
        );
        // n+1 overflows, a count beyond a u64, and a sum over tokens that overflows.
        assert_eq!(too_long("1x18446744073709551615", 1_000_000), None);
        assert_eq!(too_long("_x99999999999999999999999", 1_000_000), None);
        assert_eq!(
            too_long("_x18446744073709551615 _x18446744073709551615", 10),
            None
        );
        assert_eq!(too_long("1 _x1 1+1x2", 4), Some(5));
        // Exactly at the limit is fine, one past it is not; both in one token or over several.
        assert_eq!(
            expand_series("0+1x999999", 1_000_000).unwrap().len(),
            1_000_000
        );
        assert_eq!(
            expand_series("_x500000 1x499999", 1_000_000).unwrap().len(),
            1_000_000
        );
        assert_eq!(too_long("0+1x1000000", 1_000_000), Some(1_000_001));
        assert_eq!(too_long("_x500000 1x500000 _", 1_000_000), Some(1_000_002));
        assert_eq!(expand_series("_x0 1x0", 1).unwrap(), [Some(1.0)]);
        // A notation error is said as such, even where the series is also too long.
        assert!(matches!(
            expand_series("_x2000000000 5xz", 10),
            Err(SeriesError::Notation(_))
        ));
    }

    #[test]
    fn alert_references_with_labels() {
        let labels: BTreeMap<String, String> = [("mount".to_string(), "/var".to_string())].into();
        assert!(matches_ref("disk_full", "disk_full", &labels));
        assert!(matches_ref("disk_full{mount=/var}", "disk_full", &labels));
        assert!(!matches_ref("disk_full{mount=/}", "disk_full", &labels));
        assert_eq!(
            compare_set("firing", &["a".into()], &[("a".into(), BTreeMap::new())]),
            None
        );
        assert_eq!(
            compare_set("firing", &["a".into()], &[]),
            Some("firing: expected [a], got []".into())
        );
    }
}
