//! The soak: a `hyperdht` node on 127.0.0.1 (loopback not trusted, so that the defences see
//! 127.0.0.x as hosts of the internet) under mixed load for some minutes, reporting every
//! 10 s what an honest client gets and what the node holds.
//!
//! ```sh
//! cargo build --release -p hyperdht-cli -p hyperdht-tests
//! target/release/soak --minutes 5                       # report in target/soak/
//! target/release/soak --minutes 5 --docs docs/RELIABILITY.md
//! ```
//!
//! The load, all bounded by the duration and stopping by itself:
//! Each load comes from its own /24 of 127/8 (the defences budget per IP and per /24):
//! - an honest client (127.0.3.1): 1,000 requests a second, `_ping` and `peers` lookups,
//!   each matched to its answer for the answered share and latency percentiles;
//! - announcers (127.1.x.y, a new IP every 20 ms): each takes a token and announces 20 keys;
//! - garbage (127.0.5.1): 5,000 random datagrams a second;
//! - a flood (127.0.6.1): 50,000 `_ping`s a second;
//! - a reflection victim (127.0.7.1): 20,000 `_find_node`s a second sent from its own
//!   address, as a spoofed-source flood would; it counts the bytes it receives.
//!
//! The node runs on core 0 and the load on core 1 when `taskset` exists. Memory is the
//! node's resident set (`VmRSS`). At the end the node is stopped with SIGTERM and prints
//! its counters, which the report includes.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dht_wire::{Checked, Datagram, Message, NodeId, PeersRequest, PeersRequestType, Request, Tid};

const WINDOW: Duration = Duration::from_secs(10);

#[derive(Default)]
struct Window {
    asked: u64,
    rtts: Vec<Duration>,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let minutes: f64 = match arg("--minutes").map(|m| m.parse::<f64>()) {
        None => 5.0,
        Some(Ok(m)) if m > 0.0 && m <= 240.0 => m,
        Some(_) => {
            eprintln!("soak: --minutes takes a number of minutes from 0 to 240");
            std::process::exit(2);
        }
    };
    let docs = arg("--docs");
    let duration = Duration::from_secs_f64(minutes * 60.0);

