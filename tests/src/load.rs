//! The load generator of `dht-load` and `perf-report`: floods one node (or the echo) on
//! loopback with `_ping`s, `peers` lookups or announces, bounded in count and time, and
//! reports answered/s and latency percentiles.
//!
//! One socket bound to `0.0.0.0` sends from many source addresses across `127.0.0.0/8`
//! (`IP_PKTINFO`), so a node with its per-source budgets and quotas on sees many modest
//! sources, as in production, while the generator itself stays cheap: requests leave in
//! GSO bursts of one source each and answers arrive by `recvmmsg` (`quinn-udp`). So the
//! generator, on its own core, outruns the echo it measures.
//!
//! Two ways to load: closed loop (a window of requests in flight, a new one per answer:
//! saturated throughput) and open loop (a fixed rate, one datagram per send: latency).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::IoSliceMut;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

use bytes::Bytes;
use dht_wire::{
    Checked, Datagram, Message, NodeId, PeersRequest, PeersRequestType, PeersResponse, Request, Tid,
};
use quinn_udp::{RecvMeta, Transmit, UdpSockRef, UdpSocketState};
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use crate::perf::CoreTimes;

/// The header bit that marks a request.
const REQUEST_BIT: u8 = 0x80;
/// Datagrams one receive call can return.
const RECV_BATCH: usize = quinn_udp::BATCH_SIZE;
/// Datagrams of one source sent in one GSO burst at most (the default burst).
const BURST: usize = 16;
/// Announces: one in this many is looked up at the end...
const SAMPLE_EVERY: usize = 97;
/// ...the last this many of them.
const SAMPLED: usize = 200;
/// A request unanswered this long is lost (and replaced, in closed loop).
const LOST_AFTER: Duration = Duration::from_millis(300);

/// What to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `_ping`, no id.
    Ping,
    /// `_find_node` for random targets (answers carry up to 20 nodes).
    FindNode,
    /// `peers` lookups of random keys nobody announced.
    PeersAbsent,
    /// `peers` lookups of one key with `n` peers on it (announced first, from the sources).
    Peers(u16),
    /// Announces of random keys, each source with its own roundtrip token.
    Announce,
}

impl Mode {
    /// Parses `ping`, `find-node`, `peers-absent`, `peers-N`, `announce`.
    pub fn parse(s: &str) -> Option<Mode> {
        Some(match s {
            "ping" => Mode::Ping,
            "find-node" => Mode::FindNode,
            "peers-absent" => Mode::PeersAbsent,
            "announce" => Mode::Announce,
            _ => Mode::Peers(s.strip_prefix("peers-")?.parse().ok()?),
        })
    }

    /// The mode's name, as [`Mode::parse`] reads it.
    pub fn name(self) -> String {
        match self {
            Mode::Ping => "ping".into(),
            Mode::FindNode => "find-node".into(),
            Mode::PeersAbsent => "peers-absent".into(),
            Mode::Peers(n) => format!("peers-{n}"),
            Mode::Announce => "announce".into(),
        }
    }
}

/// One load run.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// The node (or echo) to load.
    pub target: SocketAddrV4,
    /// What to send.
    pub mode: Mode,
    /// Source addresses: `127.1.0.1` onwards, four per /24.
    pub sources: usize,
    /// Stop after this long...
    pub secs: f64,
    /// ...or after this many answers.
    pub count: Option<u64>,
    /// Closed loop: requests in flight. Ignored when `rate` is set.
    pub window: usize,
    /// Open loop: requests per second, one datagram per send.
    pub rate: Option<u64>,
    /// Count echoed requests as answers (for the echo server).
    pub echo: bool,
    /// Requests of one source sent together in one GSO call (1: one datagram per call).
    pub burst: usize,
    /// Before the load, this many sources ping the node with an id of their own and answer
    /// its pings, so that its routing table fills as a node's in a network would (0: the
    /// node's table stays empty).
    pub contacts: usize,
    /// The core the target runs on (pinned), whose busy time over the measured window (the
    /// setup left out) the report gives as `target_core`.
    pub cpu_core: Option<usize>,
}

impl Default for LoadConfig {
    fn default() -> Self {
        LoadConfig {
            target: SocketAddrV4::new(Ipv4Addr::LOCALHOST, 49737),
            mode: Mode::Ping,
            sources: 1024,
            secs: 5.0,
            count: None,
            window: 512,
            rate: None,
            echo: false,
            burst: BURST,
            contacts: 0,
            cpu_core: None,
        }
    }
}

