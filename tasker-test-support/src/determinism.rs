//! Determinism for the data set: a seeded pseudo-random stream and time-ordered UUIDs that
//! come out the same on every run.

use uuid::Uuid;

/// SplitMix64: a tiny, fast, well-distributed generator; the data set only needs "the same
/// every run", not cryptographic quality, and this keeps `rand` out of the dependencies.
#[derive(Debug, Clone)]
pub struct DeterministicRng(u64);

impl DeterministicRng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Picks an index by weight.
    pub fn weighted(&mut self, weights: &[u32]) -> usize {
        let total: u64 = weights.iter().map(|w| u64::from(*w)).sum();
        let mut roll = self.below(total);
        for (i, w) in weights.iter().enumerate() {
            if roll < u64::from(*w) {
                return i;
            }
            roll -= u64::from(*w);
        }
        weights.len() - 1
    }
}

/// Version-7 UUIDs from a fixed epoch and a counter: time-ordered like the service's own ids
/// (so index locality is realistic) and identical on every run.
#[derive(Debug, Clone)]
pub struct UuidSequence {
    base_ms: u64,
    seq: u64,
    rng: DeterministicRng,
}

impl UuidSequence {
    /// 2026-01-01T00:00:00Z.
    const EPOCH_MS: u64 = 1_767_225_600_000;

    pub fn new(seed: u64) -> Self {
        Self {
            base_ms: Self::EPOCH_MS,
            seq: 0,
            rng: DeterministicRng::new(seed ^ 0x5EED_0000_0000_0007),
        }
    }

    pub fn next_uuid(&mut self) -> Uuid {
        // 4,096 ids per millisecond in the 12 counter bits after the version nibble
        let ms = self.base_ms + self.seq / 4096;
        let counter = (self.seq % 4096) as u16;
        self.seq += 1;
        let mut bytes = [0u8; 10];
        bytes[..2].copy_from_slice(&counter.to_be_bytes());
        bytes[2..].copy_from_slice(&self.rng.next_u64().to_be_bytes());
        uuid::Builder::from_unix_timestamp_millis(ms, &bytes).into_uuid()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_sequence_is_ordered_and_repeatable() {
        let (mut a, mut b) = (UuidSequence::new(1), UuidSequence::new(1));
        let xs: Vec<Uuid> = (0..10_000).map(|_| a.next_uuid()).collect();
        let ys: Vec<Uuid> = (0..10_000).map(|_| b.next_uuid()).collect();
        assert_eq!(xs, ys);
        assert!(xs.windows(2).all(|w| w[0] < w[1]));
    }
}
