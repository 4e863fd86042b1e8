//! How client commands show the node's answers to a person: coins instead of units, ages
//! and dates instead of epoch milliseconds, short hashes, aligned columns. Pure functions of
//! their inputs (the clock is an argument), so each is tested here.
//!
//! ```text
//!   JSON answer ──fields──▶ coins(units) / signed_coins / age(ms) / date(ms) / short(hash)
//!                           ──▶ Table (columns padded to their widest cell) ──▶ stdout
//! ```

use powchain_consensus::Amount;

/// Characters of a hash or txid shown where a prefix is enough to tell them apart.
pub const HASH_PREFIX_CHARS: usize = 16;

/// `units` as coins (`12.5`), or `?` if the node sent no amount in range.
pub fn coins(units: Option<u64>) -> String {
    units
        .and_then(|units| Amount::from_units(units).ok())
        .map_or_else(|| "?".to_owned(), |amount| amount.to_string())
}

/// A signed amount of units as coins with its sign (`+50`, `-2.50000374`, `0`).
pub fn signed_coins(units: i64) -> String {
    let magnitude = coins(Some(units.unsigned_abs()));
    if magnitude == "?" {
        return magnitude;
    }
    match units.signum() {
        1 => format!("+{magnitude}"),
        -1 => format!("-{magnitude}"),
        _ => magnitude,
    }
}

/// The first [`HASH_PREFIX_CHARS`] characters of `hash`, with `…` if it was cut.
pub fn short(hash: &str) -> String {
    if hash.chars().count() <= HASH_PREFIX_CHARS {
        return hash.to_owned();
    }
    let prefix: String = hash.chars().take(HASH_PREFIX_CHARS).collect();
    format!("{prefix}…")
}

/// How long ago `then_ms` was at `now_ms`: `4 s ago`, `3 min ago`, `2 h ago`, `5 days ago`
/// (`just now` for a time at or after `now_ms`: clocks of two machines differ a little).
pub fn age(then_ms: u64, now_ms: u64) -> String {
    let seconds = now_ms.saturating_sub(then_ms) / 1000;
    match seconds {
        0 => "just now".to_owned(),
        1..60 => format!("{seconds} s ago"),
        60..3600 => format!("{} min ago", seconds / 60),
        3600..86_400 => format!("{} h ago", seconds / 3600),
        _ => format!("{} days ago", seconds / 86_400),
    }
}

/// `ms` since the epoch as a UTC date and time: `2026-12-04 09:00:24`.
pub fn date(ms: u64) -> String {
    let seconds = ms / 1000;
    let (year, month, day) = civil_from_days(seconds / 86_400);
    let of_day = seconds % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60
    )
}

/// The proleptic Gregorian date `days` after 1970-01-01 (Howard Hinnant's `civil_from_days`,
/// for days on or after the epoch).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let shifted = days + 719_468;
    let era = shifted / 146_097;
    let day_of_era = shifted % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// Rows of cells printed in columns, each as wide as its widest cell.
#[derive(Debug, Default)]
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table whose first row is `header`.
    pub fn new(header: &[&str]) -> Table {
        Table {
            rows: vec![header.iter().map(|cell| (*cell).to_owned()).collect()],
        }
    }

    /// Adds a row.
    pub fn push(&mut self, row: Vec<String>) {
        self.rows.push(row);
    }

    /// The table as lines, two spaces between columns, no trailing spaces.
    pub fn render(&self) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|column| {
                self.rows
                    .iter()
                    .filter_map(|row| row.get(column))
                    .map(|cell| cell.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut text = String::new();
        for row in &self.rows {
            let mut line = String::new();
            for (column, cell) in row.iter().enumerate() {
                if column > 0 {
                    line.push_str("  ");
                }
                line.push_str(cell);
                let padding = widths[column].saturating_sub(cell.chars().count());
                line.extend(std::iter::repeat_n(' ', padding));
            }
            text.push_str(line.trim_end());
            text.push('\n');
        }
        text
    }
}

/// Label and value pairs, the values aligned after the longest label.
pub fn fields(pairs: &[(&str, String)]) -> String {
    let width = pairs
        .iter()
        .map(|(label, _)| label.chars().count())
        .max()
        .unwrap_or(0);
    pairs
        .iter()
        .map(|(label, value)| format!("{label:<width$}  {value}\n"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_show_as_coins_with_their_sign() {
        assert_eq!(coins(Some(5_000_000_000)), "50");
        assert_eq!(coins(Some(250_000_000)), "2.5");
        assert_eq!(coins(Some(1)), "0.00000001");
        assert_eq!(coins(None), "?");
        assert_eq!(coins(Some(u64::MAX)), "?", "beyond the money range");
        assert_eq!(signed_coins(150_000_000), "+1.5");
        assert_eq!(signed_coins(-250_000_374), "-2.50000374");
        assert_eq!(signed_coins(0), "0");
        assert_eq!(signed_coins(i64::MIN), "?");
    }

    #[test]
    fn ages_and_dates_read_like_a_person_writes_them() {
        assert_eq!(age(10_000, 10_000), "just now");
        assert_eq!(age(20_000, 10_000), "just now", "a clock a little ahead");
        assert_eq!(age(0, 4_999), "4 s ago");
        assert_eq!(age(0, 180_000), "3 min ago");
        assert_eq!(age(0, 7_200_000), "2 h ago");
        assert_eq!(age(0, 5 * 86_400_000), "5 days ago");
        assert_eq!(date(0), "1970-01-01 00:00:00");
        // The devnet genesis time, and a leap day.
        assert_eq!(date(1_795_564_800_000), "2026-11-25 00:00:00");
        assert_eq!(date(951_782_400_000 + 3_723_000), "2000-02-29 01:02:03");
        assert_eq!(date(4_107_542_399_000), "2100-02-28 23:59:59");
    }

    #[test]
    fn hashes_are_cut_to_a_prefix() {
        let hash = "ab".repeat(32);
        assert_eq!(short(&hash), format!("{}…", "ab".repeat(8)));
        assert_eq!(short("abc"), "abc");
    }

    #[test]
    fn tables_and_fields_line_up() {
        let mut table = Table::new(&["URL", "DIRECTION"]);
        table.push(vec!["ws://127.0.0.1:5002".into(), "outbound".into()]);
        table.push(vec!["ws://a:1".into(), "inbound".into()]);
        assert_eq!(
            table.render(),
            "URL                  DIRECTION\n\
             ws://127.0.0.1:5002  outbound\n\
             ws://a:1             inbound\n"
        );
        assert_eq!(
            fields(&[("height", "3".into()), ("network", "regtest".into())]),
            "height   3\nnetwork  regtest\n"
        );
    }
}
