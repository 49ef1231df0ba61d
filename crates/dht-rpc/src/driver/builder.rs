//! [`NodeBuilder`]: options, address resolution and binding.

use std::net::{SocketAddr, SocketAddrV4};
use std::time::Duration;

use dht_wire::NodeId;
use tokio::net::UdpSocket;

use super::{Driver, Handlers, Node};
use crate::config::{Config, Maintenance};
use crate::core::Core;
use crate::handler::Handler;
use crate::machine::Machine;

/// The port of a bootstrap address given without one, as in the reference.
pub const DEFAULT_BOOTSTRAP_PORT: u16 = 49737;

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BindError {
    /// The socket could not be bound: the port is in use, or the address is not ours. The
    /// message carries the operating system's reason ("Address already in use").
    #[error("cannot bind a UDP socket on {addr}: {error}")]
    Bind {
        /// The address asked for.
        addr: String,
        /// The operating system's error (in the message, so not repeated as a source).
        error: std::io::Error,
    },
    /// A bootstrap or bind address did not resolve to an IPv4 address.
    #[error("cannot resolve {addr:?} to an IPv4 address")]
    Resolve {
        /// The address as given.
        addr: String,
        /// The resolver's error, if it gave one.
        #[source]
        source: Option<std::io::Error>,
    },
}

/// Options of a [`Node`]; the defaults are the reference's, but for [`Maintenance`], which
/// is on (a re-bootstrap every 5 to 65 seconds).
#[derive(Debug, Clone)]
pub struct NodeBuilder {
    config: Config,
    /// The seed asked for; random when `None` (0 is a seed like any other).
    seed: Option<u64>,
    bootstrap: Vec<String>,
    no_bootstrap_on_start: bool,
    io: super::DatagramIo,
}

impl Default for NodeBuilder {
    fn default() -> Self {
        NodeBuilder {
            config: Config {
                maintenance: Some(Maintenance::default()),
                ..Config::default()
            },
            seed: None,
            bootstrap: Vec::new(),
            no_bootstrap_on_start: false,
            io: super::DatagramIo::default(),
        }
    }
}

impl NodeBuilder {
    /// Entry nodes, as `host[:port]` (port 49737 when absent).
    pub fn bootstrap<I, S>(mut self, nodes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.bootstrap.extend(nodes.into_iter().map(Into::into));
        self
    }

    /// Our node id (random otherwise).
    pub fn id(mut self, id: NodeId) -> Self {
        self.config.id = Some(id);
        self
    }

    /// An ephemeral node sends no id, so nobody adds it to a routing table.
    pub fn ephemeral(mut self, ephemeral: bool) -> Self {
        self.config.ephemeral = ephemeral;
        self
    }

    /// Checks whether nodes we never sent to can reach us, and sends no id while they
    /// cannot (see [`Config::adaptive`](crate::Config::adaptive)). Off by default.
    pub fn adaptive(mut self, adaptive: bool) -> Self {
        self.config.adaptive = adaptive;
        self
    }

    /// The defences against hostile networks (defaults protect a public node).
    pub fn defences(mut self, defences: crate::Defences) -> Self {
        self.config.defences = defences;
        self
    }

    /// Adds ranges whose sources skip the per-source limits (loopback is trusted by
    /// default): a private cluster, or a test network whose nodes share one IP.
    pub fn trust(mut self, ranges: impl IntoIterator<Item = crate::guard::Ipv4Range>) -> Self {
        self.config.defences.trusted.extend(ranges);
        self
    }

    /// Treats loopback like any other source (trusted by default, so that local test
    /// networks work): for trying the defences on one machine.
    pub fn distrust_loopback(mut self) -> Self {
        self.config
            .defences
            .trusted
            .retain(|r| *r != crate::guard::dest::LOOPBACK);
        self
    }

