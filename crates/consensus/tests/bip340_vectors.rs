//! The BIP-340 reference test vectors, through powchain's own signing and verifying
//! functions (`sign_schnorr`, `verify_schnorr`), so a change of library or of how we call
//! it cannot silently change what a valid signature is.
//!
//! `tests/data/bip340-test-vectors.csv` is the revision of the vectors with rows 0-14
//! (32-byte messages only). The current revision in the BIPs repository adds rows 15-18,
//! which sign messages of 0, 1, 17 and 100 bytes; they are checked from constants below
//! until the data file is refreshed. Where the files come from: `tests/data/README.md`.

use std::path::Path;

use powchain_consensus::Signature;
use powchain_consensus::hex;
use powchain_consensus::secp256k1::Keypair;
use powchain_consensus::signature::{address_of, sign_schnorr, verify_schnorr};

/// Data rows in `tests/data/bip340-test-vectors.csv` (indices 0..=14).
const EXPECTED_CSV_ROWS: usize = 15;

const EXPECTED_HEADER: &str =
    "index,secret key,public key,aux_rand,message,signature,verification result,comment";

/// One row of the vectors.
#[derive(Debug)]
struct Bip340Vector {
    index: usize,
    secret_key: Option<[u8; 32]>,
    public_key: [u8; 32],
    aux_rand: Option<[u8; 32]>,
    message: Vec<u8>,
    signature: [u8; 64],
    expected_valid: bool,
    comment: String,
}

fn parse_row(line_number: usize, line: &str) -> Bip340Vector {
    // The comment is last and is the only field that could hold a comma.
    let fields: Vec<&str> = line.splitn(8, ',').collect();
    let [
        index,
        secret_key,
        public_key,
        aux_rand,
        message,
        signature,
        result,
        comment,
    ] = fields[..]
    else {
        panic!("line {line_number}: expected 8 comma-separated fields: {line:?}");
    };
    let optional_array = |text: &str, what: &str| -> Option<[u8; 32]> {
        (!text.is_empty()).then(|| {
            hex::decode_array(text)
                .unwrap_or_else(|error| panic!("line {line_number}: {what}: {error}"))
        })
    };
    Bip340Vector {
        index: index
            .parse()
            .unwrap_or_else(|error| panic!("line {line_number}: index {index:?}: {error}")),
        secret_key: optional_array(secret_key, "secret key"),
        public_key: hex::decode_array(public_key)
            .unwrap_or_else(|error| panic!("line {line_number}: public key: {error}")),
        aux_rand: optional_array(aux_rand, "aux_rand"),
        // Empty for a zero-length message; BIP-340 signs messages of any length.
        message: hex::decode(message)
            .unwrap_or_else(|error| panic!("line {line_number}: message: {error}")),
        signature: hex::decode_array(signature)
            .unwrap_or_else(|error| panic!("line {line_number}: signature: {error}")),
        expected_valid: match result {
            "TRUE" => true,
            "FALSE" => false,
            other => panic!("line {line_number}: verification result {other:?}"),
        },
        comment: comment.to_owned(),
    }
}

/// Signs (where the row has a secret key) and verifies one vector; panics naming the row.
fn check_vector(vector: &Bip340Vector) {
    let index = vector.index;
    if let Some(secret_key) = vector.secret_key {
        let keypair = Keypair::from_secret_bytes(secret_key)
            .unwrap_or_else(|error| panic!("vector {index}: secret key rejected: {error}"));
        assert_eq!(
            keypair.x_only_public_key().0.to_byte_array(),
            vector.public_key,
            "vector {index}: x-only public key of the secret key"
        );
        // The address of a key is its x-only public key.
        assert_eq!(address_of(&keypair).0, vector.public_key);
        let aux_rand = vector
            .aux_rand
            .unwrap_or_else(|| panic!("vector {index}: a signing row without aux_rand"));
        let signature = sign_schnorr(&keypair, &vector.message, &aux_rand);
        assert_eq!(
            hex::encode(&signature.0),
            hex::encode(&vector.signature),
            "vector {index}: signature ({})",
            vector.comment
        );
    }
    assert_eq!(
        verify_schnorr(
            &vector.public_key,
            &vector.message,
            &Signature(vector.signature)
        ),
        vector.expected_valid,
        "vector {index}: verification result ({})",
        vector.comment
    );
}

