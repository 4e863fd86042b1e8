//! `Machine`: what the figures were measured on, read from `/proc` and `/etc/os-release`
//! (fields stay empty where those do not exist).

use serde::Serialize;

/// The machine a report was measured on.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Machine {
    /// CPU model name.
    pub cpu_model: String,
    /// Logical CPUs this process may use.
    pub logical_cpus: usize,
    /// Total memory in bytes.
    pub memory_bytes: u64,
    /// Operating system and kernel.
    pub os: String,
    /// True if the CPU has SHA-256 instructions (x86 SHA extensions, Arm SHA2).
    pub sha_extensions: bool,
    /// Load averages (1, 5, 15 minutes) when the run started.
    pub load_average_start: [f64; 3],
    /// Load averages when the run ended.
    pub load_average_end: [f64; 3],
    /// `release` or `debug`.
    pub build: String,
    /// powchain's version.
    pub version: String,
    /// UTC date of the run, `YYYY-MM-DD`.
    pub date: String,
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The value of the first `key: value` line of a `/proc` file.
fn field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        (name.trim() == key).then(|| value.trim())
    })
}

/// Days since 1970-01-01 as a civil date (Howard Hinnant's algorithm).
fn civil_date(days: i64) -> (i64, u32, u32) {
    let shifted = days + 719_468;
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

impl Machine {
    /// Reads the machine's description now.
    pub fn detect() -> Machine {
        let cpuinfo = read("/proc/cpuinfo");
        let cpu_model = field(&cpuinfo, "model name")
            .or_else(|| field(&cpuinfo, "Model"))
            .or_else(|| field(&cpuinfo, "Hardware"))
            .unwrap_or("unknown")
            .to_owned();
        let flags = field(&cpuinfo, "flags")
            .or_else(|| field(&cpuinfo, "Features"))
            .unwrap_or("");
        let sha_extensions = flags
            .split_whitespace()
            .any(|flag| flag == "sha_ni" || flag == "sha2");
        let memory_bytes = field(&read("/proc/meminfo"), "MemTotal")
            .and_then(|value| value.split_whitespace().next())
            .and_then(|kib| kib.parse::<u64>().ok())
            .map_or(0, |kib| kib * 1024);
        let os_release = read("/etc/os-release");
        let os_name = os_release
            .lines()
            .find_map(|line| line.strip_prefix("PRETTY_NAME="))
            .map(|name| name.trim_matches('"').to_owned())
            .unwrap_or_else(|| std::env::consts::OS.to_owned());
        let kernel = read("/proc/sys/kernel/osrelease").trim().to_owned();
        let os = if kernel.is_empty() {
            os_name
        } else {
            format!("{os_name}, kernel {kernel}")
        };
        let mut load = [0.0; 3];
        for (slot, value) in load
            .iter_mut()
            .zip(read("/proc/loadavg").split_whitespace())
        {
            *slot = value.parse().unwrap_or(0.0);
        }
        let days = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs() / 86_400) as i64;
        let (year, month, day) = civil_date(days);
        Machine {
            cpu_model,
            logical_cpus: std::thread::available_parallelism().map_or(1, usize::from),
            memory_bytes,
            os,
            sha_extensions,
            load_average_start: load,
            load_average_end: load,
            build: if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            }
            .to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            date: format!("{year:04}-{month:02}-{day:02}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_are_right() {
        assert_eq!(civil_date(0), (1970, 1, 1));
        // Genesis time of powchain: 2026-11-25.
        assert_eq!(civil_date(1_795_564_800 / 86_400), (2026, 11, 25));
        assert_eq!(civil_date(11_016), (2000, 2, 29));
    }

    #[test]
    fn proc_fields_are_read() {
        let text = "processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu sha_ni avx2\n";
        assert_eq!(field(text, "model name"), Some("Some CPU"));
        assert_eq!(field(text, "missing"), None);
        let machine = Machine::detect();
        assert!(machine.logical_cpus >= 1);
        assert_eq!(machine.date.len(), 10);
    }
}
