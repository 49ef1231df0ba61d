//! [`Shutdown`]: the signals that stop a binary. Shared by `hyperdht` and `dht-bootstrap`
//! (which includes this file, not this crate: it stays free of hyperdht).

/// SIGINT (Ctrl-C) and SIGTERM, caught from the moment this is made: [`Shutdown::recv`]
/// resolves at the first that arrives after. It is cancel-safe: a `select!` loop may poll it
/// every turn, and a signal that arrives while another branch wins waits for the next poll.
/// (A signal future made anew each turn could lose a signal that came while another branch
/// won: the new one listened only from its own first poll on.)
pub struct Shutdown {
    #[cfg(unix)]
    int: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
}

impl Shutdown {
    /// Starts catching the signals (call it inside the tokio runtime). One that cannot be
    /// caught keeps its default action.
    pub fn new() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Shutdown {
                int: signal(SignalKind::interrupt()).ok(),
                term: signal(SignalKind::terminate()).ok(),
            }
        }
        #[cfg(not(unix))]
        Shutdown {}
    }

    /// Resolves at the next SIGINT or SIGTERM.
    pub async fn recv(&mut self) {
        #[cfg(unix)]
        {
            async fn next(s: &mut Option<tokio::signal::unix::Signal>) {
                match s {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending().await,
                }
            }
            tokio::select! {
                () = next(&mut self.int) => {}
                () = next(&mut self.term) => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}
