//! The canonical binary encoding of everything that is hashed or sent.
//!
//! Integers are little-endian and fixed-size; lengths and counts are canonical LEB128
//! varints (7 bits a byte, shortest form only). Each value has exactly one encoding, so
//! equal values hash equally and a decoder can reject anything else.
//!
//! Decoding is defensive: every length prefix is checked against the bytes that remain
//! (times the smallest size an element can have) *before* anything is allocated, so a
//! four-byte prefix can never make the decoder reserve gigabytes, and arbitrary input
//! produces a [`DecodeError`], never a panic.

use thiserror::Error;

/// Why bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// The input ended early.
    #[error("unexpected end of input: needed {needed} more bytes, {remaining} left")]
    UnexpectedEnd {
        /// Bytes the next field needs.
        needed: usize,
        /// Bytes that were left.
        remaining: usize,
    },
    /// A varint used more bytes than necessary.
    #[error("varint is not in its shortest form")]
    NonCanonicalVarint,
    /// A varint does not fit in 64 bits.
    #[error("varint overflows 64 bits")]
    VarintOverflow,
    /// A count or length is larger than the field allows or the input could hold.
    #[error("{what} length {length} exceeds the limit of {max}")]
    LengthTooLarge {
        /// The field.
        what: &'static str,
        /// The length read.
        length: u64,
        /// The largest length possible here.
        max: u64,
    },
    /// A tag byte names no known variant.
    #[error("unknown {what} tag {tag}")]
    UnknownTag {
        /// The field.
        what: &'static str,
        /// The byte read.
        tag: u8,
    },
    /// A value is outside its type's range.
    #[error("invalid {what}: {reason}")]
    InvalidValue {
        /// The field.
        what: &'static str,
        /// Why it is invalid.
        reason: String,
    },
    /// Bytes remain after a complete value.
    #[error("{0} trailing bytes after the value")]
    TrailingBytes(usize),
}

/// A value with a canonical binary encoding.
pub trait Encode {
    /// Appends the encoding to `out`.
    fn encode_to(&self, out: &mut Vec<u8>);

    /// The encoding as a new vector.
    fn encode_to_vec(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_to(&mut out);
        out
    }
}

/// A value that can be read back from its canonical encoding.
pub trait Decode: Sized {
    /// Reads one value from the reader, leaving it after the value.
    ///
    /// # Errors
    /// [`DecodeError`] if the bytes are not a canonical encoding of a value.
    fn decode_from(reader: &mut Reader<'_>) -> Result<Self, DecodeError>;

    /// Reads a value that must span exactly `bytes`.
    ///
    /// # Errors
    /// [`DecodeError`], including [`DecodeError::TrailingBytes`] if bytes are left over.
    fn decode_exact(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut reader = Reader::new(bytes);
        let value = Self::decode_from(&mut reader)?;
        reader.finish()?;
        Ok(value)
    }
}

/// A cursor over input bytes.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl<'a> Reader<'a> {
    /// Starts reading at the beginning of `bytes`.
    pub fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes, position: 0 }
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.bytes.len() - self.position
    }

    /// Bytes already read.
    pub fn position(&self) -> usize {
        self.position
    }

    /// Fails unless every byte was read.
    ///
    /// # Errors
    /// [`DecodeError::TrailingBytes`].
    pub fn finish(&self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            left => Err(DecodeError::TrailingBytes(left)),
        }
    }

    /// The next `length` bytes.
    ///
    /// # Errors
    /// [`DecodeError::UnexpectedEnd`].
    pub fn read_slice(&mut self, length: usize) -> Result<&'a [u8], DecodeError> {
        if length > self.remaining() {
            return Err(DecodeError::UnexpectedEnd {
                needed: length,
                remaining: self.remaining(),
            });
        }
        let slice = &self.bytes[self.position..self.position + length];
        self.position += length;
        Ok(slice)
    }

    /// The next `N` bytes as an array.
    ///
    /// # Errors
    /// [`DecodeError::UnexpectedEnd`].
    pub fn read_array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut array = [0u8; N];
        array.copy_from_slice(self.read_slice(N)?);
        Ok(array)
    }

    /// One byte.
    ///
    /// # Errors
    /// [`DecodeError::UnexpectedEnd`].
    pub fn read_u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.read_array::<1>()?[0])
    }

    /// A little-endian `u32`.
    ///
    /// # Errors
    /// [`DecodeError::UnexpectedEnd`].
    pub fn read_u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.read_array()?))
    }

    /// A little-endian `u64`.
    ///
    /// # Errors
    /// [`DecodeError::UnexpectedEnd`].
    pub fn read_u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.read_array()?))
    }

    /// A canonical LEB128 varint.
    ///
    /// # Errors
    /// [`DecodeError::NonCanonicalVarint`], [`DecodeError::VarintOverflow`] or
    /// [`DecodeError::UnexpectedEnd`].
    pub fn read_varint(&mut self) -> Result<u64, DecodeError> {
        let mut value: u64 = 0;
        for index in 0..10 {
            let byte = self.read_u8()?;
            let payload = u64::from(byte & 0x7f);
            if index == 9 && payload > 1 {
                return Err(DecodeError::VarintOverflow);
            }
            value |= payload << (7 * index);
            if byte & 0x80 == 0 {
                if index > 0 && byte == 0 {
                    return Err(DecodeError::NonCanonicalVarint);
                }
                return Ok(value);
            }
        }
        Err(DecodeError::VarintOverflow)
    }

    /// A count of elements that each take at least `min_element_bytes`, at most `max`.
    ///
    /// The count is checked against the remaining input before the caller allocates.
    ///
    /// # Errors
    /// [`DecodeError::LengthTooLarge`] if the count exceeds `max` or could not fit in
    /// the remaining bytes.
    pub fn read_count(
        &mut self,
        what: &'static str,
        max: usize,
        min_element_bytes: usize,
    ) -> Result<usize, DecodeError> {
        let count = self.read_varint()?;
        let fits = self.remaining() / min_element_bytes.max(1);
        let limit = max.min(fits);
        if count > limit as u64 {
            return Err(DecodeError::LengthTooLarge {
                what,
                length: count,
                max: max as u64,
            });
        }
        Ok(count as usize)
    }

    /// A length-prefixed byte string of at most `max` bytes.
    ///
    /// # Errors
    /// [`DecodeError::LengthTooLarge`] or [`DecodeError::UnexpectedEnd`].
    pub fn read_bytes(&mut self, what: &'static str, max: usize) -> Result<&'a [u8], DecodeError> {
        let length = self.read_count(what, max, 1)?;
        self.read_slice(length)
    }
}

