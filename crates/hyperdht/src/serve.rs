//! [`PeersHandler`]: the server side of hyperdht, answering the `peers` command from the
//! [`PeerStore`]; it plugs into the dht-rpc core as its [`Handler`].
//!
//! An announce or unannounce changes the store only in an update, which carries a valid
//! roundtrip token: a spoofed source cannot store an address it does not receive at, and an
//! unannounce removes only the sender's own entry.

use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddrV4;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use dht_rpc::{Answer, Handler, Handlers, Incoming};
use dht_wire::{Checked, Key, LocalPeer, PEERS, PeersRequest, PeersRequestType, PeersResponse};
use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::events::PeerEvent;
use crate::store::{Entry, PeerStore};

/// The reference stops adding peers to an answer once it holds this many bytes.
pub const ANSWER_BYTES: usize = 900;
/// Events kept for [`PeersHandler::poll_event`] before the oldest are dropped.
const MAX_EVENTS: usize = 1024;

/// Serves `peers` from a [`PeerStore`]; other commands go to `commands`.
pub struct PeersHandler {
    store: PeerStore,
    rng: StdRng,
    events: VecDeque<PeerEvent>,
    /// The application's own commands, beside `peers`.
    pub commands: Handlers,
    /// Reused per answer: the store's sample, the peers and LAN peers picked from it, and
    /// the encoded answers (split off and reclaimed once the core copied them).
    sampled: Vec<Entry>,
    peers: Vec<SocketAddrV4>,
    locals: Vec<LocalPeer>,
    arena: BytesMut,
}

/// Room the answer arena takes at a time (the core copies each answer into its own
/// datagram, so the room is reclaimed at once).
const ARENA: usize = 2 * 1024;
/// Room an answer may need: [`ANSWER_BYTES`] of peers and the LAN peers beside them.
const ANSWER_ROOM: usize = 1280;

impl fmt::Debug for PeersHandler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeersHandler")
            .field("store", &self.store.len())
            .field("events", &self.events.len())
            .finish()
    }
}

impl PeersHandler {
    /// A handler over `store`, its random answer order seeded by `seed`.
    pub fn new(store: PeerStore, seed: u64) -> Self {
        PeersHandler {
            store,
            rng: StdRng::seed_from_u64(seed),
            events: VecDeque::new(),
            commands: Handlers::default(),
            sampled: Vec::new(),
            peers: Vec::new(),
            locals: Vec::new(),
            arena: BytesMut::new(),
        }
    }

    /// The store.
    pub fn store(&self) -> &PeerStore {
        &self.store
    }

    /// The next queued event (the most recent 1024 are kept; [`crate::Core`] takes them
    /// after every input, as [`crate::CoreEvent::Peer`]).
    pub fn poll_event(&mut self) -> Option<PeerEvent> {
        self.events.pop_front()
    }

    fn emit(&mut self, e: PeerEvent) {
        if self.events.len() >= MAX_EVENTS {
            self.events.pop_front();
        }
        self.events.push_back(e);
    }

    /// The answer the last [`PeersHandler::serve`] picked (read it only after one that
    /// returned `true`).
    pub(crate) fn picked(&self) -> PeersResponse {
        PeersResponse {
            peers: Some(Checked::Valid(self.peers.clone())),
            local_peers: (!self.locals.is_empty()).then(|| self.locals.clone()),
        }
    }

    /// The answer [`PeersHandler::serve`] picked, encoded from the reused buffers into the
    /// arena.
    fn encoded(&mut self) -> Bytes {
        if self.arena.capacity() < ANSWER_ROOM && !self.arena.try_reclaim(ANSWER_ROOM) {
            // Answers split off the last buffer are still held: a new one.
            self.arena.reserve(ARENA);
        }
        let locals = (!self.locals.is_empty()).then_some(self.locals.as_slice());
        PeersResponse::encode_parts(&self.peers, locals, &mut self.arena);
        self.arena.split().freeze()
    }