/// The `i`-th source address: `127.1.0.1` onwards, four per /24 (so that per-IP and per-/24
/// budgets both see many modest sources).
pub fn source(i: usize) -> Ipv4Addr {
    let prefix = i / 4;
    Ipv4Addr::new(
        127,
        1 + (prefix / 256) as u8,
        (prefix % 256) as u8,
        1 + (i % 4) as u8,
    )
}

/// Errors of a load run.
#[derive(Debug)]
pub struct LoadError(pub String);

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LoadError {}

fn err(what: &str, e: impl std::fmt::Display) -> LoadError {
    LoadError(format!("{what}: {e}"))
}

/// The generator's socket and its state.
struct Gen {
    sock: UdpSocket,
    state: UdpSocketState,
    target: SocketAddr,
    sources: Vec<Ipv4Addr>,
    next_source: usize,
    tid: Tid,
    /// Send time of each tid in flight.
    inflight: Vec<Option<Instant>>,
    in_flight: usize,
    recv_buf: Vec<u8>,
    send_buf: Vec<u8>,
    echo: bool,
    burst: usize,
    latencies: Vec<u32>,
    answered: u64,
    lost: u64,
    sent: u64,
    /// The node id of each source that joins the node's table ([`LoadConfig::contacts`]).
    ids: Vec<NodeId>,
    /// `_ping`s of the node answered (as a source that joined).
    pings_answered: u64,
}

impl Gen {
    fn new(cfg: &LoadConfig) -> Result<Gen, LoadError> {
        let sock = UdpSocket::bind("0.0.0.0:0").map_err(|e| err("bind 0.0.0.0", e))?;
        let state = UdpSocketState::new(UdpSockRef::from(&sock)).map_err(|e| err("socket", e))?;
        // Room for a window's answers while the generator is busy sending.
        let _ = state.set_recv_buffer_size(UdpSockRef::from(&sock), 8 << 20);
        let _ = state.set_send_buffer_size(UdpSockRef::from(&sock), 8 << 20);
        Ok(Gen {
            sock,
            state,
            target: SocketAddr::V4(cfg.target),
            sources: (0..cfg.sources.max(1)).map(source).collect(),
            next_source: 0,
            tid: Tid::from_masked(1),
            inflight: vec![None; usize::from(Tid::MAX.get()) + 1],
            in_flight: 0,
            recv_buf: vec![0; RECV_BATCH * 65536],
            send_buf: Vec::with_capacity(BURST * 2048),
            echo: cfg.echo,
            burst: cfg.burst.clamp(1, BURST),
            latencies: Vec::new(),
            answered: 0,
            lost: 0,
            sent: 0,
            ids: Vec::new(),
            pings_answered: 0,
        })
    }

    /// The next free tid (skipping any still in flight).
    fn take_tid(&mut self) -> Tid {
        loop {
            self.tid = self.tid.next();
            if self.inflight[usize::from(self.tid.get())].is_none() {
                return self.tid;
            }
        }
    }

