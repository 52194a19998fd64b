//! The `hookrouter` binary: parses the command line, sets up logging, and hands
//! over to the library. Everything else lives in `hookrouter::cli`.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    hookrouter::memory::limit_arenas();
    let cli = hookrouter::cli::Cli::parse();
    hookrouter::cli::init_tracing(cli.log_format);
    match hookrouter::cli::main(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
