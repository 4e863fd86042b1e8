//! `Report` and `Figure`: what the suite measured, ready for a table or JSON.

use serde::{Deserialize, Serialize};

use crate::machine::Machine;

/// A figure's goal.
#[derive(Clone, Copy, PartialEq, Debug, Serialize)]
#[serde(rename_all = "camelCase", tag = "kind", content = "limit")]
pub enum Goal {
    /// The ratio must be at least this.
    RatioAtLeast(f64),
    /// The ratio must be at most this.
    RatioAtMost(f64),
    /// The value must be at most this (in the figure's unit).
    ValueAtMost(f64),
}

impl Goal {
    /// True if `figure` meets it.
    pub fn is_met(self, value: f64, ratio: f64) -> bool {
        match self {
            Goal::RatioAtLeast(limit) => ratio >= limit,
            Goal::RatioAtMost(limit) => ratio <= limit,
            Goal::ValueAtMost(limit) => value <= limit,
        }
    }

    /// Short text: `ratio >= 0.90`, `value <= 200 MB`.
    pub fn describe(self, unit: &str) -> String {
        match self {
            Goal::RatioAtLeast(limit) => format!("ratio >= {limit:.2}"),
            Goal::RatioAtMost(limit) => format!("ratio <= {limit:.2}"),
            Goal::ValueAtMost(limit) => format!("<= {limit} {unit}"),
        }
    }
}

/// One measured figure: a value, the bound it is held against (measured in the same run)
/// and their ratio.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Figure {
    /// Stable dotted name, such as `mining.hashes_per_second.1_thread`.
    pub name: String,
    /// The measured value.
    pub value: f64,
    /// Its unit.
    pub unit: String,
    /// The bound, in the same unit.
    pub bound: f64,
    /// `value / bound`.
    pub ratio: f64,
    /// What the bound is.
    pub bound_name: String,
    /// The goal, if the issue set one.
    pub goal: Option<Goal>,
    /// Whether the goal is met (`None` without a goal).
    pub met: Option<bool>,
    /// How it was measured.
    pub note: String,
}

impl Figure {
    /// A figure; the ratio and whether the goal is met are computed.
    pub fn new(
        name: impl Into<String>,
        value: f64,
        unit: &str,
        bound: f64,
        bound_name: impl Into<String>,
        goal: Option<Goal>,
        note: impl Into<String>,
    ) -> Figure {
        let ratio = if bound > 0.0 { value / bound } else { f64::NAN };
        Figure {
            name: name.into(),
            value,
            unit: unit.to_owned(),
            bound,
            ratio,
            bound_name: bound_name.into(),
            goal,
            met: goal.map(|goal| goal.is_met(value, ratio)),
            note: note.into(),
        }
    }

    /// One line: name, value, bound, ratio, goal.
    pub fn summary(&self) -> String {
        format!(
            "{} = {} {} (bound {} {}, ratio {:.3}{})",
            self.name,
            format_number(self.value),
            self.unit,
            format_number(self.bound),
            self.unit,
            self.ratio,
            match (self.goal, self.met) {
                (Some(goal), Some(met)) => format!(
                    ", goal {}: {}",
                    goal.describe(&self.unit),
                    if met { "met" } else { "MISSED" }
                ),
                _ => String::new(),
            }
        )
    }
}

/// A number with three significant digits at least and thousands separators.
pub fn format_number(value: f64) -> String {
    if !value.is_finite() {
        return value.to_string();
    }
    if value.abs() >= 1000.0 {
        let rounded = value.round() as i128;
        let digits = rounded.unsigned_abs().to_string();
        let mut grouped = String::new();
        for (index, digit) in digits.chars().enumerate() {
            if index > 0 && (digits.len() - index).is_multiple_of(3) {
                grouped.push(',');
            }
            grouped.push(digit);
        }
        if rounded < 0 {
            grouped.insert(0, '-');
        }
        grouped
    } else if value.abs() >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.3}")
    }
}

/// Everything one run measured.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// `full`, `quick` or `custom`.
    pub suite: String,
    /// How long the run took.
    pub seconds: f64,
    /// The figures, in running order.
    pub figures: Vec<Figure>,
    /// What validation costs on this machine, for `powchain simulate --validation-from`
    /// (present when the connect, pool and sync groups ran).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub validation: Option<ValidationCosts>,
    /// The machine they were measured on.
    pub machine: Machine,
}

/// The time a node takes to validate what peers send it, derived from three figures of
/// one run: what a simulated node waits before it is given a block or a transaction.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ValidationCosts {
    /// A block, besides its payments: a synced block's time (`sync.blocks_per_second`)
    /// less its payments at `per_payment_us` each.
    pub per_block_us: f64,
    /// A payment in a block: `connect.full_block.1000_tx` (the suite's first block size),
    /// signatures checked and the coin changes flushed with the block.
    pub per_payment_us: f64,
    /// A transaction relayed on its own: pool admission (`pool.accept.in_memory`).
    pub per_transaction_us: f64,
}

