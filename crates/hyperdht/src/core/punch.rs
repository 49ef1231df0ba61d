//! Our hole punches, each from its first round to its end: the rounds of direct probes
//! and relayed pings, the symmetric-NAT check when they fail, our side of the birthday
//! punch, and (in `circuit/fallback.rs`) the wait for a relay. A [`Punch`] holds where it is
//! ([`Phase`]); [`Punches`] holds every punch with the rpc requests it sent, so that an
//! answer finds its punch and ending a punch forgets its requests with it.

use std::collections::BTreeMap;
use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

use dht_rpc::{Event, MachineEvent, NodeId, Pong, RequestError, RequestId};

use super::{
    BirthdayTry, Core, CoreEvent, Holepunch, HolepunchError, HolepunchPath, PUNCH_INTERVAL,
    PUNCH_ROUNDS, PunchId,
};
use crate::hints::{Hint, Token};

/// How long a symmetric-NAT verdict is trusted.
const SYMMETRIC_TTL: Duration = Duration::from_secs(60);
/// How long after opening its sockets the hard side asks the peer to spray.
const HARD_HINT_DELAY: Duration = Duration::from_millis(100);
/// How long after answering the peer's challenge (its sockets open when our answer
/// arrives) the easy side starts spraying.
const EASY_SPRAY_DELAY: Duration = Duration::from_millis(300);
/// How long the easy side waits for the peer's challenge before it gives up.
const CHALLENGE_WAIT: Duration = Duration::from_secs(2);

/// One hole punch in progress.
#[derive(Debug)]
pub(super) struct Punch {
    pub(super) peer: SocketAddrV4,
    pub(super) referrer: SocketAddrV4,
    /// Whether to relay through the referrer (not when it is the peer or ourselves).
    pub(super) relay: bool,
    /// A retry of ours while a relay's circuit carries the peer's datagrams: it reports
    /// nothing, and a direct path it opens replaces the circuit.
    pub(super) upgrade: bool,
    /// A retry that renews the circuit: it may fall back to a relay again (a fresh
    /// circuit replaces the one that is about to end).
    pub(super) renew: bool,
    pub(super) start: Instant,
    pub(super) rounds_sent: u32,
    pub(super) next_round: Instant,
    /// Requests sent and not yet answered or failed.
    pub(super) outstanding: usize,
    pub(super) last_error: RequestError,
    pub(super) phase: Phase,
}

impl Punch {
    /// A punch to `peer` through `referrer` (relayed through it if `relay` and it is not
    /// the peer), its first round due at `now`.
    fn new(peer: SocketAddrV4, referrer: SocketAddrV4, relay: bool, now: Instant) -> Self {
        Punch {
            peer,
            referrer,
            relay: relay && referrer != peer,
            upgrade: false,
            renew: false,
            start: now,
            rounds_sent: 0,
            next_round: now,
            outstanding: 0,
            last_error: RequestError::Timeout,
            phase: Phase::Rounds,
        }
    }
}

/// Where a punch is.
#[derive(Debug)]
pub(super) enum Phase {
    /// Direct probes and relayed pings.
    Rounds,
    /// Asking two nodes how they see us; their answers so far.
    Symmetric(Vec<Option<SocketAddrV4>>),
    /// The birthday punch (the hard side's hint goes out at `hint_at`). `hard`: we are the
    /// hard side. `proved`: we answered the peer's challenge (once).
    Birthday {
        hint_at: Option<Instant>,
        hard: bool,
        proved: bool,
    },
    /// Every path failed (`birthday` says how the birthday punch went): we asked the peer
    /// for a relay and wait for it until `until`.
    RelayWait {
        until: Instant,
        birthday: BirthdayTry,
    },
}

/// What a request of a punch was sent for.
#[derive(Debug, Clone, Copy)]
enum Ask {
    /// A round's direct probe or relayed ping.
    Round(HolepunchPath),
    /// One of the symmetric-NAT check's two pings.
    Symmetric,
}

/// The punches in progress, and the rpc requests each sent.
#[derive(Debug, Default)]
pub(super) struct Punches {
    map: BTreeMap<PunchId, Punch>,
    asks: BTreeMap<RequestId, (PunchId, Ask)>,
    next: u64,
}

impl Punches {
    fn start(&mut self, punch: Punch) -> PunchId {
        let id = PunchId(self.next);
        self.next += 1;
        self.map.insert(id, punch);
        id
    }

