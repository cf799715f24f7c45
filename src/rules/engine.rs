//! The one place a `rhai::Engine` is built: sandboxed (operation, call, depth and size limits,
//! a wall-clock deadline per evaluation, no `import`), `print`/`debug` to the log with the
//! rule's name, strict variables, and every function a rule can call.

use rhai::{Dynamic, Engine, EvalAltResult, FLOAT, INT, ImmutableString, Map};
use tracing::{debug, info};

use super::activation::Activation;
use super::context;
use super::functions::{self, BASELINE_MIN_WEEKS};
use super::values::{FamilyNode, InstanceNode, Schema};
use super::window::Span;
use crate::store::history::History;

type RhaiResult<T> = Result<T, Box<EvalAltResult>>;

/// Alerts one rule file may raise in one tick. Each is state to keep, log and send; a rule
/// that raises thousands (one per client address, say) floods every receiver.
pub const MAX_ALERTS_PER_FILE: usize = 1_000;

/// `print` and `debug` lines one rule file may log per tick; the rest are counted and said
/// once (a `print` in a loop must not flood the log).
pub const MAX_PRINTS: usize = 10;

/// The longest `print` line logged; longer ones are cut, visibly.
const MAX_PRINT_CHARS: usize = 500;

/// The rule file's name if it may print one more line this tick.
fn may_print() -> Option<std::sync::Arc<str>> {
    context::with(|c| {
        c.printed += 1;
        (c.printed <= MAX_PRINTS).then(|| c.rule_file.clone())
    })
    .flatten()
}

fn truncate(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]).into(),
        None => text.into(),
    }
}

/// Names of the functions that take a metric name as their first argument, for the checks.
pub const METRIC_FUNCTIONS: &[&str] = &[
    "avg",
    "min",
    "max",
    "sum",
    "count",
    "percentile",
    "stddev",
    "zscore",
    "ewma",
    "rate",
    "delta",
    "predict",
    "covered",
    "baseline",
    "ticks_above",
    "ticks_below",
    "has",
    "value",
];

/// A window argument, in milliseconds; the same bounds as `runner check` holds literals to.
fn window(text: &str) -> RhaiResult<i64> {
    span(text, Span::Window)
}

fn span(text: &str, span: Span) -> RhaiResult<i64> {
    super::window::parse(text, span)
        .map(|d| d.as_millis() as i64)
        .map_err(Into::into)
}

/// Runs `f` on the tick's history; `()` outside an evaluation. A function that ran past the
/// rule's deadline (reading long history from disk) stops the rule as its loops would.
fn on_history(f: impl FnOnce(&History, i64) -> Option<f64>) -> RhaiResult<Dynamic> {
    let value = context::with(|c| f(&c.history, c.now_ms)).flatten();
    if context::past_deadline() {
        return Err(deadline_error());
    }
    Ok(value.map_or(Dynamic::UNIT, Dynamic::from_float))
}

/// The error a rule stopped at its deadline ends with.
pub fn deadline_error() -> Box<EvalAltResult> {
    EvalAltResult::ErrorTerminated(Dynamic::from(DEADLINE), rhai::Position::NONE).into()
}

/// What a rule stopped at its deadline is terminated with.
pub const DEADLINE: &str = "deadline";

/// What a rule stopped for growing memory is terminated with.
pub const MEMORY: &str = "memory";

fn current(name: &str) -> Option<f64> {
    context::with(|c| c.values.get(name)).flatten()
}

