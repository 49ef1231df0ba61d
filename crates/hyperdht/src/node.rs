//! [`HyperDht`]: the user's handle, a dht-rpc node whose handler is the peer store.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Instant;

use dht_rpc::{
    Answer, BindError, Driver, Event, Incoming, NodeAddr, NodeBuilder, NodeId, Pong, QueryError,
    RequestError, Stats,
};
use dht_wire::{Key, PeersRequestType};
use tokio::sync::broadcast;

use crate::events::PeerEvent;
pub use crate::options::{AnnounceOptions, LookupOptions};
use crate::reply::{PeersStream, to_reply};
use crate::serve::PeersHandler;
use crate::store::{DEFAULT_MAX, DEFAULT_MAX_AGE, PeerStore, Quotas};
use dht_rpc::guard::Ipv4Range;

/// Options of a [`HyperDht`]: the peer store's and those that concern both layers (trust,
/// seed) here, dht-rpc's through [`HyperDhtBuilder::rpc`]; `bootstrap` is a shortcut for it.
#[derive(Debug, Default, Clone)]
pub struct HyperDhtBuilder {
    rpc: NodeBuilder,
    seed: Option<u64>,
    quotas: Option<Quotas>,
    trusted: Vec<Ipv4Range>,
    distrust_loopback: bool,
    relay: Option<crate::relay::RelayLimits>,
}

impl HyperDhtBuilder {
    /// Entry nodes, as `host[:port]` (port 49737 when absent).
    pub fn bootstrap<I, S>(mut self, nodes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.rpc = self.rpc.bootstrap(nodes);
        self
    }

    /// Sets the dht-rpc options (id, ephemeral, adaptive, defences, concurrency, timeouts,
    /// maintenance: everything of [`NodeBuilder`]) on the builder underneath.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// use hyperdht::HyperDht;
    ///
    /// let dht = HyperDht::builder()
    ///     .bootstrap(["localhost:10000"])
    ///     .rpc(|b| b.ephemeral(true).adaptive(false).maintenance(None))
    ///     .bind("0.0.0.0:0")
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn rpc(mut self, f: impl FnOnce(NodeBuilder) -> NodeBuilder) -> Self {
        self.rpc = f(self.rpc);
        self
    }

    /// What one announcer IP or /24 may hold in the peer store (see [`Quotas`]).
    pub fn quotas(mut self, quotas: Quotas) -> Self {
        self.quotas = Some(quotas);
        self
    }

    /// Sources in these ranges skip the per-source limits of the core and the store
    /// quotas (loopback always does): a private cluster, or a test network whose nodes
    /// share one IP. The destination rules still apply.
    pub fn trust(mut self, ranges: impl IntoIterator<Item = Ipv4Range>) -> Self {
        let ranges: Vec<Ipv4Range> = ranges.into_iter().collect();
        self.rpc = self.rpc.trust(ranges.iter().copied());
        self.trusted.extend(ranges);
        self
    }

    /// Treats loopback like any other source (it is trusted by default so that local test
    /// networks work): for trying the defences on one machine.
    pub fn distrust_loopback(mut self) -> Self {
        self.rpc = self.rpc.distrust_loopback();
        self.distrust_loopback = true;
        self
    }

    /// Seeds the node's random choices, for reproducible runs.
    pub fn seed(mut self, seed: u64) -> Self {
        self.rpc = self.rpc.seed(seed);
        self.seed = Some(seed);
        self
    }

    /// Serves as a relay for peers that cannot punch (off by default), within `limits`
    /// (see [`crate::relay`]; `RelayLimits::default()` are libp2p relay v2's).
    pub fn relay(mut self, limits: crate::relay::RelayLimits) -> Self {
        self.relay = Some(limits);
        self
    }

    /// Binds the socket (`"0.0.0.0:0"`: any address, a random port) and starts the node; it
    /// bootstraps at once.
    pub async fn bind(self, addr: &str) -> Result<HyperDht, BindError> {
        let mut quotas = self.quotas.unwrap_or_default();
        if self.distrust_loopback {
            quotas
                .trusted
                .retain(|r| *r != dht_rpc::guard::dest::LOOPBACK);
        }
        quotas.trusted.extend(self.trusted);
        let store = PeerStore::with_quotas(DEFAULT_MAX, DEFAULT_MAX_AGE, quotas);
        let handler = PeersHandler::new(store, self.seed.unwrap_or_else(rand::random));
        let relay = self.relay;
        let node = self
            .rpc
            .bind_machine(addr, handler, |rpc| {
                let mut core = crate::core::Core::new(rpc, std::time::Instant::now());
                core.set_relay(relay);
                core
            })
            .await?;
        Ok(HyperDht { node })
    }
}

