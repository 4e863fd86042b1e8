//! `Report` and `Figure`: what the suite measured, ready for a table or JSON.

use serde::Serialize;

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
            if index > 0 && (digits.len() - index) % 3 == 0 {
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
    /// The machine they were measured on.
    pub machine: Machine,
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
}
