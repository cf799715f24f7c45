//! The notations of rule tests: promtool's input series (`50x6 95x20`, `0+10x5`, `_`) and
//! alert references (`disk_full{mount=/var}`) compared with what is there.

use std::collections::BTreeMap;

/// Expands promtool's series notation: `a+bxn` is n+1 values from a in steps of b, `axn` is
/// a n+1 times, `_` a missing sample, `_xn` n missing samples.
pub fn expand_series(text: &str) -> Result<Vec<Option<f64>>, String> {
    let mut out = Vec::new();
    for token in text.split_whitespace() {
        if token == "_" {
            out.push(None);
            continue;
        }
        let Some((start, times)) = token.split_once('x') else {
            out.push(Some(parse_number(token)?));
            continue;
        };
        let n: usize = times
            .parse()
            .map_err(|_| format!("`{token}`: the count after `x` must be a whole number"))?;
        if start == "_" {
            out.extend(std::iter::repeat_n(None, n));
            continue;
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
        out.extend((0..=n).map(|k| Some(first + step * k as f64)));
    }
    Ok(out)
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
        let v = |s: &str| expand_series(s).unwrap();
        assert_eq!(v("0+10x5"), [0.0, 10.0, 20.0, 30.0, 40.0, 50.0].map(Some));
        assert_eq!(v("-2+4x3"), [-2.0, 2.0, 6.0, 10.0].map(Some));
        assert_eq!(v("1-2x4"), [1.0, -1.0, -3.0, -5.0, -7.0].map(Some));
        assert_eq!(v("1x4"), [1.0; 5].map(Some));
        assert_eq!(v("1 _x3 2"), [Some(1.0), None, None, None, Some(2.0)]);
        assert_eq!(v("50x1 95x2").len(), 5);
        assert!(expand_series("5xz").is_err());
        assert!(expand_series("abc").is_err());
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
