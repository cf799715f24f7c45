//! The four protobuf messages of Prometheus remote write 1.0 (`prometheus.WriteRequest`),
//! encoded by hand: `WriteRequest{timeseries}`, `TimeSeries{labels, samples}`,
//! `Label{name, value}` and `Sample{value, timestamp}`. A code generator and its runtime
//! would be most of a dependency tree for these few lines.

/// One series of a request: its labels, sorted by name (the spec requires it), and its samples
/// in time order as `(timestamp ms, value)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Series<'a> {
    pub labels: &'a [(String, String)],
    pub samples: &'a [(i64, f64)],
}

fn varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn varint_len(mut value: u64) -> usize {
    let mut n = 1;
    while value >= 0x80 {
        value >>= 7;
        n += 1;
    }
    n
}

/// Tag of a length-delimited field (wire type 2).
fn bytes_tag(field: u8) -> u8 {
    (field << 3) | 2
}

fn string_field_len(text: &str) -> usize {
    1 + varint_len(text.len() as u64) + text.len()
}

fn label_len(name: &str, value: &str) -> usize {
    string_field_len(name) + string_field_len(value)
}

fn sample_len(timestamp: i64) -> usize {
    // value: tag + 8 bytes (fixed64); timestamp: tag + varint (int64: two's complement).
    9 + 1 + varint_len(timestamp as u64)
}

fn series_len(series: &Series<'_>) -> usize {
    let labels: usize = series
        .labels
        .iter()
        .map(|(n, v)| {
            let len = label_len(n, v);
            1 + varint_len(len as u64) + len
        })
        .sum();
    let samples: usize = series
        .samples
        .iter()
        .map(|(ts, _)| {
            let len = sample_len(*ts);
            1 + varint_len(len as u64) + len
        })
        .sum();
    labels + samples
}

fn string_field(out: &mut Vec<u8>, field: u8, text: &str) {
    out.push(bytes_tag(field));
    varint(out, text.len() as u64);
    out.extend_from_slice(text.as_bytes());
}

/// `WriteRequest` with `series`, appended to `out`.
pub fn encode_write_request<'a>(series: impl IntoIterator<Item = Series<'a>>, out: &mut Vec<u8>) {
    for s in series {
        out.push(bytes_tag(1));
        varint(out, series_len(&s) as u64);
        for (name, value) in s.labels {
            out.push(bytes_tag(1));
            varint(out, label_len(name, value) as u64);
            string_field(out, 1, name);
            string_field(out, 2, value);
        }
        for (ts, value) in s.samples {
            out.push(bytes_tag(2));
            varint(out, sample_len(*ts) as u64);
            // Sample.value: field 1, wire type 1 (64-bit).
            out.push((1 << 3) | 1);
            out.extend_from_slice(&value.to_le_bytes());
            // Sample.timestamp: field 2, varint.
            out.push(2 << 3);
            varint(out, *ts as u64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes checked by hand against the .proto: field numbers, wire types and lengths.
    #[test]
    fn encodes_a_write_request_as_the_proto_says() {
        let labels = vec![
            ("__name__".to_string(), "up".to_string()),
            ("a".to_string(), "b".to_string()),
        ];
        let samples = vec![(1000_i64, 1.0_f64)];
        let mut out = Vec::new();
        encode_write_request(
            [Series {
                labels: &labels,
                samples: &samples,
            }],
            &mut out,
        );
        let mut expected = vec![0x0a, 38];
        // Label{__name__=up}: 2+8 + 2+2 = 14 bytes.
        expected.extend([0x0a, 14, 0x0a, 8]);
        expected.extend(b"__name__");
        expected.extend([0x12, 2]);
        expected.extend(b"up");
        expected.extend([0x0a, 6, 0x0a, 1, b'a', 0x12, 1, b'b']);
        // Sample{1.0, 1000}: 9 + 1 + 2 = 12 bytes.
        expected.extend([0x12, 12, 0x09]);
        expected.extend(1.0_f64.to_le_bytes());
        expected.extend([0x10, 0xe8, 0x07]);
        assert_eq!(expected[1] as usize, expected.len() - 2);
        assert_eq!(out, expected);
    }

    #[test]
    fn negative_timestamps_take_ten_bytes() {
        let mut out = Vec::new();
        varint(&mut out, (-1_i64) as u64);
        assert_eq!(out.len(), 10);
        assert_eq!(varint_len((-1_i64) as u64), 10);
    }
}
