//! The one harness the tests (and `benches/core.rs`) drive a bare core with, in virtual
//! time: the nodes around it are played by the test, which answers the requests the core
//! sends as the addressed node would. Included with `#[path]` where needed; each includer
//! uses the part it needs.
#![allow(dead_code)]

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Instant;

use dht_rpc::{Core, Handler, NodeId, Transmit};
use dht_wire::{Checked, Datagram, Message, PING, Request, Response, Tid, compact};

/// A `_ping` request (tid 1) carrying `sender`'s id, if any.
pub fn ping_from(sender: Option<NodeId>) -> Vec<u8> {
    let req = Request {
        id: sender.map(Checked::Valid),
        ..Request::new(PING)
    };
    Datagram::request(Tid::from_masked(1), req)
        .encode()
        .to_vec()
}

/// What the core sends now, its events dropped.
pub fn drain<H: Handler>(core: &mut Core<H>) -> Vec<Transmit> {
    while core.poll_event().is_some() {}
    std::iter::from_fn(|| core.poll_transmit()).collect()
}

/// Answers `t`, if it is a request, as the node `who` at `t.to` would: a response with its
/// id (none when `None`) and the address it saw us at. Whether it was a request.
pub fn answer<H: Handler>(
    core: &mut Core<H>,
    now: Instant,
    t: &Transmit,
    who: Option<NodeId>,
) -> bool {
    let Ok(Datagram {
        tid,
        message: Message::Request(_),
    }) = Datagram::decode(&t.payload)
    else {
        return false;
    };
    let res = Response {
        id: who.map(Checked::Valid),
        value: Some(compact::encode_peer(&t.to)),
        ..Response::default()
    };
    core.handle_datagram(now, t.to, &Datagram::response(tid, res).encode());
    true
}

/// Answers every request among `out`, each as `who(its destination)`; how many it answered.
pub fn answer_all<H: Handler>(
    core: &mut Core<H>,
    now: Instant,
    out: &[Transmit],
    who: impl Fn(SocketAddrV4) -> Option<NodeId>,
) -> usize {
    out.iter()
        .filter(|t| answer(core, now, t, who(t.to)))
        .count()
}

/// Answers every request the core sends, as `who(destination)` would (no answer where it
/// gives `None`), until the core sends nothing more; returns all it sent, in order.
pub fn answer_while<H: Handler>(
    core: &mut Core<H>,
    now: Instant,
    who: impl Fn(SocketAddrV4) -> Option<NodeId>,
) -> Vec<Transmit> {
    let mut sent = Vec::new();
    while let Some(t) = core.poll_transmit() {
        if let Some(id) = who(t.to) {
            answer(core, now, &t, Some(id));
        }
        sent.push(t);
    }
    sent
}

/// `sender` at `from` pings the core and answers the ping by which the core verifies it (a
/// requester enters the table only once it answered), and whatever else the core asks it
/// meanwhile; returns what the core sent to others.
pub fn join<H: Handler>(
    core: &mut Core<H>,
    now: Instant,
    from: SocketAddrV4,
    sender: NodeId,
) -> Vec<Transmit> {
    core.handle_datagram(now, from, &ping_from(Some(sender)));
    let sent = answer_while(core, now, |to| (to == from).then_some(sender));
    sent.into_iter().filter(|t| t.to != from).collect()
}

/// Fills the table as live nodes would: each of `ids` joins from its own /24
/// (11.x.y.0:4000).
pub fn fill_table<H: Handler>(core: &mut Core<H>, t: Instant, ids: &[NodeId]) {
    for (i, id) in ids.iter().enumerate() {
        let addr = SocketAddrV4::new(Ipv4Addr::from(0x0b00_0000 + (i as u32) * 256), 4000);
        join(core, t, addr, *id);
    }
    while core.poll_event().is_some() {}
}
