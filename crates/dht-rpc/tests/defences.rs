//! The attacks of a hostile network, performed on the bare core in virtual time, each with
//! the defence it meets and the figure it comes to (printed, so that `--nocapture` shows
//! them). Addresses are public-looking ones, which the defences do not exempt (loopback is
//! trusted by default; the same core runs behind the real socket).

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use dht_rpc::guard::{Defences, Limit};
use dht_rpc::{Config, Core, NodeId, QuerySpec, Transmit};
use dht_wire::{Checked, Datagram, Message, NodeAddr, Request, Response, Tid};

#[macro_use]
mod common;
#[path = "support/pair.rs"]
mod pair;
use pair::{answer_all, drain, ping_from as ping};

fn a(s: &str) -> SocketAddrV4 {
    s.parse().expect("address")
}

fn id(n: u32) -> NodeId {
    let mut b = [0u8; 32];
    b[..4].copy_from_slice(&n.to_be_bytes());
    b[31] = 0x5a;
    NodeId::from_bytes(b)
}

fn core_with(defences: Defences) -> Core {
    let mut core = Core::new(
        Config {
            id: Some(NodeId::from_bytes([0xff; 32])),
            defences,
            ..Config::default()
        },
        Instant::now(),
    );
    core.set_local_port(49737);
    core
}

fn request(req: Request) -> Vec<u8> {
    Datagram::request(Tid::from_masked(1), req)
        .encode()
        .to_vec()
}

/// We ping `at` and it answers (with id `who`): it proved it receives, and we have its RTT.
fn answered_ping(core: &mut Core, now: Instant, at: SocketAddrV4, who: Option<NodeId>) {
    core.ping(now, at);
    let out = drain(core);
    answer_all(core, now, &out, |_| who);
}

/// `n` honest nodes, each on its own /24 of 20.0.0.0/8, join the table (each pings us and
/// answers our verifying ping).
fn fill_table(core: &mut Core, now: Instant, n: u32) {
    for i in 0..n {
        let at = SocketAddrV4::new(Ipv4Addr::new(20, (i >> 8) as u8, i as u8, 1), 1000);
        pair::join(core, now, at, id(i));
    }
    drain(core);
}

#[test]
fn nothing_is_sent_for_a_stranger_to_special_or_local_destinations() {
    let t = Instant::now();
    let mut core = core_with(Defences::default());
    let attacker = a("6.6.6.6:4000");
    let targets = [
        "127.0.0.1:9999",
        "127.0.0.1:49737",
        "0.0.0.0:1",
        "10.0.0.1:22",
        "192.168.1.1:80",
        "255.255.255.255:1",
        "224.0.0.251:5353",
        "169.254.169.254:80",
        "1.2.3.4:0",
    ];
    let mut sent_to_targets = 0;
    for target in targets {
        let to = Checked::Valid(a(target));
        let relay = request(Request {
            forward_request: Some(to.clone()),
            ..Request::new("_ping")
        });
        let pong = request(Request {
            forward_response: Some(to),
            ..Request::new("_ping")
        });
        core.handle_datagram(t, attacker, &relay);
        core.handle_datagram(t, attacker, &pong);
        sent_to_targets += drain(&mut core)
            .iter()
            .filter(|x| x.to == a(target))
            .count();
    }
    let refused = core.stats().refused_destinations;
    report!(
        "nothing_is_sent_for_a_stranger_to_special_or_local_destinations",
        "special destinations: {sent_to_targets} datagrams sent, {refused} refused"
    );
    assert_eq!(sent_to_targets, 0);
    // (Port 0 does not even decode as an address: dropped as malformed, not counted here.)
    assert!(refused >= 2 * (targets.len() as u64 - 1), "{refused}");

    // A requester on loopback may have a ping relayed to loopback (a local test network),
    // but not to our own socket.
    core.handle_datagram(
        t,
        a("127.0.0.1:5000"),
        &request(Request {
            forward_request: Some(Checked::Valid(a("127.0.0.1:6000"))),
            ..Request::new("_ping")
        }),
    );
    assert!(drain(&mut core).iter().any(|x| x.to == a("127.0.0.1:6000")));
    core.handle_datagram(
        t,
        a("127.0.0.1:5000"),
        &request(Request {
            forward_request: Some(Checked::Valid(a("127.0.0.1:49737"))),
            ..Request::new("_ping")
        }),
    );
    assert!(drain(&mut core).is_empty(), "nothing relayed to ourselves");
}

