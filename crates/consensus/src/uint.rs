//! A 256-bit unsigned integer, just wide enough for targets and chain work.
//!
//! Only the operations consensus needs are here: comparison, addition, subtraction, shifts,
//! multiplication and division. Every operation that can overflow says so in its name
//! (`checked_*`, `saturating_*`); nothing wraps silently.

use std::cmp::Ordering;
use std::fmt;

/// An unsigned 256-bit integer stored as four little-endian 64-bit limbs.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct U256([u64; 4]);

impl U256 {
    /// Zero.
    pub const ZERO: U256 = U256([0; 4]);
    /// One.
    pub const ONE: U256 = U256([1, 0, 0, 0]);
    /// 2^256 - 1.
    pub const MAX: U256 = U256([u64::MAX; 4]);

    /// Builds a value from four little-endian limbs (limb 0 is least significant).
    pub const fn from_limbs(limbs: [u64; 4]) -> U256 {
        U256(limbs)
    }

    /// Widens a `u64`.
    pub const fn from_u64(value: u64) -> U256 {
        U256([value, 0, 0, 0])
    }

    /// Widens a `u128`.
    pub const fn from_u128(value: u128) -> U256 {
        U256([value as u64, (value >> 64) as u64, 0, 0])
    }

    /// Reads 32 bytes as a big-endian number.
    pub fn from_be_bytes(bytes: [u8; 32]) -> U256 {
        let mut limbs = [0u64; 4];
        for (index, limb) in limbs.iter_mut().enumerate() {
            let start = 32 - 8 * (index + 1);
            let mut chunk = [0u8; 8];
            chunk.copy_from_slice(&bytes[start..start + 8]);
            *limb = u64::from_be_bytes(chunk);
        }
        U256(limbs)
    }

    /// Writes the number as 32 big-endian bytes.
    pub fn to_be_bytes(self) -> [u8; 32] {
        let mut bytes = [0u8; 32];
        for (index, limb) in self.0.iter().enumerate() {
            let start = 32 - 8 * (index + 1);
            bytes[start..start + 8].copy_from_slice(&limb.to_be_bytes());
        }
        bytes
    }

    /// The little-endian limbs.
    pub const fn limbs(self) -> [u64; 4] {
        self.0
    }

    /// True if the value is zero.
    pub fn is_zero(self) -> bool {
        self.0 == [0; 4]
    }

    /// Number of significant bits (0 for zero).
    pub fn bits(self) -> u32 {
        for index in (0..4).rev() {
            if self.0[index] != 0 {
                return 64 * index as u32 + (64 - self.0[index].leading_zeros());
            }
        }
        0
    }

    /// The low 64 bits.
    pub fn low_u64(self) -> u64 {
        self.0[0]
    }

    /// Addition, `None` on overflow.
    pub fn checked_add(self, other: U256) -> Option<U256> {
        let mut out = [0u64; 4];
        let mut carry = false;
        for (index, slot) in out.iter_mut().enumerate() {
            let (sum, carry_a) = self.0[index].overflowing_add(other.0[index]);
            let (sum, carry_b) = sum.overflowing_add(u64::from(carry));
            *slot = sum;
            carry = carry_a || carry_b;
        }
        (!carry).then_some(U256(out))
    }

    /// Addition that stops at `U256::MAX`.
    pub fn saturating_add(self, other: U256) -> U256 {
        self.checked_add(other).unwrap_or(U256::MAX)
    }

    /// Subtraction, `None` if `other > self`.
    pub fn checked_sub(self, other: U256) -> Option<U256> {
        let mut out = [0u64; 4];
        let mut borrow = false;
        for (index, slot) in out.iter_mut().enumerate() {
            let (difference, borrow_a) = self.0[index].overflowing_sub(other.0[index]);
            let (difference, borrow_b) = difference.overflowing_sub(u64::from(borrow));
            *slot = difference;
            borrow = borrow_a || borrow_b;
        }
        (!borrow).then_some(U256(out))
    }

    /// Multiplication by a `u64`, `None` on overflow.
    pub fn checked_mul_u64(self, factor: u64) -> Option<U256> {
        let wide = self.widening_mul_u64(factor);
        (wide[4] == 0).then(|| U256([wide[0], wide[1], wide[2], wide[3]]))
    }

    /// The full 320-bit product with a `u64`, as five little-endian limbs.
    pub(crate) fn widening_mul_u64(self, factor: u64) -> [u64; 5] {
        let mut out = [0u64; 5];
        let mut carry: u128 = 0;
        for (slot, limb) in out.iter_mut().zip(self.0) {
            let product = u128::from(limb) * u128::from(factor) + carry;
            *slot = product as u64;
            carry = product >> 64;
        }
        out[4] = carry as u64;
        out
    }