/// A hyperdht node: announce and look up keys, ping, hole-punch.
#[derive(Clone)]
pub struct HyperDht {
    pub(crate) node: Driver<crate::core::Core>,
}

impl HyperDht {
    /// A builder with the reference's defaults.
    pub fn builder() -> HyperDhtBuilder {
        HyperDhtBuilder::default()
    }

    /// The dht-rpc node underneath.
    pub fn rpc(&self) -> &Driver<crate::core::Core> {
        &self.node
    }

    /// Up to `n` contacts of the routing table, closest to our id first (see
    /// [`dht_rpc::Driver::contacts`]): keep them across restarts and pass them to
    /// [`HyperDhtBuilder::bootstrap`].
    pub fn contacts(&self, n: usize) -> Vec<dht_rpc::NodeAddr> {
        self.rpc().contacts(n)
    }

    /// Our node id.
    pub fn id(&self) -> NodeId {
        self.node.id()
    }

    /// The address the socket is bound to.
    pub fn local_addr(&self) -> SocketAddrV4 {
        self.node.local_addr()
    }

    /// Counters of the node's traffic.
    pub fn stats(&self) -> Stats {
        self.node.stats()
    }

    /// Announce, unannounce and lookup requests this node served (the core's
    /// [`crate::CoreEvent::Peer`] events).
    pub fn events(&self) -> PeerEvents {
        PeerEvents {
            rx: Some(self.node.own_events()),
        }
    }

    /// dht-rpc's events: nodes added and removed, hole punches relayed, readiness.
    pub fn rpc_events(&self) -> broadcast::Receiver<Event> {
        self.node.events()
    }

