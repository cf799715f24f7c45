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

/// `ln(γ)`, written out: `ln` is not a `const fn`, and computing it per value cost a tenth of
/// a report. A test holds it to the computed value, bit for bit, so buckets never move.
const GAMMA_LN: f64 = 0.020000666706669435;

fn gamma_ln() -> f64 {
    GAMMA_LN
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

/// The bucket of a positive value, with the agent's logarithm: a monitor takes one per metric
/// each tick, and glibc's touches code and tables spread over six 64 KiB fault-around blocks of
/// libm (384 KiB resident); the crate's sits with the tick's code.
fn bucket(magnitude: f64) -> i32 {
    bucket_by(magnitude, libm::log)
}

/// The bucket with glibc's logarithm, a third faster, for a report's tens of millions of values
/// (runs that load libm's pages for seconds anyway). The two agree but in the last bit, which
/// moves a value on a bucket's very edge to its neighbour: nothing at 1 % resolution.
fn bucket_in_bulk(magnitude: f64) -> i32 {
    bucket_by(magnitude, f64::ln)
}

#[inline(always)]
fn bucket_by(magnitude: f64, ln: impl Fn(f64) -> f64) -> i32 {
    // `f64::ceil` is a library call on the baseline x86-64 target (no SSE4.1): by hand, the
    // same result for every finite value.
    let x = ln(magnitude) / GAMMA_LN;
    let truncated = x as i32;
    if f64::from(truncated) < x {
        truncated + 1
    } else {
        truncated
    }
}

fn midpoint(key: i32) -> f64 {
    let gamma = gamma_ln().exp();
    2.0 * (f64::from(key) * gamma_ln()).exp() / (gamma + 1.0)
}

/// The upper edge of bucket `key`, `γ^key` (the lower one is the edge of `key - 1`).
fn edge(key: i32) -> f64 {
    (f64::from(key) * gamma_ln()).exp()
}

/// Where a rank falls: a bucket of negative values, the zero bucket, or a bucket of positive
/// ones.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Place {
    Neg(i32),
    Zero,
    Pos(i32),
}

impl Place {
    /// The bucket's answer: within `RELATIVE_ERROR` of every value in it.
    fn midpoint(self) -> f64 {
        match self {
            Place::Neg(k) => -midpoint(k),
            Place::Zero => 0.0,
            Place::Pos(k) => midpoint(k),
        }
    }
}

/// What a sketch's owner knows exactly of the values in it: the smallest and the largest, and
/// how many values equal each. A count of 0 means not known (rollups written before the counts
/// were kept): no answer is then taken to be that extreme for it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Extremes {
    pub min: f64,
    pub max: f64,
    pub at_min: u64,
    pub at_max: u64,
}

/// A sketch being filled fast: positive buckets in one array indexed from the lowest seen, so
/// adding a value is a logarithm and an increment (a report adds tens of millions). Becomes a
/// `Sketch` with the same buckets.
#[derive(Debug, Clone, Default)]
pub struct DenseSketch {
    first: i32,
    counts: Vec<u64>,
    /// Values below zero and zeros are rare in metrics: the plain sketch holds them.
    rest: Sketch,
}

impl DenseSketch {
    pub fn add(&mut self, value: f64) {
        if !value.is_finite() || value <= MIN_POSITIVE {
            self.rest.add(value);
            return;
        }
        let key = bucket_in_bulk(value);
        if self.counts.is_empty() {
            self.first = key;
        } else if key < self.first {
            let grow = (self.first - key) as usize;
            self.counts.splice(0..0, std::iter::repeat_n(0, grow));
            self.first = key;
        }
        let index = (key - self.first) as usize;
        if index >= self.counts.len() {
            self.counts.resize(index + 1, 0);
        }
        self.counts[index] += 1;
    }

    /// Adds another sketch's counts (a later part of the same window).
    pub fn merge(&mut self, other: &DenseSketch) {
        self.rest.merge(&other.rest);
        let Some(last) = other.counts.len().checked_sub(1) else {
            return;
        };
        if self.counts.is_empty() {
            self.first = other.first;
            self.counts = other.counts.clone();
            return;
        }
        let low = self.first.min(other.first);
        let high = (self.first + self.counts.len() as i32 - 1).max(other.first + last as i32);
        if low < self.first {
            let grow = (self.first - low) as usize;
            self.counts.splice(0..0, std::iter::repeat_n(0, grow));
            self.first = low;
        }
        self.counts.resize((high - low + 1) as usize, 0);
        for (i, count) in other.counts.iter().enumerate() {
            self.counts[(other.first - low) as usize + i] += count;
        }
    }

    pub fn finish(self) -> Sketch {
        let mut sketch = self.rest;
        for (i, count) in self.counts.into_iter().enumerate() {
            if count > 0 {
                *sketch.pos.entry(self.first + i as i32).or_default() += count;
            }
        }
        sketch
    }
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

