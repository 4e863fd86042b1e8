//! Lower-case hexadecimal text for hashes, keys and raw bytes.

use thiserror::Error;

const DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Why a hex string could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HexError {
    /// The string has an odd number of digits.
    #[error("hex string has an odd length ({0} characters)")]
    OddLength(usize),
    /// A character is not a hex digit.
    #[error("invalid hex character {character:?} at position {position}")]
    InvalidCharacter {
        /// The offending character.
        character: char,
        /// Its byte position in the string.
        position: usize,
    },
    /// The decoded bytes have the wrong length for the type.
    #[error("expected {expected} bytes of hex, got {got}")]
    WrongLength {
        /// Bytes the type needs.
        expected: usize,
        /// Bytes the string held.
        got: usize,
    },
}

/// Encodes bytes as lower-case hex.
pub fn encode(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(DIGITS[usize::from(byte >> 4)] as char);
        text.push(DIGITS[usize::from(byte & 0x0f)] as char);
    }
    text
}

fn digit_value(character: u8) -> Option<u8> {
    match character {
        b'0'..=b'9' => Some(character - b'0'),
        b'a'..=b'f' => Some(character - b'a' + 10),
        b'A'..=b'F' => Some(character - b'A' + 10),
        _ => None,
    }
}

/// Decodes hex (either case) into bytes.
///
/// # Errors
/// [`HexError`] on an odd length or a non-hex character.
pub fn decode(text: &str) -> Result<Vec<u8>, HexError> {
    let raw = text.as_bytes();
    if !raw.len().is_multiple_of(2) {
        return Err(HexError::OddLength(raw.len()));
    }
    let mut bytes = Vec::with_capacity(raw.len() / 2);
    for (pair_index, pair) in raw.chunks_exact(2).enumerate() {
        let mut value = 0u8;
        for (offset, character) in pair.iter().enumerate() {
            let digit = digit_value(*character).ok_or_else(|| HexError::InvalidCharacter {
                character: text
                    .get(pair_index * 2 + offset..)
                    .and_then(|rest| rest.chars().next())
                    .unwrap_or('?'),
                position: pair_index * 2 + offset,
            })?;
            value = (value << 4) | digit;
        }
        bytes.push(value);
    }
    Ok(bytes)
}

/// Decodes hex into a fixed-size array.
///
/// # Errors
/// [`HexError`] if the text is not hex or does not hold exactly `N` bytes.
pub fn decode_array<const N: usize>(text: &str) -> Result<[u8; N], HexError> {
    if text.len() != 2 * N {
        return Err(HexError::WrongLength {
            expected: N,
            got: text.len() / 2,
        });
    }
    let bytes = decode(text)?;
    let mut array = [0u8; N];
    array.copy_from_slice(&bytes);
    Ok(array)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_errors() {
        assert_eq!(encode(&[0x00, 0xab, 0xff]), "00abff");
        assert_eq!(decode("00ABff"), Ok(vec![0x00, 0xab, 0xff]));
        assert_eq!(decode("abc"), Err(HexError::OddLength(3)));
        assert!(matches!(
            decode("zz"),
            Err(HexError::InvalidCharacter {
                character: 'z',
                position: 0
            })
        ));
        assert!(matches!(
            decode("0é0"),
            Err(HexError::InvalidCharacter {
                character: 'é',
                position: 1
            })
        ));
        assert_eq!(
            decode_array::<2>("aabbcc"),
            Err(HexError::WrongLength {
                expected: 2,
                got: 3
            })
        );
    }
}
