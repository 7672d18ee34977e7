//! `pipeline`: hyperspectral field scans to per-plant crop-disease calls.

mod cli;
mod commands;
mod model_source;
mod output;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    init_logging(cli.verbose, cli.quiet);
    if let Some(threads) = cli.threads {
        ingest::set_scan_threads(threads.into());
        model::set_threads(threads.into());
    }
    match commands::dispatch(cli.command) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            if error.downcast_ref::<commands::Stopped>().is_some() {
                std::process::ExitCode::from(commands::EXIT_STOPPED)
            } else {
                std::process::ExitCode::FAILURE
            }
        }
    }
}

/// Logs go to stderr: `-v` debug, `-vv` trace, `-q` errors only; `RUST_LOG` overrides.
fn init_logging(verbose: u8, quiet: bool) {
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "info",
        (false, 1) => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!(
            "warn,pipeline={level},ingest={level},model={level},report={level},synth={level}"
        ))
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
}
