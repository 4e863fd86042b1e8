//! `powchain simulate`'s settings: validation costs given by hand (`--validation-us`) or
//! read from a `powchain bench --json` report (`--validation-from`; the round trip from a
//! real bench run is in bench.rs), the placement of nodes on hosts (`--hosts`), and
//! settings refused with a clear message when they make no sense.

mod support;

use std::path::Path;

use serde_json::Value;
use support::simulate_small;

/// Checks that `powchain simulate` refuses `extra`, saying `expected`, before it runs.
fn refused(json: &Path, extra: &[&str], expected: &str) {
    let output = simulate_small(json, extra);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{extra:?} was accepted");
    assert!(stderr.contains(expected), "{extra:?}: {stderr}");
    assert!(!json.exists(), "{extra:?} ran a simulation");
}

fn validation_of(json: &Path) -> Value {
    let text = std::fs::read_to_string(json).expect("the JSON report");
    let report: Value = serde_json::from_str(&text).expect("JSON");
    report["settings"]["validation_delay_us"].clone()
}

#[test]
fn validation_costs_given_by_hand_are_the_ones_simulated() {
    let dir = tempfile::tempdir().expect("temp dir");
    let json = dir.path().join("report.json");
    let output = simulate_small(&json, &["--validation-us", "1000,10,20"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(validation_of(&json), serde_json::json!([1000, 10, 20]));
    assert!(
        stdout.contains("validation 1000 µs a block, 10 µs a payment, 20 µs"),
        "{stdout}"
    );

    let output = simulate_small(&json, &[]);
    assert!(output.status.success());
    assert_eq!(
        validation_of(&json),
        serde_json::json!([600, 45, 100]),
        "the default: measured on a 2-core machine"
    );
}

#[test]
fn validation_costs_are_read_from_a_bench_report() {
    let dir = tempfile::tempdir().expect("temp dir");
    let json = dir.path().join("report.json");
    let bench = dir.path().join("bench.json");
    // The shape `powchain bench --json` writes, other fields left out.
    std::fs::write(
        &bench,
        r#"{"suite": "full", "figures": [], "validation":
            {"perBlockUs": 712.4, "perPaymentUs": 33.6, "perTransactionUs": 52.1}}"#,
    )
    .expect("write");
    let output = simulate_small(&json, &["--validation-from", &bench.to_string_lossy()]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(validation_of(&json), serde_json::json!([712, 33, 52]));
}

#[test]
fn validation_costs_that_make_no_sense_are_refused_before_anything_runs() {
    let dir = tempfile::tempdir().expect("temp dir");
    let json = dir.path().join("report.json");
    let bench = dir.path().join("bench.json");
    let refused = |extra: &[&str], expected: &str| refused(&json, extra, expected);
    refused(&["--validation-us", "600,45"], "need three numbers");
    refused(
        &["--validation-us", "600,-1,100"],
        "\"-1\" is not a whole number",
    );
    refused(&["--validation-us", "2000000,45,100"], "up to 1000000");
    refused(
        &["--validation-from", "/nonexistent/bench.json"],
        "reading the bench report",
    );
    let bench_path = bench.to_string_lossy().into_owned();
    refused(
        &["--validation-us", "1,2,3", "--validation-from", &bench_path],
        "cannot be used with",
    );
    std::fs::write(&bench, r#"{"suite": "quick", "figures": []}"#).expect("write");
    refused(&["--validation-from", &bench_path], "no validation costs");
    std::fs::write(&bench, "not json").expect("write");
    refused(
        &["--validation-from", &bench_path],
        "not a `powchain bench --json` report",
    );
    std::fs::write(
        &bench,
        r#"{"validation": {"perBlockUs": -5, "perPaymentUs": 1, "perTransactionUs": 1}}"#,
    )
    .expect("write");
    refused(&["--validation-from", &bench_path], "perBlockUs is -5");
}

#[test]
fn a_host_a_region_is_a_flag_and_a_crash_of_single_nodes_refuses_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let json = dir.path().join("report.json");
    let output = simulate_small(&json, &["--hosts", "region"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("3 nodes (a host a region)"), "{stdout}");
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("report")).expect("json");
    assert_eq!(report["settings"]["hosts"], "region");
    assert_eq!(report["converged"], true, "{stdout}");
    std::fs::remove_file(&json).expect("remove");
    for (extra, expected) in [
        (&["--hosts", "region", "--crash", "2s"][..], "a host a node"),
        (&["--hosts", "planet"][..], "unknown host layout"),
    ] {
        refused(&json, extra, expected);
    }
}