    let exe = std::env::current_exe().expect("soak executable");
    let hyperdht = exe.with_file_name("hyperdht");
    if !hyperdht.exists() {
        eprintln!(
            "soak: {} is missing: cargo build --release -p hyperdht-cli",
            hyperdht.display()
        );
        std::process::exit(2);
    }
    let taskset = hyperdht_tests::perf::can_pin();
    let mut cmd = hyperdht_tests::perf::pinned(taskset.then_some(0), &hyperdht);
    cmd.args(["--host", "127.0.0.1", "--no-trust-loopback", "--json", "-q"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = cmd.spawn().expect("start hyperdht");
    let pid = child.id();
    if taskset {
        let _ = Command::new("taskset")
            .args(["-cp", "1", &std::process::id().to_string()])
            .stdout(Stdio::null())
            .status();
    }
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let node: SocketAddr = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| {
            let v: serde_json::Value = serde_json::from_str(&l).ok()?;
            (v["event"] == "listening")
                .then(|| hyperdht_tests::json_addr(&v["address"]).map(SocketAddr::V4))?
        })
        .expect("the node's address");
    eprintln!("soak: node {node} (pid {pid}) for {minutes} min");

    let stop = Arc::new(AtomicBool::new(false));
    let windows: Arc<Mutex<HashMap<u64, Window>>> = Arc::default();
    let victim_bytes = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut threads = Vec::new();
    {
        let (stop, windows) = (stop.clone(), windows.clone());
        threads.push(std::thread::spawn(move || {
            honest(node, &stop, &windows, start);
        }));
    }
    for (who, rate, kind) in [
        (Ipv4Addr::new(127, 0, 5, 1), 5_000, Load::Garbage),
        (Ipv4Addr::new(127, 0, 6, 1), 50_000, Load::Flood),
        (Ipv4Addr::new(127, 0, 7, 1), 20_000, Load::Victim),
    ] {
        let (stop, victim_bytes) = (stop.clone(), victim_bytes.clone());
        threads.push(std::thread::spawn(move || {
            blast(node, who, rate, kind, &stop, &victim_bytes);
        }));
    }
    {
        let stop = stop.clone();
        threads.push(std::thread::spawn(move || announcers(node, &stop)));
    }

    let mut report = Vec::new();
    let mut last_victim = 0;
    let mut t = WINDOW;
    while t <= duration {
        std::thread::sleep((start + t).saturating_duration_since(Instant::now()));
        let rss = hyperdht_tests::perf::rss_kib(pid).unwrap_or(0);
        let w = windows
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(t.as_secs() / WINDOW.as_secs() - 1))
            .unwrap_or_default();
        let mut rtts = w.rtts;
        rtts.sort();
        let pct = |p: usize| {
            rtts.get((rtts.len() * p / 100).min(rtts.len().saturating_sub(1)))
                .map_or(0.0, |d| d.as_secs_f64() * 1e3)
        };
        let v = victim_bytes.load(Ordering::Relaxed);
        let row = Row {
            at: t.as_secs(),
            rss_kib: rss,
            asked: w.asked,
            answered: rtts.len() as u64,
            p50_ms: pct(50),
            p99_ms: pct(99),
            victim_kib_s: (v - last_victim) as f64 / 1024.0 / WINDOW.as_secs_f64(),
        };
        last_victim = v;
        println!(
            "{{\"t\":{},\"rss_kib\":{},\"honest_asked\":{},\"honest_answered\":{},\"p50_ms\":{:.3},\"p99_ms\":{:.3},\"victim_kib_s\":{:.1}}}",
            row.at, row.rss_kib, row.asked, row.answered, row.p50_ms, row.p99_ms, row.victim_kib_s
        );
        report.push(row);
        t += WINDOW;
    }
    stop.store(true, Ordering::Relaxed);
    for th in threads {
        let _ = th.join();
    }
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let stats: Option<serde_json::Value> = lines.map_while(Result::ok).find_map(|l| {
        let v: serde_json::Value = serde_json::from_str(&l).ok()?;
        (v["event"] == "stats").then_some(v)
    });
    let _ = child.wait();
    let md = markdown(minutes, &report, stats.as_ref());
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/soak");
    let _ = std::fs::create_dir_all(&dir);
    let out = dir.join("RELIABILITY.md");
    std::fs::write(&out, &md).expect("write the report");
    eprintln!("soak: report in {}", out.display());
    if let Some(d) = docs {
        std::fs::write(&d, &md).expect("write the docs");
        eprintln!("soak: written to {d}");
    }
}

struct Row {
    at: u64,
    rss_kib: u64,
    asked: u64,
    answered: u64,
    p50_ms: f64,
    p99_ms: f64,
    victim_kib_s: f64,
}

#[derive(Clone, Copy)]
enum Load {
    Garbage,
    Flood,
    Victim,
}

fn request(tid: u16, req: Request) -> Vec<u8> {
    Datagram::request(Tid::from_masked(tid), req)
        .encode()
        .to_vec()
}

fn lookup(tid: u16, key: [u8; 32]) -> Vec<u8> {
    request(
        tid,
        Request {
            target: Some(Checked::Valid(NodeId::from_bytes(key))),
            value: Some(PeersRequest::new(PeersRequestType::Lookup, None, None).encode()),
            ..Request::new("peers")
        },
    )
}

/// Paces `rate` a second: how many are due by now.
fn due(start: Instant, rate: u64) -> u64 {
    start.elapsed().as_micros() as u64 * rate / 1_000_000
}

