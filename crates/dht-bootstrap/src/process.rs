//! What the process needs around the node: logging on stderr, the shutdown signals, and exit
//! codes (the `hyperdht` command's, so that scripts treat both alike: 0 ok, 1 failure,
//! 2 usage error (clap's own), 4 port in use or unknown host).

use std::future::Future;
use std::process::ExitCode;

use dht_rpc::BindError;
use tracing_subscriber::EnvFilter;

/// Exit code of an address problem (port in use, unknown host).
const EXIT_ADDRESS: u8 = 4;

/// Sets up logging (`RUST_LOG` wins; otherwise warn, raised by each `-v`, lowered to error
/// by `-q`; text, or one JSON object per line with `json_logs`), runs `job` on a tokio runtime and turns its result into the exit code.
pub fn run_main(
    verbose: u8,
    quiet: bool,
    json_logs: bool,
    job: impl Future<Output = anyhow::Result<()>>,
) -> ExitCode {
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json_logs {
        logs.json().try_init()
    } else {
        // Colours only for a terminal: a log file gets no escape codes.
        logs.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init()
    };
    // One thread: the node's work is one loop over one socket (see hyperdht-cli's run_main).
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::Error::new(e).context("starting the runtime"))
        .and_then(|rt| rt.block_on(job));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            let address = e.chain().any(|c| c.is::<BindError>());
            ExitCode::from(if address { EXIT_ADDRESS } else { 1 })
        }
    }
}

// The same signal handling as the `hyperdht` binary's (one source, no dependency on its crate).
#[path = "../../hyperdht-cli/src/shutdown.rs"]
mod shutdown;
pub use shutdown::Shutdown;
