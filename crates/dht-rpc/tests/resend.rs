//! A walk's request that stalls is sent once more under a transaction id of its own, on the
//! bare core in virtual time: an answer names the copy it answers, so a slow node's late
//! answer to the first copy is a true round-trip sample (the reference's single tid, and
//! Karn's rule, would have to drop it), and the other copy's answer is unknown.

use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

use dht_rpc::{Config, Core, NodeId, QuerySpec, Transmit};
use dht_wire::Datagram;

#[path = "support/pair.rs"]
mod pair;
use pair::drain;

/// `t`, a request, answered as `who` would.
fn answer(core: &mut Core, now: Instant, t: &Transmit, who: NodeId) {
    assert!(pair::answer(core, now, t, Some(who)), "a request: {t:?}");
}

#[test]
fn a_slow_answer_to_the_first_copy_is_a_true_sample() {
    let t = Instant::now();
    let mut core = Core::new(
        Config {
            id: Some(NodeId::from_bytes([0xff; 32])),
            ..Config::default()
        },
        t,
    );
    core.set_local_port(49737);
    let slow: SocketAddrV4 = "20.0.0.1:1000".parse().expect("addr");
    let who = NodeId::from_bytes([0x11; 32]);
    // It answers a ping in 100 ms: known, with its own estimate.
    core.ping(t, slow);
    let out = drain(&mut core);
    answer(&mut core, t + Duration::from_millis(100), &out[0], who);
    let before = core.rtts().of(slow).expect("an estimate").srtt;
    assert_eq!(before, Duration::from_millis(100));

    let start = t + Duration::from_secs(1);
    core.query(start, QuerySpec::query("_find_node", who, None));
    let first = drain(&mut core);
    let [first] = first.as_slice() else {
        panic!("one request, to the one contact: {first:?}")
    };
    assert_eq!(first.to, slow);
    // Its RTO (100 ms + 4 x 50 ms) passes: the request stalls and goes once more.
    let stall = core.poll_timeout().expect("a stall is due");
    assert!(stall <= start + Duration::from_millis(300), "{stall:?}");
    core.handle_timeout(stall);
    let again = drain(&mut core);
    let again: Vec<_> = again.iter().filter(|x| x.to == slow).collect();
    let [again] = again.as_slice() else {
        panic!("the resend: {again:?}")
    };
    let tid = |x: &Transmit| Datagram::decode(&x.payload).expect("ours").tid;
    assert_ne!(tid(first), tid(again), "the resend has a tid of its own");
    assert_eq!(core.stats().resent, 1);

    // The first copy's answer comes 600 ms after it went: a sample of 600 ms, not dropped.
    answer(&mut core, start + Duration::from_millis(600), first, who);
    let after = core.rtts().of(slow).expect("an estimate").srtt;
    assert_eq!(
        after,
        (before * 7 + Duration::from_millis(600)) / 8,
        "the estimate took the slow sample"
    );
    // The resend's answer then matches nothing.
    let unknown = core.stats().unknown_responses;
    answer(&mut core, start + Duration::from_millis(650), again, who);
    assert_eq!(core.stats().unknown_responses, unknown + 1);
}
