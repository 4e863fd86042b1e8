//! A node's configuration file, `powchain.toml`: any node flag by its long name.
//!
//! ```text
//!   argv ──▶ clap (flags, environment, defaults) ──▶ runs a node? ──▶ --config FILE
//!                                                                    │  (POWCHAIN_CONFIG),
//!                                                                    │  else <data dir>/powchain.toml
//!                                                                    ▼  if it exists
//!   argv + one `--key=value` for each file key that neither the command line nor the
//!   environment set ──▶ clap again (the same checks and messages as for a flag)
//! ```
//!
//! Precedence, highest first: the command line, the environment, the file, the built-in
//! default. A key is a flag's long name (`http-port = 3002`, `mine = true`,
//! `peers = ["ws://127.0.0.1:5001"]`). An unknown key, a value of the wrong kind, or a
//! bad value is an error naming the file and the key: a typo never passes silently.
//!
//! The file found in the data directory may not set `data-dir`, `network` or `http-port`:
//! those choose the directory the file was found in. A file named with `--config` may set
//! every key.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, CommandFactory, FromArgMatches};

use crate::args::{Cli, NodeArgs};

/// The file's name in a data directory.
pub const FILE_NAME: &str = "powchain.toml";

/// The keys a file in the data directory may not set: they choose that directory.
const CHOOSE_THE_DATA_DIRECTORY: [&str; 3] = ["data-dir", "network", "http-port"];

/// A configuration file that was read, for the start-up log and for error notes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedFile {
    /// Where it was.
    pub path: PathBuf,
    /// The keys whose values were used.
    pub applied: Vec<String>,
    /// The keys the command line or the environment overrode.
    pub overridden: Vec<String>,
}

/// The command line with a configuration file's values added.
#[derive(Debug)]
pub struct Resolved {
    /// The arguments to parse.
    pub argv: Vec<OsString>,
    /// The file, if one was read.
    pub file: Option<LoadedFile>,
}

/// Finds and applies the configuration file of a command that runs a node. Any other
/// command, and a command line clap refuses, comes back unchanged (clap reports the latter
/// when it is parsed for real).
///
/// # Errors
/// A message naming the file (and the key) if `--config` names a file that cannot be
/// read, or the file is not TOML, has an unknown key or a value of the wrong kind.
pub fn resolve(argv: Vec<OsString>) -> Result<Resolved, String> {
    let unchanged = |argv| Ok(Resolved { argv, file: None });
    let Ok(matches) = Cli::command().try_get_matches_from(&argv) else {
        return unchanged(argv);
    };
    let node_matches = match matches.subcommand() {
        None => &matches,
        Some(("node", node_matches)) => node_matches,
        Some(_) => return unchanged(argv),
    };
    let Ok(node) = NodeArgs::from_arg_matches(node_matches) else {
        return unchanged(argv);
    };
    let (path, explicit) = match &node.config {
        Some(path) => (path.clone(), true),
        None => {
            let path = node.data_dir().join(FILE_NAME);
            if !path.exists() {
                return unchanged(argv);
            }
            (path, false)
        }
    };
    let text = std::fs::read_to_string(&path).map_err(|error| {
        format!(
            "cannot read the configuration file {}: {error}",
            path.display()
        )
    })?;
    let (extra, file) = arguments_from_file(&text, &path, explicit, node_matches)?;
    let mut argv = argv;
    argv.extend(extra);
    Ok(Resolved {
        argv,
        file: Some(file),
    })
}

/// The `--key=value` arguments for the keys of `text` that `matches` did not get from the
/// command line or the environment.
fn arguments_from_file(
    text: &str,
    path: &Path,
    explicit: bool,
    matches: &ArgMatches,
) -> Result<(Vec<OsString>, LoadedFile), String> {
    let in_file = |detail: String| format!("configuration file {}: {detail}", path.display());
    let table: toml::Table = text.parse().map_err(|error: toml::de::Error| {
        in_file(format!("not valid TOML: {}", error.message()))
    })?;
    let command = Cli::command();
    let flags: Vec<&clap::Arg> = command
        .get_arguments()
        .filter(|arg| arg.get_long().is_some_and(|long| long != "config"))
        .collect();
    let mut arguments = Vec::new();
    let mut file = LoadedFile {
        path: path.to_path_buf(),
        applied: Vec::new(),
        overridden: Vec::new(),
    };
    for (key, value) in &table {
        let Some(flag) = flags
            .iter()
            .find(|flag| flag.get_long() == Some(key.as_str()))
        else {
            return Err(in_file(format!(
                "unknown key `{key}`; the keys are the node's flags: {}",
                known_keys(&flags)
            )));
        };
        if !explicit && CHOOSE_THE_DATA_DIRECTORY.contains(&key.as_str()) {
            return Err(in_file(format!(
                "`{key}` cannot be set in the data directory's own file, because it chooses \
                 that directory; give it on the command line or in the environment, or name \
                 a file with --config"
            )));
        }
        let argument = argument(key, value, flag).map_err(&in_file)?;
        match matches.value_source(flag.get_id().as_str()) {
            Some(ValueSource::CommandLine | ValueSource::EnvVariable) => {
                file.overridden.push(key.clone());
            }
            _ => {
                arguments.extend(argument);
                file.applied.push(key.clone());
            }
        }
    }
    Ok((arguments, file))
}

