//! The reconnect schedule and the small random generator behind it.
//!
//! Attempt *n* (0-based) waits `min(max, min + U[0, min(max, min·2ⁿ)])`: never
//! less than `min` (no zero-delay loop, whatever the network does), spread
//! uniformly so that thousands of clients dropped together do not come back
//! together, and never more than `max`. The formula is computed here rather than
//! with backon: backon's `ExponentialBuilder` adds its jitter on top of the grown
//! delay (`min·2ⁿ + U`), which is a different distribution.

use std::time::Duration;

/// The reconnect delays of one client.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Self {
        // A zero minimum would allow a tight loop; a max below min means "min".
        let min = min.max(Duration::from_millis(1));
        Self {
            min,
            max: max.max(min),
            attempt: 0,
        }
    }

    /// The delay before the next attempt, counting it.
    pub fn next_delay(&mut self, rng: &mut Rng) -> Duration {
        let delay = delay_for(self.min, self.max, self.attempt, rng.next_f64());
        self.attempt = self.attempt.saturating_add(1);
        delay
    }

    /// Back to attempt 0 (after a successful connect).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// How many delays were handed out since the last reset.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }
}

/// `min(max, min + u·min(max, min·2ⁿ))` for a uniform `u` in `[0, 1)`.
pub fn delay_for(min: Duration, max: Duration, attempt: u32, u: f64) -> Duration {
    let grown = min
        .checked_mul(1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX))
        .unwrap_or(max);
    let spread = grown.min(max);
    (min + spread.mul_f64(u.clamp(0.0, 1.0))).min(max)
}

/// SplitMix64: tiny, seedable (tests replay a run exactly) and good enough for
/// jitter and unique ids. Not for secrets.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
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

    /// Uniform in `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_millis(500);
    const MAX: Duration = Duration::from_secs(20);

    #[test]
    fn the_formula_at_its_edges() {
        assert_eq!(delay_for(MIN, MAX, 0, 0.0), MIN);
        assert_eq!(
            delay_for(MIN, MAX, 0, 0.999_999),
            MIN + MIN.mul_f64(0.999_999)
        );
        assert_eq!(delay_for(MIN, MAX, 3, 0.5), MIN + Duration::from_secs(2));
        // min·2⁶ = 32 s: the spread is capped at 20 s, and so is the sum.
        assert_eq!(delay_for(MIN, MAX, 6, 0.9), Duration::from_millis(18_500));
        assert_eq!(delay_for(MIN, MAX, 6, 0.99), MAX);
        assert_eq!(delay_for(MIN, MAX, 1000, 0.0), MIN);
        assert_eq!(delay_for(MIN, MAX, u32::MAX, 1.0), MAX);
    }

    #[test]
    fn never_zero_even_when_configured_so() {
        let mut b = Backoff::new(Duration::ZERO, Duration::ZERO);
        let mut rng = Rng::new(1);
        for _ in 0..100 {
            assert!(b.next_delay(&mut rng) > Duration::ZERO);
        }
    }

    #[test]
    fn reset_starts_over() {
        let mut b = Backoff::new(MIN, MAX);
        let mut rng = Rng::new(7);
        for _ in 0..10 {
            b.next_delay(&mut rng);
        }
        b.reset();
        assert!(b.next_delay(&mut rng) <= MIN * 2);
    }

    #[test]
    fn rng_is_uniform_enough() {
        let mut rng = Rng::new(42);
        let mut buckets = [0u32; 10];
        for _ in 0..100_000 {
            buckets[(rng.next_f64() * 10.0) as usize] += 1;
        }
        for b in buckets {
            assert!((9_000..11_000).contains(&b), "{buckets:?}");
        }
    }
}
