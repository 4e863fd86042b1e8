//! The canonical encoding, tested as properties.
//!
//! - Round trips: any transaction, header or block encodes, decodes to the same value, and
//!   re-encodes to the same bytes.
//! - Hostile input: decoding arbitrary bytes, or a valid encoding that was flipped,
//!   truncated or extended, returns an error or a value whose encoding is exactly the input
//!   (one encoding per value), and never panics.
//! - Fixed cases: huge length prefixes, non-canonical varints, amounts above MAX_MONEY,
//!   unknown tags and oversized transactions.
//!
//! Case counts are modest so the file runs in a few seconds; raise `PROPTEST_CASES` to dig.

use std::fmt::Debug;
use std::time::{Duration, Instant};

use powchain_consensus::encode::{Reader, write_varint};
use powchain_consensus::transaction::MAX_TX_BYTES;
use powchain_consensus::{
    Address, Amount, Block, BlockHash, BlockHeight, CoinbaseInput, CompactTarget, Decode,
    DecodeError, Encode, HEADER_BYTES, Header, MerkleRoot, OutPoint, Signature, Transaction, TxIn,
    TxInputs, TxOut, Txid,
};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;

// ---------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------

fn amount() -> impl Strategy<Value = Amount> {
    prop_oneof![
        Just(Amount::ZERO),
        Just(Amount::MAX_MONEY),
        (0..=Amount::MAX_MONEY.to_units())
            .prop_map(|units| Amount::from_units(units).expect("the range stops at MAX_MONEY")),
    ]
}

fn out_point() -> impl Strategy<Value = OutPoint> {
    (any::<[u8; 32]>(), any::<u32>()).prop_map(|(txid, vout)| OutPoint {
        txid: Txid(txid),
        vout,
    })
}

fn tx_in() -> impl Strategy<Value = TxIn> {
    (out_point(), any::<[u8; 64]>()).prop_map(|(prevout, signature)| TxIn {
        prevout,
        signature: Signature(signature),
    })
}

fn tx_out() -> impl Strategy<Value = TxOut> {
    (amount(), any::<[u8; 32]>()).prop_map(|(value, address)| TxOut {
        value,
        address: Address(address),
    })
}

/// Heights near the varint's one- and two-byte boundary, and anywhere in `u64`.
fn height() -> impl Strategy<Value = BlockHeight> {
    prop_oneof![0..300u64, any::<u64>()].prop_map(BlockHeight)
}

fn coinbase_inputs() -> impl Strategy<Value = TxInputs> {
    // Notes past 127 bytes take a two-byte length; past consensus's 100 bytes they are
    // still encodable (the limit is a validation rule, not an encoding one).
    (height(), vec(any::<u8>(), 0..=130))
        .prop_map(|(height, data)| TxInputs::Coinbase(CoinbaseInput { height, data }))
}

fn spend_inputs() -> impl Strategy<Value = TxInputs> {
    vec(tx_in(), 0..4).prop_map(TxInputs::Spends)
}

fn transaction() -> impl Strategy<Value = Transaction> {
    let inputs = prop_oneof![coinbase_inputs(), spend_inputs()];
    // Mostly a few outputs; sometimes enough for a two-byte count.
    let outputs = prop_oneof![4 => vec(tx_out(), 0..4), 1 => vec(tx_out(), 126..132)];
    (any::<u32>(), inputs, outputs).prop_map(|(version, inputs, outputs)| Transaction {
        version,
        inputs,
        outputs,
    })
}

fn header() -> impl Strategy<Value = Header> {
    (
        any::<u32>(),
        any::<[u8; 32]>(),
        any::<[u8; 32]>(),
        any::<u64>(),
        any::<u32>(),
        any::<u64>(),
    )
        .prop_map(
            |(version, prev_hash, merkle_root, time_ms, bits, nonce)| Header {
                version,
                prev_hash: BlockHash(prev_hash),
                merkle_root: MerkleRoot(merkle_root),
                time_ms,
                bits: CompactTarget(bits),
                nonce,
            },
        )
}