/// Appends a canonical LEB128 varint.
pub fn write_varint(out: &mut Vec<u8>, mut value: u64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// The number of bytes [`write_varint`] uses for `value`.
pub fn varint_len(value: u64) -> usize {
    let bits = 64 - value.leading_zeros() as usize;
    bits.div_ceil(7).max(1)
}

/// Appends a length-prefixed byte string.
pub fn write_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    write_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn varint_rejects_non_canonical_and_overflow() {
        assert_eq!(
            Reader::new(&[0x80, 0x00]).read_varint(),
            Err(DecodeError::NonCanonicalVarint)
        );
        assert_eq!(
            Reader::new(&[0xff; 10]).read_varint(),
            Err(DecodeError::VarintOverflow)
        );
        let mut max = Vec::new();
        write_varint(&mut max, u64::MAX);
        assert_eq!(max.len(), 10);
        assert_eq!(Reader::new(&max).read_varint(), Ok(u64::MAX));
        assert!(matches!(
            Reader::new(&[0x80]).read_varint(),
            Err(DecodeError::UnexpectedEnd { .. })
        ));
    }

    #[test]
    fn huge_count_is_refused_before_allocation() {
        let mut bytes = Vec::new();
        write_varint(&mut bytes, u64::MAX);
        bytes.extend_from_slice(&[0u8; 16]);
        let result = Reader::new(&bytes).read_count("items", usize::MAX, 1);
        assert!(matches!(result, Err(DecodeError::LengthTooLarge { .. })));
        // A count that the input could hold but the field forbids.
        let mut bytes = Vec::new();
        write_varint(&mut bytes, 5);
        bytes.extend_from_slice(&[0u8; 16]);
        assert!(Reader::new(&bytes).read_count("items", 4, 1).is_err());
        assert_eq!(Reader::new(&bytes).read_count("items", 5, 1), Ok(5));
        assert!(Reader::new(&bytes).read_count("items", 5, 4).is_err());
    }

    proptest! {
        #[test]
        fn varint_round_trip(value in any::<u64>()) {
            let mut bytes = Vec::new();
            write_varint(&mut bytes, value);
            prop_assert_eq!(bytes.len(), varint_len(value));
            let mut reader = Reader::new(&bytes);
            prop_assert_eq!(reader.read_varint(), Ok(value));
            prop_assert!(reader.finish().is_ok());
        }

        #[test]
        fn varint_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..12)) {
            let _ = Reader::new(&bytes).read_varint();
        }
    }
}