    /// The quantile `q` of values whose extremes are known: exactly `min` or `max` when the rank
    /// is among the values equal to it (a 0/1 series' p95 is 1, not 0.99...), otherwise an
    /// answer within `RELATIVE_ERROR` of the true value of that rank. The rank's value lies in
    /// its bucket and within `[min, max]`; the answer is the relative midpoint of that range,
    /// which is never farther from any value in it than a bucket's midpoint is. Snapping an
    /// answer to `max` because it came within 1 % of it added a second 1 % (issue 28: p95 of 1
    /// ×10, 99.55 ×85, 101.45 ×5 read 101.45).
    pub fn quantile_between(&self, q: f64, extremes: Extremes) -> Option<f64> {
        let n = self.count();
        if n == 0 {
            return None;
        }
        let Extremes {
            min,
            max,
            at_min,
            at_max,
        } = extremes;
        let rank = crate::vocab::rank::nearest_rank(n, q);
        if rank < at_min {
            return Some(min);
        }
        if rank >= n.saturating_sub(at_max) {
            return Some(max);
        }
        let place = self.place(rank)?;
        let (low, high) = match place {
            Place::Neg(k) => (-edge(k), -edge(k - 1)),
            Place::Zero => (-MIN_POSITIVE, MIN_POSITIVE),
            Place::Pos(k) => (edge(k - 1), edge(k)),
        };
        let (a, b) = (low.max(min), high.min(max));
        if a > b || a.is_nan() || b.is_nan() {
            // Extremes that miss the bucket by a rounding on its edge: the bucket's own answer,
            // held within them.
            return Some(place.midpoint().max(min).min(max));
        }
        if place == Place::Zero {
            return Some(0.0f64.max(a).min(b));
        }
        Some(2.0 * a * b / (a + b))
    }

