//! Raw points packed the way time-series databases pack them (Gorilla: Pelkonen et al., VLDB
//! 2015; Prometheus's head chunks): each time as the change of the gap since the previous
//! point, each value as its bit difference (XOR) from the previous one, in chunks of at most
//! [`POINTS_PER_CHUNK`] points.
//!
//! A tick every second with a few milliseconds of jitter costs 9 bits of time a point; a value
//! that did not change costs 1 bit, a noisy one about 28. That is 1.3 to 4.6 bytes a point
//! against 8 unpacked, and the raw window is most of history's memory. Reading decodes a
//! chunk from its start: about 10 ns a point, and rules read minutes, not days, of raw points.

/// Points per chunk: small enough that a window's edges decode little beyond it, large
/// enough that the chunk's fixed fields are a few percent of its bytes.
pub const POINTS_PER_CHUNK: u16 = 120;

/// No XOR window yet (the next changed value writes its own).
const NO_WINDOW: (u8, u8) = (u8::MAX, u8::MAX);

/// Points of one series, oldest first.
#[derive(Debug, Clone)]
pub struct Chunk {
    first_ms: i64,
    last_ms: i64,
    count: u16,
    bytes: Vec<u8>,
    /// Bits used in `bytes`.
    bits: u32,
    /// What the next point is encoded against.
    previous_gap_ms: i64,
    previous_value: u32,
    window: (u8, u8),
}

impl Chunk {
    /// A chunk holding one point.
    pub fn new(ts_ms: i64, value: f32) -> Self {
        let mut chunk = Chunk {
            first_ms: ts_ms,
            last_ms: ts_ms,
            count: 1,
            bytes: Vec::with_capacity(16),
            bits: 0,
            previous_gap_ms: 0,
            previous_value: value.to_bits(),
            window: NO_WINDOW,
        };
        chunk.write(u64::from(value.to_bits()), 32);
        chunk
    }

    pub fn is_full(&self) -> bool {
        self.count >= POINTS_PER_CHUNK
    }

    pub fn last_ms(&self) -> i64 {
        self.last_ms
    }

    pub fn len(&self) -> usize {
        usize::from(self.count)
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Appends a point; the caller starts a new chunk when this one is full.
    pub fn push(&mut self, ts_ms: i64, value: f32) {
        let gap = ts_ms.wrapping_sub(self.last_ms);
        let change = gap.wrapping_sub(self.previous_gap_ms);
        match change {
            0 => self.write(0b0, 1),
            -63..=64 => self.write((0b10 << 7) | (change + 63) as u64, 9),
            -255..=256 => self.write((0b110 << 9) | (change + 255) as u64, 12),
            -2047..=2048 => self.write((0b1110 << 12) | (change + 2047) as u64, 16),
            _ => {
                self.write(0b1111, 4);
                self.write(change as u64, 64);
            }
        }
        self.previous_gap_ms = gap;
        self.last_ms = ts_ms;

        let bits = value.to_bits();
        let xor = bits ^ self.previous_value;
        self.previous_value = bits;
        self.count += 1;
        if xor == 0 {
            self.write(0b0, 1);
            return;
        }
        let leading = xor.leading_zeros().min(31) as u8;
        let trailing = xor.trailing_zeros() as u8;
        let (window_leading, window_trailing) = self.window;
        if self.window != NO_WINDOW && leading >= window_leading && trailing >= window_trailing {
            let meaningful = 32 - u32::from(window_leading) - u32::from(window_trailing);
            self.write(0b10, 2);
            self.write(u64::from(xor >> window_trailing), meaningful);
        } else {
            let meaningful = 32 - u32::from(leading) - u32::from(trailing);
            self.write(0b11, 2);
            self.write(u64::from(leading), 5);
            self.write(u64::from(meaningful - 1), 5);
            self.write(u64::from(xor >> trailing), meaningful);
            self.window = (leading, trailing);
        }
    }

    /// Gives back the spare capacity of a chunk that will take no more points.
    pub fn seal(&mut self) {
        self.bytes.shrink_to_fit();
    }

    pub fn heap_bytes(&self) -> usize {
        self.bytes.capacity()
    }

    /// The points, oldest first.
    pub fn points(&self) -> Points<'_> {
        Points {
            chunk: self,
            reader: BitReader {
                bytes: &self.bytes,
                position: 0,
            },
            index: 0,
            ts_ms: self.first_ms,
            gap_ms: 0,
            value: 0,
            window: (0, 0),
        }
    }

    /// Writes the low `count` bits of `value`, most significant first.
    fn write(&mut self, value: u64, count: u32) {
        let mut remaining = count;
        while remaining > 0 {
            let used = self.bits % 8;
            if used == 0 {
                if self.bytes.len() == self.bytes.capacity() {
                    // Grow by a quarter: a full chunk of noisy values is about 400 bytes.
                    self.bytes.reserve_exact((self.bytes.len() / 4).max(16));
                }
                self.bytes.push(0);
            }
            let free = 8 - used;
            let take = free.min(remaining);
            let part = (value >> (remaining - take)) & ((1u64 << take) - 1);
            if let Some(last) = self.bytes.last_mut() {
                *last |= (part as u8) << (free - take);
            }
            self.bits += take;
            remaining -= take;
        }
    }
}

struct BitReader<'a> {
    bytes: &'a [u8],
    position: u32,
}

