//! `Amount`: a number of base units that cannot leave the money range.
//!
//! 1 coin = 100,000,000 units. Every amount is at most [`Amount::MAX_MONEY`], so the sum of
//! any two fits in a `u64` and overflow is caught by the checked operations, never wrapped.

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

/// Base units per coin.
pub const UNITS_PER_COIN: u64 = 100_000_000;

/// A non-negative number of base units, never above [`Amount::MAX_MONEY`].
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Amount(u64);

/// Why an amount could not be built or read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AmountError {
    /// Above the money supply limit.
    #[error("amount {units} units is above the maximum of {max} units")]
    TooLarge {
        /// The value given.
        units: u64,
        /// [`Amount::MAX_MONEY`] in units.
        max: u64,
    },
    /// Not a decimal amount of coins with at most 8 decimals.
    #[error("invalid coin amount {0:?}: expected digits with at most 8 decimals, like 1.5")]
    Malformed(String),
}

impl Amount {
    /// Zero units.
    pub const ZERO: Amount = Amount(0);
    /// One coin.
    pub const ONE_COIN: Amount = Amount(UNITS_PER_COIN);
    /// The most money that can ever exist: 21 million coins. No output, sum of outputs or
    /// fee may exceed it.
    pub const MAX_MONEY: Amount = Amount(21_000_000 * UNITS_PER_COIN);

    /// An amount of base units.
    ///
    /// # Errors
    /// [`AmountError::TooLarge`] above [`Amount::MAX_MONEY`].
    pub const fn from_units(units: u64) -> Result<Amount, AmountError> {
        if units > Amount::MAX_MONEY.0 {
            Err(AmountError::TooLarge {
                units,
                max: Amount::MAX_MONEY.0,
            })
        } else {
            Ok(Amount(units))
        }
    }

    /// Whole coins; `None` above the money range.
    pub const fn from_coins(coins: u64) -> Option<Amount> {
        match coins.checked_mul(UNITS_PER_COIN) {
            Some(units) if units <= Amount::MAX_MONEY.0 => Some(Amount(units)),
            _ => None,
        }
    }

    /// The number of base units.
    pub const fn to_units(self) -> u64 {
        self.0
    }

    /// Sum, `None` if it leaves the money range.
    pub fn checked_add(self, other: Amount) -> Option<Amount> {
        self.0
            .checked_add(other.0)
            .and_then(|units| Amount::from_units(units).ok())
    }

    /// Difference, `None` if negative.
    pub fn checked_sub(self, other: Amount) -> Option<Amount> {
        self.0.checked_sub(other.0).map(Amount)
    }

    /// Product with a count, `None` if it leaves the money range.
    pub fn checked_mul(self, factor: u64) -> Option<Amount> {
        self.0
            .checked_mul(factor)
            .and_then(|units| Amount::from_units(units).ok())
    }

    /// Sum of many amounts, `None` if any partial sum leaves the money range.
    pub fn checked_sum(amounts: impl IntoIterator<Item = Amount>) -> Option<Amount> {
        amounts
            .into_iter()
            .try_fold(Amount::ZERO, |total, amount| total.checked_add(amount))
    }
}

impl fmt::Display for Amount {
    /// Coins with up to eight decimals, trailing zeros trimmed: `12.5`, `0.00000001`, `50`.
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let whole = self.0 / UNITS_PER_COIN;
        let fraction = self.0 % UNITS_PER_COIN;
        if fraction == 0 {
            write!(formatter, "{whole}")
        } else {
            let digits = format!("{fraction:08}");
            write!(formatter, "{whole}.{}", digits.trim_end_matches('0'))
        }
    }
}

impl fmt::Debug for Amount {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "Amount({} units)", self.0)
    }
}

impl FromStr for Amount {
    type Err = AmountError;

    /// Reads a decimal number of coins (`1.5`, `0.00000001`, `21000000`).
    fn from_str(text: &str) -> Result<Amount, AmountError> {
        let malformed = || AmountError::Malformed(text.to_owned());
        let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
        let all_digits = |part: &str| part.bytes().all(|byte| byte.is_ascii_digit());
        if whole.is_empty() || !all_digits(whole) || !all_digits(fraction) || fraction.len() > 8 {
            return Err(malformed());
        }
        if text.contains('.') && fraction.is_empty() {
            return Err(malformed());
        }
        let whole_units = whole
            .parse::<u64>()
            .ok()
            .and_then(|coins| coins.checked_mul(UNITS_PER_COIN))
            .ok_or(AmountError::TooLarge {
                units: u64::MAX,
                max: Amount::MAX_MONEY.0,
            })?;
        let fraction_units = if fraction.is_empty() {
            0
        } else {
            format!("{fraction:0<8}")
                .parse::<u64>()
                .map_err(|_| malformed())?
        };
        let units = whole_units
            .checked_add(fraction_units)
            .ok_or(AmountError::TooLarge {
                units: u64::MAX,
                max: Amount::MAX_MONEY.0,
            })?;
        Amount::from_units(units)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn range_is_enforced() {
        assert!(Amount::from_units(Amount::MAX_MONEY.to_units()).is_ok());
        assert!(matches!(
            Amount::from_units(Amount::MAX_MONEY.to_units() + 1),
            Err(AmountError::TooLarge { .. })
        ));
        assert_eq!(Amount::MAX_MONEY.checked_add(Amount(1)), None);
        assert_eq!(Amount::ZERO.checked_sub(Amount(1)), None);
        assert_eq!(Amount::ONE_COIN.checked_mul(u64::MAX), None);
        assert_eq!(Amount::from_coins(50), Some(Amount(5_000_000_000)));
        assert_eq!(Amount::from_coins(u64::MAX), None);
    }

    #[test]
    fn display_and_parse() {
        assert_eq!(Amount(5_000_000_000).to_string(), "50");
        assert_eq!(Amount(150_000_000).to_string(), "1.5");
        assert_eq!(Amount(1).to_string(), "0.00000001");
        assert_eq!("1.5".parse::<Amount>(), Ok(Amount(150_000_000)));
        assert_eq!("0.00000001".parse::<Amount>(), Ok(Amount(1)));
        for bad in ["", ".5", "1.", "1.123456789", "-1", "1e3", "abc", " 1"] {
            assert!(bad.parse::<Amount>().is_err(), "{bad:?} should not parse");
        }
        assert!(matches!(
            "99999999999999999999".parse::<Amount>(),
            Err(AmountError::TooLarge { .. })
        ));
        assert!(matches!(
            "21000000.00000001".parse::<Amount>(),
            Err(AmountError::TooLarge { .. })
        ));
    }

    proptest! {
        #[test]
        fn text_round_trip(units in 0..=Amount::MAX_MONEY.to_units()) {
            let amount = Amount::from_units(units).expect("in range");
            prop_assert_eq!(amount.to_string().parse::<Amount>(), Ok(amount));
        }
    }
}
