//! The `hyperdht` command: a long-lived DHT node, and the commands users reach for.

mod cmd;
mod metrics;
mod out;
mod state;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

const EXAMPLES: &str = "\
Examples:
  hyperdht demo                                   a whole network in-process, step by step
  hyperdht --bootstrap localhost:10000            run a long-lived node
  hyperdht -b dht.example.org --no-adaptive       ... that skips the reachability check
  hyperdht testnet --nodes 10 --port 10000        a local test network on 127.0.0.1
  hyperdht announce 01234567012345670123456701234567 --port 8080 -b localhost:10000
  hyperdht lookup 01234567012345670123456701234567 -b localhost:10000 --json
  hyperdht ping 127.0.0.1:10000
  hyperdht holepunch 203.0.113.7:40000 --via 198.51.100.2:49737

Exit codes: 0 ok, 1 failure, 2 usage error, 3 the network did not answer,
4 address problem (port in use, unknown host), 5 a lookup found no peer.
Logs go to stderr: -v, -vv, -vvv for more, -q for errors only, or RUST_LOG=hyperdht=debug.";

/// A Kademlia DHT for peer discovery with UDP hole punching, packet-compatible with the
/// JavaScript hyperdht 1.x.
///
/// With no command it runs a long-lived node, as the original `hyperdht` does: it serves
/// announces and lookups, logs them, and re-bootstraps every 5 to 65 seconds.
#[derive(Parser, Debug)]
#[command(name = "hyperdht", version, after_help = EXAMPLES)]
struct Cli {
    /// A bootstrap node, as HOST:PORT (or HOST alone, for port 49737). Repeat for several.
    /// Example: -b localhost:10000 -b dht.example.org
    #[arg(short = 'b', long, global = true, value_name = "HOST[:PORT]")]
    bootstrap: Vec<String>,
    /// Print one JSON object per line instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// More logging on stderr (-v info, -vv debug, -vvv trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Print only errors (for the node: do not print announces and lookups).
    #[arg(short, long, global = true)]
    quiet: bool,
    /// Logs on stderr as text lines or as one JSON object per line (for log collectors).
    #[arg(long, global = true, value_enum, default_value_t = hyperdht_cli::LogFormat::Text)]
    log_format: hyperdht_cli::LogFormat,
    /// The UDP port the node (or a command's own DHT socket) listens on; 0 picks a free one.
    /// Not the port `announce --port` announces. Example: -p 49737
    #[arg(short = 'p', long, default_value_t = 0)]
    port: u16,
    /// The address the node binds. Example: --host 127.0.0.1
    #[arg(long, default_value = "0.0.0.0")]
    host: String,
    /// Sources in this range (CIDR, or one IP) skip the per-IP and per-/24 limits of the
    /// defences: a private cluster, or a test network whose nodes share one IP (loopback is
    /// always trusted). Repeat for several. Example: --trust 10.0.0.0/8
    #[arg(long, global = true, value_name = "CIDR")]
    trust: Vec<dht_rpc::guard::Ipv4Range>,
    /// Treat loopback like any other source (it is trusted by default, so that local test
    /// networks work): to try the defences on one machine, from 127.0.0.2, 127.0.0.3, ...
    #[arg(long, global = true)]
    no_trust_loopback: bool,
    /// (node) Do not check whether nodes we never sent to can reach us. By default the node
    /// checks after its bootstraps and, while they cannot (behind a NAT or firewall), sends no
    /// id, so that no routing table holds an address others cannot reach. The library's
    /// default is the reference's: no check.
    #[arg(long, conflicts_with = "adaptive")]
    no_adaptive: bool,
    /// (node) The reachability check, on by default (kept for older scripts).
    #[arg(long, hide = true)]
    adaptive: bool,
    /// (node) Serve Prometheus metrics at http://ADDR/metrics. Example: --metrics 127.0.0.1:9100
    #[arg(long, value_name = "ADDR")]
    metrics: Option<String>,
    /// (node) Keep the node id and a snapshot of good contacts in DIR across restarts (read
    /// at start as extra bootstrap nodes). Example: --state-dir /var/lib/hyperdht
    #[arg(long, value_name = "DIR")]
    state_dir: Option<std::path::PathBuf>,
    /// (node) One receive and one send system call per datagram, instead of batches
    /// (recvmmsg, GSO), on a thread that blocks in the receive and answers at once: for
    /// kernels or sandboxes that refuse batches, for the lowest latency at modest rates, and
    /// to measure them.
    #[arg(long)]
    no_batch_io: bool,
    /// (node) Serve as a relay for peers whose hole punch cannot open (symmetric NATs on
    /// both sides): hold their reservations and forward between the two ends of each
    /// circuit, within libp2p relay v2's limits (128 reservations, 2 per IP, 16 circuits,
    /// 2 minutes and 128 KiB per direction each; --trust ranges and loopback skip the
    /// per-IP and per-/24 ones). Once bootstrapped, the node announces
    /// itself on the DHT's relay key (while reachable), where `announce --relay auto`
    /// finds it. Off by default.
    #[arg(long)]
    relay: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Find the peers announced on KEY. Example: hyperdht lookup 0123...cdef -b localhost:10000
    Lookup {
        /// 64 hexadecimal characters, or a string of exactly 32 bytes.
        key: String,
        /// Our LAN address, to be told of peers sharing its first two octets. Example: 192.168.1.2
        #[arg(long, value_name = "IP[:PORT]")]
        local_address: Option<String>,
    },
    /// Announce that we listen on KEY, re-announce every 4-5 minutes, unannounce on Ctrl-C.
    /// Example: hyperdht announce 0123...cdef --port 8080 -b localhost:10000
    Announce {
        /// 64 hexadecimal characters, or a string of exactly 32 bytes.
        key: String,
        /// The port we listen on (our UDP port when absent).
        #[arg(long)]
        port: Option<u16>,
        /// Our LAN address, for peers on the same network. Example: 192.168.1.2:8080
        #[arg(long, value_name = "IP:PORT")]
        local_address: Option<String>,
        /// Reserve a slot on a relay and keep it fresh, so that peers whose punch to us
        /// fails (symmetric NATs on both sides) connect through it: `auto` finds relays on
        /// the DHT (nodes run with `hyperdht --relay` announce themselves) and takes the
        /// first that holds the reservation; HOST:PORT names one.
        /// Examples: --relay auto, --relay 198.51.100.2:49737
        #[arg(long, value_name = "auto|HOST[:PORT]")]
        relay: Option<String>,
    },
    /// Remove an announcement made with `announce --port P`. Example: hyperdht unannounce KEY --port 8080 -b localhost:10000
    Unannounce {
        /// 64 hexadecimal characters, or a string of exactly 32 bytes.
        key: String,
        /// The port given to `announce`.
        #[arg(long)]
        port: Option<u16>,
    },
    /// Ping a DHT node: its id, our address as it sees it, the round-trip time.
    /// Example: hyperdht ping 127.0.0.1:10000
    Ping {
        /// The node, as HOST:PORT (or HOST alone, for port 49737).
        node: String,
        /// How long to wait for the answer, in milliseconds (1 to 600000).
        #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..=600_000))]
        timeout_ms: u64,
    },
    /// Open a UDP path to PEER through NODE (the node that returned PEER in a lookup).
    /// Exits 0 only when a path opened. Example: hyperdht holepunch 203.0.113.7:40000 --via 198.51.100.2:49737
    Holepunch {
        /// The peer, as HOST:PORT.
        peer: String,
        /// The node that knows the peer, as HOST:PORT.
        #[arg(long, value_name = "HOST[:PORT]")]
        via: String,
        /// Once the path is open, send TEXT to the peer over it (a running `hyperdht
        /// announce` prints what it receives). Example: --send hello
        #[arg(long, value_name = "TEXT")]
        send: Option<String>,
        /// Reserve on a relay first, so that when no punch opens (symmetric NATs on both
        /// sides) and the peer holds no relay of its own, the peer joins ours: `auto`
        /// finds one on the DHT (needs --bootstrap), HOST:PORT names one. Without it, the
        /// peer's relay (`announce --relay`) is used. Examples: --relay auto, --relay
        /// 198.51.100.2:49737
        #[arg(long, value_name = "auto|HOST[:PORT]")]
        relay: Option<String>,
    },
    /// Run a local test network on 127.0.0.1 until Ctrl-C: a bootstrap node and N nodes.
    /// Example: hyperdht testnet --nodes 10 --port 10000
    Testnet {
        /// How many DHT nodes besides the bootstrap node (1 to 10000).
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        nodes: u32,
        /// The bootstrap node's port.
        #[arg(long, default_value_t = 10000)]
        port: u16,
        /// The address every node binds (one the other hosts can reach, to serve a LAN).
        /// Example: --bind 192.168.1.2
        #[arg(long, default_value = "127.0.0.1", value_name = "IP")]
        bind: String,
    },
    /// Show the whole thing at work: a network in-process, an announce, a lookup, a ping and
    /// a hole punch, each step timed. Needs nothing else.
    Demo {
        /// How many DHT nodes to start (2 to 1000).
        #[arg(long, default_value_t = 12, value_parser = clap::value_parser!(u32).range(2..=1000))]
        nodes: u32,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    hyperdht_cli::run_main(cli.verbose, cli.quiet, cli.log_format, run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let out = out::Out {
        json: cli.json,
        quiet: cli.quiet,
    };
    let bootstrap = cli.bootstrap;
    cmd::set_trusted(cli.trust, cli.no_trust_loopback);
    cmd::check_addresses("bootstrap address", &bootstrap)?;
    // The commands that ask the network bind --host and -p/--port like the node does (so
    // `hyperdht -p 5005 announce KEY` announces the DHT socket 5005).
    let bind = format!("{}:{}", cli.host, cli.port);
    let client = |bootstrap| cmd::Client {
        bootstrap,
        bind: &bind,
    };
    let unused = |command: &str| -> anyhow::Result<()> {
        if bootstrap.is_empty() {
            Ok(())
        } else {
            Err(hyperdht_cli::UsageError(format!(
                "`{command}` does not use --bootstrap (it talks to the address it is given)"
            ))
            .into())
        }
    };
    match cli.command {
        None => {
            let io = if cli.no_batch_io {
                dht_rpc::DatagramIo::Single
            } else {
                dht_rpc::DatagramIo::Batched
            };
            let adaptive = cli.adaptive || !cli.no_adaptive;
            let opts = cmd::node::NodeOptions {
                adaptive,
                io,
                metrics: cli.metrics.clone(),
                state_dir: cli.state_dir.clone(),
                relay: cli.relay,
            };
            cmd::node::run(&out, &cli.host, cli.port, bootstrap, opts).await
        }
        Some(Command::Lookup { key, local_address }) => {
            cmd::lookup::run(&out, client(bootstrap), &key, local_address.as_deref()).await
        }
        Some(Command::Announce {
            key,
            port,
            local_address,
            relay,
        }) => {
            let local = local_address.as_deref();
            let opts = cmd::announce::Options {
                port,
                local,
                relay: relay.as_deref(),
            };
            cmd::announce::run(&out, client(bootstrap), &key, opts).await
        }
        Some(Command::Unannounce { key, port }) => {
            if port.is_none() && cli.port == 0 {
                return Err(hyperdht_cli::UsageError(
                    "unannounce needs the port that was announced: --port P (or -p P when \
                     the announce had no --port and ran from DHT port P)"
                        .into(),
                )
                .into());
            }
            cmd::announce::unannounce(&out, client(bootstrap), &key, port).await
        }
        Some(Command::Ping { node, timeout_ms }) => {
            unused("ping")?;
            cmd::ping::run(&out, &bind, &node, timeout_ms).await
        }
        Some(Command::Holepunch {
            peer,
            via,
            send,
            relay,
        }) => {
            // Only a relay found on the DHT needs the DHT.
            let bootstrap = if relay.as_deref() == Some("auto") {
                bootstrap
            } else {
                unused("holepunch")?;
                Vec::new()
            };
            let opts = cmd::ping::PunchOptions {
                send: send.as_deref(),
                relay: relay.as_deref(),
            };
            cmd::ping::holepunch(&out, client(bootstrap), &peer, &via, opts).await
        }
        Some(Command::Testnet {
            nodes,
            port,
            bind: testnet_bind,
        }) => {
            unused("testnet")?;
            cmd::testnet::run(&out, &testnet_bind, nodes as usize, port).await
        }
        Some(Command::Demo { nodes }) => {
            unused("demo")?;
            cmd::demo::run(&out, nodes as usize).await
        }
    }
}
