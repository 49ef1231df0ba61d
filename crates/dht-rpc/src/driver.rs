//! The tokio driver: a [`Node`] owns a UDP socket and a [`Core`], sleeps until the core's
//! next timeout, feeds it datagrams, sends what it emits, and turns its events into futures
//! and streams for the caller.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use dht_rpc::{Answer, Node};
//! use futures::StreamExt;
//!
//! let node = Node::builder().bootstrap(["localhost:10000"]).bind("0.0.0.0:0").await?;
//! node.on_command("echo", |req| Answer::Value(req.value.map(bytes::Bytes::copy_from_slice)));
//! node.ready().await;
//! let target = dht_rpc::NodeId::from_bytes([7; 32]);
//! let mut replies = node.query("echo", target, Some(b"hi".to_vec().into()));
//! while let Some(reply) = replies.next().await {
//!     println!("{} answered {:?}", reply.node.addr, reply.value);
//! }
//! node.shutdown().await;
//! # Ok(()) }
//! ```

mod builder;
mod icmp;
mod io;
mod reader;
mod stream;
mod task;

use std::collections::HashMap;
use std::net::SocketAddrV4;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use bytes::Bytes;
use tokio::net::UdpSocket;
use tokio::sync::{Notify, broadcast, mpsc, oneshot, watch};

use crate::core::Core;
use crate::events::{Event, Pong, QueryError, QueryId, QueryOutcome, RequestError, RequestId};
use crate::handler::{Answer, Incoming};
use crate::machine::{Machine, MachineEvent};
use crate::query::QuerySpec;
use crate::stats::Stats;
use dht_wire::NodeId;

pub use crate::handler::{CommandFn, Handlers};
pub use builder::{BindError, DEFAULT_BOOTSTRAP_PORT, NodeBuilder, RECV_BUFFER, resolve};
pub use io::DatagramIo;
use stream::QueryMsg;
pub use stream::QueryStream;

/// What the handle and the task share, behind one lock that is never held across an await.
pub(crate) struct Shared<M: Machine> {
    pub(crate) core: M,
    pongs: HashMap<RequestId, oneshot::Sender<Result<Pong, RequestError>>>,
    pub(crate) queries: HashMap<QueryId, mpsc::UnboundedSender<QueryMsg>>,
    /// Callers waiting for an own event of the machine (see [`Machine::waiter`]).
    waiters: HashMap<u64, oneshot::Sender<M::Own>>,
    closed: bool,
    /// What the driver task sleeps until (`None`: no deadline), so that the reader thread
    /// of [`DatagramIo::Single`] wakes it only when the machine wants it sooner.
    task_deadline: Option<Instant>,
    /// Transmits from extra sockets and socket operations the reader thread took from the
    /// machine, for the task (which owns the extra sockets), oldest first.
    stashed: Vec<crate::transmit::Transmit>,
    stashed_ops: Vec<crate::transmit::SocketOp>,
}

pub(crate) struct Inner<M: Machine> {
    shared: Mutex<Shared<M>>,
    local_addr: SocketAddrV4,
    wake: Notify,
    events: broadcast::Sender<Event>,
    own: broadcast::Sender<M::Own>,
    ready: watch::Sender<bool>,
    datagrams: Mutex<Option<mpsc::Sender<(SocketAddrV4, Bytes)>>>,
    /// How many hold the main socket (the task, and the reader thread): shutdown waits for
    /// none, so that the port is free when it returns.
    holders: watch::Sender<usize>,
}

/// One holder of the main socket, counted in [`Inner::holders`] from its creation to its drop.
pub(crate) struct Holder(watch::Sender<usize>);