    /// Notes that `request` was sent for `punch`.
    fn ask(&mut self, request: RequestId, punch: PunchId, ask: Ask) {
        self.asks.insert(request, (punch, ask));
    }

    /// The punch `request` was sent for (once), if it was one of theirs.
    fn answered(&mut self, request: RequestId) -> Option<(PunchId, Ask)> {
        self.asks.remove(&request)
    }

    /// Removes a punch with its requests.
    fn end(&mut self, punch: PunchId) -> Option<Punch> {
        let p = self.map.remove(&punch)?;
        self.asks.retain(|_, (id, _)| *id != punch);
        Some(p)
    }

    pub(super) fn len(&self) -> usize {
        self.map.len()
    }

    pub(super) fn contains_key(&self, punch: &PunchId) -> bool {
        self.map.contains_key(punch)
    }

    pub(super) fn get(&self, punch: &PunchId) -> Option<&Punch> {
        self.map.get(punch)
    }

    pub(super) fn get_mut(&mut self, punch: &PunchId) -> Option<&mut Punch> {
        self.map.get_mut(punch)
    }

    pub(super) fn values(&self) -> impl Iterator<Item = &Punch> {
        self.map.values()
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (&PunchId, &Punch)> {
        self.map.iter()
    }

    fn iter_mut(&mut self) -> impl Iterator<Item = (&PunchId, &mut Punch)> {
        self.map.iter_mut()
    }

    fn values_mut(&mut self) -> impl Iterator<Item = &mut Punch> {
        self.map.values_mut()
    }
}

impl Core {
    /// Starts a hole punch to `peer` through `referrer` (see the `core` module's docs); with `relay`
    /// false, only the direct probes go out (the referrer is the peer, or ourselves). It ends
    /// with [`CoreEvent::Punched`].
    pub fn holepunch(
        &mut self,
        now: Instant,
        peer: SocketAddrV4,
        referrer: SocketAddrV4,
        relay: bool,
    ) -> PunchId {
        self.now = now;
        let id = self.punches.start(Punch::new(peer, referrer, relay, now));
        self.send_rounds(now);
        self.pump();
        id
    }

    /// Hole punches in progress.
    pub fn punches(&self) -> usize {
        self.punches.len()
    }

    /// Sends the rounds that are due.
    pub(super) fn send_rounds(&mut self, now: Instant) {
        let due: Vec<PunchId> = self
            .punches
            .iter()
            .filter(|(_, p)| {
                matches!(p.phase, Phase::Rounds)
                    && p.rounds_sent < PUNCH_ROUNDS
                    && p.next_round <= now
            })
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            let Some(p) = self.punches.get_mut(&id) else {
                continue;
            };
            p.rounds_sent += 1;
            p.next_round = now + PUNCH_INTERVAL;
            let (peer, referrer, relay) = (p.peer, p.referrer, p.relay);
            let direct = self.rpc.ping(now, peer);
            self.punches
                .ask(direct, id, Ask::Round(HolepunchPath::Direct));
            let mut sent = 1;
            if relay {
                let relayed = self.rpc.holepunch(now, peer, referrer);
                self.punches
                    .ask(relayed, id, Ask::Round(HolepunchPath::Relayed));
                sent += 1;
            }
            if let Some(p) = self.punches.get_mut(&id) {
                p.outstanding += sent;
            }
        }
    }

    /// A ping or relayed ping of a punch's rounds ended.
    fn on_round_pong(
        &mut self,
        punch: PunchId,
        path: HolepunchPath,
        result: Result<Pong, RequestError>,
    ) {
        let Some(p) = self.punches.get_mut(&punch) else {
            return;
        };
        if !matches!(p.phase, Phase::Rounds) {
            // A late answer of a round while the birthday runs: the path is open.
            if let Ok(pong) = result {
                self.succeed_punch(punch, path, pong.from, pong.id);
            }
            return;
        }
        p.outstanding = p.outstanding.saturating_sub(1);
        match result {
            Ok(pong) => self.succeed_punch(punch, path, pong.from, pong.id),
            Err(e) => {
                p.last_error = e;
                if p.outstanding > 0 || p.rounds_sent < PUNCH_ROUNDS {
                    return;
                }
                match p.last_error.clone() {
                    RequestError::Timeout if p.relay => self.check_symmetric(punch),
                    RequestError::Timeout => self.fail_punch(punch, BirthdayTry::NotTried),
                    e => self.end_punch(punch, Err(HolepunchError::Node(e))),
                }
            }
        }
    }

