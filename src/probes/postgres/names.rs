//! A database's or standby's name as the part of a metric name (`postgres.main.<part>.<field>`),
//! and back for the report. Two names never share a part: `Shop-EU` and `shop_eu` were both
//! `shop_eu`, so one sample held the same key twice and one database was lost (issue 30).
//!
//! A name of lower-case letters, digits and `_` (most are) is its own part. Otherwise an upper
//! case letter is `-` and the letter (`E` → `-e`), any other byte `--` and two hex digits
//! (`-` → `--2d`), and the empty name `-`: no plain name holds a `-`, and the escapes read back
//! one way only. Standbys that share an `application_name` (`walreceiver`, the default) are told
//! apart by `~2`, `~3`, … after the part of the second, third, … (`~` is escaped in a name).
//! A table of the probe's database is its schema's part, `~~` and its own (`public~~orders`):
//! no database's or standby's part holds `~~`, so a table never shares a part with either.

use std::fmt::Write as _;

/// The metric name part for `name`.
pub fn metric_part(name: &str) -> String {
    if name.is_empty() {
        return "-".to_string();
    }
    let mut part = String::with_capacity(name.len());
    for byte in name.bytes() {
        match byte {
            b'a'..=b'z' | b'0'..=b'9' | b'_' => part.push(byte as char),
            b'A'..=b'Z' => {
                part.push('-');
                part.push(byte.to_ascii_lowercase() as char);
            }
            _ => {
                let _ = write!(part, "--{byte:02x}");
            }
        }
    }
    part
}

/// The part of the `nth` (1-based) standby among those sharing one `application_name`.
pub fn numbered_part(name: &str, nth: usize) -> String {
    let part = metric_part(name);
    if nth > 1 {
        format!("{part}~{nth}")
    } else {
        part
    }
}

/// The part of the table `schema.table`.
pub fn table_part(schema: &str, table: &str) -> String {
    format!("{}~~{}", metric_part(schema), metric_part(table))
}

/// The name a part was made from, for people: `-shop--2d-e-u` → `Shop-EU`, `walreceiver~2` →
/// `walreceiver (2)`. A part that is no escape (written by an older runner) stays as it is.
pub fn original_name(part: &str) -> String {
    if let Some((schema, table)) = part.split_once("~~") {
        let back = |p: &str| unescape(p).unwrap_or_else(|| p.to_string());
        return format!("{}.{}", back(schema), back(table));
    }
    let (escaped, nth) = match part.rsplit_once('~') {
        Some((escaped, nth)) if nth.parse::<usize>().is_ok() => (escaped, Some(nth)),
        _ => (part, None),
    };
    let name = unescape(escaped).unwrap_or_else(|| escaped.to_string());
    match nth {
        Some(nth) => format!("{name} ({nth})"),
        None => name,
    }
}

fn unescape(part: &str) -> Option<String> {
    if part == "-" {
        return Some(String::new());
    }
    let mut bytes = Vec::with_capacity(part.len());
    let mut rest = part.as_bytes();
    while let Some((&first, tail)) = rest.split_first() {
        rest = tail;
        match first {
            b'a'..=b'z' | b'0'..=b'9' | b'_' => bytes.push(first),
            b'-' => match rest {
                [b'-', high, low, tail @ ..] => {
                    let hex = std::str::from_utf8(&[*high, *low]).ok()?.to_string();
                    bytes.push(u8::from_str_radix(&hex, 16).ok()?);
                    rest = tail;
                }
                [letter @ b'a'..=b'z', tail @ ..] => {
                    bytes.push(letter.to_ascii_uppercase());
                    rest = tail;
                }
                _ => return None,
            },
            _ => return None,
        }
    }
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn case(name: &str, part: &str) {
        assert_eq!(metric_part(name), part, "{name}");
        assert_eq!(original_name(part), name, "{part}");
    }

    #[test]
    fn plain_names_are_their_own_part_and_others_are_escaped_both_ways() {
        case("shop", "shop");
        case("shop_eu", "shop_eu");
        case("Shop-EU", "-shop--2d-e-u");
        case("shop eu", "shop--20eu");
        case("café", "caf--c3--a9");
        case("a~2", "a--7e2");
        case("", "-");
    }

    #[test]
    fn names_that_sanitised_alike_get_parts_apart() {
        let names = [
            "Shop-EU", "shop_eu", "shop-eu", "SHOP_EU", "shop eu", "", "_", "-", "--2d",
        ];
        let mut parts: Vec<String> = names.iter().map(|n| metric_part(n)).collect();
        parts.sort();
        parts.dedup();
        assert_eq!(parts.len(), names.len(), "{parts:?}");
        assert!(parts.iter().all(|p| !p.contains('.')));
    }

    #[test]
    fn standbys_sharing_a_name_are_numbered_from_the_second() {
        assert_eq!(numbered_part("walreceiver", 1), "walreceiver");
        assert_eq!(numbered_part("walreceiver", 2), "walreceiver~2");
        assert_eq!(original_name("walreceiver~2"), "walreceiver (2)");
        assert_ne!(
            numbered_part("walreceiver", 2),
            metric_part("walreceiver~2")
        );
    }

    #[test]
    fn tables_never_share_a_part_with_a_database_or_a_standby() {
        assert_eq!(table_part("public", "orders"), "public~~orders");
        assert_eq!(original_name("public~~orders"), "public.orders");
        assert_eq!(original_name(&table_part("Sales", "a.b~2")), "Sales.a.b~2");
        // A table named `2` is no second standby named `public`, and a database named like
        // a table's qualified name has no `~~`.
        assert_ne!(table_part("public", "2"), numbered_part("public", 2));
        assert_ne!(
            table_part("public", "orders"),
            metric_part("public~~orders")
        );
        assert_ne!(table_part("a~", "b"), table_part("a", "~b"));
    }
}
