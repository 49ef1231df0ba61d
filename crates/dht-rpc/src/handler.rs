//! [`Handler`]: how an application answers its own commands; [`Handlers`], commands
//! answered by closures, the driver's default handler.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddrV4;
use std::time::Instant;

use bytes::Bytes;
use dht_wire::NodeId;

/// An application command arriving at this node.
#[derive(Debug, Clone, Copy)]
pub struct Incoming<'a> {
    /// The command name.
    pub command: &'a str,
    /// The requester's address.
    pub from: SocketAddrV4,
    /// The requester's id, unless it is ephemeral.
    pub id: Option<NodeId>,
    /// The key queried.
    pub target: NodeId,
    /// The request's payload (borrowed from the datagram).
    pub value: Option<&'a [u8]>,
    /// `true` for an update: the request carried a valid roundtrip token, so the requester
    /// really receives datagrams at `from`. `false` for a query.
    pub update: bool,
}

/// What a handler answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Respond, with this value or none (closer nodes and a token are always added).
    Value(Option<Bytes>),
    /// Send no response at all (the reference's behaviour when a handler fails).
    Drop,
}

/// Answers application commands (anything but `_ping` and `_find_node`).
pub trait Handler {
    /// Answers one request. Called synchronously inside the core.
    fn on_request(&mut self, now: Instant, request: &Incoming<'_>) -> Answer;
}

/// The handler of a node that serves no application command: every command is answered
/// with closer nodes and no value, as the reference does.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoHandler;

impl Handler for NoHandler {
    fn on_request(&mut self, _now: Instant, _request: &Incoming<'_>) -> Answer {
        Answer::Value(None)
    }
}

/// A closure that answers one command.
pub type CommandFn = Box<dyn FnMut(&Incoming<'_>) -> Answer + Send>;

/// Application commands answered by closures, one per command name. A command with no
/// closure is answered with closer nodes and no value, as the reference does.
#[derive(Default)]
pub struct Handlers {
    commands: HashMap<String, CommandFn>,
}

impl Handlers {
    /// Sets the closure answering `command`, replacing any earlier one.
    pub fn insert(&mut self, command: impl Into<String>, f: CommandFn) {
        self.commands.insert(command.into(), f);
    }

    /// Removes the closure answering `command`.
    pub fn remove(&mut self, command: &str) {
        self.commands.remove(command);
    }
}

impl fmt::Debug for Handlers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&String> = self.commands.keys().collect();
        names.sort();
        f.debug_struct("Handlers")
            .field("commands", &names)
            .finish()
    }
}

impl Handler for Handlers {
    fn on_request(&mut self, _now: Instant, request: &Incoming<'_>) -> Answer {
        match self.commands.get_mut(request.command) {
            Some(f) => f(request),
            None => Answer::Value(None),
        }
    }
}
