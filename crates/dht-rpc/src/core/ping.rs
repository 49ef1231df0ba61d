//! The application's own requests: a `_ping` to a node, and a hole punch (a `_ping` a
//! referrer forwards to a peer, whose pong then comes straight from the peer). Each ends in
//! one [`Event::Pong`]: the answer, or why none came.

use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

use bytes::Bytes;
use dht_wire::{Checked, PING, Request, Response, compact};

use super::{Core, Purpose};
use crate::events::{Event, Pong, RequestError, RequestId};
use crate::handler::Handler;

impl<H: Handler> Core<H> {
    /// Sends `_ping` to `to`; an [`Event::Pong`] follows.
    pub fn ping(&mut self, now: Instant, to: SocketAddrV4) -> RequestId {
        let id = self.new_request_id();
        let req = Request {
            id: self.wire_id(),
            ..Request::new(PING)
        };
        self.send(now, to, to, req, Purpose::Ping(id));
        id
    }

    /// Asks `referrer` to forward a `_ping` to `peer`, whose answer then comes straight from
    /// `peer`: its arrival proves the path `peer -> us` is open. An [`Event::Pong`] follows.
    pub fn holepunch(
        &mut self,
        now: Instant,
        peer: SocketAddrV4,
        referrer: SocketAddrV4,
    ) -> RequestId {
        self.holepunch_with(now, peer, referrer, None)
    }

    /// [`Core::holepunch`] with a `value` in the ping: a hint that a peer of ours reads in
    /// its [`Event::PunchRequest`] (the reference ignores it).
    pub fn holepunch_with(
        &mut self,
        now: Instant,
        peer: SocketAddrV4,
        referrer: SocketAddrV4,
        value: Option<Bytes>,
    ) -> RequestId {
        let id = self.new_request_id();
        let req = Request {
            value,
            ..self.holepunch_request(peer, referrer)
        };
        self.send(now, referrer, peer, req, Purpose::Holepunch(id));
        id
    }

    pub(super) fn holepunch_request(&self, peer: SocketAddrV4, referrer: SocketAddrV4) -> Request {
        let token = self
            .tokens_from
            .iter()
            .rev()
            .find(|(a, _)| *a == referrer)
            .map(|(_, t)| Bytes::copy_from_slice(t));
        Request {
            id: self.wire_id(),
            forward_request: Some(Checked::Valid(peer)),
            roundtrip_token: token,
            ..Request::new(PING)
        }
    }

    /// The answer to a ping or a hole punch: it names the address it saw us at, which
    /// we keep as our observed address.
    pub(super) fn on_pong(
        &mut self,
        from: SocketAddrV4,
        request: RequestId,
        rtt: Duration,
        res: &Response,
    ) {
        let observed = res.value.as_deref().and_then(compact::decode_peer);
        if observed.is_some() {
            self.observed = observed;
        }
        let pong = Pong {
            from,
            id: res.sender_id(),
            observed,
            rtt,
        };
        self.events.push_back(Event::Pong {
            request,
            result: Ok(pong),
        });
    }

    /// A ping or a hole punch got no answer (or was refused, or cancelled).
    pub(super) fn on_pong_failure(&mut self, request: RequestId, error: RequestError) {
        self.events.push_back(Event::Pong {
            request,
            result: Err(error),
        });
    }
}