impl ValidationCosts {
    /// The costs in a report's JSON (`powchain bench --json`), checked: each a finite
    /// number of microseconds, at most a second.
    ///
    /// # Errors
    /// Text that is not a report's JSON, a report without them (the connect, pool or
    /// sync group did not run), or a cost out of range.
    pub fn from_report_json(text: &str) -> Result<ValidationCosts, String> {
        #[derive(Deserialize)]
        struct Costs {
            validation: Option<ValidationCosts>,
        }
        let costs = serde_json::from_str::<Costs>(text)
            .map_err(|error| format!("not a `powchain bench --json` report: {error}"))?
            .validation
            .ok_or(
                "the report has no validation costs: run `powchain bench --json` with the \
                    connect, pool and sync groups (all groups do)",
            )?;
        for (name, micros) in [
            ("perBlockUs", costs.per_block_us),
            ("perPaymentUs", costs.per_payment_us),
            ("perTransactionUs", costs.per_transaction_us),
        ] {
            if !(micros.is_finite() && (0.0..=1e6).contains(&micros)) {
                return Err(format!(
                    "{name} is {micros}: not between 0 and 1,000,000 µs"
                ));
            }
        }
        Ok(costs)
    }

    /// The costs `figures` give, the synced blocks having held `sync_payments_per_block`
    /// payments on average; `None` if a figure is missing.
    pub fn derive(figures: &[Figure], sync_payments_per_block: f64) -> Option<ValidationCosts> {
        let micros_each = |is: &dyn Fn(&str) -> bool| {
            figures
                .iter()
                .find(|figure| is(&figure.name))
                .filter(|figure| figure.value.is_finite() && figure.value > 0.0)
                .map(|figure| 1e6 / figure.value)
        };
        // The first size (1,000 payments in the full suite, 50 in the quick one).
        let per_payment_us =
            micros_each(&|name| name.starts_with("connect.full_block.") && name.ends_with("_tx"))?;
        let per_transaction_us = micros_each(&|name| name == "pool.accept.in_memory")?;
        let per_synced_block_us = micros_each(&|name| name == "sync.blocks_per_second")?;
        Some(ValidationCosts {
            per_block_us: (per_synced_block_us - sync_payments_per_block * per_payment_us).max(0.0),
            per_payment_us,
            per_transaction_us,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_grouped_and_goals_judged() {
        assert_eq!(format_number(1_234_567.4), "1,234,567");
        assert_eq!(format_number(12.34), "12.3");
        assert_eq!(format_number(0.12345), "0.123");
        let figure = Figure::new(
            "x",
            95.0,
            "h/s",
            100.0,
            "raw",
            Some(Goal::RatioAtLeast(0.9)),
            "",
        );
        assert_eq!(figure.met, Some(true));
        let figure = Figure::new(
            "x",
            130.0,
            "ms",
            100.0,
            "raw",
            Some(Goal::RatioAtMost(1.2)),
            "",
        );
        assert_eq!(figure.met, Some(false));
        assert!(figure.summary().contains("MISSED"));
    }

    fn rate(name: &str, per_second: f64) -> Figure {
        Figure::new(name, per_second, "/s", 1.0, "raw", None, "")
    }

    #[test]
    fn validation_costs_come_from_three_figures_and_read_back_from_json() {
        let figures = vec![
            rate("connect.full_block.1000_tx", 25_000.0),
            rate("connect.full_block.5000_tx", 1.0),
            rate("pool.accept.in_memory", 20_000.0),
            rate("sync.blocks_per_second", 1_000.0),
        ];
        let costs = ValidationCosts::derive(&figures, 10.0).expect("all three figures");
        // 40 µs a payment; 1,000 µs a synced block less its 10 payments.
        assert!((costs.per_payment_us - 40.0).abs() < 1e-9, "{costs:?}");
        assert!((costs.per_block_us - 600.0).abs() < 1e-9, "{costs:?}");
        assert!((costs.per_transaction_us - 50.0).abs() < 1e-9, "{costs:?}");
        assert_eq!(
            ValidationCosts::derive(&figures[2..], 10.0),
            None,
            "no full_block figure"
        );

        let report = Report {
            suite: "custom".to_owned(),
            seconds: 1.0,
            figures,
            validation: Some(costs),
            machine: Machine::detect(),
        };
        let json = serde_json::to_string(&report).expect("serializes");
        assert_eq!(ValidationCosts::from_report_json(&json), Ok(costs));

        let without = Report {
            validation: None,
            ..report
        };
        let json = serde_json::to_string(&without).expect("serializes");
        let problem = ValidationCosts::from_report_json(&json).expect_err("no costs");
        assert!(problem.contains("no validation costs"), "{problem}");
        let problem = ValidationCosts::from_report_json("{\"figures\": [").expect_err("cut");
        assert!(
            problem.contains("not a `powchain bench --json` report"),
            "{problem}"
        );
        let huge =
            r#"{"validation": {"perBlockUs": 1e9, "perPaymentUs": 1, "perTransactionUs": 1}}"#;
        let problem = ValidationCosts::from_report_json(huge).expect_err("a 1,000 s block");
        assert!(problem.contains("perBlockUs"), "{problem}");
    }
}
