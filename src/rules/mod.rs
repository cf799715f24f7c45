//! Rule scripts: Rhai files that ops write and change without recompiling. Each file is
//! compiled once at load and checked against its job's metrics; every tick, each file runs
//! against the current sample and history, and the `alert()` calls it makes go to the alert
//! lifecycle. A rule that fails (an error, a limit, its deadline) is logged with its position
//! and counted, and the other rules of the tick still run.

pub mod activation;
pub mod check;
pub mod context;
pub mod engine;
pub mod functions;

pub mod values;
pub mod window;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rhai::{AST, Dynamic, Engine, EvalAltResult, Scope};

use crate::diagnostic::{Problem, Problems};
use crate::store::history::History;
use activation::Activation;
use context::TickContext;
use values::{FamilyNode, Schema, Values};

/// One compiled rule file.
pub struct RuleFile {
    pub path: PathBuf,
    /// The path as shown in logs and alert events.
    pub name: Arc<str>,
    ast: AST,
    /// How its evaluations went; kept across reloads of an unchanged path.
    pub stats: Arc<RuleFileStats>,
}

/// One rule file's evaluations since start, for `/metrics`.
#[derive(Debug, Default)]
pub struct RuleFileStats {
    pub evaluations: AtomicU64,
    pub failures: AtomicU64,
    /// Time spent evaluating, in microseconds: all of it and the last evaluation's.
    pub micros_total: AtomicU64,
    pub last_micros: AtomicU64,
}

impl RuleFileStats {
    fn record(&self, took: Duration, failed: bool) {
        let micros = took.as_micros().min(u128::from(u64::MAX)) as u64;
        self.evaluations.fetch_add(1, Ordering::Relaxed);
        self.failures
            .fetch_add(u64::from(failed), Ordering::Relaxed);
        self.micros_total.fetch_add(micros, Ordering::Relaxed);
        self.last_micros.store(micros, Ordering::Relaxed);
    }
}

/// How one rule file's evaluation went this tick.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleOutcome {
    pub rule_file: Arc<str>,
    /// Metrics the rule read that this tick lacks.
    pub missing: BTreeSet<String>,
    pub error: Option<String>,
}

/// What all rules said this tick.
#[derive(Debug, Default)]
pub struct Evaluation {
    pub activations: Vec<Activation>,
    pub outcomes: Vec<RuleOutcome>,
}

/// A monitor job's rules, ready to run.
pub struct RuleSet {
    engine: Engine,
    files: Vec<RuleFile>,
    schema: Schema,
    deadline: Duration,
}

impl RuleSet {
    /// Compiles and checks every rule file the patterns name. The set holds the files that
    /// are fine; the problems of the others come back with it, all at once, so one bad rule
    /// never keeps the good ones from running.
    pub fn load(patterns: &[PathBuf], schema: Schema, deadline: Duration) -> (RuleSet, Problems) {
        let engine = engine::build(&schema);
        let mut problems = Problems::default();
        let mut files = Vec::new();
        for pattern in patterns {
            let paths = match crate::glob::expand(pattern) {
                Ok(paths) => paths,
                Err(e) => {
                    problems.push(Problem::error(pattern, e.to_string()));
                    continue;
                }
            };
            for path in paths {
                match compile(&engine, &path, &schema) {
                    Ok(file) => files.push(file),
                    Err(p) => problems.extend(p),
                }
            }
        }
        let set = RuleSet {
            engine,
            files,
            schema,
            deadline,
        };
        (set, problems)
    }

    pub fn files(&self) -> &[RuleFile] {
        &self.files
    }

    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// After a reload: files loaded from the same path go on counting where `previous` was.
    pub fn keep_stats_of(&mut self, previous: &RuleSet) {
        for file in &mut self.files {
            if let Some(old) = previous.files.iter().find(|f| f.path == file.path) {
                file.stats = old.stats.clone();
            }
        }
    }

    /// Runs every rule file against `metrics` at `now`. History is lent for the evaluation
    /// and handed back.
    pub fn evaluate<'a>(
        &self,
        history: History,
        now: DateTime<Utc>,
        metrics: impl IntoIterator<Item = (&'a str, f64)>,
    ) -> (History, Evaluation) {
        self.evaluate_noted(history, now, metrics, std::iter::empty())
    }

