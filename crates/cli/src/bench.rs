//! `powchain bench`: runs the benchmark suite (`powchain-bench`) and prints its report, as
//! a table or as one JSON object. Progress goes to stderr, so `--json` output stays clean.

use anyhow::{Context, bail};
use powchain_bench::{Group, Report, Sizes, SuiteConfig, format_number};

use crate::args::BenchArgs;

/// The most payments `--network-payments` takes: each is funded, signed and kept in memory
/// before the run, and the run must confirm them all within its time limit.
const MAX_NETWORK_PAYMENTS: usize = 200_000;

/// Runs the suite with `args` and prints the report.
///
/// # Errors
/// An unknown group name, or a measurement that failed.
pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let mut config = SuiteConfig::new(if args.quick {
        Sizes::QUICK
    } else {
        Sizes::FULL
    });
    for name in &args.only {
        match Group::from_name(name.trim()) {
            Some(group) => config.groups.push(group),
            None => bail!(
                "unknown benchmark group {name:?}; the groups are {}",
                Group::ALL.map(Group::name).join(", ")
            ),
        }
    }
    if let Some(threads) = args.threads {
        if threads == 0 {
            bail!("--threads must be at least 1");
        }
        config.threads = threads;
    }
    if let Some(payments) = args.network_payments {
        if !(1..=MAX_NETWORK_PAYMENTS).contains(&payments) {
            bail!("--network-payments must be between 1 and {MAX_NETWORK_PAYMENTS}");
        }
        config.sizes.network_transactions = payments;
    }
    config.node_executable =
        Some(std::env::current_exe().context("cannot find the powchain binary to start nodes")?);
    if cfg!(debug_assertions) && !args.quick {
        eprintln!("warning: this is a debug build; build with --release for real figures");
    }
    let report = powchain_bench::run(&config, &mut |line| eprintln!("{line}"))
        .context("the benchmark failed")?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", render_table(&report));
    }
    Ok(())
}

/// The report as a text table, with the machine first.
fn render_table(report: &Report) -> String {
    let machine = &report.machine;
    let mut out = String::new();
    out.push_str(&format!(
        "powchain {} bench ({} suite, {} build) on {}\n",
        machine.version, report.suite, machine.build, machine.date
    ));
    out.push_str(&format!(
        "machine: {}, {} logical CPUs, {:.1} GB, SHA extensions: {}, {}\n",
        machine.cpu_model,
        machine.logical_cpus,
        machine.memory_bytes as f64 / 1e9,
        if machine.sha_extensions { "yes" } else { "no" },
        machine.os
    ));
    out.push_str(&format!(
        "load average: {:.2} at start, {:.2} at end; {:.0} s\n\n",
        machine.load_average_start[0], machine.load_average_end[0], report.seconds
    ));
    let rows: Vec<[String; 6]> = report
        .figures
        .iter()
        .map(|figure| {
            [
                figure.name.clone(),
                format!("{} {}", format_number(figure.value), figure.unit),
                format!("{} {}", format_number(figure.bound), figure.unit),
                format!("{:.3}", figure.ratio),
                figure
                    .goal
                    .map(|goal| goal.describe(&figure.unit))
                    .unwrap_or_default(),
                match figure.met {
                    Some(true) => "met".to_owned(),
                    Some(false) => "MISSED".to_owned(),
                    None => String::new(),
                },
            ]
        })
        .collect();
    let header = ["figure", "value", "bound", "ratio", "goal", ""].map(str::to_owned);
    let mut widths = [0usize; 6];
    for row in std::iter::once(&header).chain(&rows) {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    for row in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .enumerate()
            .map(|(column, (cell, width))| {
                if column == 1 || column == 2 || column == 3 {
                    format!("{cell:>width$}")
                } else {
                    format!("{cell:<width$}")
                }
            })
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out.push_str("\nbounds:\n");
    for figure in &report.figures {
        out.push_str(&format!(
            "  {}: {}; {}\n",
            figure.name, figure.bound_name, figure.note
        ));
    }
    if let Some(costs) = report.validation {
        out.push_str(&format!(
            "\nvalidation on this machine (for powchain simulate --validation-from, with \
             --json): a block {:.0} µs besides its payments, a payment in a block {:.1} µs, \
             a relayed transaction {:.1} µs\n",
            costs.per_block_us, costs.per_payment_us, costs.per_transaction_us
        ));
    }
    out
}
