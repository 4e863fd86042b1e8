//! `powchain bench --quick --json` runs every figure of the suite, node processes
//! included, and prints one JSON object with the figures and the machine: the suite cannot
//! rot unnoticed. (The figures of a quick run in a test build mean nothing; CI does not
//! check their values, only that each is a positive number held against a positive bound.)

mod support;

use std::process::Command;

use serde_json::Value;

#[test]
fn the_quick_benchmark_suite_runs_every_figure_and_prints_json() {
    let output = Command::new(env!("CARGO_BIN_EXE_powchain"))
        .args(["bench", "--quick", "--json"])
        .env_remove("POWCHAIN_LOG")
        .output()
        .expect("run powchain bench");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "powchain bench failed:\n{stderr}");
    let report: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|error| panic!("stdout is not one JSON object ({error}):\n{stderr}"));
    let figures = report["figures"].as_array().expect("a figures array");
    let names: Vec<&str> = figures
        .iter()
        .map(|figure| figure["name"].as_str().expect("a name"))
        .collect();
    for expected in [
        "mining.hashes_per_second.1_thread",
        "signatures.block_connect.1_thread",
        "connect.full_block.",
        "connect.height_cost.",
        "connect.coin_cache.batched_vs_every_block",
        "pool.accept.in_memory",
        "pool.submit.in_process",
        "pool.reorg.",
        "pool.submit.http",
        "pool.submit.http_batch",
        "pool.submit.websocket",
        "sync.blocks_per_second",
        "memory.peak_rss.syncing_",
        "memory.peak_rss.holding_",
        "network.end_to_end",
        "network.end_to_end.batched",
    ] {
        assert!(
            names.iter().any(|name| name.starts_with(expected)),
            "{expected} missing from {names:?}"
        );
    }
    for figure in figures {
        for field in ["value", "bound", "ratio"] {
            let number = figure[field].as_f64().unwrap_or(f64::NAN);
            assert!(number > 0.0 && number.is_finite(), "{field} of {figure}");
        }
        assert!(figure["unit"].as_str().is_some_and(|unit| !unit.is_empty()));
    }
    let machine = &report["machine"];
    assert!(
        machine["logicalCpus"]
            .as_u64()
            .is_some_and(|cpus| cpus >= 1)
    );
    assert!(machine["shaExtensions"].is_boolean());
    assert!(machine["cpuModel"].is_string() && machine["os"].is_string());
    assert_eq!(report["suite"], "quick");

    // The validation costs it derives drive a simulation (`--validation-from`).
    let validation = &report["validation"];
    for cost in ["perBlockUs", "perPaymentUs", "perTransactionUs"] {
        let micros = validation[cost].as_f64().unwrap_or(f64::NAN);
        assert!(
            micros >= 0.0 && micros.is_finite(),
            "{cost} of {validation}"
        );
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let (bench_json, sim_json) = (dir.path().join("bench.json"), dir.path().join("sim.json"));
    std::fs::write(&bench_json, &output.stdout).expect("write the report");
    let simulated = support::simulate_small(
        &sim_json,
        &["--validation-from", &bench_json.to_string_lossy()],
    );
    assert!(
        simulated.status.success(),
        "{}",
        String::from_utf8_lossy(&simulated.stderr)
    );
    let sim: Value =
        serde_json::from_str(&std::fs::read_to_string(&sim_json).expect("read")).expect("JSON");
    let simulated_costs = &sim["settings"]["validation_delay_us"];
    for (index, cost) in ["perBlockUs", "perPaymentUs", "perTransactionUs"]
        .iter()
        .enumerate()
    {
        let measured = validation[cost].as_f64().unwrap_or(f64::NAN);
        let used = simulated_costs[index].as_f64().unwrap_or(f64::NAN);
        assert!(
            (measured - used).abs() <= 1.0,
            "{cost}: {measured} measured, {used} used"
        );
    }
}

#[test]
fn the_network_figures_send_as_many_payments_as_asked() {
    let run = |payments: &str| {
        Command::new(env!("CARGO_BIN_EXE_powchain"))
            .args(["bench", "--quick", "--json", "--only", "network"])
            .args(["--network-payments", payments])
            .env_remove("POWCHAIN_LOG")
            .output()
            .expect("run powchain bench")
    };
    let refused = run("0");
    assert!(!refused.status.success(), "0 payments accepted");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("--network-payments must be between"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let output = run("17");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "powchain bench failed:\n{stderr}");
    let report: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|error| panic!("stdout is not one JSON object ({error}):\n{stderr}"));
    assert_eq!(report["suite"], "custom", "not the quick suite's sizes");
    let figures = report["figures"].as_array().expect("a figures array");
    let end_to_end = figures
        .iter()
        .find(|figure| figure["name"] == "network.end_to_end")
        .expect("the end-to-end figure");
    let note = end_to_end["note"].as_str().expect("a note");
    assert!(note.contains("17 pre-signed payments"), "{note}");
}