    /// Sends `n` requests from source `src` in one burst; `make` writes request `i` (its
    /// header is then patched with a fresh tid). Requests of a burst must have one size.
    fn burst(&mut self, src: usize, n: usize, make: &mut dyn FnMut(usize, Tid, &mut Vec<u8>)) {
        self.send_buf.clear();
        let now = Instant::now();
        let mut size = 0;
        for _ in 0..n {
            let start = self.send_buf.len();
            let tid = self.take_tid();
            make(src, tid, &mut self.send_buf);
            let len = self.send_buf.len() - start;
            if size == 0 {
                size = len;
            }
            debug_assert_eq!(len, size, "requests of a burst have one size");
            let [a, b] = tid.get().to_be_bytes();
            self.send_buf[start] = REQUEST_BIT | a;
            self.send_buf[start + 1] = b;
            self.inflight[usize::from(tid.get())] = Some(now);
            self.in_flight += 1;
        }
        let max = self.state.max_gso_segments().max(1);
        for chunk in self.send_buf.chunks(size * max) {
            let t = Transmit {
                destination: self.target,
                ecn: None,
                contents: chunk,
                segment_size: (chunk.len() > size).then_some(size),
                src_ip: Some(IpAddr::V4(self.sources[src])),
            };
            loop {
                match self.state.try_send(UdpSockRef::from(&self.sock), &t) {
                    Ok(()) => break,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::yield_now()
                    }
                    Err(_) => break,
                }
            }
        }
        self.sent += n as u64;
    }

    /// Sends `n` requests spread over the sources in bursts.
    fn send(&mut self, mut n: usize, make: &mut dyn FnMut(usize, Tid, &mut Vec<u8>)) {
        while n > 0 {
            let k = n.min(self.burst);
            let src = self.next_source;
            self.next_source = (self.next_source + 1) % self.sources.len();
            self.burst(src, k, make);
            n -= k;
        }
    }

    /// Receives what is waiting; calls `on_answer` with each answer's bytes. Returns the
    /// number of answers.
    fn recv(&mut self, on_answer: &mut dyn FnMut(&[u8])) -> usize {
        let mut meta = [RecvMeta::default(); RECV_BATCH];
        let mut got = 0;
        let n = {
            let mut bufs: Vec<IoSliceMut<'_>> = self
                .recv_buf
                .chunks_mut(65536)
                .map(IoSliceMut::new)
                .collect();
            match self
                .state
                .recv(UdpSockRef::from(&self.sock), &mut bufs, &mut meta)
            {
                Ok(n) => n,
                Err(_) => return 0,
            }
        };
        let now = Instant::now();
        let mut pings = Vec::new();
        for (i, m) in meta.iter().enumerate().take(n) {
            let buf = &self.recv_buf[i * 65536..i * 65536 + m.len];
            let stride = if m.stride == 0 { m.len } else { m.stride };
            for d in buf.chunks(stride) {
                let [a, b, ..] = *d else { continue };
                if a & REQUEST_BIT != 0 && !self.echo {
                    // The node asking us something: not an answer. A `_ping` to a source
                    // that joined its table gets that source's answer.
                    if let (false, SocketAddr::V4(from), Some(IpAddr::V4(to))) =
                        (self.ids.is_empty(), m.addr, m.dst_ip)
                        && let Ok(Datagram {
                            tid,
                            message: Message::Request(r),
                        }) = Datagram::decode(d)
                        && r.command == "_ping"
                    {
                        pings.push((tid, from, to));
                    }
                    continue;
                }
                let tid = usize::from(u16::from_be_bytes([a & !REQUEST_BIT, b]));
                if let Some(at) = self.inflight[tid].take() {
                    self.in_flight -= 1;
                    self.answered += 1;
                    got += 1;
                    let us = now.duration_since(at).as_micros();
                    self.latencies.push(u32::try_from(us).unwrap_or(u32::MAX));
                    on_answer(d);
                }
            }
        }
        for (tid, from, to) in pings {
            self.answer_ping(tid, from, to);
        }
        got
    }

    /// Answers the node's `_ping` (tid `tid`, from `from`) to our source `to` as that source
    /// would: with its id and the address it saw.
    fn answer_ping(&mut self, tid: Tid, from: SocketAddrV4, to: Ipv4Addr) {
        let Some(src) = self.sources.iter().position(|s| *s == to) else {
            return;
        };
        let Some(id) = self.ids.get(src) else { return };
        let answer = Datagram::response(
            tid,
            dht_wire::Response {
                id: Some(Checked::Valid(*id)),
                nodes: None,
                value: Some(dht_wire::compact::encode_peer(&from)),
                roundtrip_token: None,
            },
        )
        .encode();
        let t = Transmit {
            destination: SocketAddr::V4(from),
            ecn: None,
            contents: &answer,
            segment_size: None,
            src_ip: Some(IpAddr::V4(to)),
        };
        if self
            .state
            .try_send(UdpSockRef::from(&self.sock), &t)
            .is_ok()
        {
            self.pings_answered += 1;
        }
    }

    /// Sources `0..n` ping the node with ids of their own and answer the pings by which it
    /// checks them, until it has sent none for half a second (5 s at most); then how many
    /// contacts its answers name (a `_find_node` for a random target: up to 20).
    fn join(&mut self, n: usize, rng: &mut impl Rng) -> usize {
        self.ids = (0..n.min(self.sources.len()))
            .map(|_| NodeId::from_bytes(rng.random()))
            .collect();
        for src in 0..self.ids.len() {
            let ping = Request {
                id: Some(Checked::Valid(self.ids[src])),
                ..Request::new("_ping")
            };
            let bytes = Datagram::request(Tid::from_masked(0), ping).encode();
            self.burst(src, 1, &mut |_, _, out| out.extend_from_slice(&bytes));
        }
        let end = Instant::now() + Duration::from_secs(5);
        let mut quiet_since = Instant::now();
        let mut answered = self.pings_answered;
        while Instant::now() < end && quiet_since.elapsed() < Duration::from_millis(500) {
            if self.recv(&mut |_| {}) == 0 && self.pings_answered == answered {
                std::thread::sleep(Duration::from_micros(200));
            }
            if self.pings_answered != answered {
                answered = self.pings_answered;
                quiet_since = Instant::now();
            }
        }
        let find = Request {
            target: Some(Checked::Valid(NodeId::from_bytes(rng.random()))),
            ..Request::new("_find_node")
        };
        self.ask(0, &find)
            .and_then(|r| r.nodes)
            .and_then(|n| n.into_valid())
            .map_or(0, |n| n.len())
    }

    /// Forgets requests older than [`LOST_AFTER`]; returns how many.
    fn expire(&mut self, now: Instant) -> usize {
        let mut n = 0;
        for slot in &mut self.inflight {
            if slot.is_some_and(|at| now.duration_since(at) > LOST_AFTER) {
                *slot = None;
                n += 1;
            }
        }
        self.in_flight -= n;
        self.lost += n as u64;
        n
    }

    /// One request from source `src` and its answer (setup: tokens, announces).
    fn ask(&mut self, src: usize, req: &Request) -> Option<dht_wire::Response> {
        let bytes = Datagram::request(Tid::from_masked(0), req.clone()).encode();
        for _attempt in 0..3 {
            self.burst(src, 1, &mut |_, _, out| out.extend_from_slice(&bytes));
            let deadline = Instant::now() + Duration::from_millis(500);
            let mut answer = None;
            while answer.is_none() && Instant::now() < deadline {
                if self.recv(&mut |d| answer = Datagram::decode(d).ok()) == 0 {
                    std::thread::sleep(Duration::from_micros(50));
                }
            }
            if let Some(Datagram {
                message: Message::Response(r),
                ..
            }) = answer
            {
                return Some(r);
            }
        }
        None
    }
}