    /// `evaluate` with the text probes reported beside the metrics, which rules read with
    /// `note()`.
    pub fn evaluate_noted<'a>(
        &self,
        history: History,
        now: DateTime<Utc>,
        metrics: impl IntoIterator<Item = (&'a str, f64)>,
        notes: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> (History, Evaluation) {
        let values = Arc::new(Values::new(&self.schema, metrics).with_notes(notes));
        let mut scope = Scope::new();
        for (family, schema) in &self.schema.families {
            scope.push_constant(
                family.as_str(),
                FamilyNode {
                    values: values.clone(),
                    family: family.as_str().into(),
                    flat: schema.flat,
                },
            );
        }
        let base = scope.len();
        context::install(TickContext {
            history,
            now_ms: now.timestamp_millis(),
            values,
            rule_file: "".into(),
            deadline: None,
            held_at_start: 0,
            printed: 0,
            raised: 0,
            activations: Vec::new(),
            missing: BTreeSet::new(),
        });
        let mut evaluation = Evaluation::default();
        for file in &self.files {
            let raised_before = context::with(|c| {
                let deadline = Instant::now() + self.deadline;
                c.rule_file = file.name.clone();
                c.deadline = Some(deadline);
                c.history.set_deadline(Some(deadline));
                c.held_at_start = crate::alloc::held_by_this_thread();
                c.printed = 0;
                c.raised = 0;
                c.missing.clear();
                c.activations.len()
            })
            .unwrap_or_default();
            let started = Instant::now();
            let result = self.engine.run_ast_with_scope(&mut scope, &file.ast);
            file.stats.record(started.elapsed(), result.is_err());
            scope.rewind(base);
            let (missing, printed) =
                context::with(|c| (std::mem::take(&mut c.missing), c.printed)).unwrap_or_default();
            if printed > engine::MAX_PRINTS {
                tracing::info!(
                    rule = %file.name,
                    left_out = printed - engine::MAX_PRINTS,
                    "more print/debug lines this tick than the {} a rule may log; the rest were left out",
                    engine::MAX_PRINTS
                );
            }
            let error = result.err().map(|e| {
                // A file that did not finish said nothing reliable: the alerts it raised before
                // failing are dropped, so they keep their state.
                context::with(|c| c.activations.truncate(raised_before));
                describe_runtime_error(&e)
            });
            evaluation.outcomes.push(RuleOutcome {
                rule_file: file.name.clone(),
                missing,
                error,
            });
        }
        // Only this function installs and takes the context, so it is there.
        match context::take() {
            Some(mut context) => {
                evaluation.activations = context.activations;
                context.history.set_deadline(None);
                (context.history, evaluation)
            }
            None => (History::default(), evaluation),
        }
    }
}

/// A runtime error as one line with its position: `line 12: division by zero`.
pub fn describe_runtime_error(e: &EvalAltResult) -> String {
    let pos = e.position();
    let message = match e {
        EvalAltResult::ErrorTerminated(token, _) if token.to_string() == engine::DEADLINE => {
            "took longer than its deadline and was stopped".to_string()
        }
        EvalAltResult::ErrorTerminated(token, _) if token.to_string() == engine::MEMORY => {
            format!(
                "held more than {} MiB of memory and was stopped",
                context::MAX_RULE_MEMORY >> 20
            )
        }
        EvalAltResult::ErrorTooManyOperations(_) => {
            "ran too many operations (a loop that does not end?) and was stopped".to_string()
        }
        // What a native function refused (a window too long): its words as they are.
        EvalAltResult::ErrorRuntime(value, _) => value.to_string(),
        other => {
            // Rhai appends the position in parentheses; it is given separately here.
            let text = other.to_string();
            match text.rfind(" (line ") {
                Some(i) => text[..i].to_string(),
                None => text,
            }
        }
    };
    match (pos.line(), pos.position()) {
        (Some(line), Some(col)) => format!("line {line}, column {col}: {message}"),
        (Some(line), None) => format!("line {line}: {message}"),
        _ => message,
    }
}

/// Compiles one rule file against the job's families and checks it.
fn compile(engine: &Engine, path: &Path, schema: &Schema) -> Result<RuleFile, Problems> {
    let source = crate::diagnostic::read_text(path, "rule file").map_err(|p| Problems::from(*p))?;
    let mut scope = Scope::new();
    for family in schema.families.keys() {
        scope.push_constant(family.as_str(), Dynamic::UNIT);
    }
    let ast = engine.compile_with_scope(&scope, &source).map_err(|e| {
        let line = e.1.line().unwrap_or(0) as u64;
        let column = e.1.position().unwrap_or(1) as u64;
        let mut problem = Problem::error(path, compile_message(&e.0, schema)).at(line, column, 1);
        if let rhai::ParseErrorType::VariableUndefined(name) = &*e.0 {
            problem.width = name.len() as u64;
        }
        Problems::from(problem)
    })?;
    let mut problems = Problems::default();
    for p in check::check(&ast, schema) {
        problems.push(Problem::error(path, p.message).at(
            p.line as u64,
            p.column as u64,
            p.width as u64,
        ));
    }
    if problems.has_errors() {
        return Err(problems);
    }
    // An empty scope: the families must stay variables, not be folded as constants.
    let ast = engine.optimize_ast(&Scope::new(), ast, rhai::OptimizationLevel::Simple);
    Ok(RuleFile {
        path: path.to_path_buf(),
        name: path.display().to_string().into(),
        ast,
        stats: Arc::default(),
    })
}

fn compile_message(error: &rhai::ParseErrorType, schema: &Schema) -> String {
    match error {
        rhai::ParseErrorType::VariableUndefined(name) => {
            let families: Vec<&str> = schema.families.keys().map(String::as_str).collect();
            match crate::vocab::suggest::closest(name, families.iter().copied()) {
                Some(best) => format!("unknown variable `{name}`; did you mean `{best}`?"),
                None => format!(
                    "unknown variable `{name}` (this job's metric families: {})",
                    families.join(", ")
                ),
            }
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::probes::{CpuSpec, DiskSpec, MemorySpec, ProbeKind, ProbeSpec};
    use crate::store::history::HistoryConfig;
    use crate::vocab::MetricName;

    fn schema() -> Schema {
        Schema::for_probes(&[
            ProbeSpec::new(None, ProbeKind::Cpu(CpuSpec { per_core: true })),
            ProbeSpec::new(None, ProbeKind::Memory(MemorySpec)),
            ProbeSpec::new(None, ProbeKind::Disk(DiskSpec { mounts: None })),
        ])
    }

    fn rules(source: &str) -> Result<RuleSet, Problems> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.rhai");
        std::fs::write(&path, source).unwrap();
        let (set, problems) = RuleSet::load(&[path], schema(), crate::config::DEFAULT_RULE_TIMEOUT);
        if problems.has_errors() {
            Err(problems)
        } else {
            Ok(set)
        }
    }

    fn problems(source: &str) -> Vec<String> {
        rules(source)
            .err()
            .map(|p| {
                p.iter()
                    .map(|p| format!("{}:{} {}", p.line, p.column, p.message))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn run(set: &RuleSet, metrics: &[(&str, f64)]) -> Evaluation {
        let history = History::new(HistoryConfig::default(), None);
        let (_, evaluation) =
            set.evaluate(history, Utc::now(), metrics.iter().map(|(n, v)| (*n, *v)));
        evaluation
    }

    #[test]
    fn reads_the_sample_naturally_and_missing_data_does_not_fire() {
        let set = rules("if cpu.total.usage_percent > 85 { alert(\"cpu_high\", #{ value: cpu.total.usage_percent }) }\nif memory.used_percent * 2 > 100 { alert(\"mem\") }").unwrap();
        let fired = run(
            &set,
            &[
                ("cpu.total.usage_percent", 93.0),
                ("memory.used_percent", 10.0),
            ],
        );
        assert_eq!(fired.activations.len(), 1);
        assert_eq!(fired.activations[0].value, Some(93.0));
        let missing = run(&set, &[]);
        assert!(missing.activations.is_empty());
        assert_eq!(missing.outcomes[0].error, None);
        assert_eq!(
            missing.outcomes[0]
                .missing
                .iter()
                .cloned()
                .collect::<Vec<_>>(),
            ["cpu.total.usage_percent", "memory.used_percent"]
        );
    }

    #[test]
    fn has_tells_missing_from_zero_and_instances_lists_discovered_ones() {
        let set = rules("if has(\"disk.root.used_percent\") && disk.root.used_percent == 0.0 { alert(\"zero\") }\nfor m in instances(\"disk\") { if value(`disk.${m}.used_percent`) > 90 { alert(\"full\", #{ labels: #{ mount: m } }) } }").unwrap();
        let e = run(
            &set,
            &[
                ("disk.root.used_percent", 0.0),
                ("disk.var.used_percent", 95.0),
            ],
        );
        let names: Vec<(String, Vec<String>)> = e
            .activations
            .iter()
            .map(|a| (a.name.clone(), a.labels.values().cloned().collect()))
            .collect();
        assert_eq!(
            names,
            [
                ("zero".to_string(), vec![]),
                ("full".to_string(), vec!["var".to_string()])
            ]
        );
    }

    #[test]
    fn typos_are_load_time_errors() {
        assert_eq!(
            problems("cpu.totl.usage_percent > 1"),
            Vec::<String>::new(),
            "instances are discovered, any name goes"
        );
        assert_eq!(
            problems("if cpu.total.usage > 1 { }"),
            [
                "1:4 `cpu.<instance>` has no field `usage` (fields: idle_seconds_total, iowait_percent, iowait_seconds_total, irq_seconds_total, nice_seconds_total, softirq_seconds_total, some_avg10_percent, steal_percent, steal_seconds_total, system_percent, system_seconds_total, usage_percent, user_percent, user_seconds_total)"
            ]
        );
        assert_eq!(
            problems("if cpx.total.usage_percent > 1 { }"),
            ["1:4 unknown variable `cpx`; did you mean `cpu`?"]
        );
        assert_eq!(
            problems(
                "let a = avg(\"memory.usd_percent\", \"15m\");\nlet b = max(\"memory.used_percent\", \"15 minutes\");"
            ),
            [
                "1:13 `memory` has no field `usd_percent` (fields: available_bytes, major_faults_per_sec, major_faults_total, pressure_some_avg10_percent, swap_in_pages_total, swap_in_per_sec, swap_out_pages_total, swap_out_per_sec, swap_used_percent, total_bytes, used_percent)",
                "2:36 invalid duration `15 minutes`: unknown unit; use ms, s, m, h, d or w (e.g. `500ms`, `15m`, `7d`)",
            ]
        );
        assert_eq!(
            problems("alert(\"x\", #{ severity: \"high\", pending: \"5m\" });"),
            [
                "1:25 unknown severity `high` (expected info, warning or critical)",
                "1:33 unknown alert option `pending`; did you mean `pending_for`?",
            ]
        );
        assert!(problems("import \"x\" as y;")[0].contains("import"));
    }

    #[test]
    fn a_failing_rule_does_not_stop_the_others() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.rhai"), "let x = 1 / 0;").unwrap();
        std::fs::write(dir.path().join("b.rhai"), "loop { }").unwrap();
        std::fs::write(dir.path().join("c.rhai"), "alert(\"still_here\");").unwrap();
        let (set, problems) = RuleSet::load(
            &[dir.path().join("*.rhai")],
            schema(),
            Duration::from_millis(20),
        );
        assert!(problems.is_empty());
        let e = run(&set, &[]);
        assert_eq!(e.activations.len(), 1);
        assert!(
            e.outcomes[0]
                .error
                .as_deref()
                .unwrap()
                .starts_with("line 1, column 11: "),
            "{:?}",
            e.outcomes[0]
        );
        assert!(
            e.outcomes[1].error.as_deref().unwrap().contains("deadline")
                || e.outcomes[1]
                    .error
                    .as_deref()
                    .unwrap()
                    .contains("too many operations"),
            "{:?}",
            e.outcomes[1]
        );
        let stats = |i: usize| &set.files()[i].stats;
        assert_eq!(stats(0).failures.load(Ordering::Relaxed), 1);
        assert_eq!(stats(0).evaluations.load(Ordering::Relaxed), 1);
        assert_eq!(stats(1).failures.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_reloaded_file_goes_on_counting_and_a_new_one_starts_at_zero() {
        let dir = tempfile::tempdir().unwrap();
        let (kept, added) = (dir.path().join("kept.rhai"), dir.path().join("added.rhai"));
        std::fs::write(&kept, "let y = 1 / 0;").unwrap();
        let (first, _) = RuleSet::load(
            std::slice::from_ref(&kept),
            schema(),
            Duration::from_secs(1),
        );
        run(&first, &[]);
        run(&first, &[]);
        std::fs::write(&added, "let x = 1;").unwrap();
        let (mut second, _) = RuleSet::load(&[kept, added], schema(), Duration::from_secs(1));
        second.keep_stats_of(&first);
        run(&second, &[]);
        let counted = |i: usize| {
            let s = &second.files()[i].stats;
            (
                s.evaluations.load(Ordering::Relaxed),
                s.failures.load(Ordering::Relaxed),
            )
        };
        assert_eq!(counted(0), (3, 3));
        assert_eq!(counted(1), (1, 0));
    }

    fn rules_with(source: &str, deadline: Duration) -> RuleSet {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.rhai");
        std::fs::write(&path, source).unwrap();
        let (set, problems) = RuleSet::load(&[path], schema(), deadline);
        assert!(problems.is_empty(), "{problems:?}");
        set
    }

    #[test]
    fn a_file_that_fails_keeps_its_alerts_as_they_were() {
        let set = rules("alert(\"x\", #{ severity: \"critical\" });\nlet y = 1 / 0;").unwrap();
        let e = run(&set, &[]);
        assert!(e.outcomes[0].error.is_some());
        assert!(e.activations.is_empty(), "{:?}", e.activations);
    }

    #[test]
    fn a_rule_that_grows_memory_is_stopped_whatever_the_path() {
        // Function pointers hold curried values outside Rhai's size limits: 60 KB each.
        let set = rules_with(
            "let big = \"\"; for i in 0..6000 { big += \"0123456789\"; }\nlet fs = []; for i in 0..10000 { fs.push(Fn(\"to_string\").curry(big + i)); }",
            Duration::from_secs(60),
        );
        let before = crate::alloc::held_by_this_thread();
        let e = run(&set, &[]);
        let left = crate::alloc::held_by_this_thread() - before;
        let error = e.outcomes[0].error.as_deref().unwrap();
        assert!(
            error.ends_with("held more than 16 MiB of memory and was stopped"),
            "{error}"
        );
        assert!(left < 8 << 20, "what it held is freed: {left}");
    }

    #[test]
    fn a_rule_may_not_raise_thousands_of_alerts() {
        // A few milliseconds of work: two CPU-bound neighbours once stretched it past the 50 ms
        // default deadline, which then answered first.
        let set = rules_with(
            "for i in 0..1500 { alert(\"a\", #{ labels: #{ n: `${i}` } }); }",
            Duration::from_secs(60),
        );
        let e = run(&set, &[]);
        assert!(
            e.outcomes[0]
                .error
                .as_deref()
                .unwrap()
                .contains("raised more than 1000 alerts in one tick"),
            "{:?}",
            e.outcomes[0]
        );
        assert!(e.activations.is_empty());
    }

    #[test]
    fn history_functions_read_the_lent_history() {
        let set = rules("let a = avg(\"cpu.total.usage_percent\", \"1m\");\nif a > 50 { alert(\"busy\", #{ value: a }) }").unwrap();
        let mut history = History::new(HistoryConfig::default(), None);
        let name: MetricName = "cpu.total.usage_percent".into();
        let now = Utc::now();
        for (i, v) in [40.0, 60.0, 80.0].iter().enumerate() {
            history.push(
                now - chrono::Duration::seconds(20 - i as i64 * 10),
                [(&name, *v)],
            );
        }
        let (back, e) = set.evaluate(history, now, std::iter::empty());
        assert_eq!(back.metric_count(), 1);
        assert_eq!(e.activations[0].value, Some(60.0));
    }
}
