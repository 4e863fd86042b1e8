//! The `powchain` binary: parses flags, runs a node or a client command, prints the error
//! chain once and owns the exit code.

mod args;
mod bench;
mod check;
mod client;
mod devnet;
mod node;
mod progress;

use std::process::ExitCode;

use clap::Parser;

use crate::args::{Cli, Command};

/// Logs go to stderr: stdout carries the listening lines and client commands' answers.
fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("POWCHAIN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr)
        .try_init();
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        None => run_node(cli.node),
        Some(Command::Node(args)) => run_node(args),
        Some(Command::Devnet(args)) => {
            init_logging("warn,powchain_p2p=warn");
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            runtime.block_on(devnet::run(args))
        }
        Some(Command::Status(client)) => client::status(&client),
        Some(Command::Wallet { action, client }) => client::wallet(&client, action),
        Some(Command::Mine { data, client }) => client::mine(&client, data),
        Some(Command::Bench(args)) => bench::run(&args),
        Some(Command::Check(args)) => {
            init_logging("warn,redb=warn");
            check::run(&args)
        }
    }
}

fn run_node(args: args::NodeArgs) -> anyhow::Result<()> {
    let settings = args.settings().map_err(anyhow::Error::msg)?;
    init_logging("info,redb=warn");
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

fn main() -> ExitCode {
    quiet_storage_engine_panics();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