fn honest(
    node: SocketAddr,
    stop: &AtomicBool,
    windows: &Mutex<HashMap<u64, Window>>,
    start: Instant,
) {
    let s = UdpSocket::bind("127.0.3.1:0").expect("bind 127.0.3.1");
    s.set_nonblocking(true).expect("nonblocking");
    let mut pending: HashMap<u16, (Instant, u64)> = HashMap::new();
    let (mut sent, mut buf) = (0u64, [0u8; 4096]);
    while !stop.load(Ordering::Relaxed) {
        while sent < due(start, 1_000) {
            let tid = (sent % 32_768) as u16;
            let d = if sent % 2 == 0 {
                request(tid, Request::new("_ping"))
            } else {
                lookup(tid, [(sent % 251) as u8; 32])
            };
            let _ = s.send_to(&d, node);
            let w = start.elapsed().as_secs() / WINDOW.as_secs();
            pending.insert(tid, (Instant::now(), w));
            windows
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(w)
                .or_default()
                .asked += 1;
            sent += 1;
        }
        while let Ok((n, _)) = s.recv_from(&mut buf) {
            if let Ok(d) = Datagram::decode(&buf[..n])
                && let Some((at, w)) = pending.remove(&d.tid.get())
            {
                windows
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .entry(w)
                    .or_default()
                    .rtts
                    .push(at.elapsed());
            }
        }
        // Requests unanswered for 5 s are lost.
        pending.retain(|_, (at, _)| at.elapsed() < Duration::from_secs(5));
        std::thread::sleep(Duration::from_micros(200));
    }
}

fn blast(
    node: SocketAddr,
    who: Ipv4Addr,
    rate: u64,
    kind: Load,
    stop: &AtomicBool,
    victim_bytes: &AtomicU64,
) {
    let s = UdpSocket::bind(SocketAddrV4::new(who, 0)).expect("bind a load address");
    s.set_nonblocking(true).expect("nonblocking");
    let start = Instant::now();
    let (mut sent, mut x, mut buf) = (0u64, 0x2545_f491_4f6c_dd1du64, [0u8; 4096]);
    let find = request(
        1,
        Request {
            target: Some(Checked::Valid(NodeId::from_bytes([0x42; 32]))),
            ..Request::new("_find_node")
        },
    );
    let ping = request(1, Request::new("_ping"));
    while !stop.load(Ordering::Relaxed) {
        while sent < due(start, rate) {
            match kind {
                Load::Garbage => {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let len = (x % 120) as usize;
                    let bytes: Vec<u8> = (0..len).map(|i| (x >> (i % 8 * 8)) as u8).collect();
                    let _ = s.send_to(&bytes, node);
                }
                Load::Flood => {
                    let _ = s.send_to(&ping, node);
                }
                Load::Victim => {
                    let _ = s.send_to(&find, node);
                }
            }
            sent += 1;
        }
        while let Ok((n, _)) = s.recv_from(&mut buf) {
            if matches!(kind, Load::Victim) {
                victim_bytes.fetch_add(n as u64, Ordering::Relaxed);
            }
        }
        std::thread::sleep(Duration::from_micros(500));
    }
}

