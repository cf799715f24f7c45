//! The unit a metric's name gives it (`_percent`, `_bytes`, `_per_sec`, `_ms`, ...), as the
//! report and the status page show values.

/// The unit a field's name says.
pub fn unit_of(field: &str) -> &'static str {
    if field.ends_with("_bytes_per_sec") {
        "bytes_per_sec"
    } else if field.ends_with("_percent") {
        "percent"
    } else if field.ends_with("_bytes") {
        "bytes"
    } else if field.ends_with("_per_sec") {
        "per_sec"
    } else if field.ends_with("_ms") {
        "ms"
    } else if field.ends_with("_seconds") || field.ends_with("_secs") {
        "seconds"
    } else if field.ends_with("_days") {
        "days"
    } else if field == "up" {
        "bool"
    } else {
        ""
    }
}