    /// Serves a `peers` request for `key` from `from` (`update`: it carried a valid token):
    /// applies it to the store and picks the answer ([`PeersHandler::picked`]); `false`:
    /// respond with no value.
    pub(crate) fn serve(
        &mut self,
        now: Instant,
        key: Key,
        req: &PeersRequest,
        from: SocketAddrV4,
        update: bool,
    ) -> bool {
        let port = match req.port {
            Some(p) if p != 0 => match u16::try_from(p) {
                Ok(p) => p,
                Err(_) => return false,
            },
            _ => from.port(),
        };
        if port == 0 {
            return false;
        }
        let peer = SocketAddrV4::new(*from.ip(), port);
        match (update, req.kind) {
            (true, PeersRequestType::Announce) => {
                let local = req
                    .local_address()
                    .filter(|a| a.port() != 0)
                    .map(|a| split_local(&a));
                let stored = self.store.put(
                    key,
                    Entry {
                        peer,
                        local,
                        at: now,
                    },
                );
                match stored {
                    Ok(()) => self.emit(PeerEvent::Announce { key, peer }),
                    Err(why) => tracing::debug!(%peer, ?why, "announce over quota"),
                }
            }
            (true, PeersRequestType::Unannounce) => {
                self.store.remove(&key, &peer);
                self.emit(PeerEvent::Unannounce { key, peer });
                return false;
            }
            (_, PeersRequestType::Lookup) => self.emit(PeerEvent::Lookup { key, peer }),
            _ => {}
        }

        let mine = req.local_address().map(|a| split_local(&a));
        self.peers.clear();
        self.locals.clear();
        let mut bytes = 0;
        // A sample of what fits in an answer (one more: the requester may be among them), so
        // that answering a crowded key costs no more than answering a quiet one.
        let fits = ANSWER_BYTES / 6 + 1;
        self.store
            .sample_into(&key, now, fits, &mut self.rng, &mut self.sampled);
        for e in &self.sampled {
            if bytes >= ANSWER_BYTES {
                break;
            }
            if e.peer == peer {
                continue;
            }
            self.peers.push(e.peer);
            bytes += 6;
            if let (Some((prefix, me)), Some((p, lp))) = (mine, e.local)
                && prefix == p
                && lp != me
            {
                self.locals.push(lp);
                bytes += 4;
            }
        }
        !self.peers.is_empty()
    }
}

/// A LAN address as stored: the first two octets, and the rest as a local peer.
fn split_local(a: &SocketAddrV4) -> ([u8; 2], LocalPeer) {
    let o = a.ip().octets();
    (
        [o[0], o[1]],
        LocalPeer {
            suffix: [o[2], o[3]],
            port: a.port(),
        },
    )
}

/// The address a requester's LAN prefix and a local peer make.
#[cfg(feature = "tokio")]
pub fn local_addr(prefix: [u8; 2], lp: &LocalPeer) -> SocketAddrV4 {
    SocketAddrV4::new(
        std::net::Ipv4Addr::new(prefix[0], prefix[1], lp.suffix[0], lp.suffix[1]),
        lp.port,
    )
}

