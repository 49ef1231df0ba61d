//! What the `hyperdht` and `dht-bootstrap` binaries share: logging, shutdown signals, the
//! exit codes and how errors map to them, and parsing of keys and addresses.
//!
//! Exit codes: 0 success; 1 any other failure; 2 a usage error (bad flag, malformed key or
//! address); 3 the network did not answer (no bootstrap node responded, a ping or hole
//! punch timed out); 4 an address problem (port in use, unknown host).
#![forbid(unsafe_code)]

use std::fmt;
use std::process::ExitCode;

use dht_rpc::{BindError, QueryError, RequestError};
use dht_wire::Key;

/// Exit code of a usage error.
pub const EXIT_USAGE: u8 = 2;
/// Exit code when the network did not answer.
pub const EXIT_NETWORK: u8 = 3;
/// Exit code of an address problem (port in use, unknown host).
pub const EXIT_ADDRESS: u8 = 4;
/// Exit code of a lookup that ran but found no peer.
pub const EXIT_NOT_FOUND: u8 = 5;

/// A lookup that ran but found nothing: exit code 5.
#[derive(Debug)]
pub struct NotFound(pub String);

impl fmt::Display for NotFound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NotFound {}

/// A usage error: exit code 2.
#[derive(Debug)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// The exit code an error means.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    for cause in err.chain() {
        if cause.is::<UsageError>() {
            return EXIT_USAGE;
        }
        if cause.is::<NotFound>() {
            return EXIT_NOT_FOUND;
        }
        if cause.is::<BindError>() {
            return EXIT_ADDRESS;
        }
        if let Some(QueryError::NoNodesResponded | QueryError::NoCloseNodesResponded) =
            cause.downcast_ref::<QueryError>()
        {
            return EXIT_NETWORK;
        }
        if let Some(RequestError::Timeout) = cause.downcast_ref::<RequestError>() {
            return EXIT_NETWORK;
        }
        if let Some(hyperdht::HolepunchError::NoAnswer { .. }) =
            cause.downcast_ref::<hyperdht::HolepunchError>()
        {
            return EXIT_NETWORK;
        }
    }
    1
}

/// The body of a binary's `main`: sets up logging, runs `job` on a tokio runtime, and turns
/// its result into the exit code (printing an error as one line).
pub fn run_main<F>(verbose: u8, quiet: bool, format: LogFormat, job: F) -> ExitCode
where
    F: std::future::Future<Output = anyhow::Result<()>>,
{
    init_logging(verbose, quiet, format);
    // One thread: the node's work is one loop over one socket; worker threads would only
    // hand it between them (a context switch per datagram under load, measured).
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return report(&anyhow::Error::new(e).context("starting the runtime")),
    };
    match runtime.block_on(job) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => report(&e),
    }
}

/// Prints the error as one line on stderr and gives the exit code it means.
pub fn report(err: &anyhow::Error) -> ExitCode {
    eprintln!("error: {err:#}");
    ExitCode::from(exit_code(err))
}

mod logging;
pub use logging::{LogFormat, init_logging};
mod shutdown;
pub use shutdown::Shutdown;

/// Parses a KEY: 64 hexadecimal characters, or a string of exactly 32 bytes (as in the
/// original README's `01234567012345670123456701234567`).
pub fn parse_key(s: &str) -> Result<Key, UsageError> {
    if s.len() == 64 {
        return Key::from_hex(s).map_err(|e| UsageError(format!("malformed key {s:?}: {e}")));
    }
    match <[u8; 32]>::try_from(s.as_bytes()) {
        Ok(b) => Ok(Key::from_bytes(b)),
        Err(_) => Err(UsageError(format!(
            "malformed key {s:?}: a key is 64 hexadecimal characters or a string of exactly 32 bytes (this one is {} bytes)",
            s.len()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A SIGINT that arrives while the loop's other branches keep winning is still seen once
    /// they stop. (With a signal future made anew each turn, as `announce` and `dht-bootstrap`
    /// had, this loop never ends.)
    #[cfg(unix)]
    #[test]
    fn a_signal_is_kept_until_the_loop_polls_for_it() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let mut shutdown = Shutdown::new();
            let me = std::process::id().to_string();
            let sent = std::process::Command::new("kill")
                .args(["-INT", &me])
                .status()
                .expect("kill");
            assert!(sent.success());
            // The signal lands while the runtime's thread is busy here.
            std::thread::sleep(std::time::Duration::from_millis(200));
            let mut turns = 0;
            let ended = tokio::time::timeout(std::time::Duration::from_secs(5), async {
                loop {
                    tokio::select! {
                        biased;
                        // Another branch that wins every turn, yielding to the runtime
                        // (whose driver then takes the signal in) each time.
                        () = tokio::task::yield_now(), if turns < 1000 => turns += 1,
                        () = shutdown.recv() => break,
                    }
                }
            })
            .await;
            assert!(ended.is_ok(), "the signal was lost (after {turns} turns)");
        });
    }

    #[test]
    fn keys_are_hex_or_32_bytes() {
        assert_eq!(
            parse_key("01234567012345670123456701234567").unwrap(),
            Key::from_bytes(*b"01234567012345670123456701234567")
        );
        assert_eq!(
            parse_key(&"ab".repeat(32)).unwrap(),
            Key::from_bytes([0xab; 32])
        );
        assert!(parse_key("short").is_err());
        assert!(parse_key(&"zz".repeat(32)).is_err());
    }

    #[test]
    fn errors_map_to_exit_codes() {
        assert_eq!(exit_code(&anyhow::Error::new(UsageError("x".into()))), 2);
        assert_eq!(
            exit_code(&anyhow::Error::new(QueryError::NoNodesResponded).context("lookup")),
            3
        );
        assert_eq!(exit_code(&anyhow::Error::new(RequestError::Timeout)), 3);
        assert_eq!(exit_code(&anyhow::anyhow!("other")), 1);
    }
}
