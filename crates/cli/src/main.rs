//! The `powchain` binary: parses flags, runs a node or a client command, prints the error
//! chain once and owns the exit code.

mod args;
mod bench;
mod check;
mod client;
mod config_file;
mod devnet;
mod node;
mod progress;
mod render;
mod simulate;

use std::process::ExitCode;

use clap::Parser;

use crate::args::{Cli, Command};

/// jemalloc with a single arena (`JEMALLOC_SYS_WITH_MALLOC_CONF` in `.cargo/config.toml`).
/// The node's memory is one working set shared by every thread (the block index, the coin
/// cache, the store's pages) and its work is serialised by the node's lock; per-thread
/// caches keep small allocations off the arena's lock. With glibc's malloc each contending
/// thread took an arena of its own and kept what it freed there: syncing 100,001 blocks
/// peaked at 160-200 MB of resident memory for about 60 MB of live heap (heaptrack), and at
/// about 80 MB with one arena (docs/BENCHMARKS.md). jemalloc's background thread returns
/// pages that have been free for 10 s to the system even when the node allocates nothing,
/// so its memory falls back after a burst.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Logs go to stderr: stdout carries the listening lines and client commands' answers.
/// Coloured only on a terminal, and never with `NO_COLOR` set: escape codes in a log file
/// are noise.
fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("POWCHAIN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(colour)
        .with_writer(std::io::stderr)
        .try_init();
}

/// A simulation's log lines carry the simulated time and the host (`node{name=node-7}`),
/// so `POWCHAIN_LOG='[node{name=node-7}]=debug'` follows one node through a run.
fn init_simulation_logging() {
    struct SimulatedTime;
    impl tracing_subscriber::fmt::time::FormatTime for SimulatedTime {
        fn format_time(
            &self,
            w: &mut tracing_subscriber::fmt::format::Writer<'_>,
        ) -> std::fmt::Result {
            match powchain_sim::simulated_elapsed() {
                Some(elapsed) => write!(w, "{:>11.3}s", elapsed.as_secs_f64()),
                None => write!(w, "{:>12}", "-"),
            }
        }
    }
    let filter = tracing_subscriber::EnvFilter::try_from_env("POWCHAIN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(false)
        .with_timer(SimulatedTime)
        .with_writer(std::io::stderr)
        .try_init();
}

fn run(cli: Cli, config: Option<config_file::LoadedFile>) -> anyhow::Result<()> {
    match cli.command {
        None => run_node(cli.node, config),
        Some(Command::Node(args)) => run_node(args, config),
        Some(Command::Devnet(args)) => {
            init_logging("warn,powchain_p2p=warn");
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            runtime.block_on(devnet::run(args))
        }
        Some(Command::Status { json, client }) => client::status(&client, json),
        Some(Command::Peers {
            action,
            json,
            client,
        }) => client::peers(&client, action, json),
        Some(Command::Faucet {
            address,
            coins,
            client,
        }) => client::faucet(&client, &address, &coins),
        Some(Command::Wallet { action, client }) => client::wallet(&client, action),
        Some(Command::Mine { data, client }) => client::mine(&client, data),
        Some(Command::Bench(args)) => bench::run(&args),
        Some(Command::Simulate(args)) => {
            init_simulation_logging();
            simulate::run(&args)
        }
        Some(Command::Check(args)) => {
            init_logging("warn,redb=warn");
            check::run(&args)
        }
    }
}

fn run_node(args: args::NodeArgs, config: Option<config_file::LoadedFile>) -> anyhow::Result<()> {
    let settings = args.settings().map_err(|error| {
        let from_file = config.as_ref().and_then(|file| {
            file.applied
                .iter()
                .find(|key| error.contains(&format!("--{key} ")))
                .map(|key| (file, key))
        });
        match from_file {
            Some((file, key)) => anyhow::anyhow!(
                "{error} (set by `{key}` in the configuration file {})",
                file.path.display()
            ),
            None => anyhow::Error::msg(error),
        }
    })?;
    init_logging("info,redb=warn");
    if let Some(file) = &config {
        tracing::info!(
            "configuration file {}: using {}{}",
            file.path.display(),
            if file.applied.is_empty() {
                "nothing".to_owned()
            } else {
                file.applied.join(", ")
            },
            if file.overridden.is_empty() {
                String::new()
            } else {
                format!(
                    "; the command line or environment overrides {}",
                    file.overridden.join(", ")
                )
            }
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(node::run(settings))
}

/// Replaces the default panic report for panics inside redb with one log line: the chain
/// and pool stores catch those while opening and report them as an error naming the file
/// and what to do, which the default report (thread, source path, backtrace hint) only
/// buries. Every other panic is reported as before.
fn quiet_storage_engine_panics() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let Some(location) = info
            .location()
            .filter(|location| location.file().contains("/redb-"))
        else {
            default_hook(info);
            return;
        };
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|message| (*message).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        tracing::warn!(%location, %message, "the storage engine (redb) panicked");
    }));
}

/// The environment variable a refused value came from, and the value, if it came from one:
/// clap names the flag (`--network`), but a user who set `NETWORK=foo` looks for the
/// variable.
fn value_from_environment(error: &clap::Error) -> Option<(String, String)> {
    use clap::CommandFactory;
    use clap::error::{ContextKind, ContextValue};
    let Some(ContextValue::String(argument)) = error.get(ContextKind::InvalidArg) else {
        return None;
    };
    let Some(ContextValue::String(value)) = error.get(ContextKind::InvalidValue) else {
        return None;
    };
    let long = argument.split_whitespace().next()?.trim_start_matches("--");
    let command = Cli::command();
    let mut commands = vec![&command];
    let mut variable = None;
    while let Some(command) = commands.pop() {
        commands.extend(command.get_subcommands());
        variable = variable.or_else(|| {
            command
                .get_arguments()
                .find(|arg| arg.get_long() == Some(long))
                .and_then(|arg| arg.get_env())
                .map(|name| name.to_string_lossy().into_owned())
        });
    }
    let variable = variable?;
    (std::env::var(&variable).ok().as_deref() == Some(value.as_str()))
        .then(|| (variable, value.clone()))
}

fn main() -> ExitCode {
    quiet_storage_engine_panics();
    let resolved = match config_file::resolve(std::env::args_os().collect()) {
        Ok(resolved) => resolved,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    };
    let cli = match Cli::try_parse_from(resolved.argv) {
        Ok(cli) => cli,
        Err(error) => {
            if let Some(file) = &resolved.file
                && let Some(key) = config_file::key_of_error(&error, file)
            {
                let _ = error.print();
                eprintln!(
                    "note: the value came from `{key}` in the configuration file {}",
                    file.path.display()
                );
                return ExitCode::from(2);
            }
            if let Some((variable, value)) = value_from_environment(&error) {
                let _ = error.print();
                eprintln!(
                    "note: the value {value:?} came from the environment variable {variable}; \
                     fix or unset {variable}"
                );
                return ExitCode::from(2);
            }
            error.exit();
        }
    };
    match run(cli, resolved.file) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
