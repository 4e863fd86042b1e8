//! The simulation's one source of randomness: splitmix64 (the peer layer's, transport.rs)
//! from the run's seed, so the same
//! seed draws the same topology, latencies, bandwidths and mining schedule.

/// A seeded generator (splitmix64: small, fast, and good enough for drawing a schedule).
#[derive(Clone, Debug)]
pub(crate) struct SimRng(u64);

impl SimRng {
    pub(crate) fn new(seed: u64) -> SimRng {
        SimRng(seed)
    }

    /// A generator for one purpose, independent of the draws made for others.
    pub(crate) fn fork(&mut self, purpose: u64) -> SimRng {
        SimRng(self.next_u64() ^ purpose.wrapping_mul(0xd6e8_feb8_6659_fd93))
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        powchain_p2p::transport::splitmix64(&mut self.0)
    }

    /// Uniform in (0, 1].
    pub(crate) fn unit(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64
    }

    /// Uniform in `0..bound` (`bound` > 0).
    pub(crate) fn below(&mut self, bound: usize) -> usize {
        (self.unit() * bound as f64).min((bound - 1) as f64) as usize
    }

    /// An exponentially distributed wait with the given mean (a Poisson process's gaps).
    pub(crate) fn exponential(&mut self, mean: f64) -> f64 {
        -mean * self.unit().ln()
    }

    /// The index of `weights` drawn in proportion to its weight.
    pub(crate) fn weighted(&mut self, weights: &[f64]) -> usize {
        let total: f64 = weights.iter().sum();
        let mut point = self.unit() * total;
        for (index, weight) in weights.iter().enumerate() {
            if point <= *weight {
                return index;
            }
            point -= weight;
        }
        weights.len() - 1
    }

    /// Shuffles `items` (Fisher-Yates).
    pub(crate) fn shuffle<T>(&mut self, items: &mut [T]) {
        for index in (1..items.len()).rev() {
            let other = self.below(index + 1);
            items.swap(index, other);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_follow_the_seed_and_their_distributions() {
        let mut first = SimRng::new(7);
        let mut second = SimRng::new(7);
        let a: Vec<u64> = (0..8).map(|_| first.next_u64()).collect();
        let b: Vec<u64> = (0..8).map(|_| second.next_u64()).collect();
        assert_eq!(a, b);
        let mut rng = SimRng::new(1);
        let draws = 100_000;
        let mean = (0..draws).map(|_| rng.exponential(3.0)).sum::<f64>() / f64::from(draws);
        assert!(
            (mean - 3.0).abs() < 0.05,
            "mean of exponential draws {mean}"
        );
        let mut counts = [0u32; 3];
        for _ in 0..draws {
            counts[rng.weighted(&[1.0, 2.0, 7.0])] += 1;
        }
        let share = f64::from(counts[2]) / f64::from(draws);
        assert!((share - 0.7).abs() < 0.01, "share {share}");
        assert!((0..1000).all(|_| rng.below(5) < 5));
    }
}