/// Bytes sent to `victim`'s IP while `n` requests spoofing it arrive over `secs` seconds.
fn reflected(defences: Defences, secs: u64, per_sec: u64, victim: Ipv4Addr) -> u64 {
    let t0 = Instant::now();
    let mut core = core_with(defences);
    fill_table(&mut core, t0, 40);
    let find = request(Request {
        target: Some(Checked::Valid(NodeId::from_bytes([0x33; 32]))),
        ..Request::new("_find_node")
    });
    let mut bytes = 0u64;
    for i in 0..secs * per_sec {
        let now = t0 + Duration::from_micros(i * 1_000_000 / per_sec);
        let from = SocketAddrV4::new(victim, 1024 + (i % 60_000) as u16);
        core.handle_datagram(now, from, &find);
        for x in drain(&mut core) {
            if x.to.ip() == &victim {
                bytes += x.payload.len() as u64;
            }
        }
    }
    bytes / secs
}

#[test]
fn a_spoofed_source_flood_reflects_a_bounded_rate_at_its_victim() {
    let victim = Ipv4Addr::new(7, 7, 7, 7);
    let open = Defences {
        requests_per_ip: None,
        requests_per_prefix: None,
        requests_total: None,
        unproven_bytes_per_ip: None,
        unproven_bytes_per_prefix: None,
        ..Defences::default()
    };
    let before = reflected(open, 5, 20_000, victim);
    let after = reflected(Defences::default(), 5, 20_000, victim);
    report!(
        "a_spoofed_source_flood_reflects_a_bounded_rate_at_its_victim",
        "spoofed _find_node flood, 20,000/s for 5 s: {} KiB/s reach the victim without budgets, {} KiB/s with",
        before / 1024,
        after / 1024
    );
    assert!(
        before > 10 * 1024 * 1024,
        "the scenario amplifies: {before} B/s"
    );
    assert!(after <= 192 * 1024, "{after} B/s");
}

#[test]
fn one_flooding_source_is_dropped_cheaply_and_others_keep_their_answers() {
    let t0 = Instant::now();
    let mut core = core_with(Defences::default());
    let (flooder, honest) = (a("6.6.6.6:4000"), a("8.8.4.4:5000"));
    let p = ping(None);
    let (mut asked, mut answered, mut flood_answered) = (0, 0, 0);
    // 10 s: the flooder at 100,000/s, the honest client at 1,000/s.
    for ms in 0..10_000u64 {
        let now = t0 + Duration::from_millis(ms);
        for _ in 0..100 {
            core.handle_datagram(now, flooder, &p);
        }
        core.handle_datagram(now, honest, &p);
        asked += 1;
        for x in drain(&mut core) {
            if x.to == honest {
                answered += 1;
            } else if x.to == flooder {
                flood_answered += 1;
            }
        }
    }
    let s = core.stats();
    report!(
        "one_flooding_source_is_dropped_cheaply_and_others_keep_their_answers",
        "flood of 1,000,000 pings from one IP beside an honest client at 1,000/s: honest {answered}/{asked} answered; flooder {flood_answered} answered, {} dropped before decoding",
        s.limited_ip
    );
    assert_eq!(answered, asked);
    assert!(flood_answered <= 2_000 * 10 + 4_000, "{flood_answered}");
    assert!(s.limited_ip >= 970_000);
}

