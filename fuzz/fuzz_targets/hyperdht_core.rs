//! Datagrams and timeouts into a `hyperdht::Core` (the dht-rpc core serving `peers`, with
//! hole punching, the birthday punch's sessions and sockets, and hint limits on top) while
//! two hole punches run: the input is split into datagrams (a length byte each) from a few
//! source addresses, the punched peers among them, to the DHT socket or to an extra socket
//! the core opened, with time moving on by an input-chosen step. Nothing may panic; each
//! punch ends exactly once and by its deadline; the extra sockets open at once stay within
//! three hard sides (two punches, one peer) plus the path table; every transmit leaves from
//! a socket that is open; the node still answers a ping.
#![no_main]

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::source;
use dht_rpc::{Machine, MachineEvent, SocketId, SocketOp};
use hyperdht::{BIRTHDAY_SOCKETS, Core, CoreEvent, MAX_PATHS};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let t0 = Instant::now();
    let mut core = Core::new(common::peers_node(t0), t0);
    let a = core.holepunch(t0, source(0), source(2), true);
    let b = core.holepunch(t0, source(6), source(6), true);
    let (mut ended, mut open) = (Vec::new(), BTreeSet::new());
    let drain = |core: &mut Core, ended: &mut Vec<_>, open: &mut BTreeSet<SocketId>| {
        // The drive shape's step 2, as the simulator takes it (`Machine::drain`).
        let mut sent = Vec::new();
        core.drain(
            |op| match op {
                SocketOp::Open(id) => assert!(open.insert(id), "opened twice: {id:?}"),
                SocketOp::Close(id) => {
                    open.remove(&id);
                }
            },
            |t| sent.push(t),
            |e| {
                if let MachineEvent::Own(CoreEvent::Punched { punch, .. }) = e {
                    ended.push(punch);
                }
            },
        );
        assert!(
            open.len() <= 3 * BIRTHDAY_SOCKETS + MAX_PATHS,
            "{} sockets open",
            open.len()
        );
        for t in &sent {
            common::check_destination(t);
            assert!(t.from == SocketId::MAIN || open.contains(&t.from), "{t:?}");
        }
    };
    // The driving rule: every deadline the core asks for, in order, up to `to`.
    let advance = |core: &mut Core, to: Instant, ended: &mut Vec<_>, open: &mut BTreeSet<_>| {
        while let Some(t) = core.poll_timeout().filter(|t| *t <= to) {
            core.handle_timeout(t);
            drain(core, ended, open);
        }
    };
    let mut rest = data;
    let mut now = t0;
    while let [len, from, body @ ..] = rest {
        let n = (*len as usize).min(body.len());
        now += Duration::from_millis(u64::from(from >> 5) * 100);
        advance(&mut core, now, &mut ended, &mut open);
        // Every fourth datagram to an extra socket, when one is open.
        let socket = match (
            from & 3,
            open.iter().nth(usize::from(*len) % open.len().max(1)),
        ) {
            (0, Some(id)) => *id,
            _ => SocketId::MAIN,
        };
        core.handle_socket_datagram(now, socket, source(*from), &body[..n]);
        drain(&mut core, &mut ended, &mut open);
        rest = &body[n..];
    }
    // Past the rounds, the symmetric check and the birthday punch, both punches are over.
    now += Duration::from_secs(12);
    advance(&mut core, now, &mut ended, &mut open);
    ended.sort();
    assert_eq!(ended, vec![a, b], "each punch ends exactly once");
    assert_eq!(core.punches(), 0);
    assert!(
        open.len() <= MAX_PATHS,
        "the sessions closed their sockets: {}",
        open.len()
    );
    let (from, ping) = common::ping();
    core.handle_datagram(now, from, &ping);
    assert!(core.poll_transmit().is_some(), "the node still answers");
});
