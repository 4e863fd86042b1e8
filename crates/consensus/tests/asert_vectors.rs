//! The Bitcoin Cash Node aserti3-2d conformance vectors (runs 01-12), row by row.
//!
//! Each data row gives a block's height and time and the compact target the reference
//! implementation computes for its child. We feed the same deltas from the anchor to
//! [`compute_asert_bits`] with the reference schedule (600 s blocks, two-day half-life,
//! limit 0x1d00ffff) and require every one of the 14,000 rows to match bit for bit.
//! Where the files come from: `tests/data/README.md`.

use std::path::{Path, PathBuf};

use powchain_consensus::CompactTarget;
use powchain_consensus::difficulty::{AsertSchedule, compute_asert_bits};

/// The schedule the vectors were generated with: Bitcoin Cash's 600 s target spacing and
/// two-day half-life, in seconds.
const REFERENCE_SCHEDULE: AsertSchedule = AsertSchedule {
    ideal_block_time: 600,
    half_life: 172_800,
};

/// Bitcoin Cash's proof-of-work limit, `0xffff << 208`.
const REFERENCE_POW_LIMIT_BITS: CompactTarget = CompactTarget(0x1d00ffff);

/// The rows of all twelve files together, as the vectors' README counts them.
const EXPECTED_TOTAL_ROWS: usize = 14_000;

const RUN_FILE_NAMES: [&str; 12] = [
    "run01", "run02", "run03", "run04", "run05", "run06", "run07", "run08", "run09", "run10",
    "run11", "run12",
];

/// The header fields of one run file.
#[derive(Debug)]
struct RunHeader {
    anchor_height: u64,
    /// The time of the anchor block's *parent* (aserti3-2d's reference point).
    anchor_parent_time: i64,
    anchor_bits: CompactTarget,
    start_height: u64,
    start_time: i64,
    iterations: usize,
}

/// One data line: `iteration height time nBits`.
#[derive(Debug)]
struct VectorRow {
    iteration: usize,
    height: u64,
    time: i64,
    expected_bits: CompactTarget,
}

fn data_directory() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/asert")
}

fn parse_bits(text: &str, file_name: &str) -> CompactTarget {
    let hex_digits = text
        .strip_prefix("0x")
        .unwrap_or_else(|| panic!("{file_name}: nBits {text:?} lacks the 0x prefix"));
    CompactTarget(
        u32::from_str_radix(hex_digits, 16)
            .unwrap_or_else(|error| panic!("{file_name}: nBits {text:?}: {error}")),
    )
}

/// The value after `label:` in a `##` header line, if the line carries that label.
fn header_value<'a>(line: &'a str, labels: &[&str]) -> Option<&'a str> {
    let body = line.trim_start_matches('#').trim();
    labels.iter().find_map(|label| {
        body.strip_prefix(label)
            .and_then(|rest| rest.trim_start().strip_prefix(':'))
            .map(str::trim)
    })
}

fn parse_number<T>(text: &str, file_name: &str, what: &str) -> T
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    text.parse()
        .unwrap_or_else(|error| panic!("{file_name}: {what}: {text:?}: {error}"))
}

fn required<T>(value: Option<T>, file_name: &str, what: &str) -> T {
    value.unwrap_or_else(|| panic!("{file_name}: header has no {what}"))
}

fn parse_run_file(file_name: &str, text: &str) -> (RunHeader, Vec<VectorRow>) {
    let mut anchor_height = None;
    let mut anchor_parent_time = None;
    let mut anchor_bits = None;
    let mut start_height = None;
    let mut start_time = None;
    let mut iterations = None;
    let mut rows = Vec::new();
    for (line_index, line) in text.lines().enumerate() {
        let line_number = line_index + 1;
        if line.trim().is_empty() {
            // BCHN's generator prints an empty line after each run.
            continue;
        }
        if line.starts_with('#') {
            if let Some(value) = header_value(line, &["anchor height"]) {
                anchor_height = Some(parse_number(value, file_name, "anchor height"));
            } else if let Some(value) =
                header_value(line, &["anchor ancestor time", "anchor parent time"])
            {
                anchor_parent_time = Some(parse_number(value, file_name, "anchor time"));
            } else if let Some(value) = header_value(line, &["anchor nBits"]) {
                anchor_bits = Some(parse_bits(value, file_name));
            } else if let Some(value) = header_value(line, &["start height"]) {
                start_height = Some(parse_number(value, file_name, "start height"));
            } else if let Some(value) = header_value(line, &["start time"]) {
                start_time = Some(parse_number(value, file_name, "start time"));
            } else if let Some(value) = header_value(line, &["iterations"]) {
                iterations = Some(parse_number(value, file_name, "iterations"));
            }
            continue;
        }
        let fields: Vec<&str> = line.split(' ').collect();
        let [iteration, height, time, bits] = fields[..] else {
            panic!("{file_name} line {line_number}: expected 4 space-separated fields: {line:?}");
        };
        let context = format!("line {line_number}");
        rows.push(VectorRow {
            iteration: parse_number(iteration, file_name, &context),
            // Heights in run10 pass 2^63 - 1: read them as u64, never as i64.
            height: parse_number(height, file_name, &context),
            time: parse_number(time, file_name, &context),
            expected_bits: parse_bits(bits, file_name),
        });
    }
    let header = RunHeader {
        anchor_height: required(anchor_height, file_name, "anchor height"),
        anchor_parent_time: required(anchor_parent_time, file_name, "anchor time"),
        anchor_bits: required(anchor_bits, file_name, "anchor nBits"),
        start_height: required(start_height, file_name, "start height"),
        start_time: required(start_time, file_name, "start time"),
        iterations: required(iterations, file_name, "iterations"),
    };
    (header, rows)
}

#[test]
fn every_bchn_asert_vector_matches() {
    let pow_limit = REFERENCE_POW_LIMIT_BITS
        .to_target()
        .expect("0x1d00ffff is a valid target");
    let mut total_rows = 0;
    for file_name in RUN_FILE_NAMES {
        let path = data_directory().join(file_name);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
        let (header, rows) = parse_run_file(file_name, &text);

        assert_eq!(
            rows.len(),
            header.iterations,
            "{file_name}: row count differs from the iterations header"
        );
        let first = rows
            .first()
            .unwrap_or_else(|| panic!("{file_name} has no rows"));
        assert_eq!(
            (first.height, first.time),
            (header.start_height, header.start_time),
            "{file_name}: the first row is not the start height and time"
        );

        for (row_index, row) in rows.iter().enumerate() {
            assert_eq!(
                row.iteration,
                row_index + 1,
                "{file_name}: iterations are not numbered 1, 2, 3, ..."
            );
            let time_delta = row.time - header.anchor_parent_time;
            let height_delta = row
                .height
                .checked_sub(header.anchor_height)
                .unwrap_or_else(|| panic!("{file_name}: row below the anchor: {row:?}"));
            let computed = compute_asert_bits(
                header.anchor_bits,
                pow_limit,
                time_delta,
                height_delta,
                REFERENCE_SCHEDULE,
            );
            assert_eq!(
                computed, row.expected_bits,
                "first mismatch: {file_name} iteration {} (height {}, time {}, time_delta \
                 {time_delta}, height_delta {height_delta}, anchor {:?})",
                row.iteration, row.height, row.time, header.anchor_bits
            );
        }
        total_rows += rows.len();
    }
    assert_eq!(total_rows, EXPECTED_TOTAL_ROWS, "rows checked in all runs");
}
