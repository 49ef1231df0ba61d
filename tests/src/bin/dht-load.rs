//! `dht-load`: floods one node (or the echo) on loopback and prints one JSON line: answered/s
//! and latency percentiles. The load generator of `perf-report`, usable on its own.
//!
//! ```sh
//! target/release/hyperdht --host 127.0.0.1 --port 49737 --no-trust-loopback &
//! target/release/dht-load --target 127.0.0.1:49737 --mode peers-20 --secs 5
//! target/release/dht-load --target 127.0.0.1:49737 --mode ping --rate 10000   # latency
//! ```

use std::net::SocketAddrV4;

use clap::Parser;
use hyperdht_tests::load::{LoadConfig, Mode, run};

/// Floods one node on loopback with requests from many source addresses across
/// 127.0.0.0/8, bounded in time and count, and prints a JSON report.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// The node (or echo server) to load; loopback only.
    #[arg(long)]
    target: SocketAddrV4,
    /// ping | find-node | peers-absent | peers-N (N peers announced on one key first) |
    /// announce (random keys, each source with its own token).
    #[arg(long, default_value = "ping", value_parser = parse_mode)]
    mode: Mode,
    /// Source addresses (127.1.0.1 onwards, four per /24).
    #[arg(long, default_value_t = 1024)]
    sources: usize,
    /// Stop after this many seconds...
    #[arg(long, default_value_t = 5.0)]
    secs: f64,
    /// ...or after this many answers.
    #[arg(long)]
    count: Option<u64>,
    /// Requests in flight (closed loop).
    #[arg(long, default_value_t = 512)]
    window: usize,
    /// Open loop at this many requests per second instead (for latency).
    #[arg(long)]
    rate: Option<u64>,
    /// Requests of one source sent in one GSO call (1 to 16; 1: one datagram per call).
    #[arg(long, default_value_t = 16)]
    burst: usize,
    /// Before the load, this many sources join the node's routing table (they ping it with
    /// ids of their own and answer its checks), as the nodes of a network would.
    #[arg(long, default_value_t = 0)]
    contacts: usize,
    /// The target echoes requests back (count them as answers).
    #[arg(long)]
    echo: bool,
    /// The core the target is pinned to: report its busy time (user and kernel, from
    /// /proc/stat) over the measured window as `target_core`, the setup left out.
    #[arg(long, value_name = "N")]
    cpu_core: Option<usize>,
}

fn parse_mode(s: &str) -> Result<Mode, String> {
    Mode::parse(s).ok_or_else(|| format!("unknown mode {s:?}"))
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    anyhow::ensure!(
        a.target.ip().is_loopback(),
        "the target must be on loopback"
    );
    anyhow::ensure!(
        a.secs > 0.0 && a.secs <= 600.0,
        "--secs must be in (0, 600]"
    );
    let report = run(&LoadConfig {
        target: a.target,
        mode: a.mode,
        sources: a.sources.clamp(1, 65536),
        secs: a.secs,
        count: a.count,
        window: a.window,
        rate: a.rate,
        echo: a.echo,
        burst: a.burst,
        contacts: a.contacts,
        cpu_core: a.cpu_core,
    })?;
    println!("{report}");
    Ok(())
}
