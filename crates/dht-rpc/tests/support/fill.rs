//! Fills a core's routing table as live nodes would: each pings it with its id and answers
//! the core's verification ping. Shared by `benches/core.rs` and `tests/allocations.rs`
//! (included with `#[path]`).

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Instant;

use dht_rpc::{Core, Handler, NodeId};
use dht_wire::{Checked, Datagram, Message, PING, Request, Response, Tid};

/// Each of `ids` pings `core` from its own /24 (11.x.y.0:4000) and answers its verification.
pub fn fill_table<H: Handler>(core: &mut Core<H>, t: Instant, ids: &[NodeId]) {
    for (i, id) in ids.iter().enumerate() {
        let addr = SocketAddrV4::new(Ipv4Addr::from(0x0b00_0000 + (i as u32) * 256), 4000);
        let req = Request {
            id: Some(Checked::Valid(*id)),
            ..Request::new(PING)
        };
        core.handle_datagram(
            t,
            addr,
            &Datagram::request(Tid::from_masked(3), req).encode(),
        );
        while let Some(tx) = core.poll_transmit() {
            if let Ok(Datagram {
                tid,
                message: Message::Request(_),
            }) = Datagram::decode(&tx.payload)
            {
                let res = Response {
                    id: Some(Checked::Valid(*id)),
                    ..Response::default()
                };
                core.handle_datagram(t, addr, &Datagram::response(tid, res).encode());
            }
        }
    }
    while core.poll_event().is_some() {}
}