#[test]
fn a_spoofed_relay_flood_leaves_a_legitimate_requester_its_relays() {
    let t0 = Instant::now();
    let mut core = core_with(Defences::default());
    // The legitimate target proved it receives: it answered a ping of ours.
    let target = a("5.5.5.5:7000");
    answered_ping(&mut core, t0, target, None);
    let legit = a("9.9.9.9:3000");
    let relay_to = |to: SocketAddrV4| {
        request(Request {
            forward_request: Some(Checked::Valid(to)),
            ..Request::new("_ping")
        })
    };
    let (mut asked, mut relayed, mut flood_out) = (0, 0, 0);
    let mut n = 0u32;
    // 5 s of 100,000 spoofed relay requests a second to random targets, and the
    // legitimate requester's 10 a second to its target.
    for ms in 0..5_000u64 {
        let now = t0 + Duration::from_millis(ms);
        for _ in 0..100 {
            n = n.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            let from = SocketAddrV4::new(Ipv4Addr::from(0x3000_0000 | (n >> 4)), 1000);
            let to = SocketAddrV4::new(Ipv4Addr::from(0x4000_0000 | (n >> 6)), 2000);
            core.handle_datagram(now, from, &relay_to(to));
        }
        if ms % 100 == 0 {
            core.handle_datagram(now, legit, &relay_to(target));
            asked += 1;
        }
        for x in drain(&mut core) {
            if x.to == target {
                relayed += 1;
            } else {
                flood_out += 1;
            }
        }
    }
    report!(
        "a_spoofed_relay_flood_leaves_a_legitimate_requester_its_relays",
        "spoofed relay flood, 500,000 requests to random targets: {flood_out} relayed; the legitimate requester {relayed}/{asked}"
    );
    assert!(relayed * 10 >= asked * 9, "{relayed}/{asked}");
    assert!(flood_out <= 20 * 5 + 40, "{flood_out}");

    // Pongs reflected at one third address by many (spoofed) relays: bounded per target.
    let victim = a("7.7.7.7:53");
    let pong_to = request(Request {
        forward_response: Some(Checked::Valid(victim)),
        ..Request::new("_ping")
    });
    let mut hits = 0;
    for i in 0..10_000u32 {
        let now = t0 + Duration::from_secs(10) + Duration::from_micros(u64::from(i) * 100);
        let from = SocketAddrV4::new(Ipv4Addr::from(0x3100_0000 | i), 1000);
        core.handle_datagram(now, from, &pong_to);
        hits += drain(&mut core).iter().filter(|x| x.to == victim).count();
    }
    report!(
        "forwarded_pongs_at_one_victim",
        "10,000 forwarded pings at one victim in 1 s from 10,000 relays: {hits} pongs reached it"
    );
    assert!(hits <= 10 + 20, "{hits}");
}

#[test]
fn one_ip_gets_a_bounded_share_of_the_routing_table() {
    let t0 = Instant::now();
    let mut core = core_with(Defences::default());
    fill_table(&mut core, t0, 30);
    let before = core.table().len();
    // One host, 500 ports, each with a crafted id, answering every verifying ping.
    let host = Ipv4Addr::new(6, 6, 6, 6);
    for port in 0..500u16 {
        let from = SocketAddrV4::new(host, 10_000 + port);
        let crafted = id(0x8000_0000 | u32::from(port));
        core.handle_datagram(t0, from, &ping(Some(crafted)));
        let out = drain(&mut core);
        answer_all(&mut core, t0, &out, |_| Some(crafted));
    }
    let on_host = core.table().iter().filter(|c| c.addr.ip() == &host).count();
    // Spoofed sources with ids that never answer.
    for i in 0..1000u32 {
        let from = SocketAddrV4::new(Ipv4Addr::from(0x3200_0000 | i << 8), 1000);
        core.handle_datagram(t0, from, &ping(Some(id(0x9000_0000 | i))));
        drain(&mut core);
    }
    core.handle_timeout(t0 + Duration::from_secs(3));
    drain(&mut core);
    let spoofed = core
        .table()
        .iter()
        .filter(|c| u32::from(*c.addr.ip()) >> 24 == 0x32)
        .count();
    let s = core.stats();
    report!(
        "one_ip_gets_a_bounded_share_of_the_routing_table",
        "one IP with 500 ports and crafted ids: {on_host} in the table ({} refused); 1000 spoofed ids: {spoofed} in the table ({} verifying pings, {} over their rate)",
        s.table_limited,
        s.verify_pings,
        s.verify_limited
    );
    assert!(on_host <= 2, "{on_host}");
    assert_eq!(spoofed, 0);
    assert!(core.table().len() >= before);
}