    /// The value at quantile `q` (0 to 1), within `RELATIVE_ERROR` of the true one; `None` when
    /// empty. Nearest rank, as everywhere in runner (`vocab::rank`).
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let n = self.count();
        if n == 0 {
            return None;
        }
        Some(
            self.place(crate::vocab::rank::nearest_rank(n, q))?
                .midpoint(),
        )
    }

    /// The bucket of the value at 0-based `rank`, counted from the most negative.
    fn place(&self, rank: u64) -> Option<Place> {
        let mut seen = 0u64;
        // Most negative first: the largest magnitudes of the negative side.
        for (k, c) in self.neg.iter().rev() {
            seen += c;
            if seen > rank {
                return Some(Place::Neg(*k));
            }
        }
        seen += self.zero;
        if seen > rank {
            return Some(Place::Zero);
        }
        for (k, c) in &self.pos {
            seen += c;
            if seen > rank {
                return Some(Place::Pos(*k));
            }
        }
        self.pos.keys().next_back().map(|k| Place::Pos(*k))
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
    fn buckets_are_the_ceiling_of_the_log_ratio() {
        for v in [
            1e-9 * 1.5,
            0.5,
            1.0,
            1.02,
            1.0202020202020203,
            3.7,
            1e6,
            4.2e12,
        ] {
            assert_eq!(bucket(v), (v.ln() / GAMMA_LN).ceil() as i32, "{v}");
            assert_eq!(bucket_in_bulk(v), bucket(v), "{v}");
        }
        // Exactly on a boundary: γ^k itself belongs to bucket k.
        let boundary = (5.0 * GAMMA_LN).exp();
        assert_eq!(bucket(boundary), (boundary.ln() / GAMMA_LN).ceil() as i32);
    }

    #[test]
    fn the_written_out_gamma_is_the_computed_one() {
        let computed = ((1.0 + RELATIVE_ERROR) / (1.0 - RELATIVE_ERROR)).ln();
        assert_eq!(GAMMA_LN.to_bits(), computed.to_bits());
    }

    #[test]
    fn a_dense_sketch_becomes_the_same_sketch() {
        let values: Vec<f64> = (0..5_000)
            .map(|i| match i % 7 {
                0 => 0.0,
                1 => -(i as f64),
                _ => (i as f64).powf(1.3) / 10.0,
            })
            .collect();
        let mut plain = Sketch::default();
        let mut dense = DenseSketch::default();
        for v in values.iter().rev() {
            plain.add(*v);
            dense.add(*v);
        }
        assert_eq!(dense.clone().finish(), plain);
        // Halves filled apart and merged are the whole.
        let (mut early, mut late) = (DenseSketch::default(), DenseSketch::default());
        for (i, v) in values.iter().enumerate() {
            if i < 2_500 {
                early.add(*v)
            } else {
                late.add(*v)
            }
        }
        late.merge(&early);
        assert_eq!(late.finish(), plain);
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

    fn extremes_of(values: &[f64]) -> Extremes {
        let min = values.iter().copied().fold(f64::INFINITY, f64::min);
        let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        Extremes {
            min,
            max,
            at_min: values.iter().filter(|v| **v == min).count() as u64,
            at_max: values.iter().filter(|v| **v == max).count() as u64,
        }
    }

    #[track_caller]
    fn assert_within(got: f64, want: f64, what: &str) {
        // The bound itself, give or take the last bits of the arithmetic.
        let bound = want.abs() * RELATIVE_ERROR * (1.0 + 1e-12);
        assert!(
            (got - want).abs() <= bound,
            "{what}: want {want}, got {got}"
        );
    }

    #[test]
    fn an_answer_near_an_extreme_is_not_taken_for_it() {
        // Issue 28: 99.55 and 101.45 share a bucket, and the bucket's answer came within 1 % of
        // the maximum, so p95 read 101.45, 1.9 % off the 95th value.
        let mut values = vec![1.0; 10];
        values.extend([99.55; 85]);
        values.extend([101.45; 5]);
        let mut sketch = Sketch::default();
        for v in &values {
            sketch.add(*v);
        }
        let extremes = extremes_of(&values);
        assert_within(
            sketch.quantile_between(0.95, extremes).unwrap(),
            99.55,
            "p95",
        );
        // The ranks that hold an extreme are that extreme.
        assert_eq!(sketch.quantile_between(0.96, extremes), Some(101.45));
        assert_eq!(sketch.quantile_between(0.10, extremes), Some(1.0));
        // Not knowing how many values equal each extreme: still within the error.
        let unknown = Extremes {
            at_min: 0,
            at_max: 0,
            ..extremes
        };
        assert_within(
            sketch.quantile_between(0.96, unknown).unwrap(),
            101.45,
            "p96",
        );
        assert_within(
            sketch.quantile_between(0.95, unknown).unwrap(),
            99.55,
            "p95",
        );
        // A 0/1 series that is mostly 1: p95 is 1, not 0.99...
        let mut up = vec![1.0; 97];
        up.extend([0.0; 3]);
        let mut sketch = Sketch::default();
        for v in &up {
            sketch.add(*v);
        }
        let extremes = extremes_of(&up);
        assert_eq!(sketch.quantile_between(0.95, extremes), Some(1.0));
        assert_eq!(sketch.quantile_between(0.03, extremes), Some(0.0));
    }

    /// xorshift64: random data that is the same on every run, without a crate.
    struct Xorshift(u64);

    impl Xorshift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        /// In [0, 1).
        fn unit(&mut self) -> f64 {
            (self.next() >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    /// Random series of the shapes metrics take: spread over orders of magnitude, a few values
    /// repeated (ties across bucket edges and at the extremes), both signs, zeros.
    fn random_series(rng: &mut Xorshift) -> Vec<f64> {
        let n = 1 + (rng.next() % 3_000) as usize;
        let shape = rng.next() % 5;
        let distinct: Vec<f64> = (0..1 + rng.next() % 4)
            .map(|_| 1.0 + rng.unit() * 200.0)
            .collect();
        (0..n)
            .map(|_| match shape {
                0 => 10f64.powf(rng.unit() * 12.0 - 6.0),
                1 => distinct[(rng.next() % distinct.len() as u64) as usize],
                2 => 50.0 + rng.unit() * 3.0,
                3 => match rng.next() % 10 {
                    0 => 0.0,
                    1..=3 => -(1.0 + rng.unit() * 1e4),
                    _ => rng.unit() * 100.0 + 1e-6,
                },
                _ => (rng.next() % 4) as f64,
            })
            .collect()
    }

    #[test]
    fn every_quantile_of_random_data_is_within_the_error_of_the_nearest_rank() {
        let mut rng = Xorshift(0x2545_f491_4f6c_dd1d);
        for case in 0..400 {
            let mut values = random_series(&mut rng);
            let (mut plain, mut dense) = (Sketch::default(), DenseSketch::default());
            for v in &values {
                plain.add(*v);
                dense.add(*v);
            }
            let extremes = extremes_of(&values);
            let unknown = Extremes {
                at_min: 0,
                at_max: 0,
                ..extremes
            };
            values.sort_by(f64::total_cmp);
            let dense = dense.finish();
            for _ in 0..50 {
                // A percent with up to 6 decimals, and the common ones.
                let q = match rng.next() % 4 {
                    0 => [0.0, 0.5, 0.95, 0.99, 1.0][(rng.next() % 5) as usize],
                    _ => (rng.next() % 100_000_001) as f64 / 1e8,
                };
                let want = exact(&values, q);
                let what = format!("case {case}, q {q}, {} values", values.len());
                for sketch in [&plain, &dense] {
                    assert_within(sketch.quantile_between(q, extremes).unwrap(), want, &what);
                    assert_within(sketch.quantile_between(q, unknown).unwrap(), want, &what);
                    assert_within(sketch.quantile(q).unwrap(), want, &what);
                }
            }
        }
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
