//! Proof-of-work targets and chain work.
//!
//! ```text
//!   CompactTarget (u32 "bits", in the header)
//!        │ to_target / from_target (lossy: 3-byte mantissa, rounds down)
//!        ▼
//!   Target (256-bit)  ── is_met_by(BlockHash) ──▶ hash as big-endian number <= target
//!        │ to_work
//!        ▼
//!   Work = 2^256 / (target + 1): expected hashes to meet the target; summed along a chain
//! ```

use std::fmt;

use thiserror::Error;

use crate::hash::BlockHash;
use crate::uint::U256;

/// A target in Bitcoin's compact `bits` form: one exponent byte and a 3-byte mantissa.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct CompactTarget(pub u32);

/// A 256-bit proof-of-work target: a block hash must be at most this number.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Target(U256);

/// Expected number of hashes to produce a block (or a chain of blocks).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Work(U256);

/// Why compact bits do not describe a usable target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum CompactTargetError {
    /// The sign bit is set on a non-zero mantissa.
    #[error("compact target {0:#010x} is negative")]
    Negative(u32),
    /// The value does not fit in 256 bits.
    #[error("compact target {0:#010x} overflows 256 bits")]
    Overflow(u32),
    /// The value is zero, which no hash can meet.
    #[error("compact target {0:#010x} is zero")]
    Zero(u32),
}

impl CompactTarget {
    /// The raw `bits` value.
    pub const fn to_consensus(self) -> u32 {
        self.0
    }

    /// Expands the compact form.
    ///
    /// # Errors
    /// [`CompactTargetError`] for negative, overflowing or zero values.
    pub fn to_target(self) -> Result<Target, CompactTargetError> {
        let exponent = self.0 >> 24;
        let mantissa = self.0 & 0x007f_ffff;
        if mantissa != 0 && self.0 & 0x0080_0000 != 0 {
            return Err(CompactTargetError::Negative(self.0));
        }
        let value = if exponent <= 3 {
            U256::from_u64(u64::from(mantissa >> (8 * (3 - exponent))))
        } else {
            U256::from_u64(u64::from(mantissa))
                .checked_shl(8 * (exponent - 3))
                .ok_or(CompactTargetError::Overflow(self.0))?
        };
        if value.is_zero() {
            return Err(CompactTargetError::Zero(self.0));
        }
        Ok(Target(value))
    }
}

impl fmt::Debug for CompactTarget {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "CompactTarget({:#010x})", self.0)
    }
}

impl fmt::Display for CompactTarget {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{:08x}", self.0)
    }
}

impl Target {
    /// The largest possible target, 2^256 - 1 (every hash meets it).
    pub const MAX: Target = Target(U256::MAX);

    /// Wraps a 256-bit number; `None` for zero, which no hash can meet.
    pub fn from_u256(value: U256) -> Option<Target> {
        (!value.is_zero()).then_some(Target(value))
    }

    /// The number.
    pub const fn to_u256(self) -> U256 {
        self.0
    }

    /// True if `hash`, read as a big-endian number, is at most this target.
    pub fn is_met_by(self, hash: BlockHash) -> bool {
        U256::from_be_bytes(hash.0) <= self.0
    }

    /// The compact form, rounding the mantissa down to three bytes.
    pub fn to_compact_lossy(self) -> CompactTarget {
        let mut size = self.0.bits().div_ceil(8);
        let mut mantissa = if size <= 3 {
            (self.0.low_u64() << (8 * (3 - size))) as u32
        } else {
            self.0.shift_right(8 * (size - 3)).low_u64() as u32
        };
        if mantissa & 0x0080_0000 != 0 {
            mantissa >>= 8;
            size += 1;
        }
        CompactTarget(mantissa | (size << 24))
    }

    /// The expected number of hashes to meet this target: `2^256 / (target + 1)`.
    pub fn to_work(self) -> Work {
        // 2^256 / (t + 1) = (2^256 - 1 - t) / (t + 1) + 1, which avoids a 257-bit numerator.
        match self.0.checked_add(U256::ONE) {
            None => Work(U256::ONE),
            Some(divisor) => {
                let (quotient, _) = self
                    .0
                    .complement()
                    .checked_div_rem(divisor)
                    .expect("divisor is target + 1, never zero");
                Work(quotient.saturating_add(U256::ONE))
            }
        }
    }

    /// How many times harder this target is than `easiest`, as a float for display.
    pub fn difficulty_relative_to(self, easiest: Target) -> f64 {
        easiest.0.to_f64() / self.0.to_f64()
    }
}

impl fmt::Debug for Target {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "Target({:x})", self.0)
    }
}