#[test]
fn a_walk_takes_a_bounded_number_of_candidates_from_one_answer() {
    let t0 = Instant::now();
    let entry = a("30.0.0.1:49737");
    let mut core = Core::new(
        Config {
            bootstrap: vec![entry],
            ..Config::default()
        },
        t0,
    );
    core.query(
        t0,
        QuerySpec::query("_find_node", NodeId::from_bytes([1; 32]), None),
    );
    let out = drain(&mut core);
    let asked = out
        .iter()
        .find(|x| x.to == entry)
        .expect("asked the entry node");
    let Ok(Datagram { tid, .. }) = Datagram::decode(&asked.payload) else {
        panic!("a request");
    };
    // The malicious answer names 1,700 nodes, all on the victim's IP.
    let victim = Ipv4Addr::new(7, 7, 7, 7);
    let named: Vec<NodeAddr> = (0..1700u32)
        .map(|i| NodeAddr {
            id: id(i),
            addr: SocketAddrV4::new(victim, 1000 + i as u16),
        })
        .collect();
    let answer = Datagram::response(
        tid,
        Response {
            id: Some(Checked::Valid(id(99_999))),
            nodes: Some(Checked::Valid(named)),
            ..Response::default()
        },
    );
    core.handle_datagram(t0, entry, &answer.encode());
    let mut to_victim = 0;
    for ms in 0..5_000u64 {
        core.handle_timeout(t0 + Duration::from_millis(ms));
        to_victim += drain(&mut core)
            .iter()
            .filter(|x| x.to.ip() == &victim)
            .count();
    }
    report!(
        "a_walk_takes_a_bounded_number_of_candidates_from_one_answer",
        "an answer naming 1,700 nodes on one IP: {to_victim} datagrams to it ({} candidates refused)",
        core.stats().candidates_refused
    );
    assert!(to_victim <= 2 * 2, "{to_victim}");
}

#[test]
fn punch_hints_count_only_from_relays_that_proved_they_receive() {
    let t0 = Instant::now();
    let mut core = core_with(Defences::default());
    let hint = |requester| {
        request(Request {
            forward_response: Some(Checked::Valid(requester)),
            value: Some(bytes::Bytes::from_static(b"hint")),
            ..Request::new("_ping")
        })
    };
    let punch_requests = |core: &mut Core| {
        std::iter::from_fn(|| core.poll_event())
            .filter(|e| matches!(e, dht_rpc::Event::PunchRequest { .. }))
            .count()
    };
    // A stranger's single datagram: no hint reaches the application.
    core.handle_datagram(t0, a("6.6.6.6:1"), &hint(a("7.7.7.7:2")));
    assert_eq!(punch_requests(&mut core), 0);
    assert_eq!(core.stats().hints_unproven, 1);
    // A relay that answered a ping of ours: its hint does.
    let relay = a("5.5.5.5:7000");
    answered_ping(&mut core, t0, relay, None);
    core.handle_datagram(t0, relay, &hint(a("8.8.8.8:3")));
    assert_eq!(punch_requests(&mut core), 1);
    report!(
        "punch_hints",
        "a stranger's hint: ignored ({} counted); a proven relay's: passed on",
        core.stats().hints_unproven
    );
}

#[test]
fn budgets_are_configurable() {
    // A limit of 5 requests per IP and burst 5: the sixth in the same instant is dropped.
    let t0 = Instant::now();
    let mut core = core_with(Defences {
        requests_per_ip: Some(Limit { rate: 5, burst: 5 }),
        ..Defences::default()
    });
    for _ in 0..6 {
        core.handle_datagram(t0, a("6.6.6.6:1"), &ping(None));
    }
    assert_eq!(drain(&mut core).len(), 5);
    assert_eq!(core.stats().limited_ip, 1);
}

