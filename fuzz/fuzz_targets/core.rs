//! Datagrams into a dht-rpc core that serves hyperdht's `peers`: the input is split into
//! datagrams (a length byte each) from a few source addresses (public, private, loopback,
//! one /24 shared by several), with time moving on by an input-chosen step. The defences
//! (budgets, destination rules, table and store limits) are on, as in production. Nothing
//! may panic, the store and table stay within their bounds, and the node must still answer
//! a ping afterwards.
#![no_main]

mod common;

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let t0 = Instant::now();
    let mut core = common::peers_node(t0);
    let mut rest = data;
    let mut now = t0;
    while let [len, from, body @ ..] = rest {
        let n = (*len as usize).min(body.len());
        now += Duration::from_millis(u64::from(from >> 5) * 300);
        core.handle_datagram(now, common::source(*from), &body[..n]);
        core.handle_timeout(now);
        while let Some(t) = core.poll_transmit() {
            common::check_destination(&t);
        }
        while core.poll_event().is_some() {}
        rest = &body[n..];
    }
    assert!(core.table().len() <= 256 * 20);
    assert!(core.handler().store().len() <= 2 * 65);
    let (from, ping) = common::ping();
    core.handle_datagram(now, from, &ping);
    assert!(core.poll_transmit().is_some(), "the node still answers");
});