impl BitReader<'_> {
    /// The next `count` bits (at most 57) as the low bits of a number; zeros past the end,
    /// which a chunk's count keeps the decoder from reaching.
    fn read(&mut self, count: u32) -> u64 {
        let index = (self.position / 8) as usize;
        // Eight bytes from the current one, big-endian, so the stream's bits come in order.
        let word = match self.bytes.get(index..index + 8) {
            Some(eight) => {
                let mut buffer = [0u8; 8];
                buffer.copy_from_slice(eight);
                u64::from_be_bytes(buffer)
            }
            None => {
                let mut buffer = [0u8; 8];
                let tail = self.bytes.get(index..).unwrap_or(&[]);
                buffer[..tail.len()].copy_from_slice(tail);
                u64::from_be_bytes(buffer)
            }
        };
        self.position += count;
        if count == 0 {
            return 0;
        }
        (word << ((self.position - count) % 8)) >> (64 - count)
    }

    /// A whole 64-bit number, in two reads.
    fn read_u64(&mut self) -> u64 {
        let high = self.read(32);
        (high << 32) | self.read(32)
    }

    fn bit(&mut self) -> bool {
        self.read(1) == 1
    }
}

/// Decodes a chunk's points in order.
pub struct Points<'a> {
    chunk: &'a Chunk,
    reader: BitReader<'a>,
    index: u16,
    ts_ms: i64,
    gap_ms: i64,
    value: u32,
    window: (u8, u8),
}

impl Iterator for Points<'_> {
    type Item = (i64, f32);

    fn next(&mut self) -> Option<(i64, f32)> {
        if self.index >= self.chunk.count {
            return None;
        }
        if self.index == 0 {
            self.value = self.reader.read(32) as u32;
        } else {
            let change = if !self.reader.bit() {
                0
            } else if !self.reader.bit() {
                self.reader.read(7) as i64 - 63
            } else if !self.reader.bit() {
                self.reader.read(9) as i64 - 255
            } else if !self.reader.bit() {
                self.reader.read(12) as i64 - 2047
            } else {
                self.reader.read_u64() as i64
            };
            self.gap_ms = self.gap_ms.wrapping_add(change);
            self.ts_ms = self.ts_ms.wrapping_add(self.gap_ms);
            if self.reader.bit() {
                if self.reader.bit() {
                    let leading = self.reader.read(5) as u8;
                    let meaningful = self.reader.read(5) as u8 + 1;
                    self.window = (leading, 32 - leading - meaningful);
                }
                let (leading, trailing) = self.window;
                let meaningful = 32 - u32::from(leading) - u32::from(trailing);
                let xor = (self.reader.read(meaningful) as u32) << trailing;
                self.value ^= xor;
            }
        }
        self.index += 1;
        Some((self.ts_ms, f32::from_bits(self.value)))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = usize::from(self.chunk.count - self.index);
        (left, Some(left))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(points: &[(i64, f32)]) -> Vec<Chunk> {
        let mut chunks: Vec<Chunk> = Vec::new();
        for &(ts, v) in points {
            match chunks.last_mut() {
                Some(c) if !c.is_full() => c.push(ts, v),
                _ => chunks.push(Chunk::new(ts, v)),
            }
        }
        let decoded: Vec<(i64, f32)> = chunks.iter().flat_map(Chunk::points).collect();
        assert_eq!(decoded.len(), points.len());
        for (d, p) in decoded.iter().zip(points) {
            assert_eq!(d.0, p.0);
            assert_eq!(d.1.to_bits(), p.1.to_bits(), "{d:?} {p:?}");
        }
        chunks
    }

    #[test]
    fn every_kind_of_time_and_value_reads_back_exactly() {
        let mut points = Vec::new();
        let mut ts = 1_795_000_000_000i64;
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for i in 0..2000i64 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            // Regular ticks, jitter of every size, gaps of days, steps back.
            ts += match i % 9 {
                0 => 1000,
                1 => 1000 + (seed % 100) as i64 - 50,
                2 => 10_000 + (seed % 500) as i64,
                3 => 3_000 + (seed % 4000) as i64,
                4 => 86_400_000 * 3,
                5 => -1500,
                _ => 1000,
            };
            let value = match i % 7 {
                0 => 42.0,
                1 => f32::from_bits(seed as u32),
                2 => (seed % 1000) as f32 / 10.0,
                3 => -0.0,
                4 => f32::MAX,
                5 => f32::MIN_POSITIVE,
                _ => 42.0,
            };
            points.push((ts, value));
        }
        round_trip(&points);
    }

    #[test]
    fn a_steady_tick_of_a_constant_packs_to_a_few_bits_a_point() {
        let points: Vec<(i64, f32)> = (0..120).map(|i| (i * 1000, 7.5)).collect();
        let chunks = round_trip(&points);
        // 32 bits for the first value, then 2 bits a point after the second gap is known.
        assert!(chunks[0].bytes.len() <= 4 + 32, "{}", chunks[0].bytes.len());
    }

    #[test]
    fn noisy_values_take_under_three_fifths_of_unpacked_points() {
        let mut seed = 7u64;
        let points: Vec<(i64, f32)> = (0..120)
            .map(|i| {
                seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                let jitter = (seed >> 60) as i64;
                (
                    i * 1000 + jitter,
                    20.0 + ((seed >> 33) % 1000) as f32 / 50.0,
                )
            })
            .collect();
        let chunks = round_trip(&points);
        // Three significant digits of noise and up to 15 ms of jitter: about 4.6 bytes a point.
        assert!(
            chunks[0].bytes.len() < 120 * 8 * 3 / 5,
            "{}",
            chunks[0].bytes.len()
        );
    }
}
