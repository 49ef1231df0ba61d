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

/// SIGINT (Ctrl-C) and SIGTERM, caught from the moment this is made: [`Shutdown::recv`]
/// resolves at the first that arrives after. It is cancel-safe: a `select!` loop may poll it
/// every turn, and a signal that arrives while another branch wins waits for the next poll.
/// (A signal future made anew each turn could lose a signal that came while another branch
/// won: the new one listened only from its own first poll on.)
pub struct Shutdown {
    #[cfg(unix)]
    int: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
}

impl Shutdown {
    /// Starts catching the signals (call it inside the tokio runtime). One that cannot be
    /// caught keeps its default action.
    pub fn new() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Shutdown {
                int: signal(SignalKind::interrupt()).ok(),
                term: signal(SignalKind::terminate()).ok(),
            }
        }
        #[cfg(not(unix))]
        Shutdown {}
    }

    /// Resolves at the next SIGINT or SIGTERM.
    pub async fn recv(&mut self) {
        #[cfg(unix)]
        {
            async fn next(s: &mut Option<tokio::signal::unix::Signal>) {
                match s {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending().await,
                }
            }
            tokio::select! {
                () = next(&mut self.int) => {}
                () = next(&mut self.term) => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}
