//! Serving requests: `_ping`, `_find_node`, hole-punch forwards, and application commands.
//!
//! In the reference's order: add the sender (if it sent a valid id, and the request was not
//! relayed); check its token; relay
//! a `forwardRequest`; honour a `forwardResponse`; then answer the command. What the
//! reference would crash or misbehave on (a malformed forward address, a forward of anything
//! but `_ping`) is dropped and counted.

use std::net::SocketAddrV4;
use std::time::Instant;

use dht_wire::{
    Checked, Datagram, FIND_NODE, NodeId, PING, Request, RequestRef, ResponseRef, Tid, compact,
};

use super::{Core, defend};
use crate::events::Event;
use crate::guard::{Relay, dest};
use crate::handler::{Answer, Handler, Incoming};

impl<H: Handler> Core<H> {
    pub(super) fn on_request(
        &mut self,
        now: Instant,
        from: SocketAddrV4,
        tid: Tid,
        req: RequestRef<'_>,
    ) {
        // A relayed hole-punch ping (it has forwardResponse) carries the requester's id but
        // comes from the relay's address: adding it would map the requester's id to the
        // relay (the reference does, and then routes that id's traffic to the relay). A
        // direct sender enters the table only once it answered a ping of ours.
        if let Some(id) = defend::direct_sender(&req) {
            self.heard_id(now, id, from);
        }
        let update = req
            .roundtrip_token
            .is_some_and(|t| self.tokens.is_valid(*from.ip(), t));
        if update {
            self.proved(now, from);
        }

        if let Some(forward) = req.forward_request() {
            self.relay(
                now,
                from,
                tid,
                forward.valid().copied(),
                update,
                req.to_owned(),
            );
            return;
        }
        // Answer the peer named in forwardResponse instead of the sender (the relay); the
        // pong then tells that peer its address as the relay saw it.
        let to = match req.forward_response() {
            None => from,
            Some(Checked::Valid(requester)) if req.command == PING => requester,
            Some(_) => return self.drop_request(from, "invalid forwardResponse"),
        };
        if to != from {
            if dest::may_send_for(*from.ip(), to).is_err() || self.is_self(to) {
                self.stats.refused_destinations += 1;
                return self.drop_request(from, "forwardResponse to a refused destination");
            }
            if !self.guard.admit_pong(now, *to.ip()) {
                self.stats.pongs_limited += 1;
                return;
            }
        }

        // A relayed hole-punch ping that carries a value: an application-level hint from
        // the requester (the reference ignores a ping's value, so this stays compatible).
        // Hints can make the application send much (a birthday punch), so they count only
        // from a relay that proved it receives at its address: not from a spoofed source.
        if to != from
            && let Some(value) = req.value.map(bytes::Bytes::copy_from_slice)
        {
            if self.guard.vouched(*from.ip()) {
                self.events.push_back(Event::PunchRequest {
                    requester: to,
                    relay: from,
                    value,
                });
            } else {
                self.stats.hints_unproven += 1;
            }
        }
        match req.command {
            PING => self.stats.served_ping += 1,
            FIND_NODE => self.stats.served_find_node += 1,
            _ => self.stats.served_other += 1,
        }
        match req.command {
            PING => self.respond(now, to, tid, None, Some(&compact::peer_bytes(&to))),
            FIND_NODE => {
                let Some(target) = req.target_id() else {
                    return self.drop_request(from, "find_node without a valid target");
                };
                self.respond(now, to, tid, Some(&target), None);
            }
            command => {
                let Some(target) = req.target_id() else {
                    return self.drop_request(from, "command without a valid target");
                };
                let incoming = Incoming {
                    command,
                    from,
                    id: req.sender_id(),
                    target,
                    value: req.value,
                    update,
                };
                let value = match self.handler.on_request(now, &incoming) {
                    Answer::Value(v) => v,
                    Answer::Drop => return self.drop_request(from, "the handler declined"),
                };
                self.respond(now, to, tid, Some(&target), value.as_deref());
            }
        }
    }

    /// Answers `to` with our id (unless ephemeral), a token for it, `value`, and the closest
    /// nodes to `near` if given (from the core's reused buffers: no allocation).
    fn respond(
        &mut self,
        now: Instant,
        to: SocketAddrV4,
        tid: Tid,
        near: Option<&NodeId>,
        value: Option<&[u8]>,
    ) {
        let id = (!self.is_ephemeral()).then_some(self.id);
        let token = self.tokens.issue(*to.ip());
        let mut nodes = std::mem::take(&mut self.closest_buf);
        if let Some(target) = near {
            self.table
                .closest_into(target, self.config.k, &mut self.closest_scratch, &mut nodes);
        }
        let response = ResponseRef {
            id: id.as_ref(),
            nodes: near.map(|_| nodes.as_slice()),
            value,
            token: Some(&token),
        };
        self.answer(now, to, tid, response);
        self.closest_buf = nodes;
    }

    fn drop_request(&mut self, from: SocketAddrV4, why: &'static str) {
        self.stats.requests_dropped += 1;
        tracing::debug!(%from, why, "dropping request");
        self.events.push_back(Event::Warning { from, reason: why });
    }

    /// Relays a hole-punch ping to `to`, under the same tid, naming the requester in
    /// `forwardResponse` so that `to` answers it directly. Only `_ping` is relayed, and at a
    /// bounded rate per requester and per target.
    fn relay(
        &mut self,
        now: Instant,
        from: SocketAddrV4,
        tid: Tid,
        to: Option<SocketAddrV4>,
        tokened: bool,
        req: Request,
    ) {
        let Some(to) = to.filter(|_| req.command == PING) else {
            return self.drop_request(from, "forward of anything but a valid _ping");
        };
        if to == from || dest::may_send_for(*from.ip(), to).is_err() || self.is_self(to) {
            self.stats.refused_destinations += 1;
            return self.drop_request(from, "forward to a refused destination");
        }
        if self.guard.admit_relay(now, *from.ip(), to, tokened) == Relay::Limited {
            self.stats.forwards_limited += 1;
            return;
        }
        // The requester's token for us is not the target's business (holding it, the
        // target could write in the requester's name).
        let forwarded = Request {
            forward_request: None,
            forward_response: Some(Checked::Valid(from)),
            roundtrip_token: None,
            ..req
        };
        self.stats.forwards += 1;
        self.events
            .push_back(Event::HolepunchForwarded { from, to });
        self.transmit(now, to, Datagram::request(tid, forwarded));
    }
}