    /// Left shift; bits shifted past 2^256 are lost. Shifts of 256 or more give zero.
    pub fn shift_left(self, shift: u32) -> U256 {
        if shift >= 256 {
            return U256::ZERO;
        }
        let limb_shift = (shift / 64) as usize;
        let bit_shift = shift % 64;
        let mut out = [0u64; 4];
        for index in (limb_shift..4).rev() {
            let source = index - limb_shift;
            out[index] = self.0[source] << bit_shift;
            if bit_shift > 0 && source > 0 {
                out[index] |= self.0[source - 1] >> (64 - bit_shift);
            }
        }
        U256(out)
    }

    /// Logical right shift. Shifts of 256 or more give zero.
    pub fn shift_right(self, shift: u32) -> U256 {
        if shift >= 256 {
            return U256::ZERO;
        }
        let limb_shift = (shift / 64) as usize;
        let bit_shift = shift % 64;
        let mut out = [0u64; 4];
        for (index, slot) in out.iter_mut().enumerate().take(4 - limb_shift) {
            let source = index + limb_shift;
            *slot = self.0[source] >> bit_shift;
            if bit_shift > 0 && source + 1 < 4 {
                *slot |= self.0[source + 1] << (64 - bit_shift);
            }
        }
        U256(out)
    }

    /// Left shift that reports overflow instead of dropping bits.
    pub fn checked_shl(self, shift: u32) -> Option<U256> {
        if self.is_zero() {
            return Some(U256::ZERO);
        }
        (self.bits() + shift <= 256).then(|| self.shift_left(shift))
    }

    /// Bitwise complement.
    pub fn complement(self) -> U256 {
        U256([!self.0[0], !self.0[1], !self.0[2], !self.0[3]])
    }

    fn bit(self, index: u32) -> bool {
        (self.0[(index / 64) as usize] >> (index % 64)) & 1 == 1
    }

    /// Quotient and remainder, `None` when dividing by zero.
    ///
    /// Binary long division: at most 256 steps, fine for the few divisions consensus makes
    /// (one per header, to compute its work).
    pub fn checked_div_rem(self, divisor: U256) -> Option<(U256, U256)> {
        if divisor.is_zero() {
            return None;
        }
        if self < divisor {
            return Some((U256::ZERO, self));
        }
        let mut quotient = U256::ZERO;
        let mut remainder = U256::ZERO;
        for index in (0..self.bits()).rev() {
            remainder = remainder.shift_left(1);
            if self.bit(index) {
                remainder.0[0] |= 1;
            }
            if remainder >= divisor {
                remainder = remainder
                    .checked_sub(divisor)
                    .expect("remainder >= divisor was just checked");
                quotient.0[(index / 64) as usize] |= 1 << (index % 64);
            }
        }
        Some((quotient, remainder))
    }

    /// The value as a float, rounded; for display only (difficulty, hashrate estimates).
    pub fn to_f64(self) -> f64 {
        self.0.iter().rev().fold(0.0, |accumulator, limb| {
            accumulator * 18446744073709551616.0 + *limb as f64
        })
    }
}

impl Ord for U256 {
    fn cmp(&self, other: &U256) -> Ordering {
        for index in (0..4).rev() {
            match self.0[index].cmp(&other.0[index]) {
                Ordering::Equal => continue,
                unequal => return unequal,
            }
        }
        Ordering::Equal
    }
}

impl PartialOrd for U256 {
    fn partial_cmp(&self, other: &U256) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Debug for U256 {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "U256({self:x})")
    }
}

impl fmt::LowerHex for U256 {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = crate::hex::encode(&self.to_be_bytes());
        let trimmed = text.trim_start_matches('0');
        formatter.write_str(if trimmed.is_empty() { "0" } else { trimmed })
    }
}