impl Handler for PeersHandler {
    fn on_request(&mut self, now: Instant, req: &Incoming<'_>) -> Answer {
        if req.command != PEERS {
            return self.commands.on_request(now, req);
        }
        let Some(request) = req.value.and_then(|v| PeersRequest::decode(v).ok()) else {
            return Answer::Value(None);
        };
        let picked = self.serve(now, req.target, &request, req.from, req.update);
        Answer::Value(picked.then(|| self.encoded()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::DEFAULT_MAX_AGE;
    use PeersRequestType::{Announce, Lookup, Unannounce};
    use std::time::Duration;

    fn addr(s: &str) -> SocketAddrV4 {
        s.parse().unwrap()
    }

    fn req(kind: PeersRequestType, port: Option<u16>, local: Option<&str>) -> PeersRequest {
        PeersRequest::new(kind, port, local.map(addr))
    }

    /// `from` sends a `kind` request on `k` (with `port` and its LAN address `local`): an
    /// announce or unannounce comes in a commit round (with a valid token), a lookup not.
    fn ask(
        h: &mut PeersHandler,
        (t, k): (Instant, Key),
        kind: PeersRequestType,
        (port, local): (Option<u16>, Option<&str>),
        from: SocketAddrV4,
    ) -> Option<PeersResponse> {
        let commit = kind != PeersRequestType::Lookup;
        h.serve(t, k, &req(kind, port, local), from, commit)
            .then(|| h.picked())
    }

    #[test]
    fn announce_needs_an_update_and_lookup_excludes_the_requester() {
        let t = Instant::now();
        let k = Key::from_bytes([1; 32]);
        let mut h = PeersHandler::new(PeerStore::default(), 1);
        let announce = req(PeersRequestType::Announce, Some(10000), None);
        // The query round (no valid token) stores nothing.
        assert!(!h.serve(t, k, &announce, addr("1.2.3.4:5555"), false));
        assert!(h.store().is_empty());
        assert!(
            !h.serve(t, k, &announce, addr("1.2.3.4:5555"), true),
            "the only peer is the requester"
        );
        assert_eq!(
            h.poll_event(),
            Some(PeerEvent::Announce {
                key: k,
                peer: addr("1.2.3.4:10000")
            })
        );
        let lookup = req(PeersRequestType::Lookup, None, None);
        assert!(h.serve(t, k, &lookup, addr("9.9.9.9:1"), false));
        let r = h.picked();
        assert_eq!(r.peers, Some(Checked::Valid(vec![addr("1.2.3.4:10000")])));
        // The announcer itself (same IP and port) is not told about itself.
        assert!(!h.serve(t, k, &lookup, addr("1.2.3.4:10000"), false));
        // Entries expire.
        let later = t + DEFAULT_MAX_AGE + Duration::from_secs(1);
        assert!(!h.serve(later, k, &lookup, addr("9.9.9.9:1"), false));
    }

    #[test]
    fn local_peers_only_for_a_matching_prefix() {
        let t = Instant::now();
        let k = Key::from_bytes([2; 32]);
        let mut h = PeersHandler::new(PeerStore::default(), 1);
        let tk = (t, k);
        let lan = (Some(1), Some("192.168.1.2:8888"));
        ask(&mut h, tk, Announce, lan, addr("5.5.5.5:1"));
        let same = ask(
            &mut h,
            tk,
            Lookup,
            (None, Some("192.168.7.7:0")),
            addr("6.6.6.6:1"),
        )
        .unwrap();
        assert_eq!(
            same.local_peers,
            Some(vec![LocalPeer {
                suffix: [1, 2],
                port: 8888
            }])
        );
        let other = ask(
            &mut h,
            tk,
            Lookup,
            (None, Some("10.0.7.7:0")),
            addr("6.6.6.6:1"),
        )
        .unwrap();
        assert_eq!(other.local_peers, None);
        let none = ask(&mut h, tk, Lookup, (None, None), addr("6.6.6.6:1")).unwrap();
        assert_eq!(none.local_peers, None);
    }

    #[test]
    fn unannounce_removes_only_the_senders_entry() {
        let t = Instant::now();
        let k = Key::from_bytes([3; 32]);
        let mut h = PeersHandler::new(PeerStore::default(), 1);
        let tk = (t, k);
        ask(&mut h, tk, Announce, (None, None), addr("1.1.1.1:1000"));
        ask(&mut h, tk, Announce, (None, None), addr("2.2.2.2:2000"));
        // Someone else's unannounce of 1.1.1.1's port from another address removes nothing of 1.1.1.1.
        ask(
            &mut h,
            tk,
            Unannounce,
            (Some(1000), None),
            addr("2.2.2.2:2000"),
        );
        let r = ask(&mut h, tk, Lookup, (None, None), addr("9.9.9.9:9")).unwrap();
        let mut got = r.peers.unwrap().into_valid().unwrap();
        got.sort();
        assert_eq!(got, vec![addr("1.1.1.1:1000"), addr("2.2.2.2:2000")]);
        ask(&mut h, tk, Unannounce, (None, None), addr("2.2.2.2:2000"));
        let r = ask(&mut h, tk, Lookup, (None, None), addr("9.9.9.9:9")).unwrap();
        assert_eq!(
            r.peers.unwrap().into_valid().unwrap(),
            vec![addr("1.1.1.1:1000")]
        );
    }

    #[test]
    fn a_port_out_of_range_gets_no_answer_and_stores_nothing() {
        // The reference crashes on this one (writeUInt16BE throws in its handler).
        let t = Instant::now();
        let k = Key::from_bytes([5; 32]);
        let mut h = PeersHandler::new(PeerStore::default(), 1);
        let bad = PeersRequest {
            kind: PeersRequestType::Announce,
            port: Some(70_000),
            local_address: None,
        };
        assert!(!h.serve(t, k, &bad, addr("1.2.3.4:5"), true));
        assert!(h.store().is_empty());
    }

    #[test]
    fn answers_stop_at_900_bytes() {
        let t = Instant::now();
        let k = Key::from_bytes([4; 32]);
        let mut h = PeersHandler::new(PeerStore::default(), 1);
        for i in 0..400u32 {
            let from = SocketAddrV4::new(std::net::Ipv4Addr::from(0x0b00_0000 + i), 4000);
            ask(
                &mut h,
                (t, k),
                Announce,
                (None, Some("192.168.0.1:1")),
                from,
            );
        }
        let r = ask(
            &mut h,
            (t, k),
            Lookup,
            (None, Some("192.168.9.9:0")),
            addr("9.9.9.9:9"),
        )
        .unwrap();
        let peers = r.peers.unwrap().into_valid().unwrap().len();
        let locals = r.local_peers.unwrap().len();
        assert!(
            peers * 6 + locals * 4 <= ANSWER_BYTES + 10,
            "{peers} peers, {locals} local"
        );
        assert_eq!(peers, 90, "900 bytes of 6 + 4");
    }
}
