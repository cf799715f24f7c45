//! A short, deterministic run of the fuzz targets (`fuzz/targets.rs`) inside `cargo test`: each
//! seed (the shipped files and the test fixtures) is mutated a few hundred times by a fixed
//! generator (byte flips, inserted syntax, cut and repeated ranges) and fed to its target. The
//! targets must return for every input without a panic; cargo-fuzz runs them far longer
//! (`fuzz/README.md`).

#[path = "../../fuzz/targets.rs"]
mod targets;

use crate::support::root;

/// xorshift64*: the same inputs on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One mutation of `seed`: a few edits, each a flip, an insertion of a token the format cares
/// about, a cut, or a repeat.
fn mutate(seed: &[u8], tokens: &[&[u8]], rng: &mut Rng) -> Vec<u8> {
    let mut data = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(data.len() + 1);
        match rng.below(5) {
            0 if !data.is_empty() => {
                let i = rng.below(data.len());
                data[i] ^= 1 << rng.below(8);
            }
            1 => {
                let token = tokens[rng.below(tokens.len())];
                data.splice(at..at, token.iter().copied());
            }
            2 if !data.is_empty() => {
                let end = (at + rng.below(64)).min(data.len());
                data.drain(at.min(end)..end);
            }
            3 if !data.is_empty() => {
                let start = rng.below(data.len());
                let end = (start + rng.below(256)).min(data.len());
                let piece: Vec<u8> = data[start..end].to_vec();
                for _ in 0..1 + rng.below(8) {
                    data.splice(at..at, piece.iter().copied());
                }
            }
            _ => data.truncate(at),
        }
    }
    data
}

fn files(dir: &str, suffix: &str) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut stack = vec![root().join(dir)];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.to_string_lossy().ends_with(suffix) {
                out.push(std::fs::read(path).unwrap());
            }
        }
    }
    out
}

/// Feeds `rounds` mutations of each seed to `target`; the seeds themselves go first.
fn drive(seeds: &[Vec<u8>], tokens: &[&[u8]], rounds: usize, target: fn(&[u8])) -> usize {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut inputs = 0;
    for seed in seeds {
        target(seed);
        inputs += 1;
        for _ in 0..rounds {
            target(&mutate(seed, tokens, &mut rng));
            inputs += 1;
        }
    }
    inputs
}

const YAML: &[&[u8]] = &[
    b":",
    b"- ",
    b"{",
    b"}",
    b"[",
    b"]",
    b"\n",
    b"  ",
    b"\t",
    b"&a ",
    b"*a",
    b"<<: *a\n",
    b"type: ",
    b"${SET}",
    b"${UNSET}",
    b"'",
    b"\"",
    b"#",
    b"---\n",
    b"0",
    b"-1",
    b"1e999",
    b"18446744073709551615ms",
    b"@every 0s",
    b"0 25 * * *",
    b"\xff",
    b"~",
    b"!!str ",
];

#[test]
fn jobs_files_never_panic() {
    let mut seeds = files("jobs", ".yaml");
    seeds.extend(files("tests/fixtures/invalid", ".yaml"));
    let inputs = drive(&seeds, YAML, 60, targets::jobs_file);
    assert!(inputs > 500, "{inputs}");
}

#[test]
fn rule_test_files_never_panic() {
    let mut seeds = files("rules", ".test.yaml");
    seeds.push(
        b"rules: [r.rhai]\nscenarios:\n  - name: s\n    interval: 10s\n    start: \"2026-11-23T09:00:00Z\"\n    input: { m.v: \"40x3 60x10\" }\n    tests:\n      - { at: 1m, firing: [high] }\n      - { at: 30s, pending: [high], events: [] }\n".to_vec(),
    );
    let tokens: &[&[u8]] = &[
        b"9999999999w",
        b"x100000",
        b"_x1000000",
        b"+1e308x5",
        b"9999-12-31T00:00:00Z",
        b"weeks: 100000",
        b"1ms",
        b"{a=b}",
        b"at: ",
        b"\n      - ",
        b"\xff",
    ];
    let mut all = YAML.to_vec();
    all.extend_from_slice(tokens);
    let inputs = drive(&seeds, &all, 12, targets::rule_test_file);
    assert!(inputs > 100, "{inputs}");
}

#[test]
fn access_log_lines_never_panic() {
    let seeds: Vec<Vec<u8>> = vec![
        br#"203.0.113.7 - alice [28/Nov/2026:10:00:00 +0000] "GET /cart?item=\"x\" HTTP/1.1" 503 1234 "https://shop.example/" "Mozilla/5.0 (X11; Linux)" 0.250 sess-42"#.to_vec(),
        br#"10.0.0.1 - - [28/Nov/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 5 "-" "curl/8" -"#.to_vec(),
        b"10.1.1.1 404 1500 s9".to_vec(),
    ];
    let tokens: &[&[u8]] = &[
        b"\"", b"\\\"", b" ", b"[", b"]", b"-", b"999", b"\n", b"\xff", b"\r",
    ];
    let inputs = drive(&seeds, tokens, 2000, targets::access_log_line);
    assert!(inputs > 5000, "{inputs}");
}

#[test]
fn templates_never_panic_or_run_on() {
    let mut seeds = files("templates", ".hbs");
    seeds.push(b"{{#*inline \"p\"}}x{{> p}}{{/inline}}{{> p}}".to_vec());
    seeds.push(b"{{#each families}}{{#each metrics}}{{#each series}}{{#each ../series}}.{{/each}}{{/each}}{{/each}}{{/each}}".to_vec());
    let tokens: &[&[u8]] = &[
        b"{{",
        b"}}",
        b"{{#each families}}",
        b"{{/each}}",
        b"{{#if samples}}",
        b"{{/if}}",
        b"{{> p}}",
        b"{{#*inline \"p\"}}",
        b"{{/inline}}",
        b"(",
        b")",
        b"{{else}}",
        b"../",
        b"{{chart series}}",
        b"{{measure avg unit}}",
        b"{{{{raw}}}}",
        b"~",
    ];
    let inputs = drive(&seeds, tokens, 40, targets::template);
    assert!(inputs > 100, "{inputs}");
}
