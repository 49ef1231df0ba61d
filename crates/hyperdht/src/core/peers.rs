//! The `peers` operations of a [`Core`]: announce, lookup and unannounce walks, the node's
//! answer to itself, and what a node does at shutdown. The tokio handle, the simulator and
//! the fuzzers all start them here, so each is written once.
//!
//! Each walk is a dht-rpc query: its replies come as [`dht_rpc::Event::QueryReply`] (decode
//! the value with [`dht_wire::PeersResponse::decode`]) and it ends with
//! [`dht_rpc::Event::QueryDone`], whose `commits` says how many nodes stored an announce or
//! dropped an unannounced entry.
//!
//! ```
//! use std::time::Instant;
//! use dht_rpc::{Config, Event, Machine, MachineEvent};
//! use hyperdht::{AnnounceOptions, Core, Key, PeerStore, PeersHandler};
//!
//! let now = Instant::now();
//! let handler = PeersHandler::new(PeerStore::default(), 1);
//! let mut core = Core::new(dht_rpc::Core::with_handler(Config::default(), handler, now), now);
//! let walk = core.lookup(now, Key::from_bytes([7; 32]), AnnounceOptions::default());
//! // No node to ask: the walk ends at once, with no reply.
//! let mut done = None;
//! while let Some(e) = core.poll_event() {
//!     if let MachineEvent::Rpc(Event::QueryDone { query, result }) = e {
//!         done = Some((query, result.is_err()));
//!     }
//! }
//! assert_eq!(done, Some((walk, true)));
//! ```

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Instant;

use dht_rpc::{QueryId, QuerySpec};
use dht_wire::{Key, PEERS, PeersRequest, PeersRequestType, PeersResponse};

use super::Core;
use crate::options::AnnounceOptions;

/// The walk of a `peers` request of `kind` for `key`: a query for lookups, a query and a
/// commit round for announces and unannounces.
pub(super) fn spec(kind: PeersRequestType, key: Key, opts: AnnounceOptions) -> QuerySpec {
    let value = Some(opts.request(kind).encode());
    match kind {
        PeersRequestType::Lookup => QuerySpec::query(PEERS, key, value),
        _ => QuerySpec::update(PEERS, key, value),
    }
}

impl Core {
    /// Starts announcing that we listen on `key` (on `opts.port`, or where the nodes see our
    /// DHT socket): a walk to the closest nodes, then a commit round that stores us there.
    /// Verbose: the walk's query-round replies come too (they carry the peers met on the
    /// way, as the reference's announce reports them). Announce again every 4 to 5 minutes,
    /// or use [`Core::keep`].
    pub fn announce(&mut self, now: Instant, key: Key, opts: AnnounceOptions) -> QueryId {
        let spec = QuerySpec {
            verbose: true,
            ..spec(PeersRequestType::Announce, key, opts)
        };
        self.walk(now, spec)
    }

    /// Starts a lookup of the peers announced on `key` (`opts.local_address`: ours on the
    /// LAN, to be given the announcers that share it).
    pub fn lookup(&mut self, now: Instant, key: Key, opts: crate::LookupOptions) -> QueryId {
        self.walk(now, spec(PeersRequestType::Lookup, key, opts))
    }

    /// Starts removing our announcement on `key` (pass the options it was announced with).
    pub fn unannounce(&mut self, now: Instant, key: Key, opts: AnnounceOptions) -> QueryId {
        self.walk(now, spec(PeersRequestType::Unannounce, key, opts))
    }

    fn walk(&mut self, now: Instant, spec: QuerySpec) -> QueryId {
        self.now = now;
        let q = self.rpc.query(now, spec);
        self.pump();
        q
    }

    /// Our own store's answer to a `peers` request of `kind` for `key`, when it holds the
    /// key: a walk never asks its own node, so the reference reports this answer first, as
    /// if from itself. The request is served as from `127.0.0.1` on our port (`port`), so
    /// that no quota applies and we are left out of the peers.
    pub fn own_answer(
        &mut self,
        now: Instant,
        key: Key,
        kind: PeersRequestType,
        opts: AnnounceOptions,
        port: u16,
    ) -> Option<PeersResponse> {
        self.now = now;
        let h = self.rpc.handler_mut();
        if !h.store().has(&key) {
            return None;
        }
        let req = PeersRequest {
            kind,
            ..opts.request(kind)
        };
        let own = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
        let answer = h.serve(now, key, &req, own, false).then(|| h.picked());
        self.pump();
        answer
    }

    /// What a node does before it stops: it stops keeping every kept announcement and
    /// unannounces each (see [`Core::stop_keeping`]). The unannounce walks' ids, to wait for.
    pub fn shutdown(&mut self, now: Instant) -> Vec<QueryId> {
        self.kept_ids()
            .into_iter()
            .filter_map(|id| self.stop_keeping(now, id))
            .collect()
    }
}
