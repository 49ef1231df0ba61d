//! The birthday punch as timers and sockets of the core (the wire format and the sizes are
//! in [`crate::hints`]): a *hard* session opens extra sockets toward the easy side and
//! waits for a spray to land on one of them; an *easy* session sprays random ports of the
//! hard side's IP from the DHT socket, in bursts, and waits for the acknowledgement that
//! echoes its nonce. The ports and nonces come from the core's seeded generator.
//!
//! A session runs for one of our hole punches, or for a peer's hint (limited as the module
//! docs of [`crate::Core`] say, and at most one hard session for peers at a time: each costs
//! 256 sockets). A path a hard session opened stays in the path table (at most
//! [`MAX_PATHS`]): application datagrams to that peer leave from its socket.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use dht_rpc::{Event, MachineEvent, RateLimiter, SocketId, SocketOp, Transmit};
use rand::Rng;

use super::{BirthdayTry, Core, Holepunch, HolepunchPath, PunchId};
use crate::hints::{ACK_WAIT, HARD_WAIT, Hint, SOCKETS, SPRAY_BURST, SPRAY_RATE, SPRAYS};

/// Paths through extra sockets kept at most.
pub const MAX_PATHS: usize = 64;

/// Hard sessions run for peers' hints at once at most.
const MAX_HARD_FOR_PEERS: usize = 1;

/// What peers' birthday hints may ask of us (see the "Abuse" paragraph of the `core` module's docs).
#[derive(Debug)]
pub(super) struct HintLimits {
    per_requester: RateLimiter<Ipv4Addr>,
    per_relay: RateLimiter<Ipv4Addr>,
    total: RateLimiter<()>,
    /// Challenges sent back, per requester IP and in all (each is one relayed ping).
    challenges_per_requester: RateLimiter<Ipv4Addr>,
    challenges: RateLimiter<()>,
}

impl Default for HintLimits {
    fn default() -> Self {
        HintLimits {
            per_requester: RateLimiter::new(1, Duration::from_secs(10), 1024),
            per_relay: RateLimiter::new(2, Duration::from_secs(60), 4096),
            total: RateLimiter::new(6, Duration::from_secs(60), 1),
            challenges_per_requester: RateLimiter::new(2, Duration::from_secs(10), 1024),
            challenges: RateLimiter::new(60, Duration::from_secs(60), 1),
        }
    }
}

impl HintLimits {
    /// Counts a challenge to `requester`; whether to send it.
    pub(super) fn challenge(&mut self, now: Instant, requester: Ipv4Addr) -> bool {
        self.challenges_per_requester.allow(now, requester) && self.challenges.allow(now, ())
    }

    /// Counts a hint relayed by `relay` for `requester`; whether to act on it.
    fn allow(&mut self, now: Instant, relay: Ipv4Addr, requester: Ipv4Addr) -> bool {
        self.per_relay.allow(now, relay)
            && self.per_requester.allow(now, requester)
            && self.total.allow(now, ())
    }
}

/// We opened sockets toward `easy` and wait for its spray.
#[derive(Debug)]
pub(super) struct Hard {
    easy: SocketAddrV4,
    sockets: Vec<SocketId>,
    until: Instant,
    pub(super) punch: Option<PunchId>,
}

/// We spray `hard`'s IP and wait for its acknowledgement.
#[derive(Debug)]
pub(super) struct Easy {
    hard: Ipv4Addr,
    nonce: u64,
    sent: usize,
    next_burst: Instant,
    /// Set once every spray went out: the wait for the acknowledgement ends then.
    until: Option<Instant>,
    pub(super) punch: Option<PunchId>,
}

impl Easy {
    /// Sprays nothing until [`Easy::challenged`]; ends at `deadline` if that never comes.
    pub(super) fn wait_for_challenge(&mut self, deadline: Instant) {
        self.until = Some(deadline);
    }

    /// The peer's challenge came (and was answered): spray from `start` on.
    pub(super) fn challenged(&mut self, start: Instant) {
        if self.sent == 0 {
            self.until = None;
            self.next_burst = start;
        }
    }
}

impl Core {
    /// A peer's hint, relayed to us. A hint without our token gets a challenge back through
    /// the relay; one with it (the asker receives at its IP) starts our side, within the
    /// limits.
    pub(super) fn on_hint(&mut self, requester: SocketAddrV4, relay: SocketAddrV4, value: &[u8]) {
        let now = self.now;
        let ip = *requester.ip();
        let (token, spray) = match Hint::decode(value) {
            Some(Hint::Challenge(token)) => return self.on_challenge(requester, token),
            Some(Hint::SprayMe(token)) => (token, true),
            Some(Hint::ProbeMe(token)) => (token, false),
            Some(Hint::RelayMe) => return self.offer_relay(requester, relay),
            Some(Hint::UseRelay(to, pairing)) => return self.join_relay(requester, to, pairing),
            _ => return,
        };
        let Some(token) = token else {
            if self.hints.challenge(now, ip) {
                let token = self.rpc.roundtrip_token(ip);
                let challenge = Hint::Challenge(token).encode();
                self.rpc
                    .holepunch_with(now, requester, relay, Some(challenge));
            } else {
                tracing::debug!(%requester, %relay, "birthday challenge over the rate limit");
            }
            return;
        };
        if !self.rpc.is_roundtrip_token(ip, &token) {
            tracing::debug!(%requester, %relay, "birthday hint with a token not ours for its IP");
            return;
        }
        if !self.hints.allow(now, *relay.ip(), ip) {
            tracing::debug!(%requester, %relay, "birthday hint over the rate limit");
            return;
        }
        if spray {
            // The requester is behind a symmetric NAT: spray its IP.
            self.start_easy(now, ip, None);
        } else {
            // The requester has a stable address: open sockets toward it.
            self.start_hard(now, requester, None);
        }
    }

