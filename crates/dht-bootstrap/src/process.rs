//! What the process needs around the node: logging on stderr, the shutdown signals, and exit
//! codes (the `hyperdht` command's, so that scripts treat both alike: 0 ok, 1 failure,
//! 2 usage error (clap's own), 4 port in use or unknown host).

use std::future::Future;
use std::process::ExitCode;

use dht_rpc::BindError;

/// Exit code of an address problem (port in use, unknown host).
const EXIT_ADDRESS: u8 = 4;

/// Sets up logging (`RUST_LOG` wins; otherwise warn, raised by each `-v`, lowered to error
/// by `-q`; text, or one JSON object per line), runs `job` on a tokio runtime and turns its result into the exit code.
pub fn run_main(
    verbose: u8,
    quiet: bool,
    format: LogFormat,
    job: impl Future<Output = anyhow::Result<()>>,
) -> ExitCode {
    logging::init_logging(verbose, quiet, format);
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

// The same signal handling and logging as the `hyperdht` binary's (one source, no
// dependency on its crate).
#[path = "../../hyperdht-cli/src/shutdown.rs"]
mod shutdown;
pub use shutdown::Shutdown;
#[path = "../../hyperdht-cli/src/logging.rs"]
mod logging;
pub use logging::LogFormat;
