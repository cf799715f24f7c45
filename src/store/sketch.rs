//! A mergeable quantile sketch with a stated error: DDSketch (Masson, Rim, Lee, VLDB 2019).
//!
//! Values fall into logarithmic buckets `(γ^(k-1), γ^k]` with `γ = (1+α)/(1-α)`; a quantile is
//! answered with its bucket's midpoint `2γ^k/(γ+1)`, which is within a relative error `α` of the
//! true value of that rank. runner uses `α = 1 %`. Sketches of hours merge into sketches of days
//! and weeks by adding bucket counts, with the same guarantee.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The relative error of every quantile this sketch answers.
pub const RELATIVE_ERROR: f64 = 0.01;

/// Values closer to zero than this count as zero (a bucket of their own, answered as 0).
const MIN_POSITIVE: f64 = 1e-9;

fn gamma_ln() -> f64 {
    ((1.0 + RELATIVE_ERROR) / (1.0 - RELATIVE_ERROR)).ln()
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Sketch {
    /// Bucket index → count, for values above zero.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pos: BTreeMap<i32, u64>,
    /// Bucket index of |value| → count, for values below zero.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    neg: BTreeMap<i32, u64>,
    #[serde(default, skip_serializing_if = "is_zero")]
    zero: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn bucket(magnitude: f64) -> i32 {
    (magnitude.ln() / gamma_ln()).ceil() as i32
}

fn midpoint(key: i32) -> f64 {
    let gamma = gamma_ln().exp();
    2.0 * (f64::from(key) * gamma_ln()).exp() / (gamma + 1.0)
}

impl Sketch {
    pub fn add(&mut self, value: f64) {
        if !value.is_finite() {
            return;
        }
        if value > MIN_POSITIVE {
            *self.pos.entry(bucket(value)).or_default() += 1;
        } else if value < -MIN_POSITIVE {
            *self.neg.entry(bucket(-value)).or_default() += 1;
        } else {
            self.zero += 1;
        }
    }

    pub fn merge(&mut self, other: &Sketch) {
        for (k, c) in &other.pos {
            *self.pos.entry(*k).or_default() += c;
        }
        for (k, c) in &other.neg {
            *self.neg.entry(*k).or_default() += c;
        }
        self.zero += other.zero;
    }

    pub fn count(&self) -> u64 {
        self.pos.values().sum::<u64>() + self.neg.values().sum::<u64>() + self.zero
    }

    pub fn is_empty(&self) -> bool {
        self.count() == 0
    }

    /// The quantile of values known to lie in `[min, max]`: within them, and exactly one of them
    /// when the estimate is within the sketch's error of it (a 0/1 series' p95 is 1, not
    /// 0.99...).
    pub fn quantile_between(&self, q: f64, min: f64, max: f64) -> Option<f64> {
        let estimate = self.quantile(q)?.clamp(min, max);
        let close = |exact: f64| (estimate - exact).abs() <= exact.abs() * RELATIVE_ERROR;
        Some(if close(max) {
            max
        } else if close(min) {
            min
        } else {
            estimate
        })
    }

    /// The value at quantile `q` (0 to 1), within `RELATIVE_ERROR` of the true one; `None` when
    /// empty. Nearest rank, as everywhere in runner (`vocab::rank`).
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let n = self.count();
        if n == 0 {
            return None;
        }
        let rank = crate::vocab::rank::nearest_rank(n, q);
        let mut seen = 0u64;
        // Most negative first: the largest magnitudes of the negative side.
        for (k, c) in self.neg.iter().rev() {
            seen += c;
            if seen > rank {
                return Some(-midpoint(*k));
            }
        }
        seen += self.zero;
        if seen > rank {
            return Some(0.0);
        }
        for (k, c) in &self.pos {
            seen += c;
            if seen > rank {
                return Some(midpoint(*k));
            }
        }
        self.pos.keys().next_back().map(|k| midpoint(*k))
    }

    /// Buckets in use: the sketch's size.
    pub fn buckets(&self) -> usize {
        self.pos.len() + self.neg.len() + usize::from(self.zero > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exact(sorted: &[f64], q: f64) -> f64 {
        sorted[crate::vocab::rank::nearest_rank(sorted.len() as u64, q) as usize]
    }

    #[test]
    fn quantiles_are_within_the_stated_error() {
        // A skewed spread over six orders of magnitude.
        let mut values: Vec<f64> = (1..=20_000).map(|i| (i as f64).powf(1.7) / 100.0).collect();
        let mut sketch = Sketch::default();
        for v in &values {
            sketch.add(*v);
        }
        values.sort_by(f64::total_cmp);
        for q in [0.0, 0.01, 0.25, 0.5, 0.9, 0.95, 0.99, 1.0] {
            let want = exact(&values, q);
            let got = sketch.quantile(q).unwrap();
            assert!(
                ((got - want) / want).abs() <= RELATIVE_ERROR,
                "q={q} want {want} got {got}"
            );
        }
        assert!(sketch.buckets() < 800, "{}", sketch.buckets());
    }

    #[test]
    fn merging_equals_adding_everything_to_one() {
        let (mut a, mut b, mut all) = (Sketch::default(), Sketch::default(), Sketch::default());
        for i in 0..1000 {
            let v = f64::from(i) - 300.0;
            if i % 2 == 0 {
                a.add(v)
            } else {
                b.add(v)
            }
            all.add(v);
        }
        a.merge(&b);
        assert_eq!(a, all);
        assert_eq!(a.count(), 1000);
        let median = a.quantile(0.5).unwrap();
        assert!((median - 199.0).abs() <= 199.0 * RELATIVE_ERROR, "{median}");
        assert_eq!(a.quantile(0.0).map(|v| v < -295.0), Some(true));
    }

    #[test]
    fn zeros_and_empty() {
        let mut s = Sketch::default();
        assert_eq!(s.quantile(0.5), None);
        s.add(0.0);
        s.add(0.0);
        s.add(5.0);
        assert_eq!(s.quantile(0.5), Some(0.0));
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<Sketch>(&json).unwrap(), s);
    }
}
