//! What the benchmarks share: probes built from YAML through the real config loader.

use runner::config::{Config, JobKind};
use runner::probes::{ProbeSet, ProcRoot};

/// The probes of a monitor job whose `probes:` list items are `items` (one per line).
pub fn probe_set(dir: &std::path::Path, items: &str) -> ProbeSet {
    let file = dir.join("jobs.yaml");
    let indented: String = items.lines().map(|l| format!("      {l}\n")).collect();
    std::fs::write(
        &file,
        format!("data_dir: var\njobs:\n  m:\n    type: monitor\n    schedule: \"@every 10s\"\n    probes:\n{indented}"),
    )
    .expect("write jobs file");
    let config = Config::load(&file).expect("valid probes");
    let JobKind::Monitor(monitor) = &config.job("m").expect("job m").kind else {
        unreachable!("job m is a monitor")
    };
    ProbeSet::build(&monitor.probes, &ProcRoot::default())
}
