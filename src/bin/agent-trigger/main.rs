//! `agent-trigger`: the standalone webhook server, on its embedded SQLite store or on a
//! PostgreSQL database that several servers share.
//!
//! - `agent-trigger`: demo mode, on `./agent-trigger.db` and `127.0.0.1:8080`.
//! - `agent-trigger serve --config FILE [--listen ADDR]`: the configured server.
//! - `agent-trigger check --config FILE`: validates a configuration and starts nothing.
//! - `agent-trigger keygen`: a new API key and its `sha256` line for the configuration.
//!
//! This file only dispatches; each concern has a module named for it.

/// Prints a line for whoever started the server (see `console.rs`).
macro_rules! say {
    ($($arg:tt)*) => {
        crate::console::say(&format!($($arg)*))
    };
}

mod api;
mod config;
mod console;
#[cfg(target_os = "linux")]
mod containment;
mod demo;
mod executor;
#[cfg(target_os = "linux")]
mod launch;
mod listener;
mod log_format;
mod logging;
mod offline;
mod page;
mod reload;
mod retention;
mod server;
mod store;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Turns incoming webhooks into agent executions.
#[derive(Parser)]
#[command(name = "agent-trigger", version, about, long_about = None, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Demo mode only: listen here instead of 127.0.0.1:8080.
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the endpoint as FILE configures it.
    Serve {
        /// The TOML configuration file.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Listen here instead of the configured address.
        #[arg(long, value_name = "ADDR")]
        listen: Option<SocketAddr>,
    },
    /// Validate a configuration file without starting anything.
    Check {
        /// The TOML configuration file.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Print a new API key and the line that configures it.
    Keygen,
}

fn main() -> ExitCode {
    // The executor's launcher, where `agent-trigger-exec` is not installed.
    #[cfg(target_os = "linux")]
    {
        let mut arguments = std::env::args_os().skip(1);
        if arguments
            .next()
            .is_some_and(|first| first == launch::SUBCOMMAND)
        {
            return launch::main(arguments);
        }
    }
    let cli = Cli::parse();
    // Before the runtime's threads exist, so that each of them inherits it.
    #[cfg(target_os = "linux")]
    if let Err(error) = containment::harden_process() {
        eprintln!("agent-trigger: cannot protect the process: {error}");
        return ExitCode::FAILURE;
    }
    // Held until the process ends: dropping it writes out the lines still queued.
    let _logs = logging::init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("agent-trigger: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        None => runtime.block_on(demo::run(cli.listen)),
        Some(Command::Serve { config, listen }) => {
            runtime.block_on(server::serve_configured(&config, listen))
        }
        Some(Command::Check { config }) => offline::check(&config),
        Some(Command::Keygen) => {
            offline::keygen();
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("agent-trigger: {error}");
            ExitCode::FAILURE
        }
    }
}