/// The argument that sets `flag` to `value`: `--key=value`, `--key` for `true`, nothing for
/// `false`, `--key=a,b` for a list.
fn argument(key: &str, value: &toml::Value, flag: &clap::Arg) -> Result<Option<OsString>, String> {
    let is_switch = matches!(flag.get_action(), ArgAction::SetTrue);
    let takes_list = flag.get_value_delimiter().is_some();
    let text = match value {
        toml::Value::Boolean(on) if is_switch => {
            return Ok(on.then(|| OsString::from(format!("--{key}"))));
        }
        _ if is_switch => {
            return Err(format!(
                "`{key}` is true or false, not a {}",
                value.type_str()
            ));
        }
        toml::Value::String(text) => text.clone(),
        toml::Value::Integer(number) => number.to_string(),
        toml::Value::Array(items) if takes_list => {
            let mut joined = String::new();
            for (index, item) in items.iter().enumerate() {
                let toml::Value::String(item) = item else {
                    return Err(format!(
                        "`{key}` is a list of strings, not of {}s",
                        item.type_str()
                    ));
                };
                if item.contains(',') {
                    return Err(format!(
                        "`{key}`: {item:?} holds a comma; give one value per string"
                    ));
                }
                if index > 0 {
                    joined.push(',');
                }
                joined.push_str(item);
            }
            joined
        }
        _ => {
            return Err(format!(
                "`{key}` takes {}, not a {}",
                if takes_list {
                    "a list of strings"
                } else {
                    "a string or a number"
                },
                value.type_str()
            ));
        }
    };
    Ok(Some(OsString::from(format!("--{key}={text}"))))
}

/// Every key a file may hold, for the unknown-key message.
fn known_keys(flags: &[&clap::Arg]) -> String {
    let mut keys = String::new();
    for flag in flags.iter().filter_map(|flag| flag.get_long()) {
        if flag == "help" || flag == "version" {
            continue;
        }
        if !keys.is_empty() {
            keys.push_str(", ");
        }
        let _ = write!(keys, "{flag}");
    }
    keys
}