/// Shifts a 320-bit little-endian value by `shift` bits (left if positive, right if negative,
/// rounding down) and returns it if the result fits in 256 bits.
pub(crate) fn shift_wide(value: [u64; 5], shift: i64) -> Option<U256> {
    let mut limbs = value;
    if shift >= 0 {
        let shift = u32::try_from(shift).ok()?;
        let significant = bits_of(&limbs);
        if significant == 0 {
            return Some(U256::ZERO);
        }
        if significant + shift > 256 {
            return None;
        }
        let narrow = U256([limbs[0], limbs[1], limbs[2], limbs[3]]);
        return Some(narrow.shift_left(shift));
    }
    let mut remaining = shift.unsigned_abs();
    if remaining >= 320 {
        return Some(U256::ZERO);
    }
    while remaining >= 64 {
        limbs = [limbs[1], limbs[2], limbs[3], limbs[4], 0];
        remaining -= 64;
    }
    if remaining > 0 {
        for index in 0..5 {
            limbs[index] >>= remaining;
            if index + 1 < 5 {
                limbs[index] |= limbs[index + 1] << (64 - remaining);
            }
        }
    }
    (limbs[4] == 0).then_some(U256([limbs[0], limbs[1], limbs[2], limbs[3]]))
}

fn bits_of(limbs: &[u64; 5]) -> u32 {
    for index in (0..5).rev() {
        if limbs[index] != 0 {
            return 64 * index as u32 + (64 - limbs[index].leading_zeros());
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arbitrary_u256() -> impl Strategy<Value = U256> {
        any::<[u64; 4]>().prop_map(U256)
    }

    #[test]
    fn shifts_cross_limb_boundaries() {
        let one = U256::ONE;
        assert_eq!(one.shift_left(64), U256([0, 1, 0, 0]));
        assert_eq!(one.shift_left(255).shift_right(255), one);
        assert_eq!(one.shift_left(256), U256::ZERO);
        assert_eq!(U256([0, 0, 0, 1]).shift_right(192), one);
        assert_eq!(U256::MAX.shift_right(255), one);
        assert_eq!(one.checked_shl(255), Some(one.shift_left(255)));
        assert_eq!(one.checked_shl(256), None);
    }

    #[test]
    fn division_matches_u128_on_small_values() {
        let (quotient, remainder) = U256::from_u128(1_000_000_007 * 12345 + 17)
            .checked_div_rem(U256::from_u64(12345))
            .expect("nonzero divisor");
        assert_eq!(quotient, U256::from_u64(1_000_000_007));
        assert_eq!(remainder, U256::from_u64(17));
        assert_eq!(U256::ONE.checked_div_rem(U256::ZERO), None);
    }

    #[test]
    fn wide_shift_keeps_the_fifth_limb() {
        let value = U256::MAX.widening_mul_u64(2);
        assert_eq!(shift_wide(value, -1), Some(U256::MAX));
        assert_eq!(shift_wide(value, 0), None);
        assert_eq!(shift_wide([4, 0, 0, 0, 0], -2), Some(U256::ONE));
        assert_eq!(
            shift_wide([1, 0, 0, 0, 0], 255),
            Some(U256::ONE.shift_left(255))
        );
        assert_eq!(shift_wide([1, 0, 0, 0, 0], 256), None);
        assert_eq!(shift_wide([0, 0, 0, 0, 1], -400), Some(U256::ZERO));
    }

    proptest! {
        #[test]
        fn byte_round_trip(value in arbitrary_u256()) {
            prop_assert_eq!(U256::from_be_bytes(value.to_be_bytes()), value);
        }

        #[test]
        fn division_reconstructs_the_dividend(dividend in arbitrary_u256(), divisor in arbitrary_u256()) {
            prop_assume!(!divisor.is_zero());
            let (quotient, remainder) = dividend.checked_div_rem(divisor).expect("nonzero");
            prop_assert!(remainder < divisor);
            // quotient * divisor + remainder == dividend, checked limb by limb through u64 factors
            // only when the divisor fits in 64 bits (the general product needs a wider multiply).
            if divisor.bits() <= 64 {
                let product = quotient.checked_mul_u64(divisor.low_u64()).expect("no overflow");
                prop_assert_eq!(product.checked_add(remainder), Some(dividend));
            }
        }

        #[test]
        fn add_then_sub_is_identity(a in arbitrary_u256(), b in arbitrary_u256()) {
            if let Some(sum) = a.checked_add(b) {
                prop_assert_eq!(sum.checked_sub(b), Some(a));
            } else {
                prop_assert!(a > U256::MAX.checked_sub(b).expect("b <= MAX"));
            }
        }

        #[test]
        fn shift_round_trip(value in arbitrary_u256(), shift in 0u32..256) {
            prop_assert_eq!(value.shift_right(shift).shift_left(shift).shift_right(shift), value.shift_right(shift));
            prop_assert_eq!(value.shift_left(shift).shift_right(shift), value.shift_left(shift).shift_right(shift));
            if value.bits() + shift <= 256 {
                prop_assert_eq!(value.shift_left(shift).shift_right(shift), value);
            }
        }
    }
}
