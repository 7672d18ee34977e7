//! `pipeline`: hyperspectral field scans to per-plant crop-disease calls. The command line as a
//! library, so that two binaries share it: `pipeline` (no libtorch) and `pipeline-torch` (the
//! same, with libtorch registered for training and GPUs; see `torch.rs`).

mod cli;
mod commands;
mod model_source;
mod output;
pub mod torch;

use clap::Parser;

/// Parse the command line, run the command, and leave the process with its status.
pub fn main() -> ! {
    let cli = cli::Cli::parse();
    init_logging(cli.verbose, cli.quiet);
    if let Some(threads) = cli.threads {
        ingest::set_scan_threads(threads.into());
        model::set_threads(threads.into());
        if let Some(torch) = torch::registered() {
            torch.set_threads(threads.into());
        }
    }
    let code = match commands::dispatch(cli.command) {
        Ok(()) => 0,
        Err(error) => {
            eprintln!("error: {error:#}");
            if error.downcast_ref::<commands::Stopped>().is_some() {
                commands::EXIT_STOPPED
            } else {
                1
            }
        }
    };
    // Every output is written, closed and renamed into place by now. Leave without running the
    // C++ static destructors (libtorch's: ~50 ms of operator deregistration per process).
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    signal_hook::low_level::exit(code.into())
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
            "warn,pipeline={level},ingest={level},model={level},training={level},report={level},synth={level}"
        ))
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
}
