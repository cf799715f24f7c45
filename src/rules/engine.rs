//! The one place a `rhai::Engine` is built: sandboxed (operation, call, depth and size limits,
//! a wall-clock deadline per evaluation, no `import`), `print`/`debug` to the log with the
//! rule's name, strict variables, and every function a rule can call.

use std::time::Instant;

use rhai::{Dynamic, Engine, EvalAltResult, FLOAT, INT, ImmutableString, Map};
use tracing::{debug, info};

use super::activation::Activation;
use super::context;
use super::functions::{self, BASELINE_MIN_WEEKS};
use super::values::{FamilyNode, InstanceNode, Schema};
use crate::store::history::History;
use crate::vocab::duration::parse_duration;

type RhaiResult<T> = Result<T, Box<EvalAltResult>>;

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
    "baseline",
    "ticks_above",
    "ticks_below",
    "has",
    "value",
];

/// A window or duration argument, in milliseconds.
fn window(text: &str) -> RhaiResult<i64> {
    match parse_duration(text) {
        Ok(d) if !d.is_zero() => Ok(d.as_millis() as i64),
        Ok(_) => Err(format!("a window must be longer than zero, not `{text}`").into()),
        Err(e) => Err(e.to_string().into()),
    }
}

/// Runs `f` on the tick's history; `()` outside an evaluation.
fn on_history(f: impl FnOnce(&History, i64) -> Option<f64>) -> Dynamic {
    context::with(|c| f(&c.history, c.now_ms))
        .flatten()
        .map_or(Dynamic::UNIT, Dynamic::from_float)
}

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
        let late =
            context::with(|c| c.deadline.is_some_and(|d| Instant::now() > d)).unwrap_or(false);
        late.then(|| Dynamic::from("deadline"))
    });
    engine.on_print(|text| {
        let rule = context::with(|c| c.rule_file.to_string()).unwrap_or_default();
        info!(rule = %rule, "{text}");
    });
    engine.on_debug(|text, _source, pos| {
        let rule = context::with(|c| c.rule_file.to_string()).unwrap_or_default();
        debug!(rule = %rule, line = pos.line().unwrap_or(0), "{text}");
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
    engine.register_fn("instances", |family: &str| -> rhai::Array {
        context::with(|c| c.values.instances(family))
            .unwrap_or_default()
            .into_iter()
            .map(Dynamic::from)
            .collect()
    });

    macro_rules! agg_fn {
        ($name:literal, $pick:expr) => {
            engine.register_fn($name, |m: &str, w: &str| -> RhaiResult<Dynamic> {
                let w = window(w)?;
                Ok(on_history(|h, now| {
                    $pick(&functions::aggregate(h, m, now, w))
                }))
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
        Ok(on_history(|h, now| functions::stddev(h, m, now, w)))
    });

    fn percentile(m: &str, p: FLOAT, w: &str) -> RhaiResult<Dynamic> {
        if !(0.0..=100.0).contains(&p) {
            return Err(format!("percentile takes a percent from 0 to 100, not {p}").into());
        }
        let w = window(w)?;
        Ok(on_history(|h, now| functions::percentile(h, m, p, now, w)))
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
        Ok(on_history(|h, now| {
            functions::zscore(h, m, now_value, now, w)
        }))
    });
    engine.register_fn("ewma", |m: &str, half_life: &str| -> RhaiResult<Dynamic> {
        let hl = window(half_life)?;
        Ok(on_history(|h, now| functions::ewma(h, m, now, hl)))
    });
    engine.register_fn("rate", |m: &str, w: &str| -> RhaiResult<Dynamic> {
        let w = window(w)?;
        Ok(on_history(|h, now| functions::rate(h, m, now, w)))
    });
    engine.register_fn("delta", |m: &str, w: &str| -> RhaiResult<Dynamic> {
        let w = window(w)?;
        Ok(on_history(|h, now| functions::delta(h, m, now, w)))
    });
    engine.register_fn(
        "predict",
        |m: &str, w: &str, ahead: &str| -> RhaiResult<Dynamic> {
            let (w, ahead) = (window(w)?, window(ahead)?);
            Ok(on_history(|h, now| functions::predict(h, m, now, w, ahead)))
        },
    );

    fn baseline(m: &str, min_weeks: INT) -> Dynamic {
        context::with(|c| functions::baseline(&c.history, m, c.now_ms, min_weeks))
            .flatten()
            .map_or(Dynamic::UNIT, |b| {
                let mut map = Map::new();
                map.insert("mean".into(), Dynamic::from_float(b.mean));
                map.insert("stddev".into(), Dynamic::from_float(b.stddev));
                map.insert("p95".into(), Dynamic::from_float(b.p95));
                map.insert("weeks".into(), Dynamic::from_int(b.weeks));
                Dynamic::from_map(map)
            })
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
        context::with(|c| c.activations.push(activation));
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
