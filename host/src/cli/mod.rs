//! The command line: `serve`, `check`, `send`, `run-plugin`, `dead`, `events`
//! and `sink`.
//!
//! Owns: argument parsing, exit codes and what each command prints.
//! Never: holds router logic; each command calls the library.

mod access;
mod check;
mod dead;
mod events;
mod print;
mod send;
mod sink;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};

use crate::config::Config;

/// hookrouter: a durable webhook router that runs user code as WebAssembly.
#[derive(Debug, Parser)]
#[command(name = "hookrouter", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// The router's config file [default: router.toml].
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Log format on stderr (filter with RUST_LOG, default "info").
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the router (the default).
    Serve,
    /// Validate the config and every plugin; print sources, routes and plugins.
    Check,
    /// Send a correctly signed test event to a running router.
    Send(send::SendArgs),
    /// Run one plugin on one event and print its actions as JSON lines.
    RunPlugin {
        /// The plugin file.
        plugin: PathBuf,
        /// The event: a JSON body, or an Optum-style envelope.
        #[arg(long)]
        event: PathBuf,
        /// A config entry handed to the plugin (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE", value_parser = crate::plugins::cli::parse_set)]
        sets: Vec<(String, String)>,
        /// The run's deadline [default: the plugin's timeout_ms in --config, else
        /// 1000].
        #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..=600_000))]
        timeout_ms: Option<u64>,
    },
    /// Inspect and replay dead deliveries and forwards.
    Dead {
        #[command(subcommand)]
        command: dead::DeadCommand,
    },
    /// Find events, show one with its deliveries and forwards, or follow new ones.
    Events {
        #[command(subcommand)]
        command: events::EventsCommand,
    },
    /// A development target: print every request received (the demo forwards here).
    Sink(sink::SinkArgs),
}

/// Loads the config for commands that do not serve (`send`, `dead`, `events`): a secret that
/// is unset does not stop them (the placeholder never verifies anything); `send`
/// checks the secrets of the one source it signs for.
pub(crate) fn load_for_tools(path: &std::path::Path) -> anyhow::Result<Config> {
    let env = |k: &str| std::env::var(k).ok().or_else(|| Some(format!("unset-{k}")));
    Ok(Config::load_with_env(path, &env)?)
}

/// Sets up `tracing` on stderr, filtered by `RUST_LOG` (default `info`). Colours
/// only on a terminal: a log file holds plain text.
pub fn init_tracing(format: LogFormat) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .init(),
    }
}

/// Runs the command; `Err` is printed as one line by `main`.
pub fn main(cli: Cli) -> anyhow::Result<ExitCode> {
    // `run-plugin` reads a config only when one is named.
    let named_config = cli.config.clone();
    let config_path = cli.config.unwrap_or_else(|| PathBuf::from("router.toml"));
    let load = || Config::load(&config_path).map_err(anyhow::Error::from);
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            let config = load()?;
            serve(config)
        }
        Command::Check => Ok(check::run(&config_path)),
        Command::Send(args) => send::run(&config_path, args),
        Command::RunPlugin {
            plugin,
            event,
            sets,
            timeout_ms,
        } => {
            let config = named_config.map(|path| load_for_tools(&path)).transpose()?;
            let options = crate::plugins::cli::RunOptions {
                config: config.as_ref(),
                timeout: timeout_ms.map(std::time::Duration::from_millis),
            };
            crate::plugins::cli::run_plugin_command(&plugin, &event, &sets, &options)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Dead { command } => dead::run(&load_for_tools(&config_path)?, command),
        Command::Events { command } => events::run(&load_for_tools(&config_path)?, command),
        Command::Sink(args) => sink::run(args),
    }
}

fn serve(config: Config) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let ingress = tokio::net::TcpListener::bind(config.server.listen)
            .await
            .with_context(|| {
                format!("cannot listen on {} (server.listen)", config.server.listen)
            })?;
        let admin = tokio::net::TcpListener::bind(config.server.admin_listen)
            .await
            .with_context(|| {
                format!(
                    "cannot listen on {} (server.admin_listen)",
                    config.server.admin_listen
                )
            })?;
        crate::run_with_ready(
            config,
            ingress,
            admin,
            shutdown_signal(),
            |ingress, admin| {
                // One line on stdout once ready, so scripts and tests can find the
                // ports (`:0` picks free ones).
                println!("hookrouter listening on http://{ingress} (admin http://{admin})");
            },
        )
        .await
    })?;
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
