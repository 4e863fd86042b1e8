//! `FeeRate`: what a transaction pays per byte of block space.
//!
//! Not a consensus rule (any fee, even zero, is valid in a block); it is the unit the
//! mempool orders and evicts by and the wallet pays in, kept here beside `Amount` so both
//! share one definition.

use std::fmt;

use crate::amount::Amount;

/// Base units per 1,000 bytes.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct FeeRate(u64);

impl FeeRate {
    /// Zero.
    pub const ZERO: FeeRate = FeeRate(0);

    /// A rate of `units` per 1,000 bytes.
    pub const fn from_units_per_kilobyte(units: u64) -> FeeRate {
        FeeRate(units)
    }

    /// A rate of `units` per byte.
    pub const fn from_units_per_byte(units: u64) -> FeeRate {
        FeeRate(units.saturating_mul(1000))
    }

    /// Units per 1,000 bytes.
    pub const fn to_units_per_kilobyte(self) -> u64 {
        self.0
    }

    /// The rate a fee pays for `size` bytes, rounded down.
    pub fn from_fee_and_size(fee: Amount, size: usize) -> FeeRate {
        let size = size.max(1) as u128;
        FeeRate((u128::from(fee.to_units()) * 1000 / size).min(u128::from(u64::MAX)) as u64)
    }

    /// The fee this rate asks for `size` bytes, rounded up; `None` past the money range.
    pub fn fee_for(self, size: usize) -> Option<Amount> {
        let units = (u128::from(self.0) * size as u128).div_ceil(1000);
        u64::try_from(units)
            .ok()
            .and_then(|units| Amount::from_units(units).ok())
    }
}

impl fmt::Display for FeeRate {
    /// Units per byte with up to three decimals.
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let whole = self.0 / 1000;
        let fraction = self.0 % 1000;
        if fraction == 0 {
            write!(formatter, "{whole} units/byte")
        } else {
            let digits = format!("{fraction:03}");
            write!(
                formatter,
                "{whole}.{} units/byte",
                digits.trim_end_matches('0')
            )
        }
    }
}

impl fmt::Debug for FeeRate {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "FeeRate({} units/kB)", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_round_in_the_payers_disfavour() {
        let rate = FeeRate::from_units_per_byte(2);
        assert_eq!(rate.fee_for(150), Amount::from_units(300).ok());
        let fractional = FeeRate::from_units_per_kilobyte(1500);
        assert_eq!(fractional.fee_for(101), Amount::from_units(152).ok());
        let paid = Amount::from_units(151).expect("in range");
        assert_eq!(FeeRate::from_fee_and_size(paid, 101), FeeRate(1495));
        assert_eq!(fractional.to_string(), "1.5 units/byte");
        assert_eq!(
            FeeRate::from_units_per_kilobyte(u64::MAX).fee_for(usize::MAX),
            None
        );
    }
}