impl Holder {
    pub(crate) fn new<M: Machine>(inner: &Inner<M>) -> Holder {
        inner.holders.send_modify(|n| *n += 1);
        Holder(inner.holders.clone())
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

impl<M: Machine> Inner<M> {
    pub(crate) fn with_shared<R>(&self, f: impl FnOnce(&mut Shared<M>) -> R) -> R {
        let mut guard = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
        let r = f(&mut guard);
        drop(guard);
        self.wake.notify_one();
        r
    }

    /// Reads the core without waking the driver (nothing to send can come of it).
    pub(crate) fn read<R>(&self, f: impl FnOnce(&Shared<M>) -> R) -> R {
        f(&self.shared.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Hands the core's events to whoever waits for them.
    fn dispatch(&self, s: &mut Shared<M>) {
        while let Some(e) = s.core.poll_event() {
            let e = match e {
                MachineEvent::Rpc(e) => e,
                MachineEvent::Own(own) => {
                    match M::waiter(&own).and_then(|k| s.waiters.remove(&k)) {
                        Some(tx) => {
                            let _ = tx.send(own);
                        }
                        None => {
                            let _ = self.own.send(own);
                        }
                    }
                    continue;
                }
            };
            match e {
                Event::Pong { request, result } => {
                    if let Some(tx) = s.pongs.remove(&request) {
                        let _ = tx.send(result);
                    }
                }
                Event::QueryReply { query, reply } => {
                    let gone = s
                        .queries
                        .get(&query)
                        .is_some_and(|tx| tx.send(QueryMsg::Reply(reply)).is_err());
                    if gone {
                        s.queries.remove(&query);
                        s.core.rpc_mut().cancel_query(query);
                    }
                }
                Event::QueryDone { query, result } => {
                    if let Some(tx) = s.queries.remove(&query) {
                        let _ = tx.send(QueryMsg::Done(result));
                    }
                }
                Event::Unrecognized { from, payload } => {
                    let tx = self
                        .datagrams
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner);
                    // A full queue drops: the application reads too slowly.
                    if let Some(tx) = tx.as_ref() {
                        let _ = tx.try_send((from, payload));
                    }
                }
                Event::Ready => {
                    self.ready.send_replace(true);
                    let _ = self.events.send(Event::Ready);
                }
                other => {
                    let _ = self.events.send(other);
                }
            }
        }
    }
}

/// A dht-rpc node on a UDP socket: the driver of a dht-rpc [`Core`].
pub type Node<H = Handlers> = Driver<Core<H>>;

/// A weak handle of a [`Node`].
pub type WeakNode<H = Handlers> = WeakDriver<Core<H>>;

/// A [`Machine`] on a UDP socket: dht-rpc's core ([`Node`]) or a layer's that wraps it.
/// Cheap to clone; the node shuts down when the last clone is dropped or
/// [`Driver::shutdown`] is called.
pub struct Driver<M: Machine> {
    inner: Arc<Inner<M>>,
    _guard: Arc<ShutdownOnDrop<M>>,
}

impl<M: Machine> Clone for Driver<M> {
    fn clone(&self) -> Self {
        Driver {
            inner: self.inner.clone(),
            _guard: self._guard.clone(),
        }
    }
}

/// A handle that does not keep the node alive; [`WeakDriver::upgrade`] gives a [`Driver`]
/// while the node runs.
pub struct WeakDriver<M: Machine> {
    inner: std::sync::Weak<Inner<M>>,
    guard: std::sync::Weak<ShutdownOnDrop<M>>,
}

impl<M: Machine> Clone for WeakDriver<M> {
    fn clone(&self) -> Self {
        WeakDriver {
            inner: self.inner.clone(),
            guard: self.guard.clone(),
        }
    }
}

impl<M: Machine> WeakDriver<M> {
    /// The node, unless every [`Driver`] handle is gone.
    pub fn upgrade(&self) -> Option<Driver<M>> {
        Some(Driver {
            inner: self.inner.upgrade()?,
            _guard: self.guard.upgrade()?,
        })
    }
}

struct ShutdownOnDrop<M: Machine>(Arc<Inner<M>>);

impl<M: Machine> Drop for ShutdownOnDrop<M> {
    fn drop(&mut self) {
        close(&self.0);
    }
}

/// How long [`Driver::shutdown`] waits at most for the socket to close (the reader thread
/// notices within its read timeout even if its wake-up datagram is lost).
const SHUTDOWN_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

fn close<M: Machine>(inner: &Inner<M>) {
    inner.with_shared(|s| {
        if !s.closed {
            s.closed = true;
            s.waiters.clear();
            s.core.rpc_mut().cancel_all();
            inner.dispatch(s);
        }
    });
}

impl Driver<Core<Handlers>> {
    /// A builder for a node whose application commands are answered by closures.
    pub fn builder() -> NodeBuilder {
        NodeBuilder::default()
    }

    /// Answers `command` with `f` from now on (replacing any earlier closure). `f` runs
    /// inside the node's lock: keep it short and never block in it.
    pub fn on_command(
        &self,
        command: impl Into<String>,
        f: impl FnMut(&Incoming<'_>) -> Answer + Send + 'static,
    ) {
        let command = command.into();
        self.with_core(|c| c.handler_mut().insert(command, Box::new(f)));
    }
}

impl<M: Machine> Driver<M> {
    /// Runs `machine` on `socket` (bound to `local_addr`) in a new tokio task, reading and
    /// writing it as `io` says; with `bootstrap`, starts its first bootstrap at once.
    ///
    /// The socket is used as given: unlike [`NodeBuilder`], which asks the kernel for a
    /// receive buffer of [`RECV_BUFFER`] bytes, this leaves its buffer sizes alone (set them
    /// yourself, with `socket2` say, before a node that must take bursts).
    pub fn start(
        socket: UdpSocket,
        local_addr: SocketAddrV4,
        machine: M,
        bootstrap: bool,
        io: DatagramIo,
    ) -> Self {
        let (events, _) = broadcast::channel(1024);
        let (own, _) = broadcast::channel(1024);
        let inner = Arc::new(Inner {
            shared: Mutex::new(Shared {
                core: machine,
                pongs: HashMap::new(),
                queries: HashMap::new(),
                waiters: HashMap::new(),
                closed: false,
                task_deadline: None,
                stashed: Vec::new(),
                stashed_ops: Vec::new(),
            }),
            local_addr,
            wake: Notify::new(),
            events,
            own,
            ready: watch::channel(false).0,
            datagrams: Mutex::new(None),
            holders: watch::channel(0).0,
        });
        let holder = Holder::new(&inner);
        tokio::spawn(task::run(inner.clone(), socket, io, holder));
        let node = Driver {
            _guard: Arc::new(ShutdownOnDrop(inner.clone())),
            inner,
        };
        if bootstrap {
            node.with_core(|c| c.bootstrap(Instant::now()));
        }
        node
    }

    /// Reads the dht-rpc core (routing table, stats, handler state) without waking the
    /// driver.
    pub fn read_core<R>(&self, f: impl FnOnce(&Core<M::Handler>) -> R) -> R {
        self.inner.read(|s| f(s.core.rpc()))
    }

    /// Up to `n` contacts of the routing table, closest to our id first: nodes that answered
    /// us. Save them and give them to [`NodeBuilder::bootstrap`] at the next start, and the
    /// node comes up without its configured bootstrap (they are pinged like any bootstrap
    /// node, so a stale one costs a timeout, nothing more).
    pub fn contacts(&self, n: usize) -> Vec<dht_wire::NodeAddr> {
        self.read_core(|c| c.table().closest(&c.table().own_id(), n))
    }

    /// Reads the machine without waking the driver.
    pub fn read_machine<R>(&self, f: impl FnOnce(&M) -> R) -> R {
        self.inner.read(|s| f(&s.core))
    }

    /// A handle that does not keep the node alive (for background tasks).
    pub fn downgrade(&self) -> WeakDriver<M> {
        WeakDriver {
            inner: Arc::downgrade(&self.inner),
            guard: Arc::downgrade(&self._guard),
        }
    }

    /// Runs `f` on the dht-rpc core, then lets the driver send what it emitted.
    pub fn with_core<R>(&self, f: impl FnOnce(&mut Core<M::Handler>) -> R) -> R {
        self.with_machine(|m| f(m.rpc_mut()))
    }

    /// Runs `f` on the machine, then lets the driver send what it emitted.
    pub fn with_machine<R>(&self, f: impl FnOnce(&mut M) -> R) -> R {
        self.inner.with_shared(|s| {
            let r = f(&mut s.core);
            self.inner.dispatch(s);
            r
        })
    }

    /// Starts something on the machine that ends with an own event (`start` returns the
    /// key [`Machine::waiter`] gives that event), and waits for that event; `None` if the
    /// node shut down first.
    pub async fn own_request(&self, start: impl FnOnce(&mut M) -> u64) -> Option<M::Own> {
        let (tx, rx) = oneshot::channel();
        self.inner.with_shared(|s| {
            if s.closed {
                return;
            }
            let key = start(&mut s.core);
            s.waiters.insert(key, tx);
            self.inner.dispatch(s);
        });
        rx.await.ok()
    }

    /// Follows a query that `start` starts on the machine (a layer's own walk, such as an
    /// unannounce); `None` from `start` gives a stream that ends at once, successfully
    /// empty.
    pub fn machine_query(&self, start: impl FnOnce(&mut M) -> Option<QueryId>) -> QueryStream<M> {
        let (tx, rx) = mpsc::unbounded_channel();
        let id = self.inner.with_shared(|s| {
            let id = if s.closed { None } else { start(&mut s.core) };
            match id {
                Some(id) => {
                    s.queries.insert(id, tx);
                    self.inner.dispatch(s);
                    id
                }
                None => {
                    let result = if s.closed {
                        Err(QueryError::Cancelled)
                    } else {
                        Ok(QueryOutcome::default())
                    };
                    let _ = tx.send(QueryMsg::Done(result));
                    QueryId(u64::MAX)
                }
            }
        });
        QueryStream {
            id,
            rx,
            inner: Arc::downgrade(&self.inner),
            outcome: None,
        }
    }

    /// Follows the queries that `start` starts on the machine in one call (the unannounces
    /// of a node's shutdown, say): a stream each, in order.
    pub fn machine_queries(
        &self,
        start: impl FnOnce(&mut M) -> Vec<QueryId>,
    ) -> Vec<QueryStream<M>> {
        self.inner.with_shared(|s| {
            if s.closed {
                return Vec::new();
            }
            let streams = start(&mut s.core)
                .into_iter()
                .map(|id| {
                    let (tx, rx) = mpsc::unbounded_channel();
                    s.queries.insert(id, tx);
                    QueryStream {
                        id,
                        rx,
                        inner: Arc::downgrade(&self.inner),
                        outcome: None,
                    }
                })
                .collect();
            self.inner.dispatch(s);
            streams
        })
    }

    /// The machine's own events that no caller waits for.
    pub fn own_events(&self) -> broadcast::Receiver<M::Own> {
        self.inner.own.subscribe()
    }

    /// The address the socket is bound to.
    pub fn local_addr(&self) -> SocketAddrV4 {
        self.inner.local_addr
    }

    /// Our node id (not sent when ephemeral).
    pub fn id(&self) -> NodeId {
        self.read_core(|c| c.id())
    }

    /// Counters of what the node received, sent and dropped.
    pub fn stats(&self) -> Stats {
        self.read_core(|c| c.stats())
    }

    /// Node added / removed, hole punches relayed, readiness.
    pub fn events(&self) -> broadcast::Receiver<Event> {
        self.inner.events.subscribe()
    }

    /// Sends an application datagram from the node's socket (to a peer a hole punch
    /// reached, say). It must not decode as the protocol: start it with bytes that cannot,
    /// such as `[0, 0, 7]` (a protobuf field of the invalid wire type 7).
    pub fn send_datagram(&self, to: SocketAddrV4, payload: Bytes) {
        self.with_core(|c| c.send_datagram(to, payload));
    }

    /// From now on, datagrams that are not of the protocol arrive here (at most 1024
    /// waiting; more are dropped) instead of being dropped as malformed. A second call
    /// replaces the first receiver.
    pub fn datagrams(&self) -> mpsc::Receiver<(SocketAddrV4, Bytes)> {
        let (tx, rx) = mpsc::channel(1024);
        *self
            .inner
            .datagrams
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(tx);
        self.with_core(|c| c.set_deliver_unrecognized(true));
        rx
    }

    /// Waits until the first bootstrap has finished (at once if it has).
    pub async fn ready(&self) {
        let mut rx = self.inner.ready.subscribe();
        let _ = rx.wait_for(|r| *r).await;
    }

    /// Bootstraps again: a `_find_node` query for our own id. Call it now and then when
    /// the node does no other queries, to keep its routing table fresh.
    pub async fn bootstrap(&self) -> Result<QueryOutcome, QueryError> {
        let stream = self.start_query(|c| c.bootstrap(Instant::now()));
        stream.collect_all().await.map(|(_, o)| o)
    }

    /// Pings a node: our address as it sees us, its id, the round-trip time.
    pub async fn ping(&self, to: SocketAddrV4) -> Result<Pong, RequestError> {
        self.request(|c| c.ping(Instant::now(), to)).await
    }

    /// Asks `referrer` to relay a ping to `peer`, which answers us directly.
    pub async fn holepunch(
        &self,
        peer: SocketAddrV4,
        referrer: SocketAddrV4,
    ) -> Result<Pong, RequestError> {
        self.request(|c| c.holepunch(Instant::now(), peer, referrer))
            .await
    }

    /// [`Node::holepunch`] with a hint in the ping for a peer of ours (see
    /// [`Event::PunchRequest`]).
    pub async fn holepunch_with(
        &self,
        peer: SocketAddrV4,
        referrer: SocketAddrV4,
        value: Bytes,
    ) -> Result<Pong, RequestError> {
        self.request(|c| c.holepunch_with(Instant::now(), peer, referrer, Some(value)))
            .await
    }

    async fn request(
        &self,
        start: impl FnOnce(&mut Core<M::Handler>) -> RequestId,
    ) -> Result<Pong, RequestError> {
        let (tx, rx) = oneshot::channel();
        self.inner.with_shared(|s| {
            if s.closed {
                return;
            }
            let id = start(s.core.rpc_mut());
            s.pongs.insert(id, tx);
            // The core may have failed it at once (overloaded).
            self.inner.dispatch(s);
        });
        rx.await.unwrap_or(Err(RequestError::Cancelled))
    }

    /// Starts a query of `command` for `target`; its replies stream in as nodes answer.
    pub fn query(
        &self,
        command: impl Into<String>,
        target: NodeId,
        value: Option<Bytes>,
    ) -> QueryStream<M> {
        self.run_query(QuerySpec::query(command, target, value))
    }

    /// Starts an update: a query round, then a commit round with roundtrip tokens to the
    /// closest nodes. Only the commit round's replies are reported.
    pub fn update(
        &self,
        command: impl Into<String>,
        target: NodeId,
        value: Option<Bytes>,
    ) -> QueryStream<M> {
        self.run_query(QuerySpec::update(command, target, value))
    }

    /// Starts any query or update.
    pub fn run_query(&self, spec: QuerySpec) -> QueryStream<M> {
        self.start_query(|c| c.query(Instant::now(), spec))
    }

    fn start_query(&self, start: impl FnOnce(&mut Core<M::Handler>) -> QueryId) -> QueryStream<M> {
        self.machine_query(|m| Some(start(m.rpc_mut())))
    }

    /// Stops the node: pending requests and queries fail with `Cancelled`, the socket closes
    /// (once the driver task, and with [`DatagramIo::Single`] its reader thread, saw it).
    pub async fn shutdown(&self) {
        close(&self.inner);
        // Until the socket is closed (the task and the reader thread let go of it), so that
        // the port can be bound again at once; at most a few seconds.
        let mut holders = self.inner.holders.subscribe();
        let _ = tokio::time::timeout(SHUTDOWN_WAIT, holders.wait_for(|n| *n == 0)).await;
    }
}
