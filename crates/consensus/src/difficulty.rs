//! Difficulty: integer ASERT (aserti3-2d) and the median-time-past rule's median.
//!
//! ASERT sets each block's target from one anchor block and how far the chain's time runs
//! ahead of or behind an ideal schedule:
//!
//! ```text
//!   target = anchor_target * 2^((time_delta - ideal_block_time * (height_delta + 1)) / half_life)
//! ```
//!
//! Every half-life the chain falls behind schedule doubles the target (easier); every
//! half-life ahead halves it. The computation is integer-only (a cubic approximation of
//! 2^x in 16.16 fixed point) so every node gets the same bits; it reproduces the Bitcoin
//! Cash Node reference vectors bit for bit (`tests/asert_vectors.rs`). The function is
//! generic in its time unit: the vectors use seconds, powchain uses milliseconds.

use crate::target::{CompactTarget, Target};
use crate::uint::{U256, shift_wide};

/// The schedule ASERT steers toward.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct AsertSchedule {
    /// The ideal time between blocks, in the caller's time unit.
    pub ideal_block_time: i64,
    /// Time behind schedule that doubles the target, in the same unit.
    pub half_life: i64,
}

/// The target for the block after the one at `height_delta` blocks past the anchor, whose
/// timestamp is `time_delta` after the anchor's parent.
///
/// `anchor_target` and the result are clamped to `[1, pow_limit]`.
pub fn compute_asert_target(
    anchor_target: Target,
    pow_limit: Target,
    time_delta: i64,
    height_delta: u64,
    schedule: AsertSchedule,
) -> Target {
    const RADIX_BITS: i128 = 16;
    let ideal_elapsed = i128::from(schedule.ideal_block_time) * (i128::from(height_delta) + 1);
    let exponent = ((i128::from(time_delta) - ideal_elapsed) << RADIX_BITS)
        / i128::from(schedule.half_life.max(1));
    // Arithmetic shift: floor, so the fractional part is always in [0, 65536).
    let num_shifts = exponent >> RADIX_BITS;
    let fraction = (exponent - (num_shifts << RADIX_BITS)) as u128;
    let polynomial = 195_766_423_245_049u128 * fraction
        + 971_821_376u128 * fraction * fraction
        + 5_127u128 * fraction * fraction * fraction
        + (1u128 << 47);
    let factor = 65_536 + (polynomial >> 48) as u64;

    let product = anchor_target.to_u256().widening_mul_u64(factor);
    let shift = num_shifts - RADIX_BITS;
    let next = if shift > 320 {
        None
    } else if shift < -320 {
        Some(U256::ZERO)
    } else {
        shift_wide(product, shift as i64)
    };
    match next {
        None => pow_limit,
        Some(value) if value.is_zero() => Target::from_u256(U256::ONE).expect("one is nonzero"),
        Some(value) if value > pow_limit.to_u256() => pow_limit,
        Some(value) => Target::from_u256(value).expect("checked nonzero above"),
    }
}

/// [`compute_asert_target`] in compact form, as it goes into a header.
pub fn compute_asert_bits(
    anchor_bits: CompactTarget,
    pow_limit: Target,
    time_delta: i64,
    height_delta: u64,
    schedule: AsertSchedule,
) -> CompactTarget {
    let anchor = anchor_bits
        .to_target()
        .ok()
        .filter(|target| *target <= pow_limit)
        .unwrap_or(pow_limit);
    compute_asert_target(anchor, pow_limit, time_delta, height_delta, schedule).to_compact_lossy()
}

/// How many past block times the median-time-past rule looks at.
pub const MEDIAN_TIME_SPAN: usize = 11;

/// The median of up to [`MEDIAN_TIME_SPAN`] block times (the upper median for an even
/// count, as Bitcoin does); 0 for no times.
pub fn compute_median_time_past(times_ms: &[u64]) -> u64 {
    let mut sorted: Vec<u64> = times_ms
        .iter()
        .rev()
        .take(MEDIAN_TIME_SPAN)
        .copied()
        .collect();
    sorted.sort_unstable();
    sorted.get(sorted.len() / 2).copied().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BCH: AsertSchedule = AsertSchedule {
        ideal_block_time: 600,
        half_life: 172_800,
    };

    fn limit() -> Target {
        CompactTarget(0x1d00ffff).to_target().expect("valid")
    }

    #[test]
    fn on_schedule_keeps_the_anchor_target() {
        let bits = compute_asert_bits(CompactTarget(0x1a2b3c4d), limit(), 600, 0, BCH);
        assert_eq!(bits, CompactTarget(0x1a2b3c4d));
    }

    #[test]
    fn one_half_life_late_doubles_the_target() {
        let anchor = CompactTarget(0x1a2b3c4d).to_target().expect("valid");
        let doubled = compute_asert_target(anchor, limit(), 600 + 172_800, 0, BCH);
        assert_eq!(doubled.to_u256(), anchor.to_u256().shift_left(1));
        let halved = compute_asert_target(anchor, limit(), 600 - 172_800, 0, BCH);
        assert_eq!(halved.to_u256(), anchor.to_u256().shift_right(1));
    }

    #[test]
    fn extremes_clamp_instead_of_overflowing() {
        let anchor = limit();
        assert_eq!(
            compute_asert_target(anchor, limit(), i64::MAX, 0, BCH),
            limit()
        );
        let floor = compute_asert_target(anchor, limit(), i64::MIN, u64::MAX, BCH);
        assert_eq!(floor.to_u256(), U256::ONE);
        // A limit near 2^256 must not overflow the multiplication either.
        let wide_limit = Target::MAX;
        let near_top = compute_asert_target(wide_limit, wide_limit, 600, 0, BCH);
        assert_eq!(near_top, wide_limit);
    }

    #[test]
    fn median_time_past_uses_the_last_eleven() {
        assert_eq!(compute_median_time_past(&[]), 0);
        assert_eq!(compute_median_time_past(&[5]), 5);
        assert_eq!(compute_median_time_past(&[1, 3, 2]), 2);
        assert_eq!(compute_median_time_past(&[1, 2]), 2);
        let times: Vec<u64> = (0..20).collect();
        // The last eleven are 9..=19; their median is 14.
        assert_eq!(compute_median_time_past(&times), 14);
    }
}
