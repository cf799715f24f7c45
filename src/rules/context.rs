//! What one tick's rule evaluation shares with the native functions rules call: history, the
//! time, the current values, and what the rules produce (alerts raised, metrics found missing).
//!
//! Rhai calls native functions without a way to pass per-call state, and rules run
//! synchronously on one thread, so the state lives in a thread-local for exactly the length of
//! an evaluation. History is moved in and back out, not shared: no locks on the hot path.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use super::activation::Activation;
use super::values::Values;
use crate::store::history::History;

pub struct TickContext {
    pub history: History,
    pub now_ms: i64,
    pub values: Arc<Values>,
    /// The rule file being evaluated, for logs and alerts.
    pub rule_file: Arc<str>,
    /// When the current rule file's evaluation must stop.
    pub deadline: Option<Instant>,
    /// What the thread held when the current rule file started (`alloc`), to stop one that
    /// grows memory past `MAX_RULE_MEMORY`.
    pub held_at_start: isize,
    /// `print`/`debug` lines of the current rule file so far this tick.
    pub printed: usize,
    /// `alert()` calls of the current rule file so far this tick.
    pub raised: usize,
    pub activations: Vec<Activation>,
    /// Metrics the current rule file read that this tick lacks.
    pub missing: BTreeSet<String>,
}

thread_local! {
    static CURRENT: RefCell<Option<TickContext>> = const { RefCell::new(None) };
}

/// Puts the context in place for an evaluation; `take` gets it back.
pub fn install(context: TickContext) {
    CURRENT.with(|c| *c.borrow_mut() = Some(context));
}

pub fn take() -> Option<TickContext> {
    CURRENT.with(|c| c.borrow_mut().take())
}

/// Runs `f` on the installed context; `None` outside an evaluation (e.g. `runner check`).
pub fn with<R>(f: impl FnOnce(&mut TickContext) -> R) -> Option<R> {
    CURRENT.with(|c| c.borrow_mut().as_mut().map(f))
}

pub fn note_missing(name: String) {
    with(|c| {
        c.missing.insert(name);
    });
}

/// How much memory one rule file's evaluation may add before it is stopped.
pub const MAX_RULE_MEMORY: isize = 16 << 20;

/// Whether the rule being evaluated holds more memory than it may.
pub fn past_memory_limit() -> bool {
    with(|c| crate::alloc::held_by_this_thread() - c.held_at_start > MAX_RULE_MEMORY)
        .unwrap_or(false)
}

/// Whether the rule being evaluated ran past its deadline.
pub fn past_deadline() -> bool {
    with(|c| c.deadline.is_some_and(|d| Instant::now() > d)).unwrap_or(false)
}