/// Builds the engine for rules over `schema`'s metrics.
pub fn build(schema: &Schema) -> Engine {
    let mut engine = Engine::new();
    // The default resolver reads any file a script names: a rule has no business doing that.
    engine.set_module_resolver(rhai::module_resolvers::DummyModuleResolver::new());
    engine.disable_symbol("import");
    engine.disable_symbol("eval");
    engine.set_strict_variables(true);
    // Compile unoptimized so the checks see every literal where it was written (the optimizer
    // folds a constant map into one value); `rules::compile` optimizes after checking.
    engine.set_optimization_level(rhai::OptimizationLevel::None);
    engine.set_max_operations(200_000);
    engine.set_max_call_levels(32);
    engine.set_max_expr_depths(64, 32);
    engine.set_max_string_size(64 * 1024);
    engine.set_max_array_size(10_000);
    engine.set_max_map_size(1_000);
    engine.on_progress(|ops| {
        // Reading the clock every 256 operations costs nothing measurable and stops a runaway
        // loop within a millisecond of its deadline.
        if ops % 256 != 0 {
            return None;
        }
        if context::past_deadline() {
            return Some(Dynamic::from(DEADLINE));
        }
        context::past_memory_limit().then(|| Dynamic::from(MEMORY))
    });
    engine.on_print(|text| {
        if let Some(rule) = may_print() {
            info!(rule = %rule, "{}", truncate(text, MAX_PRINT_CHARS));
        }
    });
    engine.on_debug(|text, _source, pos| {
        if let Some(rule) = may_print() {
            debug!(rule = %rule, line = pos.line().unwrap_or(0), "{}", truncate(text, MAX_PRINT_CHARS));
        }
    });

    engine
        .register_type_with_name::<FamilyNode>("Family")
        .register_indexer_get(|f: &mut FamilyNode, name: ImmutableString| f.property(name))
        .register_type_with_name::<InstanceNode>("Instance")
        .register_indexer_get(|i: &mut InstanceNode, name: ImmutableString| i.property(name));
    // Rhai tries a getter before the indexer, and a missing getter costs an error built and
    // thrown away on every access. Getters for every name the schema knows make
    // `cpu.total.usage_percent` three times cheaper; other names still reach the indexer.
    for name in schema.property_names() {
        let key: ImmutableString = name.as_str().into();
        let family_key = key.clone();
        engine.register_get(&name, move |f: &mut FamilyNode| {
            f.property(family_key.clone())
        });
        engine.register_get(&name, move |i: &mut InstanceNode| i.property(key.clone()));
    }

    register_missing_data_operators(&mut engine);

    engine.register_fn("has", |name: &str| current(name).is_some());
    engine.register_fn("value", |name: &str| {
        current(name).map_or(Dynamic::UNIT, Dynamic::from_float)
    });
    // Text a probe found beside its numbers (the session at the head of a lock queue), for
    // an alert to quote; `()` when this tick has none.
    engine.register_fn("note", |name: &str| {
        context::with(|c| {
            c.values
                .note(name)
                .map(|text| Dynamic::from(text.to_string()))
        })
        .flatten()
        .unwrap_or(Dynamic::UNIT)
    });
    engine.register_fn("instances", |family: &str| -> rhai::Array {
        context::with(|c| c.values.instances(family))
            .unwrap_or_default()
            .into_iter()
            .map(Dynamic::from)
            .collect()
    });
    engine.register_fn("parts", |family: &str, instance: &str| -> rhai::Array {
        context::with(|c| c.values.parts(family, instance))
            .unwrap_or_default()
            .into_iter()
            .map(Dynamic::from)
            .collect()
    });

    // A part as people wrote the name (`public~~-orders` is `public.Orders`), for messages:
    // parts are escaped so two names never share one.
    engine.register_fn("part_name", |part: &str| {
        crate::probes::postgres::names::original_name(part)
    });

    macro_rules! agg_fn {
        ($name:literal, $pick:expr) => {
            engine.register_fn($name, |m: &str, w: &str| -> RhaiResult<Dynamic> {
                let w = window(w)?;
                on_history(|h, now| $pick(&functions::aggregate(h, m, now, w)))
            });
        };
    }
    agg_fn!("avg", |a: &functions::Agg| a.mean());
    agg_fn!("min", |a: &functions::Agg| a.min());
    agg_fn!("max", |a: &functions::Agg| a.max());
    agg_fn!("sum", |a: &functions::Agg| (a.count > 0.0).then_some(a.sum));
    agg_fn!("count", |a: &functions::Agg| Some(a.count));
    engine.register_fn("stddev", |m: &str, w: &str| -> RhaiResult<Dynamic> {
        let w = window(w)?;
        on_history(|h, now| functions::stddev(h, m, now, w))
    });

    fn percentile(m: &str, p: FLOAT, w: &str) -> RhaiResult<Dynamic> {
        let p = super::window::percent(p)?;
        let w = window(w)?;
        on_history(|h, now| functions::percentile(h, m, p, now, w))
    }
    engine.register_fn("percentile", percentile);
    engine.register_fn("percentile", |m: &str, p: INT, w: &str| {
        percentile(m, p as FLOAT, w)
    });

    engine.register_fn("zscore", |m: &str, w: &str| -> RhaiResult<Dynamic> {
        let w = window(w)?;
        let Some(now_value) = current(m) else {
            return Ok(Dynamic::UNIT);
        };
        on_history(|h, now| functions::zscore(h, m, now_value, now, w))
    });
    engine.register_fn("ewma", |m: &str, half_life: &str| -> RhaiResult<Dynamic> {
        let hl = span(half_life, Span::HalfLife)?;
        on_history(|h, now| functions::ewma(h, m, now, hl))
    });
    engine.register_fn("rate", |m: &str, w: &str| -> RhaiResult<Dynamic> {
        let w = window(w)?;
        on_history(|h, now| functions::rate(h, m, now, w))
    });
    engine.register_fn("delta", |m: &str, w: &str| -> RhaiResult<Dynamic> {
        let w = window(w)?;
        on_history(|h, now| functions::delta(h, m, now, w))
    });
    engine.register_fn(
        "predict",
        |m: &str, w: &str, ahead: &str| -> RhaiResult<Dynamic> {
            let (w, ahead) = (window(w)?, span(ahead, Span::Ahead)?);
            on_history(|h, now| functions::predict(h, m, now, w, ahead))
        },
    );

    engine.register_fn("covered", |m: &str, w: &str| -> RhaiResult<String> {
        let window_ms = window(w)?;
        let text =
            context::with(|c| functions::covered_text(&c.history, m, c.now_ms, window_ms, w));
        if context::past_deadline() {
            return Err(deadline_error());
        }
        // Outside an evaluation there is no history to say anything of.
        Ok(text.unwrap_or_else(|| w.to_string()))
    });

    fn baseline(m: &str, min_weeks: INT) -> RhaiResult<Dynamic> {
        let found =
            context::with(|c| functions::baseline(&c.history, m, c.now_ms, min_weeks)).flatten();
        if context::past_deadline() {
            return Err(deadline_error());
        }
        Ok(found.map_or(Dynamic::UNIT, |b| {
            let mut map = Map::new();
            map.insert("mean".into(), Dynamic::from_float(b.mean));
            map.insert("stddev".into(), Dynamic::from_float(b.stddev));
            map.insert("p95".into(), Dynamic::from_float(b.p95));
            map.insert("weeks".into(), Dynamic::from_int(b.weeks));
            Dynamic::from_map(map)
        }))
    }
    engine.register_fn("baseline", |m: &str| baseline(m, BASELINE_MIN_WEEKS));
    engine.register_fn("baseline", baseline);

    fn ticks_above(m: &str, threshold: FLOAT, n: INT) -> INT {
        context::with(|c| {
            functions::ticks_above(&c.history, m, threshold, n.max(0) as usize) as INT
        })
        .unwrap_or(0)
    }
    engine.register_fn("ticks_above", ticks_above);
    engine.register_fn("ticks_above", |m: &str, threshold: INT, n: INT| {
        ticks_above(m, threshold as FLOAT, n)
    });
    fn ticks_below(m: &str, threshold: FLOAT, n: INT) -> INT {
        context::with(|c| {
            functions::ticks_below(&c.history, m, threshold, n.max(0) as usize) as INT
        })
        .unwrap_or(0)
    }
    engine.register_fn("ticks_below", ticks_below);
    engine.register_fn("ticks_below", |m: &str, threshold: INT, n: INT| {
        ticks_below(m, threshold as FLOAT, n)
    });

    // Numbers as people read them in summaries: `fmt(93.2451)` is "93.2", `fmt(())` is "-".
    engine.register_fn("fmt", |v: FLOAT| crate::vocab::words::format_value(v));
    engine.register_fn("fmt", |v: INT| v.to_string());
    engine.register_fn("fmt", |_: ()| "-".to_string());

    fn alert(name: &str, opts: Map) -> RhaiResult<()> {
        let rule_file = context::with(|c| c.rule_file.clone()).unwrap_or_else(|| "".into());
        let activation = Activation::from_map(name, rule_file, &opts)?;
        let raised = context::with(|c| {
            c.activations.push(activation);
            c.raised += 1;
            c.raised
        })
        .unwrap_or(0);
        if raised > MAX_ALERTS_PER_FILE {
            return Err(format!(
                "raised more than {MAX_ALERTS_PER_FILE} alerts in one tick; a rule that needs more is likely looping over something unbounded"
            )
            .into());
        }
        Ok(())
    }
    engine.register_fn("alert", alert);
    engine.register_fn("alert", |name: &str| alert(name, Map::new()));
    engine
}

/// Missing data reads as `()`: comparing it with a number is false and arithmetic with it
/// stays `()`, so a rule written without `has(...)` simply does not fire on missing data.
fn register_missing_data_operators(engine: &mut Engine) {
    for op in [">", ">=", "<", "<="] {
        engine.register_fn(op, |_: (), _: INT| false);
        engine.register_fn(op, |_: (), _: FLOAT| false);
        engine.register_fn(op, |_: INT, _: ()| false);
        engine.register_fn(op, |_: FLOAT, _: ()| false);
        engine.register_fn(op, |_: (), _: ()| false);
    }
    for op in ["+", "-", "*", "/"] {
        engine.register_fn(op, |_: (), _: INT| ());
        engine.register_fn(op, |_: (), _: FLOAT| ());
        engine.register_fn(op, |_: INT, _: ()| ());
        engine.register_fn(op, |_: FLOAT, _: ()| ());
    }
    engine.register_fn("-", |_: ()| ());
    engine.register_fn("abs", |_: ()| ());
}
