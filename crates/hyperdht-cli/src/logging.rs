//! Logging on stderr for both binaries (`hyperdht`, and `dht-bootstrap`, which includes this
//! file by path so as not to depend on this crate): `RUST_LOG` wins; otherwise `warn`,
//! raised by each `-v` (info, debug, trace) and lowered to `error` by `-q`; text lines, or
//! one JSON object per line.

use tracing_subscriber::EnvFilter;

/// How logs are written on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (coloured on a terminal).
    #[default]
    Text,
    /// One JSON object per line: timestamp, level, target, fields, span.
    Json,
}

/// Sets up `tracing` on stderr (see the module docs). A second call changes nothing.
pub fn init_logging(verbose: u8, quiet: bool, format: LogFormat) {
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
    let _ = match format {
        // Colours only for a terminal: a log file gets no escape codes.
        LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
        LogFormat::Json => logs.json().with_current_span(true).try_init(),
    };
}