    /// Ends a punch: its event; its requests, its birthday session and its circuit join
    /// forgotten (each by its owner).
    fn end_punch(&mut self, punch: PunchId, result: Result<Holepunch, HolepunchError>) {
        let Some(p) = self.punches.end(punch) else {
            return;
        };
        self.circuits.forget_punch(punch);
        self.end_sessions(punch);
        if p.upgrade {
            self.on_upgrade(p.peer, result.ok());
            return;
        }
        self.pending
            .push_back(MachineEvent::Own(CoreEvent::Punched { punch, result }));
    }

    pub(super) fn succeed_punch(
        &mut self,
        punch: PunchId,
        path: HolepunchPath,
        addr: SocketAddrV4,
        id: Option<NodeId>,
    ) {
        let Some(p) = self.punches.get(&punch) else {
            return;
        };
        let elapsed = self.now.saturating_duration_since(p.start);
        self.end_punch(punch, Ok(Holepunch::new(path, addr, id, elapsed)));
    }

    pub(super) fn fail_punch(&mut self, punch: PunchId, birthday: BirthdayTry) {
        if self.ask_for_relay(punch, birthday) {
            return;
        }
        let Some(p) = self.punches.get(&punch) else {
            return;
        };
        let err = HolepunchError::NoAnswer {
            peer: p.peer,
            rounds: PUNCH_ROUNDS,
            relayed: p.relay,
            birthday,
        };
        self.end_punch(punch, Err(err));
    }

    /// The rounds failed: is our NAT symmetric? (A verdict of the last minute is reused.)
    fn check_symmetric(&mut self, punch: PunchId) {
        let now = self.now;
        if let Some((at, symmetric)) = self.symmetric
            && now.saturating_duration_since(at) < SYMMETRIC_TTL
        {
            self.start_birthday(punch, symmetric);
            return;
        }
        let Some(referrer) = self.punches.get(&punch).map(|p| p.referrer) else {
            return;
        };
        let target = NodeId::from_bytes(rand::Rng::random(self.rpc.rng()));
        let other = self
            .rpc
            .table()
            .closest(&target, 8)
            .into_iter()
            .map(|n| n.addr)
            .chain(self.rpc.config().bootstrap.clone())
            .find(|a| *a != referrer);
        let Some(other) = other else {
            // Nobody to compare with: take the easy side, which needs no sockets.
            self.start_birthday(punch, false);
            return;
        };
        if let Some(p) = self.punches.get_mut(&punch) {
            p.phase = Phase::Symmetric(Vec::new());
        }
        for to in [referrer, other] {
            let r = self.rpc.ping(now, to);
            self.punches.ask(r, punch, Ask::Symmetric);
        }
    }

    fn on_symmetric_pong(&mut self, punch: PunchId, result: Result<Pong, RequestError>) {
        let Some(Phase::Symmetric(seen)) = self.punches.get_mut(&punch).map(|p| &mut p.phase)
        else {
            return;
        };
        seen.push(result.ok().and_then(|p| p.observed));
        if seen.len() < 2 {
            return;
        }
        let symmetric = matches!(seen[..], [Some(a), Some(b)] if a.port() != b.port());
        if seen.iter().all(Option::is_some) {
            self.symmetric = Some((self.now, symmetric));
        }
        self.start_birthday(punch, symmetric);
    }

    /// Starts the birthday punch of `punch` from our side.
    fn start_birthday(&mut self, punch: PunchId, symmetric: bool) {
        let now = self.now;
        let Some(p) = self.punches.get_mut(&punch) else {
            return;
        };
        let (peer, referrer) = (p.peer, p.referrer);
        if symmetric {
            // We are the hard side: open sockets toward the peer, then ask it to spray us
            // (it challenges first: see `on_challenge`).
            p.phase = Phase::Birthday {
                hint_at: Some(now + HARD_HINT_DELAY),
                hard: true,
                proved: false,
            };
            self.start_hard(now, peer, Some(punch));
        } else {
            // We have a stable address: ask the peer to open sockets toward us; we spray
            // once we answered its challenge.
            p.phase = Phase::Birthday {
                hint_at: None,
                hard: false,
                proved: false,
            };
            self.rpc
                .holepunch_with(now, peer, referrer, Some(Hint::ProbeMe(None).encode()));
            // Our spraying session waits for the challenge (`on_challenge` starts it), and
            // ends the punch unmet if none comes (a peer that ignores hints, say).
            self.start_easy(now, *peer.ip(), Some(punch));
            if let Some(e) = self.easies.last_mut() {
                e.wait_for_challenge(now + CHALLENGE_WAIT);
            }
        }
    }

