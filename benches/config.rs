//! `cargo bench --bench config`: loading (parsing, checking and building) a jobs file of
//! 2,000 monitor jobs, as every command does; a file with one broken job among them.

// A harness, not the product: a panic here is the failure, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::OnceLock;

use runner::config::Config;

fn main() {
    divan::main();
}

const JOBS: usize = 2_000;

/// A folder with `many.yaml` (2,000 jobs) and `broken.yaml` (the same with one job misspelt).
fn files() -> &'static tempfile::TempDir {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let mut yaml = String::from("data_dir: var\njobs:\n");
        for i in 0..JOBS {
            yaml.push_str(&format!(
                "  job{i}:\n    type: monitor\n    schedule: \"@every 10s\"\n    probes: [{{ type: cpu }}, {{ type: memory }}]\n"
            ));
        }
        std::fs::write(dir.path().join("many.yaml"), &yaml).unwrap();
        let broken = yaml.replacen("    schedule: \"@every 10s\"\n", "    schedul: \"@every 10s\"\n", 1);
        std::fs::write(dir.path().join("broken.yaml"), broken).unwrap();
        dir
    })
}

#[divan::bench(sample_count = 10)]
fn load_2000_jobs() {
    let config = Config::load(&files().path().join("many.yaml"))
        .unwrap_or_else(|p| panic!("{}", p.render()));
    assert_eq!(config.jobs.len(), JOBS);
}

#[divan::bench(sample_count = 10)]
fn load_2000_jobs_one_broken() {
    let problems = Config::load(&files().path().join("broken.yaml")).unwrap_err();
    assert!(problems.render().contains("schedul"));
}