    /// Requests in flight at once (16).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.config.concurrency = n.max(1);
        self
    }

    /// How long a request waits for its answer (1.25 s). A walk moves on sooner, after the
    /// round trip it expects (see [`crate::rtt`]); this is the ceiling of that wait.
    pub fn request_timeout(mut self, t: Duration) -> Self {
        self.config.request_timeout = t;
        self
    }

    /// The least time a walk waits for a node's answer before it asks the next candidate
    /// (50 ms). Raise it on a machine so loaded that answers on loopback take longer.
    pub fn rto_floor(mut self, t: Duration) -> Self {
        self.config.rto_floor = t;
        self
    }

    /// Seeds the node's random choices, for reproducible runs (random otherwise).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// The node's own maintenance (re-bootstrap, bucket refresh, reachability rounds);
    /// `None` turns it off. On by default: see [`Maintenance`].
    pub fn maintenance(mut self, maintenance: Option<Maintenance>) -> Self {
        self.config.maintenance = maintenance;
        self
    }

    /// How the socket is read and written: batched by default (see [`super::DatagramIo`]).
    pub fn datagram_io(mut self, io: super::DatagramIo) -> Self {
        self.io = io;
        self
    }

    /// Do not bootstrap when the node starts (call [`Node::bootstrap`] yourself).
    pub fn no_bootstrap_on_start(mut self) -> Self {
        self.no_bootstrap_on_start = true;
        self
    }

    /// Binds the socket (`"0.0.0.0:0"` for any address, a random port) and starts a node
    /// whose application commands are answered by closures.
    pub async fn bind(self, addr: &str) -> Result<Node<Handlers>, BindError> {
        self.bind_with(addr, Handlers::default()).await
    }

    /// Binds the socket and starts a node whose commands `handler` answers.
    pub async fn bind_with<H: Handler + Send + 'static>(
        self,
        addr: &str,
        handler: H,
    ) -> Result<Node<H>, BindError> {
        self.bind_machine(addr, handler, |core| core).await
    }

    /// Binds the socket and starts a machine that `wrap` builds around the dht-rpc core
    /// (a layer such as hyperdht's), on the same driver.
    pub async fn bind_machine<H: Handler + Send + 'static, M: Machine<Handler = H>>(
        mut self,
        addr: &str,
        handler: H,
        wrap: impl FnOnce(Core<H>) -> M,
    ) -> Result<Driver<M>, BindError> {
        let bind = resolve(addr, None).await?;
        // A name that does not resolve is logged and left out (and tried again later); only
        // when none of several resolves does the node not start.
        let mut first_error = None;
        for b in &self.bootstrap {
            match resolve(b, Some(DEFAULT_BOOTSTRAP_PORT)).await {
                Ok(a) => self.config.bootstrap.push(a),
                Err(e) => {
                    tracing::warn!(bootstrap = %b, error = %e, "bootstrap node left out");
                    first_error.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_error
            && self.config.bootstrap.is_empty()
        {
            return Err(e);
        }
        self.config.seed = self.seed.unwrap_or_else(rand::random);
        let socket = UdpSocket::bind(SocketAddr::V4(bind))
            .await
            .map_err(|error| BindError::Bind {
                addr: addr.to_owned(),
                error,
            })?;
        set_buffers(&socket);
        let local = match socket.local_addr() {
            Ok(SocketAddr::V4(a)) => a,
            Ok(SocketAddr::V6(_)) | Err(_) => bind,
        };
        let mut core = Core::with_handler(self.config, handler, std::time::Instant::now());
        core.set_local_port(local.port());
        let driver = Driver::start(
            socket,
            local,
            wrap(core),
            !self.no_bootstrap_on_start,
            self.io,
        );
        // Names (not literal addresses) are resolved again every few minutes, so that a
        // bootstrap host that moves, or whose name failed at start, is found again.
        if self.bootstrap.iter().any(|b| resolve_literal(b).is_none()) {
            tokio::spawn(re_resolve(driver.downgrade(), self.bootstrap));
        }
        Ok(driver)
    }
}

/// The receive buffer a node asks for: room for a burst of a thousand datagrams or more
/// while the node is busy, where the kernel's default (208 KiB on most systems) holds a few
/// hundred and drops the rest unseen. The kernel grants at most `net.core.rmem_max`.
pub const RECV_BUFFER: usize = 1 << 20;

/// Asks for [`RECV_BUFFER`] on `socket` and logs what the kernel granted.
#[cfg(target_os = "linux")]
fn set_buffers(socket: &UdpSocket) {
    use rustix::net::sockopt;
    if let Err(e) = sockopt::set_socket_recv_buffer_size(socket, RECV_BUFFER) {
        tracing::debug!(error = %e, "cannot set SO_RCVBUF");
    }
    match sockopt::socket_recv_buffer_size(socket) {
        // Linux reports twice what it grants for data (the rest is its bookkeeping).
        Ok(got) if got / 2 < RECV_BUFFER => tracing::debug!(
            bytes = got,
            asked = RECV_BUFFER,
            "receive buffer smaller than asked: raise net.core.rmem_max for more"
        ),
        Ok(got) => tracing::debug!(bytes = got, "receive buffer"),
        Err(e) => tracing::debug!(error = %e, "cannot read SO_RCVBUF"),
    }
}

#[cfg(not(target_os = "linux"))]
fn set_buffers(_socket: &UdpSocket) {}

/// How often bootstrap names are resolved again at least (and after every re-bootstrap).
const RE_RESOLVE: std::time::Duration = std::time::Duration::from_secs(300);

/// `host:port` when `host` is a literal IPv4 address.
fn resolve_literal(addr: &str) -> Option<SocketAddrV4> {
    addr.parse().ok().or_else(|| {
        addr.parse::<std::net::Ipv4Addr>()
            .ok()
            .map(|ip| SocketAddrV4::new(ip, DEFAULT_BOOTSTRAP_PORT))
    })
}

/// Resolves `names` again after each re-bootstrap the core's maintenance starts (so each
/// bootstrap uses names resolved since the one before), and every [`RE_RESOLVE`] at least;
/// hands the core what resolved (keeping the previous list when nothing does), while the
/// node lives.
async fn re_resolve<M: Machine>(node: super::WeakDriver<M>, names: Vec<String>) {
    let mut seen = None;
    let mut last = std::time::Instant::now();
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        let Some(strong) = node.upgrade() else {
            return;
        };
        let count = strong.read_core(|c| c.stats().rebootstraps);
        drop(strong);
        if seen.is_some_and(|s| s == count) && last.elapsed() < RE_RESOLVE {
            continue;
        }
        let first = seen.is_none();
        seen = Some(count);
        last = std::time::Instant::now();
        if first {
            continue; // resolved at bind
        }
        let mut found = Vec::new();
        for b in &names {
            match resolve(b, Some(DEFAULT_BOOTSTRAP_PORT)).await {
                Ok(a) => found.push(a),
                Err(e) => tracing::warn!(bootstrap = %b, error = %e, "bootstrap node left out"),
            }
        }
        let Some(strong) = node.upgrade() else {
            return;
        };
        if !found.is_empty() {
            strong.with_core(|c| c.set_bootstrap_nodes(found));
        }
    }
}

/// Resolves `host[:port]` to an IPv4 address; `default_port` when the port is absent.
pub async fn resolve(addr: &str, default_port: Option<u16>) -> Result<SocketAddrV4, BindError> {
    let err = |source| BindError::Resolve {
        addr: addr.to_owned(),
        source,
    };
    let with_port = match (addr.rsplit_once(':'), default_port) {
        (Some((_, p)), _) if p.parse::<u16>().is_ok() => addr.to_owned(),
        // A port that is not a number is a malformed address, not a missing port.
        (Some((_, p)), _) if !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()) => {
            return Err(err(None));
        }
        (_, Some(p)) => format!("{addr}:{p}"),
        (_, None) => return Err(err(None)),
    };
    // A name that cannot be a hostname is refused here, without asking a resolver.
    let host = with_port.rsplit_once(':').map_or("", |(h, _)| h);
    let plausible = !host.is_empty()
        && host.len() <= 253
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
    if !plausible {
        return Err(err(None));
    }
    let found = tokio::net::lookup_host(with_port)
        .await
        .map_err(|e| err(Some(e)))?;
    for a in found {
        if let SocketAddr::V4(v4) = a {
            return Ok(v4);
        }
    }
    Err(err(None))
}
