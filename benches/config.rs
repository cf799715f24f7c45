//! `cargo bench --bench config`: loading (parsing, checking and building) a jobs file of
//! 2,000 monitor jobs, as every command does; a file with one broken job among them.

// A harness, not the product: a panic here is the failure, with its message.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_macros
)]

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

/// The largest templates `register_file` accepts, in the shapes that cost its parser most:
/// handlebars finds every construct's line and column by counting from the start of the
/// text, so the most tags after the most text (`tags_at_the_end`), and `{{else if}}` chains
/// as long as the nesting limit allows. Their time is what a hostile template can cost
/// `check` or a reload.
#[divan::bench(sample_count = 3, args = ["tags_at_the_end", "else_if_chains"])]
fn register_a_template_at_the_limits(bencher: divan::Bencher, shape: &str) {
    use runner::template::bounds::{MAX_NESTING, MAX_TAGS, MAX_TEMPLATE_BYTES};
    let tags = match shape {
        "tags_at_the_end" => "{{#if a}}{{b}}{{/if}}".repeat(MAX_TAGS / 3),
        _ => {
            let links = MAX_NESTING - 1;
            let chain = format!(
                "{{{{#if a}}}}x{}{{{{/if}}}}",
                "{{else if b}}x".repeat(links)
            );
            chain.repeat(MAX_TAGS / (links + 2))
        }
    };
    let text = format!("{}{tags}", "x".repeat(MAX_TEMPLATE_BYTES - tags.len()));
    let path = files().path().join(format!("{shape}.hbs"));
    std::fs::write(&path, text).unwrap();
    bencher.bench(|| {
        let mut hb = runner::template::registry(runner::template::Escape::Html);
        runner::template::register_file(&mut hb, &path).unwrap();
    });
}
