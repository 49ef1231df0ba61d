//! A full bucket, driven on the bare core with virtual time: a stale contact that fails to
//! answer makes room for the newcomer; one that answers keeps its place. (A requester is a
//! newcomer only once it answered the ping by which the core verifies it.)

use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

use dht_rpc::{Config, Core, NodeId};

fn id(first: u8, last: u8) -> NodeId {
    let mut b = [0u8; 32];
    b[0] = first;
    b[31] = last;
    NodeId::from_bytes(b)
}

fn addr(i: u8) -> SocketAddrV4 {
    SocketAddrV4::new([10, 0, i, 1].into(), 1000)
}

#[path = "support/pair.rs"]
mod pair;

/// `sender` at `from` joins (see `pair::join`); returns where else the core sent.
fn join(core: &mut Core, t: Instant, from: SocketAddrV4, sender: NodeId) -> Vec<SocketAddrV4> {
    pair::join(core, t, from, sender)
        .iter()
        .map(|x| x.to)
        .collect()
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
    core.handle_datagram(t1, addr(3), &pair::ping_from(Some(id(0x80, 3))));
    // The newcomer answers the ping that verifies it; the stale contacts answer theirs.
    let who = |to: SocketAddrV4| (1..=3).find(|i| addr(*i) == to).map(|i| id(0x80, i));
    let sent = pair::answer_while(&mut core, t1, who);
    let pinged: Vec<SocketAddrV4> = sent
        .iter()
        .map(|x| x.to)
        .filter(|a| *a != addr(3))
        .collect();
    // Both stale contacts were pinged (the second once the first answered), each once;
    // nothing more went out.
    assert_eq!(pinged, vec![addr(1), addr(2)]);
    core.handle_timeout(t1 + Duration::from_secs(2));
    assert!(core.table().get(&id(0x80, 1)).is_some());
    assert!(core.table().get(&id(0x80, 2)).is_some());
    assert!(
        core.table().get(&id(0x80, 3)).is_none(),
        "the newcomer was dropped"
    );
}