    /// Answers an application command of our own beside `peers`.
    pub fn on_command(
        &self,
        command: impl Into<String>,
        f: impl FnMut(&Incoming<'_>) -> Answer + Send + 'static,
    ) {
        let command = command.into();
        self.node
            .with_core(|c| c.handler_mut().commands.insert(command, Box::new(f)));
    }

    /// Waits for the first bootstrap to finish. Not needed before announcing or looking up.
    pub async fn ready(&self) {
        self.node.ready().await;
    }

    /// Bootstraps again; call it now and then when the node does nothing else.
    pub async fn bootstrap(&self) -> Result<(), QueryError> {
        self.node.bootstrap().await.map(|_| ())
    }

    /// Announces that we listen on `key`. The stream carries the peers met on the way (the
    /// query round's replies too, as the reference's). Re-announce every 4-5 minutes, or use
    /// [`HyperDht::announce_and_keep`].
    pub fn announce(&self, key: Key, opts: AnnounceOptions) -> PeersStream {
        self.peers_query(key, PeersRequestType::Announce, opts, |m, now| {
            m.announce(now, key, opts)
        })
    }

    /// Finds the peers announced on `key`.
    pub fn lookup(&self, key: Key, opts: LookupOptions) -> PeersStream {
        self.peers_query(key, PeersRequestType::Lookup, opts, |m, now| {
            m.lookup(now, key, opts)
        })
    }

    /// Removes our announcement on `key` (pass the options used to announce).
    pub async fn unannounce(&self, key: Key, opts: AnnounceOptions) -> Result<(), QueryError> {
        self.node
            .machine_query(|m| Some(m.unannounce(Instant::now(), key, opts)))
            .collect_all()
            .await
            .map(|_| ())
    }

    /// A walk started by `start`, after our own answer when our store holds the key.
    fn peers_query(
        &self,
        key: Key,
        kind: PeersRequestType,
        opts: AnnounceOptions,
        start: impl FnOnce(&mut crate::core::Core, Instant) -> dht_rpc::QueryId,
    ) -> PeersStream {
        let port = self.local_addr().port();
        let own = NodeAddr {
            id: self.id(),
            addr: SocketAddrV4::new(Ipv4Addr::LOCALHOST, port),
        };
        let first: VecDeque<_> = self
            .node
            .with_machine(|m| m.own_answer(Instant::now(), key, kind, opts, port))
            .map(|res| to_reply(own, res, opts.local_address))
            .into_iter()
            .collect();
        PeersStream {
            first,
            inner: self.node.machine_query(|m| Some(start(m, Instant::now()))),
            local: opts.local_address,
        }
    }

    /// The core's events that nobody waits for: the outcome of every re-announce of a
    /// kept announcement ([`crate::CoreEvent::Announced`]).
    pub fn core_events(&self) -> broadcast::Receiver<crate::CoreEvent> {
        self.node.own_events()
    }

    /// Pings a node: our address as it sees us, its id, the round-trip time.
    ///
    /// The address is resolved already; [`HyperDht::ping_host`] takes `"host:port"`:
    ///
    /// ```no_run
    /// # async fn run(dht: hyperdht::HyperDht) -> Result<(), Box<dyn std::error::Error>> {
    /// let pong = dht.ping_host("localhost:10000").await?;
    /// println!("{:?} sees us as {:?}", pong.id, pong.observed);
    /// # Ok(()) }
    /// ```
    pub async fn ping(&self, to: SocketAddrV4) -> Result<Pong, RequestError> {
        self.node.ping(to).await
    }

    /// [`HyperDht::ping`] of `"host[:port]"` (port 49737 when absent), as the builder's
    /// `bind` and `bootstrap` take addresses.
    pub async fn ping_host(&self, addr: &str) -> Result<Pong, PingError> {
        let to =
            dht_rpc::driver::resolve(addr, Some(dht_rpc::driver::DEFAULT_BOOTSTRAP_PORT)).await?;
        Ok(self.ping(to).await?)
    }

    /// Stops the node, after unannouncing what it keeps announced
    /// ([`HyperDht::announce_and_keep`]), for at most [`SHUTDOWN_UNANNOUNCE`].
    pub async fn shutdown(&self) {
        self.shutdown_within(SHUTDOWN_UNANNOUNCE).await;
    }

    /// Stops the node, after unannouncing what it keeps announced for at most `limit` (the
    /// unannounces still running then are abandoned: the entries expire on their own within
    /// about 6 minutes).
    pub async fn shutdown_within(&self, limit: std::time::Duration) {
        let walks = self.node.machine_queries(|m| m.shutdown(Instant::now()));
        if !walks.is_empty() {
            let unannounces = walks.into_iter().map(|w| w.collect_all());
            let done = tokio::time::timeout(limit, futures::future::join_all(unannounces)).await;
            if done.is_err() {
                tracing::info!(?limit, "shutdown: unannounces not all done in time");
            }
        }
        self.node.shutdown().await;
    }
}

/// The `peers` requests a node served ([`HyperDht::events`]): the core's
/// [`crate::CoreEvent::Peer`] events, from a broadcast channel of the core's events.
#[derive(Debug)]
pub struct PeerEvents {
    rx: Option<broadcast::Receiver<crate::CoreEvent>>,
}

impl PeerEvents {
    /// A receiver that never yields (for a caller that wants no backlog kept, say).
    pub fn none() -> Self {
        PeerEvents { rx: None }
    }

    /// The next event. `Lagged` when the receiver fell behind and missed some (the channel
    /// keeps the most recent 1024 of the core's events); `Closed` once the node stopped.
    pub async fn recv(&mut self) -> Result<PeerEvent, broadcast::error::RecvError> {
        let Some(rx) = &mut self.rx else {
            return std::future::pending().await;
        };
        loop {
            if let crate::CoreEvent::Peer(e) = rx.recv().await? {
                return Ok(e);
            }
        }
    }

    /// The next event if one is queued now.
    pub fn try_recv(&mut self) -> Result<PeerEvent, broadcast::error::TryRecvError> {
        let Some(rx) = &mut self.rx else {
            return Err(broadcast::error::TryRecvError::Empty);
        };
        loop {
            if let crate::CoreEvent::Peer(e) = rx.try_recv()? {
                return Ok(e);
            }
        }
    }
}

/// Why [`HyperDht::ping_host`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PingError {
    /// The address did not resolve.
    #[error(transparent)]
    Resolve(#[from] dht_rpc::BindError),
    /// The node did not answer.
    #[error(transparent)]
    Request(#[from] RequestError),
}

/// How long [`HyperDht::shutdown`] waits for the unannounces of kept announcements.
pub const SHUTDOWN_UNANNOUNCE: std::time::Duration = std::time::Duration::from_secs(3);