    /// The hard side's hints that are due.
    pub(super) fn send_hints(&mut self, now: Instant) {
        let mut due = Vec::new();
        for p in self.punches.values_mut() {
            if let Phase::Birthday { hint_at, .. } = &mut p.phase
                && hint_at.is_some_and(|t| t <= now)
            {
                *hint_at = None;
                due.push((p.peer, p.referrer));
            }
        }
        for (peer, referrer) in due {
            self.rpc
                .holepunch_with(now, peer, referrer, Some(Hint::SprayMe(None).encode()));
        }
    }

    /// The peer of one of our birthday punches challenged us (through a relay): send our
    /// hint again with its token, once; the easy side starts spraying then.
    pub(super) fn on_challenge(&mut self, challenger: SocketAddrV4, token: Token) {
        let now = self.now;
        let found = self
            .punches
            .iter_mut()
            .find_map(|(id, p)| match &mut p.phase {
                Phase::Birthday { hard, proved, .. }
                    if !*proved && p.peer.ip() == challenger.ip() =>
                {
                    *proved = true;
                    Some((*id, p.peer, p.referrer, *hard))
                }
                _ => None,
            });
        let Some((punch, peer, referrer, hard)) = found else {
            tracing::debug!(%challenger, "a birthday challenge for no punch of ours");
            return;
        };
        let hint = if hard {
            Hint::SprayMe(Some(token))
        } else {
            Hint::ProbeMe(Some(token))
        };
        self.rpc
            .holepunch_with(now, peer, referrer, Some(hint.encode()));
        if !hard && let Some(e) = self.easies.iter_mut().find(|e| e.punch == Some(punch)) {
            e.challenged(now + EASY_SPRAY_DELAY);
        }
    }

    /// An rpc pong that answers one of our punches' requests goes to its punch; any other
    /// is given back.
    pub(super) fn punch_pong(
        &mut self,
        request: RequestId,
        result: Result<Pong, RequestError>,
    ) -> Option<Event> {
        match self.punches.answered(request) {
            Some((punch, Ask::Round(path))) => self.on_round_pong(punch, path, result),
            Some((punch, Ask::Symmetric)) => self.on_symmetric_pong(punch, result),
            None => return Some(Event::Pong { request, result }),
        }
        None
    }

    /// The punches' next deadline: a round, or the hard side's hint.
    pub(super) fn next_punch_timer(&self) -> Option<Instant> {
        self.punches
            .values()
            .filter_map(|p| match p.phase {
                Phase::Rounds if p.rounds_sent < PUNCH_ROUNDS => Some(p.next_round),
                Phase::Birthday { hint_at, .. } => hint_at,
                _ => None,
            })
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn punch(now: Instant) -> Punch {
        let a: SocketAddrV4 = "192.0.2.1:1".parse().expect("addr");
        Punch::new(a, a, false, now)
    }

    /// An answer finds its punch once; ending a punch forgets its requests and no other's.
    #[test]
    fn a_punch_owns_its_requests() {
        let t = Instant::now();
        // Request ids come from an rpc core (its pings to nobody).
        let mut rpc = dht_rpc::Core::new(dht_rpc::Config::default(), t);
        let to: SocketAddrV4 = "192.0.2.2:1".parse().expect("addr");
        let r: Vec<RequestId> = (0..3).map(|_| rpc.ping(t, to)).collect();
        let mut p = Punches::default();
        let (a, b) = (p.start(punch(t)), p.start(punch(t)));
        assert_eq!((a, b), (PunchId(0), PunchId(1)));
        p.ask(r[0], a, Ask::Round(HolepunchPath::Direct));
        p.ask(r[1], a, Ask::Symmetric);
        p.ask(r[2], b, Ask::Round(HolepunchPath::Relayed));
        assert!(matches!(
            p.answered(r[0]),
            Some((id, Ask::Round(HolepunchPath::Direct))) if id == a
        ));
        assert!(p.answered(r[0]).is_none(), "once");
        assert!(p.end(a).is_some());
        assert!(p.end(a).is_none());
        assert!(p.answered(r[1]).is_none(), "forgotten with its punch");
        assert!(matches!(p.answered(r[2]), Some((id, _)) if id == b));
        assert_eq!(p.len(), 1);
    }
}