/// A new announcer IP every 20 ms, each announcing 20 keys with a token from a ping.
fn announcers(node: SocketAddr, stop: &AtomicBool) {
    let mut buf = [0u8; 4096];
    let mut i = 0u32;
    while !stop.load(Ordering::Relaxed) {
        let ip = Ipv4Addr::new(127, 1, (i >> 8) as u8, i as u8);
        i = (i + 1) % 65_000;
        let Ok(s) = UdpSocket::bind(SocketAddrV4::new(ip, 0)) else {
            continue;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
        let _ = s.send_to(&request(1, Request::new("_ping")), node);
        let token = s.recv_from(&mut buf).ok().and_then(|(n, _)| {
            match Datagram::decode(&buf[..n]).ok()?.message {
                Message::Response(r) => r.roundtrip_token,
                Message::Request(_) => None,
            }
        });
        if let Some(token) = token {
            for k in 0..20u32 {
                let mut key = [0u8; 32];
                key[..4].copy_from_slice(&i.to_be_bytes());
                key[4..8].copy_from_slice(&k.to_be_bytes());
                let d = request(
                    2,
                    Request {
                        target: Some(Checked::Valid(NodeId::from_bytes(key))),
                        roundtrip_token: Some(token.clone()),
                        value: Some(
                            PeersRequest::new(PeersRequestType::Announce, None, None).encode(),
                        ),
                        ..Request::new("peers")
                    },
                );
                let _ = s.send_to(&d, node);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The attacks of the tests, by the name of the report each writes: the attack, the
/// defence, and the bound that remains.
const ATTACKS: [(&str, &str, &str, &str); 21] = [
    (
        "nothing_is_sent_for_a_stranger_to_special_or_local_destinations",
        "A stranger names loopback, a LAN address, broadcast, multicast, 0.0.0.0 or our own socket in `forwardRequest` / `forwardResponse`",
        "Destination rules (`dht_rpc::guard::dest`): never special-purpose addresses; loopback and private ranges only for requesters inside them; nothing to ourselves",
        "A requester on a LAN can still have pings relayed to that LAN (as the protocol needs)",
    ),
    (
        "a_spoofed_source_flood_reflects_a_bounded_rate_at_its_victim",
        "Spoofed-source `_find_node` flood: every answer goes to the victim",
        "Response byte budget per IP that never proved it receives (128 KiB/s, burst 256 KiB) and per /24 (512 KiB/s)",
        "128 KiB/s per victim IP per node (512 KiB/s per victim /24); a victim that proved it receives (a DHT node we talk to) up to 512 KiB/s; each node the attacker uses adds its share",
    ),
    (
        "one_flooding_source_is_dropped_cheaply_and_others_keep_their_answers",
        "One IP floods `_ping`",
        "Request budget per IP (2,000/s, burst 4,000), per /24 (8,000/s) and in total (1,000,000/s), checked on the first byte before decoding",
        "A flood from many /24s at once can use up the total budget",
    ),
    (
        "a_spoofed_relay_flood_leaves_a_legitimate_requester_its_relays",
        "Spoofed relay flood (100,000/s from random sources to random targets) against a legitimate requester",
        "Relays per requester and per target (20/s) in fixed-memory hashed buckets that spoofed sources cannot fill; targets that never proved they receive share 20/s in all",
        "A flood aimed at the legitimate target itself limits relays to that target to 20/s",
    ),
    (
        "an_honest_requester_gets_its_punches_relayed_through_a_spoofed_forward_flood",
        "Spoofed `forwardRequest` flood (10,000/s from 400 sources to random targets) while an honest requester punches to a target that never wrote to the node (a fresh announcer)",
        "A punch that presents the roundtrip token its lookup got from the node really comes from its source: it is counted apart (20/s per requester and per target among tokened requests) and not in the 20/s that relays to unproven targets share; the token is not passed on to the target",
        "Untokened punches (the reference's, or a client that did no lookup) to unproven targets still share 20/s in all; a requester with a real IP and token gets 20/s of relays to any target",
    ),
    (
        "forwarded_pongs_at_one_victim",
        "Many relays (spoofed) ask us to pong one third address",
        "Forwarded pongs per target IP (10/s, burst 20) and in all (500/s)",
        "10 pongs/s per victim per node",
    ),
    (
        "one_ip_gets_a_bounded_share_of_the_routing_table",
        "One IP with 500 ports and crafted ids; 1,000 spoofed ids that never answer",
        "A requester enters the table only after answering our ping; at most 2 contacts per IP (1 per bucket) and 16 per /24 (2 per bucket)",
        "An attacker with many /24s can still place nodes (a Sybil attack needs addresses)",
    ),
    (
        "a_walk_takes_a_bounded_number_of_candidates_from_one_answer",
        "One answer names 1,700 nodes, all on a victim's IP",
        "At most 20 new candidates per answer, at most 2 per IP per walk, none at refused destinations",
        "2 requests per walk toward one victim IP",
    ),
    (
        "one_ip_or_one_prefix_cannot_wipe_the_store",
        "One IP (then its /24) announces 100,000 (300,000) keys with a valid token",
        "Store quotas: 256 entries per IP, 1,024 per /24, 16 per IP and 64 per /24 on one key; answers sample O(answer) entries",
        "Many /24s together can still fill the store (65,536 entries a generation)",
    ),
    (
        "a_flooding_source_does_not_starve_a_well_behaved_client",
        "Through the real socket: one source floods while a client asks 1,000/s",
        "The request budgets above",
        "The kernel's receive buffer: a flood faster than the node drains it drops datagrams before the node sees them",
    ),
    (
        "a_relayed_hole_punch_works_between_untrusted_hosts",
        "(The honest case) a relayed hole punch between hosts the defences do not trust",
        "Relays to proven targets pass",
        "",
    ),
    (
        "punch_hints",
        "A single datagram asks for a birthday punch (1,024 sprayed datagrams or 256 sockets)",
        "Hints count only from relays that proved they receive; one punch per requester IP every 10 s, two per relay IP a minute, six a minute in all; one 256-socket hard side at a time",
        "A relay that proved itself can still aim 2 sprays (2,048 small datagrams) a minute at victims of its choice",
    ),
    (
        "a_spoofed_birthday_hint_gets_a_challenge_not_a_spray",
        "A spoofed relayed ping asks a Rust node to spray a victim's IP (or open 256 sockets toward it)",
        "The hint gets a challenge back through the relay (our roundtrip token for the asker's IP); only a hint that echoes the token starts a spray",
        "One relayed ping (the protocol's pong) and one challenge per spoofed hint, at most 60 challenges a minute; a requester that does receive at its IP can still ask for its own spray",
    ),
    (
        "strangers_that_never_answer_our_checks_do_not_hold_up_our_own_requests",
        "Hosts send pings from new ports with made-up ids the table has room for, and never answer our checking pings",
        "Background requests (checks, reachability, a walk's punches) take at most a quarter of the request slots and let others pass; one check per IP at a time, 32 at most",
        "Four hosts that never answer keep newcomers from being checked for a timeout (1.25 s) at a time; they enter later, when a walk hears from them",
    ),
    (
        "a_forger_who_saw_one_tid_cannot_answer_in_a_spoofed_nodes_name",
        "A forger who saw one of our tids answers our check of a spoofed address with guessed tids",
        "Random tids (15 bits); an IP whose responses match nothing more than 16/s (burst 32) has its responses dropped unread (second and late answers exempt)",
        "About 40 guesses per pending request: a chance of about 1 in 800 per request to answer in a spoofed node's name",
    ),
    (
        "spoofed_requests_in_a_dead_contacts_name_do_not_keep_it_in_the_table",
        "Pings spoofed in a silent contact's name (its id and address are public) every 30 s",
        "A request refreshes a contact, or revives a dead address, only from a source that proved lately that it receives (10-20 min)",
        "A dead contact stays up to the proven set's lifetime (10-20 min) before the sweep checks it",
    ),
    (
        "relay_strangers",
        "A stranger sends data for guessed pairings through a relay, and reserves with a forged token",
        "A relay forwards only between the two ends of a joined pairing; a reserve, bind or join without the relay's token for the sender's IP gets a challenge no larger than it (4 per IP every 10 s, 200/s in all)",
        "A peer that reserved can bind 4 pairings, each held 10 s unjoined",
    ),
    (
        "a_circuit_forwards_only_between_its_two_ends_and_within_its_budget",
        "One end of a relay circuit hogs it, or uses it to flood the other end",
        "Forwarded bytes = bytes in, at most 128 KiB per direction and 2 minutes per circuit; 16 circuits, 4 per reserved peer, 8 per /24",
        "A reserved peer can push 4 x 128 KiB at peers that joined it, every 2 minutes",
    ),
    (
        "reservations_are_bounded_in_all_per_ip_and_per_prefix",
        "Relay reservation exhaustion from one IP or one /24",
        "128 reservations in all, 2 per IP, 4 per /24 (trusted ranges exempt), an hour each unless refreshed",
        "Many /24s together can still hold all 128 for an hour",
    ),
    (
        "relay_under_attack",
        "While an honest pair talks through a relay, two attacker hosts that proved their IPs reserve, bind past the per-peer limit, open circuits between themselves and blast them past budget, and guess pairings (data, joins, binds) for 30 s",
        "All of the limits above at once; the honest circuit's budget is its own (`cargo test -p dht-sim --test relay`)",
        "Attackers in two or more /24s (8 circuits per /24) can hold all 16: a pair that has none yet is then refused until one expires (2 minutes)",
    ),
    (
        "expired_entries_stop_counting_against_the_quotas",
        "(The honest case) a peer that comes back on new ports fills its quota with entries that then expire",
        "An announce over a quota first drops the store's expired entries (a pass over the store, at most once a minute)",
        "",
    ),
];

fn attacks(md: &mut String) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/reports/defences");
    let _ = writeln!(
        md,
        "## The attacks\n\nEach row is a test that performs the attack (`cargo test -p dht-rpc --test defences --test flood`, `cargo test -p hyperdht --test hostile`, `cargo test -p hyperdht --lib store`, and for hints `punch_hints_count_only_from_relays_that_proved_they_receive`; the relay's under `cargo test -p dht-sim --test relay` and `cargo test -p hyperdht --lib relay`); the figure is what the test printed on its last run before this report.\n\n| attack | defence | measured | bound that remains |\n|---|---|---|---|"
    );
    for (name, attack, defence, remains) in ATTACKS {
        let figure = std::fs::read_to_string(dir.join(format!("{name}.txt")))
            .map(|s| s.trim().replace('|', "/"))
            .unwrap_or_else(|_| "(asserted; no figure)".into());
        let _ = writeln!(md, "| {attack} | {defence} | {figure} | {remains} |");
    }
    let _ = writeln!(md);
}

fn markdown(minutes: f64, rows: &[Row], stats: Option<&serde_json::Value>) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# Reliability: attacks, defences, and the soak\n");
    attacks(&mut md);
    let _ = writeln!(md, "## The soak\n");
    let _ = writeln!(
        md,
        "Written by `target/release/soak --minutes {minutes} --docs docs/RELIABILITY.md` (see `tests/src/bin/soak.rs`). A `hyperdht` node on 127.0.0.1 with loopback not trusted (`--no-trust-loopback`), pinned to core 0, the load on core 1: an honest client at 1,000 requests/s (`_ping` and `peers` lookups), a new announcer IP every 20 ms announcing 20 keys each, 5,000 garbage datagrams/s, a flood of 50,000 `_ping`s/s from one IP, and a reflection victim sending 20,000 `_find_node`s/s from its own address (what a spoofed-source flood does) and counting what it receives.\n"
    );
    let _ = writeln!(
        md,
        "| t (s) | node RSS (MiB) | honest answered | p50 (ms) | p99 (ms) | at the victim (KiB/s) |\n|---|---|---|---|---|---|"
    );
    for r in rows {
        let share = if r.asked == 0 {
            0.0
        } else {
            r.answered as f64 * 100.0 / r.asked as f64
        };
        let _ = writeln!(
            md,
            "| {} | {:.1} | {}/{} ({share:.1} %) | {:.3} | {:.3} | {:.1} |",
            r.at,
            r.rss_kib as f64 / 1024.0,
            r.answered,
            r.asked,
            r.p50_ms,
            r.p99_ms,
            r.victim_kib_s
        );
    }
    if let Some(s) = stats.and_then(|s| s.as_object()) {
        let _ = writeln!(md, "\nThe node's counters at the end (non-zero):\n");
        for (k, v) in s {
            if k != "event" && v.as_u64().is_some_and(|n| n > 0) {
                let _ = writeln!(md, "- `{k}`: {v}");
            }
        }
    }
    md
}
