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
    } else if field.ends_with("_seconds") || field.ends_with("_secs") || field.ends_with("_s") {
        "seconds"
    } else if field.ends_with("_days") {
        "days"
    } else if field == "up" {
        "bool"
    } else {
        ""
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_say_their_units() {
        assert_eq!(unit_of("read_bytes_per_sec"), "bytes_per_sec");
        assert_eq!(unit_of("used_percent"), "percent");
        assert_eq!(unit_of("available_bytes"), "bytes");
        assert_eq!(unit_of("major_faults_per_sec"), "per_sec");
        assert_eq!(unit_of("rtt_avg_ms"), "ms");
        // PostgreSQL's ages and lags are in seconds, spelt `_s`.
        assert_eq!(unit_of("oldest_transaction_s"), "seconds");
        assert_eq!(unit_of("cert_expiry_days"), "days");
        assert_eq!(unit_of("up"), "bool");
        assert_eq!(unit_of("load1"), "");
    }
}
