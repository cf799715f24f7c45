//! Writes a metrics log again as another program might: spaces after `:` and `,`, `ts` without
//! milliseconds, no `errors`. The same samples in another valid JSON spelling, for
//! `scripts/report-throughput.sh`.
//!
//!   cargo run --release --example respell_metrics -- FROM_DATA_DIR TO_DATA_DIR

// A harness, not the product: a panic here is the failure, with its message.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_macros
)]

use std::io::{BufRead, BufWriter, Write};
use std::path::Path;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [from, to] = args.as_slice() else {
        return Err("usage: respell_metrics FROM_DATA_DIR TO_DATA_DIR".into());
    };
    let (from, to) = (
        Path::new(from).join("metrics"),
        Path::new(to).join("metrics"),
    );
    std::fs::create_dir_all(&to)?;
    let mut parser = runner::store::sample::LineParser::default();
    for entry in std::fs::read_dir(&from)? {
        let path = entry?.path();
        let reader = std::io::BufReader::new(std::fs::File::open(&path)?);
        let mut out = BufWriter::new(std::fs::File::create(to.join(path.file_name().unwrap()))?);
        for line in reader.lines() {
            let line = line?;
            let view = parser.parse(&line)?;
            let metrics: Vec<String> = view
                .metrics()
                .map(|(name, value)| format!("\"{name}\": {value}"))
                .collect();
            writeln!(
                out,
                "{{\"ts\": \"{}\", \"host\": \"{}\", \"job\": \"{}\", \"metrics\": {{{}}}}}",
                view.ts().format("%Y-%m-%dT%H:%M:%SZ"),
                view.host(),
                view.job(),
                metrics.join(", ")
            )?;
        }
        out.flush()?;
    }
    Ok(())
}