/// ICMP port-unreachables (`Core::handle_unreachable`): only one that names a request in
/// flight, by its destination and transaction id, fails it, and only for a node that
/// answered us directly before; a forged one (wrong transaction id, wrong address, a quoted
/// response) changes nothing but a counter, and a stranger's refusal (perhaps its NAT) only
/// stalls a walk's request.
#[test]
fn icmp_errors_fail_only_the_request_they_name_and_only_for_known_nodes() {
    let t = Instant::now();
    let mut core = core_with(Defences::default());
    let known = a("20.0.0.1:1000");
    // It answers a ping: known (an RTT sample).
    answered_ping(&mut core, t, known, Some(id(1)));
    drain(&mut core);

    let r = core.ping(t, known);
    let sent = drain(&mut core);
    let [tx] = sent.as_slice() else {
        panic!("one ping: {sent:?}")
    };
    let quoted = tx.payload.to_vec();
    let mut forged = quoted.clone();
    forged[1] ^= 1;
    core.handle_unreachable(t, known, &forged);
    core.handle_unreachable(t, a("20.0.0.2:1000"), &quoted);
    let response = Datagram::response(Tid::from_masked(1), Response::default()).encode();
    core.handle_unreachable(t, known, &response);
    core.handle_unreachable(t, known, &[]);
    assert_eq!(
        core.stats().icmp_ignored,
        4,
        "wrong tid, address, a response, nothing"
    );
    assert!(
        !std::iter::from_fn(|| core.poll_event()).any(|e| matches!(e, dht_rpc::Event::Pong { .. })),
        "the ping still waits"
    );
    core.handle_unreachable(t, known, &quoted);
    let events: Vec<_> = std::iter::from_fn(|| core.poll_event()).collect();
    assert!(
        events.iter().any(|e| matches!(e, dht_rpc::Event::Pong { request, result: Err(dht_rpc::RequestError::Unreachable) } if *request == r)),
        "{events:?}"
    );
    assert_eq!(core.stats().unreachable, 1);

    // A stranger's refusal leaves a ping to wait its timeout.
    let stranger = a("30.0.0.1:1000");
    core.ping(t, stranger);
    let sent = drain(&mut core);
    core.handle_unreachable(t, stranger, &sent[0].payload);
    assert_eq!(core.stats().icmp_ignored, 5);
    assert!(
        !std::iter::from_fn(|| core.poll_event()).any(|e| matches!(e, dht_rpc::Event::Pong { .. }))
    );
}

/// Our own requests: a user's ping to `to` and a walk (its first requests go to the table's
/// closest), sent now; the addresses they went to.
fn own_requests_sent_now(core: &mut Core, now: Instant, to: SocketAddrV4) -> (bool, usize) {
    core.ping(now, to);
    core.query(
        now,
        QuerySpec::query("_find_node", NodeId::from_bytes([1; 32]), None),
    );
    let out = drain(core);
    let requests = |t: &&Transmit| {
        matches!(
            Datagram::decode(&t.payload),
            Ok(Datagram {
                message: Message::Request(_),
                ..
            })
        )
    };
    let pinged = out.iter().filter(requests).any(|t| t.to == to);
    let walk = out.iter().filter(requests).filter(|t| t.to != to).count();
    (pinged, walk)
}

#[test]
fn strangers_that_never_answer_our_checks_do_not_hold_up_our_own_requests() {
    // Hosts send pings, each from a new port with a made-up id the table has room for (ids
    // near ours, 0xff..., whose buckets are empty), and never answer our checking pings.
    // One host, then (on a node of its own) sixteen.
    for (round, hosts) in [(0u8, 1u8), (1, 16)] {
        let t = Instant::now();
        let mut core = core_with(Defences::default());
        fill_table(&mut core, t, 30);
        let mut verify_pings = 0;
        for i in 0..200u32 {
            let host = Ipv4Addr::new(6, 6, round, (i % u32::from(hosts)) as u8 + 1);
            let from = SocketAddrV4::new(host, 10_000 + i as u16);
            let mut near = [0xff; 32];
            near[30] = i as u8;
            near[31] = round;
            core.handle_datagram(t, from, &ping(Some(NodeId::from_bytes(near))));
            verify_pings += drain(&mut core)
                .iter()
                .filter(|x| {
                    x.to == from
                        && matches!(
                            Datagram::decode(&x.payload),
                            Ok(Datagram {
                                message: Message::Request(_),
                                ..
                            })
                        )
                })
                .count();
        }
        let honest = SocketAddrV4::new(Ipv4Addr::new(20, 0, 3, 1), 1000);
        let (pinged, walk) = own_requests_sent_now(&mut core, t, honest);
        report!(
            "strangers_that_never_answer_our_checks_do_not_hold_up_our_own_requests",
            "{hosts} host(s), 200 pings with made-up ids: {verify_pings} checking pings sent at once; our ping sent at once: {pinged}, our walk's requests sent at once: {walk}"
        );
        assert!(pinged, "our ping waits behind checks of strangers");
        assert!(walk >= 8, "our walk sent {walk} requests at once");
    }
}