impl Work {
    /// No work.
    pub const ZERO: Work = Work(U256::ZERO);

    /// Wraps a 256-bit number of hashes.
    pub const fn from_u256(value: U256) -> Work {
        Work(value)
    }

    /// The number of hashes.
    pub const fn to_u256(self) -> U256 {
        self.0
    }

    /// Sum of two amounts of work; saturates, since no real chain reaches 2^256 hashes.
    pub fn saturating_add(self, other: Work) -> Work {
        Work(self.0.saturating_add(other.0))
    }

    /// Reads 32 big-endian bytes.
    pub fn from_be_bytes(bytes: [u8; 32]) -> Work {
        Work(U256::from_be_bytes(bytes))
    }

    /// Writes 32 big-endian bytes (sorts like the number).
    pub fn to_be_bytes(self) -> [u8; 32] {
        self.0.to_be_bytes()
    }

    /// The value as a float, for display.
    pub fn to_f64(self) -> f64 {
        self.0.to_f64()
    }
}

impl fmt::Debug for Work {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "Work({:x})", self.0)
    }
}

impl fmt::Display for Work {
    /// Hex without leading zeros, as Bitcoin Core shows `chainwork`.
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{:x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn bitcoin_genesis_bits_expand_and_compress() {
        let target = CompactTarget(0x1d00ffff).to_target().expect("valid");
        assert_eq!(target.to_u256(), U256::from_u64(0xffff).shift_left(208));
        assert_eq!(target.to_compact_lossy(), CompactTarget(0x1d00ffff));
        // Bitcoin's genesis work is 0x100010001.
        assert_eq!(target.to_work().to_u256(), U256::from_u64(0x1_0001_0001));
    }

    #[test]
    fn compact_edge_cases() {
        assert_eq!(
            CompactTarget(0x01010000).to_target().map(Target::to_u256),
            Ok(U256::ONE)
        );
        assert_eq!(
            CompactTarget(0x04923456).to_target(),
            Err(CompactTargetError::Negative(0x04923456))
        );
        assert_eq!(
            CompactTarget(0xff123456).to_target(),
            Err(CompactTargetError::Overflow(0xff123456))
        );
        assert_eq!(
            CompactTarget(0x00000000).to_target(),
            Err(CompactTargetError::Zero(0))
        );
        assert_eq!(
            CompactTarget(0x01003456).to_target(),
            Err(CompactTargetError::Zero(0x01003456))
        );
        // The regtest limit: 0x7fffff << 232.
        let regtest = CompactTarget(0x207fffff).to_target().expect("valid");
        assert_eq!(regtest.to_compact_lossy(), CompactTarget(0x207fffff));
        // A mantissa with its top bit set moves up one exponent.
        let target = Target::from_u256(U256::from_u64(0x80)).expect("nonzero");
        assert_eq!(target.to_compact_lossy(), CompactTarget(0x02008000));
    }

    #[test]
    fn work_of_extremes() {
        assert_eq!(Target::MAX.to_work().to_u256(), U256::ONE);
        let one = Target::from_u256(U256::ONE).expect("nonzero");
        assert_eq!(one.to_work().to_u256(), U256::ONE.shift_left(255));
        let half = Target::from_u256(U256::MAX.shift_right(1)).expect("nonzero");
        assert_eq!(half.to_work().to_u256(), U256::from_u64(2));
    }

    #[test]
    fn is_met_by_compares_big_endian() {
        let target = Target::from_u256(U256::ONE.shift_left(240)).expect("nonzero");
        let mut easy = [0u8; 32];
        easy[1] = 0x01; // exactly 2^240
        assert!(target.is_met_by(BlockHash(easy)));
        easy[31] = 1; // 2^240 + 1
        assert!(!target.is_met_by(BlockHash(easy)));
    }

    proptest! {
        #[test]
        fn compact_round_trip_is_stable(bits in any::<u32>()) {
            if let Ok(target) = CompactTarget(bits).to_target() {
                let compact = target.to_compact_lossy();
                // Canonical re-encoding expands to the same number.
                prop_assert_eq!(compact.to_target(), Ok(target));
                prop_assert_eq!(compact.to_target().map(Target::to_compact_lossy), Ok(compact));
            }
        }

        #[test]
        fn lossy_compaction_never_rounds_up(limbs in any::<[u64; 4]>()) {
            if let Some(target) = Target::from_u256(U256::from_limbs(limbs)) {
                let compact = target.to_compact_lossy();
                if let Ok(expanded) = compact.to_target() {
                    prop_assert!(expanded <= target);
                }
            }
        }
    }
}