/// The key a clap error is about, if its value came from `file` (for a note under the
/// error, as for a value from the environment).
pub fn key_of_error(error: &clap::Error, file: &LoadedFile) -> Option<String> {
    use clap::error::{ContextKind, ContextValue};
    let Some(ContextValue::String(argument)) = error.get(ContextKind::InvalidArg) else {
        return None;
    };
    let long = argument.split_whitespace().next()?.trim_start_matches("--");
    let long = long.split(['=', ' ']).next()?;
    file.applied
        .iter()
        .find(|key| key.as_str() == long)
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn resolve_with(
        file: &str,
        explicit: bool,
        extra: &[&str],
    ) -> Result<(Cli, LoadedFile), String> {
        let dir = tempfile::tempdir().expect("temp dir");
        let data_dir = dir.path().join("data");
        std::fs::create_dir_all(&data_dir).expect("data dir");
        let path = if explicit {
            dir.path().join("elsewhere.toml")
        } else {
            data_dir.join(FILE_NAME)
        };
        std::fs::write(&path, file).expect("write the file");
        let mut argv: Vec<OsString> = vec!["powchain".into(), "node".into()];
        argv.push(format!("--data-dir={}", data_dir.display()).into());
        if explicit {
            argv.push(format!("--config={}", path.display()).into());
        }
        argv.extend(extra.iter().map(OsString::from));
        let resolved = resolve(argv)?;
        let file = resolved.file.expect("a file was read");
        let cli = Cli::try_parse_from(resolved.argv).map_err(|error| error.to_string())?;
        Ok((cli, file))
    }

    fn node(cli: Cli) -> NodeArgs {
        match cli.command {
            Some(crate::args::Command::Node(node)) => node,
            _ => panic!("a node command"),
        }
    }

    #[test]
    fn every_kind_of_value_sets_its_flag() {
        let (cli, file) = resolve_with(
            "mine = true\nreindex = false\nminer-threads = 2\np2p-bind = \"127.0.0.1\"\n\
             peers = [\"ws://127.0.0.1:5001\", \"ws://127.0.0.1:5002\"]\n",
            false,
            &[],
        )
        .expect("resolves");
        let node = node(cli);
        assert!(node.mine);
        assert!(!node.reindex);
        assert_eq!(node.miner_threads, Some(2));
        assert_eq!(node.p2p_bind.to_string(), "127.0.0.1");
        assert_eq!(
            node.peers,
            vec!["ws://127.0.0.1:5001", "ws://127.0.0.1:5002"]
        );
        assert_eq!(file.applied.len(), 5);
        assert!(file.overridden.is_empty());
    }

    #[test]
    fn the_command_line_beats_the_file() {
        let (cli, file) =
            resolve_with("p2p-port = 6000\n", false, &["--p2p-port", "7000"]).expect("resolves");
        assert_eq!(node(cli).p2p_port, 7000);
        assert_eq!(file.overridden, vec!["p2p-port"]);
        assert!(file.applied.is_empty());
    }

    #[test]
    fn the_file_beats_the_default() {
        let (cli, _) = resolve_with("p2p-port = 6000\n", false, &[]).expect("resolves");
        assert_eq!(node(cli).p2p_port, 6000);
    }

    #[test]
    fn a_named_file_may_choose_the_network_and_ports() {
        let (cli, file) =
            resolve_with("network = \"regtest\"\nhttp-port = 3100\n", true, &[]).expect("resolves");
        let node = node(cli);
        assert_eq!(node.network.to_string(), "regtest");
        assert_eq!(node.http_port, 3100);
        assert_eq!(file.applied, vec!["http-port", "network"]);
    }

    #[test]
    fn the_data_directory_file_cannot_choose_its_own_directory() {
        for key in [
            "network = \"regtest\"",
            "http-port = 3100",
            "data-dir = \"x\"",
        ] {
            let error = resolve_with(key, false, &[]).expect_err("refused");
            assert!(error.contains("chooses that directory"), "{error}");
        }
    }

    #[test]
    fn mistakes_name_the_file_and_the_key() {
        let cases = [
            ("http_port = 3002", "unknown key `http_port`"),
            ("minee = true", "unknown key `minee`"),
            ("mine = \"yes\"", "`mine` is true or false"),
            ("p2p-port = true", "`p2p-port` takes a string or a number"),
            ("p2p-port = 1.5", "`p2p-port` takes a string or a number"),
            ("peers = [1]", "`peers` is a list of strings"),
            ("peers = [\"a,b\"]", "holds a comma"),
            ("config = \"x\"", "unknown key `config`"),
            ("mine = ", "not valid TOML"),
        ];
        for (text, expected) in cases {
            let error = resolve_with(text, true, &[]).expect_err(text);
            assert!(error.contains(expected), "{text}: {error}");
            assert!(error.contains("elsewhere.toml"), "{text}: {error}");
        }
    }

    #[test]
    fn a_bad_value_is_refused_by_the_flag_own_check_and_traced_to_the_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("node.toml");
        std::fs::write(&path, "p2p-port = 70000\n").expect("write");
        let resolved = resolve(vec![
            "powchain".into(),
            format!("--config={}", path.display()).into(),
        ])
        .expect("the file reads");
        let file = resolved.file.expect("read");
        let error = Cli::try_parse_from(resolved.argv).expect_err("70000 is no port");
        assert_eq!(key_of_error(&error, &file).as_deref(), Some("p2p-port"));
    }

    /// The README's table lists every node flag, with its variable and file key, and
    /// nothing else: a flag added later fails here until it is documented.
    #[test]
    fn the_readme_table_lists_every_node_flag() {
        let readme = include_str!("../../../README.md");
        let section = readme
            .split("## Configuration")
            .nth(1)
            .and_then(|rest| rest.split("\n## ").next())
            .expect("the README has a Configuration section");
        let rows: Vec<Vec<String>> = section
            .lines()
            .filter(|line| line.starts_with("| `--"))
            .map(|line| {
                line.split('|')
                    .map(|cell| cell.trim().trim_matches('`').to_owned())
                    .collect()
            })
            .collect();
        let command = Cli::command();
        let flags: Vec<&clap::Arg> = command
            .get_arguments()
            .filter(|arg| {
                arg.get_long()
                    .is_some_and(|long| long != "help" && long != "version")
            })
            .collect();
        assert_eq!(rows.len(), flags.len(), "one row per flag: {rows:?}");
        for flag in flags {
            let long = flag.get_long().expect("filtered");
            let row = rows
                .iter()
                .find(|row| row[1] == format!("--{long}"))
                .unwrap_or_else(|| panic!("no README row for --{long}"));
            let env = flag.get_env().map(|env| env.to_string_lossy().into_owned());
            assert_eq!(Some(row[2].clone()), env, "--{long}'s variable");
            let key = if long == "config" { "(none)" } else { long };
            assert_eq!(row[3], key, "--{long}'s file key");
        }
    }

    #[test]
    fn a_missing_named_file_is_an_error_and_other_commands_read_no_file() {
        let error = resolve(vec![
            "powchain".into(),
            "--config=/nonexistent/powchain.toml".into(),
        ])
        .expect_err("missing");
        assert!(error.contains("/nonexistent/powchain.toml"), "{error}");
        let resolved = resolve(vec!["powchain".into(), "status".into()]).expect("unchanged");
        assert!(resolved.file.is_none());
    }
}