#[test]
fn a_forger_who_saw_one_tid_cannot_answer_in_a_spoofed_nodes_name() {
    let t0 = Instant::now();
    let mut core = core_with(Defences::default());
    fill_table(&mut core, t0, 30);
    let tid_of = |t: &Transmit| Datagram::decode(&t.payload).map(|d| d.tid.get());
    // The forger pings us from its own address with a made-up id and reads the tid of our
    // checking ping...
    let own = a("66.0.0.1:4000");
    let mut near = [0xff; 32];
    near[31] = 1;
    core.handle_datagram(t0, own, &ping(Some(NodeId::from_bytes(near))));
    let seen = drain(&mut core)
        .iter()
        .filter(|x| x.to == own && x.payload.len() > 4)
        .filter_map(|x| tid_of(x).ok())
        .max()
        .expect("a checking ping to the forger");
    // ...then pings us as the spoofed node X (a victim's address, an id of its choice), and
    // answers our checking ping to X blind: the next 2,000 tids after the one it saw, then
    // 2,000 at random, as X.
    let x = a("77.0.0.1:5000");
    near[31] = 2;
    let chosen = NodeId::from_bytes(near);
    core.handle_datagram(t0, x, &ping(Some(chosen)));
    drain(&mut core);
    let guesses = (1..=2000u16)
        .map(|i| seen.wrapping_add(i))
        .chain((0..2000u16).map(|i| i.wrapping_mul(16_411)));
    for (i, tid) in guesses.enumerate() {
        let forged = Datagram::response(
            Tid::from_masked(tid),
            Response {
                id: Some(Checked::Valid(chosen)),
                ..Response::default()
            },
        );
        let at = t0 + Duration::from_micros(200 * i as u64); // 5,000 a second
        core.handle_datagram(at, x, &forged.encode());
    }
    let in_table = core.table().iter().any(|c| c.addr == x);
    let s = core.stats();
    report!(
        "a_forger_who_saw_one_tid_cannot_answer_in_a_spoofed_nodes_name",
        "4,000 forged answers as {x}: in the table {in_table}; {} read and matched nothing, {} dropped unread",
        s.unknown_responses,
        s.guesses_limited
    );
    assert!(!in_table, "a forged answer put {x} in the table");
    assert!(s.guesses_limited > 3_900, "{s:?}");
}

#[test]
fn spoofed_requests_in_a_dead_contacts_name_do_not_keep_it_in_the_table() {
    let t0 = Instant::now();
    let mut core = core_with(Defences::default());
    fill_table(&mut core, t0, 30);
    // Contact 7 goes silent; every 30 s someone pings us in its name (its address and id
    // are public: we hand them out). The other contacts answer our checks.
    let dead = SocketAddrV4::new(Ipv4Addr::new(20, 0, 7, 1), 1000);
    assert!(core.table().iter().any(|c| c.addr == dead));
    let mut t = t0;
    for _ in 0..(60 * 60 / 30) {
        t += Duration::from_secs(30);
        core.handle_datagram(t, dead, &ping(Some(id(7))));
        core.handle_timeout(t);
        let out: Vec<Transmit> = drain(&mut core)
            .into_iter()
            .filter(|x| x.to != dead)
            .collect();
        answer_all(&mut core, t, &out, |to| {
            let i = u32::from(to.ip().octets()[2]) | u32::from(to.ip().octets()[1]) << 8;
            Some(id(i))
        });
    }
    let kept = core.table().iter().any(|c| c.addr == dead);
    report!(
        "spoofed_requests_in_a_dead_contacts_name_do_not_keep_it_in_the_table",
        "an hour of spoofed pings every 30 s in a silent contact's name: still in the table {kept}; {} contacts in all",
        core.table().len()
    );
    assert!(!kept, "the silent contact stayed in the table");
    // The others stay (one bucket of 20 holds them: the 30 ids share their first bits).
    assert_eq!(core.table().len(), 19);
}