/// Encodes a request into `out`, tid 0 (patched on send).
fn encode(req: Request, out: &mut Vec<u8>) {
    out.extend_from_slice(&Datagram::request(Tid::from_masked(0), req).encode());
}

fn lookup(key: NodeId) -> Request {
    Request {
        target: Some(Checked::Valid(key)),
        value: Some(PeersRequest::new(PeersRequestType::Lookup, None, None).encode()),
        ..Request::new("peers")
    }
}

fn announce(key: NodeId, token: Bytes, port: u16) -> Request {
    Request {
        target: Some(Checked::Valid(key)),
        roundtrip_token: Some(token),
        value: Some(PeersRequest::new(PeersRequestType::Announce, Some(port), None).encode()),
        ..Request::new("peers")
    }
}

/// Runs one load and returns its report (JSON: mode, answered, rate, latency percentiles
/// in microseconds, lost, and for lookups the items per answer).
pub fn run(cfg: &LoadConfig) -> Result<Value, LoadError> {
    let mut g = Gen::new(cfg)?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let templates: Vec<Vec<u8>>;
    let mut tokens: Vec<Bytes> = Vec::new();
    let mut count_items = false;
    let key = NodeId::from_bytes([0x42; 32]);
    let random = |rng: &mut rand::rngs::StdRng| NodeId::from_bytes(rng.random());
    let closest = if cfg.contacts > 0 && !cfg.echo {
        Some(g.join(cfg.contacts, &mut rng))
    } else {
        None
    };
    match cfg.mode {
        Mode::Ping => templates = vec![vec_of(Request::new("_ping"))],
        Mode::FindNode => {
            templates = (0..1024)
                .map(|_| {
                    vec_of(Request {
                        target: Some(Checked::Valid(random(&mut rng))),
                        ..Request::new("_find_node")
                    })
                })
                .collect()
        }
        Mode::PeersAbsent => {
            templates = (0..1024)
                .map(|_| vec_of(lookup(random(&mut rng))))
                .collect();
            count_items = true;
        }
        Mode::Peers(n) => {
            // n announces of one key, each from its own source (the per-key quotas allow a
            // few per IP and /24), each with that source's token.
            for i in 0..usize::from(n) {
                if cfg.echo {
                    break; // the echo keeps nothing: only the lookups' size matters
                }
                let src = i % g.sources.len();
                let token = g
                    .ask(src, &Request::new("_ping"))
                    .and_then(|r| r.roundtrip_token)
                    .ok_or_else(|| LoadError(format!("no token for source {src}")))?;
                g.ask(src, &announce(key, token, 20000 + i as u16))
                    .ok_or_else(|| LoadError(format!("announce {i} unanswered")))?;
            }
            templates = vec![vec_of(lookup(key))];
            count_items = true;
        }
        Mode::Announce => {
            for src in 0..g.sources.len() {
                let token = g
                    .ask(src, &Request::new("_ping"))
                    .and_then(|r| r.roundtrip_token)
                    .ok_or_else(|| LoadError(format!("no token for source {src}")))?;
                tokens.push(token);
            }
            templates = Vec::new();
        }
    }
    // Forget the setup's answers.
    g.latencies.clear();
    (g.answered, g.sent, g.lost) = (0, 0, 0);

    let mut pick = 0usize;
    // Every SAMPLE_EVERY-th announce, to look up at the end (the last SAMPLED of them that
    // were answered: one lost on the way was never stored).
    let sampling = RefCell::new(Sampling::default());
    let mut make = |src: usize, tid: Tid, out: &mut Vec<u8>| {
        pick = pick.wrapping_add(1);
        if cfg.mode == Mode::Announce {
            let key = NodeId::from_bytes(rand::rng().random());
            // Ports of one varint size (3 bytes): a burst's requests have one size.
            let port = 20000 + (pick % 40000) as u16;
            if pick.is_multiple_of(SAMPLE_EVERY) {
                sampling.borrow_mut().sent(tid, (key, src, port));
            }
            encode(announce(key, tokens[src].clone(), port), out);
        } else {
            out.extend_from_slice(&templates[pick % templates.len()]);
        }
    };
    let (mut items, mut with_items) = (0u64, 0u64);
    let mut seen = 0u64;
    let mut on_answer = |d: &[u8]| {
        if let [a, b, ..] = *d {
            sampling
                .borrow_mut()
                .answered(Tid::from_masked(u16::from_be_bytes([a, b])));
        }
        // Decode one answer in 16 to count its items: the generator's time goes to sending.
        seen += 1;
        if count_items && seen.is_multiple_of(16) {
            with_items += 1;
            if let Ok(Datagram {
                message: Message::Response(r),
                ..
            }) = Datagram::decode(d)
            {
                items += r
                    .value
                    .as_deref()
                    .and_then(|v| PeersResponse::decode(v).ok())
                    .and_then(|p| p.peers.and_then(|p| p.into_valid()))
                    .map_or(0, |p| p.len()) as u64;
            }
        }
    };

    let core_before = cfg.cpu_core.and_then(CoreTimes::read);
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(cfg.secs);
    let limit = cfg.count.unwrap_or(u64::MAX);
    let mut last_expire = start;
    match cfg.rate {
        None => {
            let window = cfg.window.clamp(1, 16384);
            g.send(window, &mut make);
            loop {
                let now = Instant::now();
                if now >= end || g.answered >= limit {
                    break;
                }
                let got = g.recv(&mut on_answer);
                if now.duration_since(last_expire) > Duration::from_millis(100) {
                    g.expire(now);
                    last_expire = now;
                }
                let room = window.saturating_sub(g.in_flight);
                // With a count, lost requests are replaced until that many are answered.
                let wanted = limit.saturating_sub(g.answered + g.in_flight as u64);
                let room = room.min(usize::try_from(wanted).unwrap_or(usize::MAX));
                // A full burst, or the last few a count still wants.
                if got > 0 || room >= g.burst || (room > 0 && room as u64 == wanted) {
                    g.send(room, &mut make);
                }
            }
        }
        Some(rate) => {
            let rate = rate.max(1) as f64;
            loop {
                let now = Instant::now();
                if now >= end || g.sent >= limit {
                    break;
                }
                let due = (now.duration_since(start).as_secs_f64() * rate) as u64;
                if due > g.sent {
                    // One datagram per send, each from the next source, as independent
                    // clients would.
                    let src = g.next_source;
                    g.next_source = (src + 1) % g.sources.len();
                    g.burst(src, 1, &mut make);
                }
                g.recv(&mut on_answer);
                if now.duration_since(last_expire) > Duration::from_millis(100) {
                    g.expire(now);
                    last_expire = now;
                }
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let core_spent = cfg
        .cpu_core
        .and_then(CoreTimes::read)
        .zip(core_before)
        .map(|(now, before)| now.since(before));
    // Let the last answers in (they count for latency, not for the rate).
    let answered_in_time = g.answered;
    let drain_end = Instant::now() + Duration::from_millis(300);
    while g.in_flight > 0 && Instant::now() < drain_end {
        if g.recv(&mut on_answer) == 0 {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    g.expire(Instant::now() + LOST_AFTER + Duration::from_millis(1));
    let mut lat = std::mem::take(&mut g.latencies);
    lat.sort_unstable();
    let pct = |p: f64| -> u32 {
        if lat.is_empty() {
            return 0;
        }
        lat[((lat.len() - 1) as f64 * p).round() as usize]
    };
    // Announces: were they kept? Look up a sample of the last ones (the store keeps the
    // newest up to its limit: 65,536 keys and entries per generation, two generations).
    let mut kept = None;
    if cfg.mode == Mode::Announce {
        let sampled = sampling.take().answered_ones();
        let checked = sampled.len();
        let mut found = 0;
        for (key, src, port) in sampled {
            let want = SocketAddrV4::new(source(src), port);
            let has = g
                .ask(0, &lookup(key))
                .and_then(|r| r.value)
                .and_then(|v| PeersResponse::decode(&v).ok())
                .and_then(|p| p.peers.and_then(|p| p.into_valid()))
                .is_some_and(|peers| peers.contains(&want));
            found += usize::from(has);
        }
        kept = Some(json!({"checked": checked, "found": found, "every": SAMPLE_EVERY}));
    }
    let mut report = json!({
        "mode": cfg.mode.name(),
        "target": cfg.target.to_string(),
        "sources": g.sources.len(),
        "window": cfg.rate.is_none().then_some(cfg.window),
        "burst": g.burst,
        "rate_asked": cfg.rate,
        "secs": secs,
        "sent": g.sent,
        "answered": answered_in_time,
        "lost": g.lost,
        "rate": answered_in_time as f64 / secs,
        "latency_us": {"p50": pct(0.5), "p90": pct(0.9), "p99": pct(0.99), "max": pct(1.0)},
    });
    if let Some(k) = kept {
        report["kept"] = k;
    }
    if let (Some(core), Some(spent)) = (cfg.cpu_core, core_spent) {
        let busy = spent.user + spent.kernel;
        report["target_core"] = json!({
            "core": core,
            "user_s": spent.user,
            "kernel_s": spent.kernel,
            "busy_us_per_answer": (answered_in_time > 0).then(|| 1e6 * busy / answered_in_time as f64),
        });
    }
    if count_items {
        report["items_per_answer"] = json!(items as f64 / with_items.max(1) as f64);
    }
    if let Some(closest) = closest {
        report["joined"] = json!({
            "sources": g.ids.len(),
            "pings_answered": g.pings_answered,
            "closest_returned": closest,
        });
    }
    Ok(report)
}

fn vec_of(req: Request) -> Vec<u8> {
    let mut v = Vec::new();
    encode(req, &mut v);
    v
}

/// Announces sampled to be looked up at the end, and which of them were answered.
#[derive(Default)]
struct Sampling {
    /// (tid, answered, what was announced), oldest first, at most [`SAMPLED`].
    ring: VecDeque<(Tid, bool, (NodeId, usize, u16))>,
    /// Tids of the ring's requests (an answer's tid is checked here first: O(1)).
    marked: Vec<bool>,
}

impl Sampling {
    fn sent(&mut self, tid: Tid, what: (NodeId, usize, u16)) {
        if self.marked.is_empty() {
            self.marked = vec![false; usize::from(Tid::MAX.get()) + 1];
        }
        if self.ring.len() == SAMPLED
            && let Some((old, _, _)) = self.ring.pop_front()
        {
            self.marked[usize::from(old.get())] = false;
        }
        self.marked[usize::from(tid.get())] = true;
        self.ring.push_back((tid, false, what));
    }

    fn answered(&mut self, tid: Tid) {
        if !self.marked.get(usize::from(tid.get())).is_some_and(|m| *m) {
            return;
        }
        // The ring spans fewer requests than the tid space, so the tid names one of them.
        if let Some(e) = self.ring.iter_mut().find(|e| e.0 == tid) {
            e.1 = true;
        }
    }

    fn answered_ones(self) -> Vec<(NodeId, usize, u16)> {
        self.ring.into_iter().filter(|e| e.1).map(|e| e.2).collect()
    }
}