#[test]
fn every_bip340_csv_vector_signs_and_verifies_as_published() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/bip340-test-vectors.csv");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
    let mut lines = text.lines().map(|line| line.trim_end_matches('\r'));
    assert_eq!(lines.next(), Some(EXPECTED_HEADER), "CSV header");

    let mut rows_checked = 0;
    let mut rows_signed = 0;
    for (line_index, line) in lines.enumerate() {
        if line.is_empty() {
            continue;
        }
        let vector = parse_row(line_index + 2, line);
        assert_eq!(vector.index, rows_checked, "rows are numbered 0, 1, 2, ...");
        check_vector(&vector);
        rows_checked += 1;
        rows_signed += usize::from(vector.secret_key.is_some());
    }
    assert_eq!(rows_checked, EXPECTED_CSV_ROWS, "every row of the CSV ran");
    // Rows 0-3 carry a secret key; the rest are verification-only.
    assert_eq!(rows_signed, 4, "rows that were also signed");
}

/// Rows 15-18 of the current `bip-0340/test-vectors.csv`: one key, zero aux_rand, messages
/// of 0, 1, 17 and 100 bytes. A wrong copy could not reproduce four signatures by chance.
#[test]
fn variable_length_message_vectors_sign_and_verify() {
    const SECRET_KEY: &str = "0340034003400340034003400340034003400340034003400340034003400340";
    const PUBLIC_KEY: &str = "778CAA53B4393AC467774D09497A87224BF9FAB6F6E68B23086497324D6FD117";
    let long_message = "99".repeat(100);
    let rows: [(usize, &str, &str); 4] = [
        (
            15,
            "",
            "71535DB165ECD9FBBC046E5FFAEA61186BB6AD436732FCCC25291A55895464CF\
             6069CE26BF03466228F19A3A62DB8A649F2D560FAC652827D1AF0574E427AB63",
        ),
        (
            16,
            "11",
            "08A20A0AFEF64124649232E0693C583AB1B9934AE63B4C3511F3AE1134C6A303\
             EA3173BFEA6683BD101FA5AA5DBC1996FE7CACFC5A577D33EC14564CEC2BACBF",
        ),
        (
            17,
            "0102030405060708090A0B0C0D0E0F1011",
            "5130F39A4059B43BC7CAC09A19ECE52B5D8699D1A71E3C52DA9AFDB6B50AC370\
             C4A482B77BF960F8681540E25B6771ECE1E5A37FD80E5A51897C5566A97EA5A5",
        ),
        (
            18,
            &long_message,
            "403B12B0D8555A344175EA7EC746566303321E5DBFA8BE6F091635163ECA79A8\
             585ED3E3170807E7C03B720FC54C7B23897FCBA0E9D0B4A06894CFD249F22367",
        ),
    ];
    let mut message_lengths = Vec::new();
    for (index, message, signature) in rows {
        let line = format!(
            "{index},{SECRET_KEY},{PUBLIC_KEY},{zero},{message},{signature},TRUE,message of \
             size {length}",
            zero = "00".repeat(32),
            length = message.len() / 2,
        );
        let vector = parse_row(index + 2, &line);
        check_vector(&vector);
        message_lengths.push(vector.message.len());

        // A signature over one message must not verify another of a different length.
        let mut extended = vector.message.clone();
        extended.push(0);
        assert!(
            !verify_schnorr(&vector.public_key, &extended, &Signature(vector.signature)),
            "vector {index}: signature verified a longer message"
        );
    }
    assert_eq!(message_lengths, [0, 1, 17, 100]);
}