    /// Ends the birthday session of our punch `punch`, if it has one (the punch ended).
    pub(super) fn end_sessions(&mut self, punch: PunchId) {
        self.hards.retain(|h| h.punch != Some(punch));
        self.easies.retain(|e| e.punch != Some(punch));
    }

    /// Starts a hard session toward `easy` (for our punch, or a peer's hint).
    pub(super) fn start_hard(&mut self, now: Instant, easy: SocketAddrV4, punch: Option<PunchId>) {
        if punch.is_none()
            && self.hards.iter().filter(|h| h.punch.is_none()).count() >= MAX_HARD_FOR_PEERS
        {
            tracing::debug!(%easy, "a birthday hard side for a peer is running already");
            return;
        }
        let mut sockets = Vec::with_capacity(SOCKETS);
        for _ in 0..SOCKETS {
            let id = SocketId(self.next_socket);
            self.next_socket = self.next_socket.wrapping_add(1).max(1);
            self.socket_ops.push_back(SocketOp::Open(id));
            self.transmits.push_back(Transmit {
                to: easy,
                payload: Hint::Open.encode(),
                from: id,
            });
            sockets.push(id);
        }
        self.hards.push(Hard {
            easy,
            sockets,
            until: now + HARD_WAIT,
            punch,
        });
    }

    /// Starts an easy session toward `hard`'s IP, spraying from `start` on.
    pub(super) fn start_easy(&mut self, start: Instant, hard: Ipv4Addr, punch: Option<PunchId>) {
        let nonce = self.rpc.rng().random();
        self.easies.push(Easy {
            hard,
            nonce,
            sent: 0,
            next_burst: start,
            until: None,
            punch,
        });
    }

    /// The next deadline of the birthday sessions.
    pub(super) fn next_bday(&self) -> Option<Instant> {
        let hard = self.hards.iter().map(|h| h.until);
        let easy = self.easies.iter().map(|e| e.until.unwrap_or(e.next_burst));
        hard.chain(easy).min()
    }

    /// Sprays what is due, and ends the sessions whose time is up.
    pub(super) fn bday_timers(&mut self, now: Instant) {
        let burst_gap =
            std::time::Duration::from_secs_f64(SPRAY_BURST as f64 / f64::from(SPRAY_RATE));
        let mut sprays = Vec::new();
        for e in &mut self.easies {
            while e.until.is_none() && e.next_burst <= now {
                for _ in 0..SPRAY_BURST.min(SPRAYS - e.sent) {
                    let port = self.rpc.rng().random_range(1024..=u16::MAX);
                    sprays.push((SocketAddrV4::new(e.hard, port), e.nonce));
                }
                e.sent = (e.sent + SPRAY_BURST).min(SPRAYS);
                e.next_burst += burst_gap;
                if e.sent >= SPRAYS {
                    e.until = Some(now + ACK_WAIT);
                }
            }
        }
        for (to, nonce) in sprays {
            self.rpc.send_datagram(to, Hint::Spray(nonce).encode());
        }
        let (done, keep): (Vec<Easy>, Vec<Easy>) = std::mem::take(&mut self.easies)
            .into_iter()
            .partition(|e| e.until.is_some_and(|u| u <= now));
        self.easies = keep;
        for e in done {
            tracing::debug!(hard = %e.hard, "birthday spray: no acknowledgement");
            if let Some(p) = e.punch {
                self.fail_punch(p, BirthdayTry::EasySide);
            }
        }
        let (done, keep): (Vec<Hard>, Vec<Hard>) = std::mem::take(&mut self.hards)
            .into_iter()
            .partition(|h| h.until <= now);
        self.hards = keep;
        for h in done {
            tracing::debug!(easy = %h.easy, "birthday sockets: no spray landed");
            for id in h.sockets {
                self.socket_ops.push_back(SocketOp::Close(id));
            }
            if let Some(p) = h.punch {
                self.fail_punch(p, BirthdayTry::HardSide);
            }
        }
    }