fn block() -> impl Strategy<Value = Block> {
    (header(), vec(transaction(), 0..4)).prop_map(|(header, transactions)| Block {
        header,
        transactions,
    })
}

/// Bytes that start like a transaction (a version and a known input tag) and continue at
/// random, so decoding gets past the first byte more often than pure noise would.
fn transaction_like_bytes() -> impl Strategy<Value = Vec<u8>> {
    (any::<u32>(), 0..2u8, vec(any::<u8>(), 0..200)).prop_map(|(version, tag, rest)| {
        let mut bytes = version.to_le_bytes().to_vec();
        bytes.push(tag);
        bytes.extend(rest);
        bytes
    })
}

/// One edit to an encoding.
#[derive(Clone, Debug)]
enum Edit {
    /// XOR a byte with a non-zero mask.
    Flip(Index, u8),
    /// Insert a byte.
    Insert(Index, u8),
    /// Remove a byte.
    Remove(Index),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<Index>(), 1..=255u8).prop_map(|(at, mask)| Edit::Flip(at, mask)),
        (any::<Index>(), any::<u8>()).prop_map(|(at, byte)| Edit::Insert(at, byte)),
        any::<Index>().prop_map(Edit::Remove),
    ]
}

fn apply(bytes: &mut Vec<u8>, edit: &Edit) {
    if bytes.is_empty() {
        return;
    }
    match edit {
        Edit::Flip(at, mask) => {
            let index = at.index(bytes.len());
            bytes[index] ^= mask;
        }
        Edit::Insert(at, byte) => bytes.insert(at.index(bytes.len() + 1), *byte),
        Edit::Remove(at) => {
            bytes.remove(at.index(bytes.len()));
        }
    }
}

// ---------------------------------------------------------------------------------------
// The checks
// ---------------------------------------------------------------------------------------

/// Encode, decode and re-encode: the same value and the same bytes.
fn check_round_trip<T: Encode + Decode + PartialEq + Debug>(
    value: &T,
) -> Result<Vec<u8>, TestCaseError> {
    let bytes = value.encode_to_vec();
    let decoded = T::decode_exact(&bytes);
    prop_assert_eq!(decoded.as_ref(), Ok(value));
    if let Ok(decoded) = decoded {
        prop_assert_eq!(decoded.encode_to_vec(), bytes.clone());
    }
    Ok(bytes)
}

/// Decoding `bytes` returns an error, or a value whose encoding is exactly `bytes`.
fn check_canonical_or_error<T: Encode + Decode + Debug>(bytes: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(value) = T::decode_exact(bytes) {
        prop_assert_eq!(
            value.encode_to_vec(),
            bytes.to_vec(),
            "{:?} decoded from bytes that are not its encoding",
            value
        );
    }
    Ok(())
}

