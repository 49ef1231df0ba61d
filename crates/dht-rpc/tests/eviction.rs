//! A full bucket, driven on the bare core with virtual time: a stale contact that fails to
//! answer makes room for the newcomer; one that answers keeps its place. (A requester is a
//! newcomer only once it answered the ping by which the core verifies it.)

use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

use dht_rpc::{Config, Core, NodeId};
use dht_wire::{Checked, Datagram, Message, Request, Response, Tid};

fn id(first: u8, last: u8) -> NodeId {
    let mut b = [0u8; 32];
    b[0] = first;
    b[31] = last;
    NodeId::from_bytes(b)
}

fn addr(i: u8) -> SocketAddrV4 {
    SocketAddrV4::new([10, 0, i, 1].into(), 1000)
}

/// A `_ping` from `from` carrying `sender`'s id.
fn ping_from(sender: NodeId) -> Vec<u8> {
    Datagram::request(
        Tid::new(1).expect("tid"),
        Request {
            id: Some(Checked::Valid(sender)),
            ..Request::new("_ping")
        },
    )
    .encode()
    .to_vec()
}

/// `sender` at `from` pings the core and answers the ping by which the core verifies it
/// (a requester enters the table only once it answered); returns where else the core sent.
fn join(core: &mut Core, t: Instant, from: SocketAddrV4, sender: NodeId) -> Vec<SocketAddrV4> {
    core.handle_datagram(t, from, &ping_from(sender));
    let mut others = Vec::new();
    while let Some(out) = core.poll_transmit() {
        match Datagram::decode(&out.payload) {
            Ok(Datagram {
                tid,
                message: Message::Request(_),
            }) if out.to == from => {
                let pong = Datagram::response(
                    tid,
                    Response {
                        id: Some(Checked::Valid(sender)),
                        ..Response::default()
                    },
                );
                core.handle_datagram(t, from, &pong.encode());
            }
            _ => others.push(out.to),
        }
    }
    others
}

/// A core with id 0, k = 2, bootstrapped (no bootstrap nodes: ready at once), and two
/// contacts in the bucket of ids starting with bit 1.
fn setup(t0: Instant) -> Core {
    let mut core = Core::new(
        Config {
            id: Some(id(0, 0)),
            k: 2,
            ..Config::default()
        },
        t0,
    );
    core.bootstrap(t0);
    assert!(core.is_bootstrapped());
    join(&mut core, t0, addr(1), id(0x80, 1));
    join(&mut core, t0, addr(2), id(0x80, 2));
    assert_eq!(core.table().len(), 2);
    core
}

#[test]
fn a_stale_contact_that_fails_is_evicted_for_the_newcomer() {
    let t0 = Instant::now();
    let mut core = setup(t0);
    let t1 = t0 + Duration::from_secs(20);
    let pinged = join(&mut core, t1, addr(3), id(0x80, 3));
    // The newcomer waits; the least recently seen contact is pinged.
    assert!(core.table().get(&id(0x80, 3)).is_none());
    assert!(pinged.contains(&addr(1)), "pinged the oldest: {pinged:?}");
    // No answer: after the timeout it is gone and the newcomer is in.
    core.handle_timeout(t1 + Duration::from_secs(2));
    assert!(core.table().get(&id(0x80, 1)).is_none());
    assert!(core.table().get(&id(0x80, 3)).is_some());
}

#[test]
fn a_stale_contact_that_answers_keeps_its_place() {
    let t0 = Instant::now();
    let mut core = setup(t0);
    let t1 = t0 + Duration::from_secs(20);
    core.handle_datagram(t1, addr(3), &ping_from(id(0x80, 3)));
    let mut answered = 0;
    while let Some(t) = core.poll_transmit() {
        if t.to == addr(3) {
            // The newcomer answers the ping that verifies it.
            if let Ok(Datagram { tid, .. }) = Datagram::decode(&t.payload) {
                let pong = Datagram::response(
                    tid,
                    Response {
                        id: Some(Checked::Valid(id(0x80, 3))),
                        ..Response::default()
                    },
                );
                core.handle_datagram(t1, t.to, &pong.encode());
            }
            continue;
        }
        let Ok(Datagram {
            tid,
            message: Message::Request(_),
        }) = Datagram::decode(&t.payload)
        else {
            continue;
        };
        let sender = if t.to == addr(1) {
            id(0x80, 1)
        } else {
            id(0x80, 2)
        };
        let pong = Datagram::response(
            tid,
            Response {
                id: Some(Checked::Valid(sender)),
                ..Response::default()
            },
        );
        core.handle_datagram(t1, t.to, &pong.encode());
        answered += 1;
    }
    // Answering contacts may lead to further pings of the next stale one: answer those too.
    let mut later = 0;
    while let Some(t) = core.poll_transmit() {
        later += 1;
        if let Ok(Datagram {
            tid,
            message: Message::Request(_),
        }) = Datagram::decode(&t.payload)
        {
            let sender = if t.to == addr(1) {
                id(0x80, 1)
            } else {
                id(0x80, 2)
            };
            core.handle_datagram(
                t1,
                t.to,
                &Datagram::response(
                    tid,
                    Response {
                        id: Some(Checked::Valid(sender)),
                        ..Response::default()
                    },
                )
                .encode(),
            );
        }
    }
    // Both stale contacts were pinged (the second once the first answered) and answered,
    // each once, in the first drain; nothing more went out.
    assert_eq!((answered, later), (2, 0));
    core.handle_timeout(t1 + Duration::from_secs(2));
    assert!(core.table().get(&id(0x80, 1)).is_some());
    assert!(core.table().get(&id(0x80, 2)).is_some());
    assert!(
        core.table().get(&id(0x80, 3)).is_none(),
        "the newcomer was dropped"
    );
}
