//! [`Handlers`]: application commands answered by closures, the driver's default handler.

use std::collections::HashMap;
use std::fmt;
use std::time::Instant;

use crate::handler::{Answer, Handler, Incoming};

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