/// [`check_canonical_or_error`] for every type that crosses the wire.
fn check_every_type(bytes: &[u8]) -> Result<(), TestCaseError> {
    check_canonical_or_error::<Transaction>(bytes)?;
    check_canonical_or_error::<Block>(bytes)?;
    check_canonical_or_error::<Header>(bytes)?;
    check_canonical_or_error::<TxOut>(bytes)?;
    check_canonical_or_error::<OutPoint>(bytes)?;
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn transaction_round_trips(transaction in transaction()) {
        let bytes = check_round_trip(&transaction)?;
        prop_assert_eq!(bytes.len(), transaction.compute_size());
    }

    #[test]
    fn header_round_trips(header in header()) {
        let bytes = check_round_trip(&header)?;
        prop_assert_eq!(bytes.len(), HEADER_BYTES);
        prop_assert_eq!(Header::from_bytes(&header.to_bytes()), header);
    }

    #[test]
    fn block_round_trips(block in block()) {
        let bytes = check_round_trip(&block)?;
        prop_assert_eq!(bytes.len(), block.compute_size());
    }

    #[test]
    fn arbitrary_bytes_decode_canonically_or_fail(bytes in vec(any::<u8>(), 0..300)) {
        check_every_type(&bytes)?;
    }

    #[test]
    fn transaction_like_bytes_decode_canonically_or_fail(bytes in transaction_like_bytes()) {
        check_every_type(&bytes)?;
    }

    #[test]
    fn edited_transactions_decode_canonically_or_fail(
        transaction in transaction(),
        edits in vec(edit(), 1..4),
    ) {
        let mut bytes = transaction.encode_to_vec();
        for edit in &edits {
            apply(&mut bytes, edit);
        }
        check_every_type(&bytes)?;
    }

    #[test]
    fn edited_blocks_decode_canonically_or_fail(block in block(), edits in vec(edit(), 1..4)) {
        let mut bytes = block.encode_to_vec();
        for edit in &edits {
            apply(&mut bytes, edit);
        }
        check_every_type(&bytes)?;
    }

    /// Decoding reads front to back, so a proper prefix of an encoding is never a whole
    /// value: it runs out of bytes (or of room for a count) where the full input did not.
    #[test]
    fn truncated_encodings_fail(
        block in block(),
        transaction in transaction(),
        cut in any::<Index>(),
    ) {
        let bytes = block.encode_to_vec();
        let block_cut = cut.index(bytes.len());
        prop_assert!(Block::decode_exact(&bytes[..block_cut]).is_err());
        let bytes = transaction.encode_to_vec();
        let transaction_cut = cut.index(bytes.len());
        prop_assert!(Transaction::decode_exact(&bytes[..transaction_cut]).is_err());
    }

    #[test]
    fn appended_bytes_are_trailing_bytes(
        block in block(),
        transaction in transaction(),
        extra in vec(any::<u8>(), 1..16),
    ) {
        let mut bytes = block.encode_to_vec();
        bytes.extend_from_slice(&extra);
        prop_assert_eq!(Block::decode_exact(&bytes), Err(DecodeError::TrailingBytes(extra.len())));
        let mut bytes = transaction.encode_to_vec();
        bytes.extend_from_slice(&extra);
        prop_assert_eq!(
            Transaction::decode_exact(&bytes),
            Err(DecodeError::TrailingBytes(extra.len()))
        );
    }

    /// Any value written with a redundant trailing varint group (…0x80 0x00) is refused.
    #[test]
    fn padded_varints_are_non_canonical(value in 0..(1u64 << 56)) {
        let mut bytes = coinbase_prefix();
        let mut varint = Vec::new();
        write_varint(&mut varint, value);
        *varint.last_mut().expect("a varint has at least one byte") |= 0x80;
        varint.push(0x00);
        bytes.extend(varint);
        bytes.extend([0, 0]); // empty note, no outputs
        prop_assert_eq!(Transaction::decode_exact(&bytes), Err(DecodeError::NonCanonicalVarint));
    }

    #[test]
    fn output_values_decode_exactly_up_to_max_money(units in any::<u64>(), address in any::<[u8; 32]>()) {
        let mut bytes = units.to_le_bytes().to_vec();
        bytes.extend_from_slice(&address);
        let decoded = TxOut::decode_exact(&bytes);
        if units <= Amount::MAX_MONEY.to_units() {
            prop_assert_eq!(decoded.map(|output| output.value.to_units()), Ok(units));
        } else {
            let is_invalid_value = matches!(
                decoded,
                Err(DecodeError::InvalidValue { what: "output value", .. })
            );
            prop_assert!(is_invalid_value);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Fixed cases
// ---------------------------------------------------------------------------------------

/// A transaction's version and coinbase tag, where the coinbase height comes next.
fn coinbase_prefix() -> Vec<u8> {
    let mut bytes = Transaction::CURRENT_VERSION.to_le_bytes().to_vec();
    bytes.push(0);
    bytes
}

fn varint(value: u64) -> Vec<u8> {
    let mut bytes = Vec::new();
    write_varint(&mut bytes, value);
    bytes
}

fn concat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

#[test]
fn length_prefix_of_two_to_the_sixty_is_refused_before_allocating() {
    const HUGE: u64 = 1 << 60;
    let huge = varint(HUGE);
    // Some bytes after the prefix, as a real message would have.
    let tail = [0u8; 64];
    let version = Transaction::CURRENT_VERSION.to_le_bytes();
    let header = [0u8; HEADER_BYTES];
    let started = Instant::now();

    let transactions = Block::decode_exact(&concat(&[&header, &huge, &tail]));
    assert!(
        matches!(
            transactions,
            Err(DecodeError::LengthTooLarge {
                what: "transactions",
                length: HUGE,
                ..
            })
        ),
        "{transactions:?}"
    );
    let too_large = |what| DecodeError::LengthTooLarge {
        what,
        length: HUGE,
        max: MAX_TX_BYTES as u64,
    };
    // Version, spends tag, input count.
    assert_eq!(
        Transaction::decode_exact(&concat(&[&version, &[1], &huge, &tail])),
        Err(too_large("inputs"))
    );
    // Version, coinbase tag, height 0, note length.
    assert_eq!(
        Transaction::decode_exact(&concat(&[&version, &[0, 0], &huge, &tail])),
        Err(too_large("coinbase data"))
    );
    // Version, coinbase tag, height 0, empty note, output count.
    assert_eq!(
        Transaction::decode_exact(&concat(&[&version, &[0, 0, 0], &huge, &tail])),
        Err(too_large("outputs"))
    );
    // Reserving 2^60 elements would abort the process; even touching that much memory
    // would take far longer than this.
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[test]
fn a_count_the_remaining_bytes_cannot_hold_is_refused() {
    // Two outputs claimed, room for one: refused at the count, before reading outputs.
    let output = TxOut {
        value: Amount::ONE_COIN,
        address: Address([3; 32]),
    }
    .encode_to_vec();
    let bytes = concat(&[&coinbase_prefix(), &[0, 0, 2], &output]);
    assert_eq!(
        Transaction::decode_exact(&bytes),
        Err(DecodeError::LengthTooLarge {
            what: "outputs",
            length: 2,
            max: MAX_TX_BYTES as u64,
        })
    );
}

#[test]
fn non_canonical_varints_are_rejected_in_every_position() {
    let redundant_zero = [0x80, 0x00]; // 0 written in two bytes
    let redundant_five = [0x85, 0x00]; // 5 written in two bytes
    let cases: [(&str, Vec<u8>); 4] = [
        (
            "coinbase height",
            concat(&[&coinbase_prefix(), &redundant_five, &[0, 0]]),
        ),
        (
            "coinbase note length",
            concat(&[&coinbase_prefix(), &[5], &redundant_zero, &[0]]),
        ),
        (
            "output count",
            concat(&[&coinbase_prefix(), &[5, 0], &redundant_zero]),
        ),
        (
            "input count",
            concat(&[
                &Transaction::CURRENT_VERSION.to_le_bytes(),
                &[1],
                &redundant_zero,
                &[0],
            ]),
        ),
    ];
    for (position, bytes) in cases {
        assert_eq!(
            Transaction::decode_exact(&bytes),
            Err(DecodeError::NonCanonicalVarint),
            "{position}"
        );
    }
    // A block's transaction count.
    let block = Block {
        header: Header::from_bytes(&[0; HEADER_BYTES]),
        transactions: vec![],
    };
    let mut bytes = block.encode_to_vec();
    assert_eq!(bytes.pop(), Some(0));
    bytes.extend(redundant_zero);
    assert_eq!(
        Block::decode_exact(&bytes),
        Err(DecodeError::NonCanonicalVarint)
    );
}

#[test]
fn varints_past_64_bits_overflow() {
    // Ten bytes whose last carries more than the one bit left, and eleven bytes.
    let mut too_wide = vec![0xff; 9];
    too_wide.push(0x02);
    assert_eq!(
        Reader::new(&too_wide).read_varint(),
        Err(DecodeError::VarintOverflow)
    );
    let mut bytes = coinbase_prefix();
    bytes.extend([0xff; 11]);
    assert_eq!(
        Transaction::decode_exact(&bytes),
        Err(DecodeError::VarintOverflow)
    );
}

#[test]
fn output_above_max_money_is_rejected_by_decoding() {
    let transaction = Transaction::new_coinbase(
        BlockHeight(7),
        vec![],
        vec![TxOut {
            value: Amount::MAX_MONEY,
            address: Address([9; 32]),
        }],
    );
    let mut bytes = check_round_trip(&transaction).expect("MAX_MONEY itself round trips");
    // The value is the first 8 bytes of the output, which ends the transaction.
    let value_at = bytes.len() - TxOut::ENCODED_BYTES;
    let over = Amount::MAX_MONEY.to_units() + 1;
    bytes[value_at..value_at + 8].copy_from_slice(&over.to_le_bytes());
    let result = Transaction::decode_exact(&bytes);
    assert!(
        matches!(
            result,
            Err(DecodeError::InvalidValue {
                what: "output value",
                ..
            })
        ),
        "{result:?}"
    );
    bytes[value_at..value_at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(matches!(
        Transaction::decode_exact(&bytes),
        Err(DecodeError::InvalidValue {
            what: "output value",
            ..
        })
    ));
}

#[test]
fn unknown_input_tag_is_rejected() {
    let mut bytes = Transaction::CURRENT_VERSION.to_le_bytes().to_vec();
    bytes.extend([2, 0, 0]);
    assert_eq!(
        Transaction::decode_exact(&bytes),
        Err(DecodeError::UnknownTag {
            what: "transaction input kind",
            tag: 2,
        })
    );
}

/// A coinbase whose note makes the whole encoding exactly `size` bytes.
fn coinbase_of_size(size: usize) -> Transaction {
    let mut transaction = Transaction::new_coinbase(BlockHeight(1), vec![], vec![]);
    // The note's length prefix grows with it: three bytes from 16,384 bytes on.
    let note_bytes = size - transaction.compute_size() - 2;
    transaction.inputs = TxInputs::Coinbase(CoinbaseInput {
        height: BlockHeight(1),
        data: vec![b'x'; note_bytes],
    });
    assert_eq!(transaction.compute_size(), size);
    transaction
}

#[test]
fn transactions_decode_up_to_max_tx_bytes_and_not_beyond() {
    let at_limit = coinbase_of_size(MAX_TX_BYTES);
    check_round_trip(&at_limit).expect("a transaction of exactly MAX_TX_BYTES decodes");
    let over = coinbase_of_size(MAX_TX_BYTES + 1);
    assert_eq!(
        Transaction::decode_exact(&over.encode_to_vec()),
        Err(DecodeError::LengthTooLarge {
            what: "transaction",
            length: MAX_TX_BYTES as u64 + 1,
            max: MAX_TX_BYTES as u64,
        })
    );
}

#[test]
fn headers_are_fixed_size_and_short_input_ends_early() {
    assert_eq!(
        Header::decode_exact(&[0; HEADER_BYTES - 1]),
        Err(DecodeError::UnexpectedEnd {
            needed: HEADER_BYTES,
            remaining: HEADER_BYTES - 1,
        })
    );
    assert_eq!(
        Header::decode_exact(&[0; HEADER_BYTES + 1]),
        Err(DecodeError::TrailingBytes(1))
    );
}

#[test]
fn genesis_blocks_round_trip() {
    for network in powchain_consensus::Network::ALL {
        let genesis = network.params().genesis();
        let bytes = genesis.encode_to_vec();
        assert_eq!(
            Block::decode_exact(&bytes).as_ref(),
            Ok(genesis),
            "{network}"
        );
    }
}
