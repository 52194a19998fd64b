//! The `hookrouter` binary: parses the command line, sets up tracing, and calls
//! the library. (Only `run-plugin` is wired on the `runtime` branch.)

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "hookrouter",
    version,
    about = "A durable webhook router that runs user code as WebAssembly"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs one plugin on one event locally and prints its actions as JSON lines.
    RunPlugin {
        /// The plugin file (a component or a WASI command module).
        plugin: PathBuf,
        /// The event: a JSON body or an envelope with `type` (`-` for stdin).
        #[arg(long)]
        event: PathBuf,
        /// A config entry handed to the plugin.
        #[arg(long = "set", value_name = "KEY=VALUE", value_parser = hookrouter::plugins::cli::parse_set)]
        sets: Vec<(String, String)>,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::RunPlugin {
            plugin,
            event,
            sets,
        } => hookrouter::plugins::cli::run_plugin_command(&plugin, &event, &sets),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