    /// A birthday datagram on the DHT socket: an easy session's acknowledgement, or nothing
    /// to us (the opening datagrams of a hard side toward us need no answer).
    pub(super) fn bday_on_main(&mut self, from: SocketAddrV4, hint: Hint) {
        let Hint::Ack(nonce) = hint else {
            return;
        };
        let Some(i) = self
            .easies
            .iter()
            .position(|e| e.nonce == nonce && e.hard == *from.ip())
        else {
            return;
        };
        let e = self.easies.swap_remove(i);
        tracing::debug!(peer = %from, "birthday punch met (we sprayed)");
        if let Some(p) = e.punch {
            self.succeed_punch(p, HolepunchPath::Birthday, from, None);
        }
    }

    /// A datagram on an extra socket: a spray landing on a hard session's socket, or an
    /// application datagram on a path.
    pub(super) fn bday_on_extra(&mut self, socket: SocketId, from: SocketAddrV4, bytes: &[u8]) {
        let Some(i) = self.hards.iter().position(|h| h.sockets.contains(&socket)) else {
            if Hint::decode(bytes).is_none() && self.paths.values().any(|s| *s == socket) {
                self.pending
                    .push_back(MachineEvent::Rpc(Event::Unrecognized {
                        from,
                        payload: bytes::Bytes::copy_from_slice(bytes),
                    }));
            }
            return;
        };
        let Some(Hint::Spray(nonce)) = Hint::decode(bytes) else {
            return;
        };
        if from.ip() != self.hards[i].easy.ip() {
            return;
        }
        let h = self.hards.swap_remove(i);
        self.transmits.push_back(Transmit {
            to: from,
            payload: Hint::Ack(nonce).encode(),
            from: socket,
        });
        for id in h.sockets.iter().filter(|id| **id != socket) {
            self.socket_ops.push_back(SocketOp::Close(*id));
        }
        self.add_path(from, socket);
        tracing::debug!(peer = %from, "birthday punch met on an extra socket");
        if let Some(p) = h.punch {
            self.succeed_punch(p, HolepunchPath::Birthday, from, None);
        }
    }

    /// An extra socket failed or could not be opened.
    pub(super) fn bday_socket_gone(&mut self, socket: SocketId) {
        for h in &mut self.hards {
            h.sockets.retain(|s| *s != socket);
        }
        self.paths.retain(|_, s| *s != socket);
    }

    fn add_path(&mut self, peer: SocketAddrV4, socket: SocketId) {
        if self.paths.len() >= MAX_PATHS && !self.paths.contains_key(&peer) {
            // The oldest socket id goes (ids grow): its path was opened first.
            if let Some((&old_peer, &old)) = self.paths.iter().min_by_key(|(_, s)| s.0) {
                self.paths.remove(&old_peer);
                self.socket_ops.push_back(SocketOp::Close(old));
            }
        }
        if let Some(old) = self.paths.insert(peer, socket)
            && old != socket
        {
            self.socket_ops.push_back(SocketOp::Close(old));
        }
    }

    /// Sends an application datagram to `to`: through the relay of a circuit to it, from
    /// the socket of the path a birthday punch opened to it, or from the DHT socket.
    pub fn send_datagram(&mut self, to: SocketAddrV4, payload: bytes::Bytes) {
        let to = self.direct_to(to);
        if let Some((relay, pairing)) = self.circuit_to(to) {
            self.circuit_used(to);
            let data = crate::relay::RelayMsg::Data(pairing, payload).encode();
            return self.rpc.send_datagram(relay, data);
        }
        match self.paths.get(&to) {
            Some(socket) => self.transmits.push_back(Transmit {
                to,
                payload,
                from: *socket,
            }),
            None => self.rpc.send_datagram(to, payload),
        }
    }

    /// Paths through extra sockets.
    pub fn paths(&self) -> usize {
        self.paths.len()
    }
}

impl Holepunch {
    pub(super) fn new(
        path: HolepunchPath,
        addr: SocketAddrV4,
        id: Option<dht_rpc::NodeId>,
        elapsed: std::time::Duration,
    ) -> Self {
        Holepunch {
            path,
            addr,
            id,
            elapsed,
        }
    }
}

/// The sessions themselves run on the simulator, behind its NATs:
/// `crates/dht-sim/tests/punch.rs`.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_relay_cannot_take_every_birthday_slot() {
        let t = Instant::now();
        let mut l = HintLimits::default();
        let ip = |i: u32| Ipv4Addr::from(0x0600_0000 + i);
        // A lying relay names 100 victims in a second: it gets two.
        let attacker = Ipv4Addr::new(6, 6, 6, 6);
        let got = (0..100).filter(|i| l.allow(t, attacker, ip(*i))).count();
        assert_eq!(got, 2);
        // An honest relay's punch still goes through.
        assert!(l.allow(t, Ipv4Addr::new(9, 9, 9, 9), Ipv4Addr::new(8, 8, 8, 8)));
        // One requester IP at most once every 10 s, whoever relays.
        assert!(!l.allow(t, Ipv4Addr::new(9, 9, 9, 10), Ipv4Addr::new(8, 8, 8, 8)));
        assert!(l.allow(
            t + Duration::from_secs(10),
            Ipv4Addr::new(9, 9, 9, 10),
            Ipv4Addr::new(8, 8, 8, 8)
        ));
    }
}
