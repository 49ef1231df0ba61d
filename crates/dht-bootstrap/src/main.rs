//! `dht-bootstrap`: an ephemeral dht-rpc 2.x node that others bootstrap from. It sends no
//! id, so it is in nobody's routing table; it answers `_ping` and `_find_node` (and any
//! command, with closer nodes) and learns of the nodes that query it.

mod process;

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use dht_rpc::{Maintenance, Node};
use serde_json::json;

const EXAMPLES: &str = "\
Examples:
  dht-bootstrap --port=10000                      an entry node on port 10000
  dht-bootstrap --host 127.0.0.1 --port 10000     only on loopback
  dht-bootstrap --port 10001 -b other.example.org:10000   join another entry node

Then: hyperdht --bootstrap HOST:10000, or hyperdht({bootstrap: ['HOST:10000']}) in JavaScript.
Exit codes: 0 ok (after Ctrl-C or SIGTERM), 1 failure, 2 usage error, 4 port in use or unknown host.";

/// An entry node for a hyperdht / dht-rpc 2.x network (what `dht-rpc-bootstrap` was for
/// the 2.x protocol): an ephemeral node listening on a fixed port.
#[derive(Parser, Debug)]
#[command(name = "dht-bootstrap", version, after_help = EXAMPLES)]
struct Cli {
    /// The UDP port to listen on. Example: --port=10000
    #[arg(short, long, default_value_t = 49737)]
    port: u16,
    /// The address to bind. Example: --host 127.0.0.1
    #[arg(long, default_value = "0.0.0.0")]
    host: String,
    /// Other entry nodes to join, as HOST:PORT (or HOST alone, for port 49737). Repeatable.
    #[arg(short, long, value_name = "HOST[:PORT]")]
    bootstrap: Vec<String>,
    /// Print one JSON object per line.
    #[arg(long)]
    json: bool,
    /// More logging on stderr (-v info, -vv debug, -vvv trace); RUST_LOG also works.
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Print only errors.
    #[arg(short, long)]
    quiet: bool,
    /// Serve Prometheus metrics at http://ADDR/metrics. Example: --metrics 127.0.0.1:9100
    #[arg(long, value_name = "ADDR")]
    metrics: Option<String>,
    /// Logs on stderr as text lines (`text`) or one JSON object per line (`json`).
    #[arg(long, value_enum, default_value_t = process::LogFormat::Text)]
    log_format: process::LogFormat,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    process::run_main(cli.verbose, cli.quiet, cli.log_format, run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let bind = format!("{}:{}", cli.host, cli.port);
    // With other entry nodes to join, the node re-bootstraps through them every 5 to 65 s
    // (its core's maintenance); alone, it only answers.
    let rejoin = !cli.bootstrap.is_empty();
    let node = Node::builder()
        .ephemeral(true)
        .bootstrap(cli.bootstrap.clone())
        .maintenance(rejoin.then(Maintenance::default))
        .bind(&bind)
        .await?;
    let addr = node.local_addr();
    if let Some(at) = &cli.metrics {
        let served = dht_rpc::metrics::serve_node(at, &node, |_, _| {})
            .await
            .map_err(|e| anyhow::anyhow!("serving metrics on {at}: {e}"))?;
        tracing::info!(%served, "metrics on http://{served}/metrics");
    }
    // Caught from before "listening" is printed: whoever reads it may signal at once.
    let mut shutdown = process::Shutdown::new();
    if cli.json {
        println!(
            "{}",
            json!({"event": "listening", "address": {"host": addr.ip().to_string(), "port": addr.port()}})
        );
    } else {
        println!("dht-bootstrap listening on {addr}");
    }
    let mut stats = tokio::time::interval(Duration::from_secs(60));
    stats.tick().await;
    loop {
        tokio::select! {
            _ = stats.tick() => {
                let s = node.stats();
                let known = node.read_core(|c| c.table().len());
                tracing::info!(known, answered = s.requests_answered, dropped = s.malformed + s.requests_dropped, "stats");
            }
            () = shutdown.recv() => break,
        }
    }
    tracing::info!("shutting down");
    node.shutdown().await;
    Ok(())
}
