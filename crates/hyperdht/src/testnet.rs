//! [`Testnet`]: a local network in one process, for tests, examples and trying things out
//! (`hyperdht testnet` runs one): an ephemeral entry node and `n` nodes on one IP.
//!
//! All its nodes share one IP, so they trust it: the defences' limits per IP (routing
//! table, walks, store) would otherwise keep them from knowing each other. A host that joins
//! from elsewhere needs to trust that IP too (`HyperDhtBuilder::trust`, `hyperdht --trust`).

use dht_rpc::BindError;
use dht_rpc::guard::Ipv4Range;

use crate::node::{HyperDht, HyperDhtBuilder};

/// A running local network (see the module docs).
#[must_use = "the network stops when dropped"]
pub struct Testnet {
    /// The ephemeral entry node that the others bootstrapped from.
    pub entry: HyperDht,
    /// The nodes.
    pub nodes: Vec<HyperDht>,
}

impl Testnet {
    /// `n` nodes on 127.0.0.1, the entry node on a random port.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use hyperdht::{AnnounceOptions, Key, LookupOptions, Testnet};
    ///
    /// let net = Testnet::start(5).await?;
    /// let key = Key::from_bytes([1; 32]);
    /// net.nodes[0].announce(key, AnnounceOptions::new(Some(7777), None)).replies().await?;
    /// let found = net.nodes[4].lookup(key, LookupOptions::default()).replies().await?;
    /// assert!(found.iter().any(|r| r.peers.iter().any(|p| p.port() == 7777)));
    /// net.shutdown().await;
    /// # Ok(()) }
    /// ```
    pub async fn start(n: usize) -> Result<Testnet, BindError> {
        Testnet::start_with("127.0.0.1", 0, n, HyperDht::builder).await
    }

    /// `n` nodes on `host`, the entry node on `host:entry_port` (0: random), each node built
    /// from `builder()` (the network adds the bootstrap, the trust of `host` and, for the
    /// entry node, ephemeral). Every node re-bootstraps once after all are up, so that the
    /// early ones learn of the late ones.
    pub async fn start_with(
        host: &str,
        entry_port: u16,
        n: usize,
        builder: impl Fn() -> HyperDhtBuilder,
    ) -> Result<Testnet, BindError> {
        let own: Vec<Ipv4Range> = host.parse::<Ipv4Range>().into_iter().collect();
        let entry = builder()
            .trust(own.clone())
            .rpc(|b| b.ephemeral(true))
            .bind(&format!("{host}:{entry_port}"))
            .await?;
        let addr = entry.local_addr().to_string();
        let mut nodes = Vec::with_capacity(n);
        for _ in 0..n {
            let node = builder()
                .trust(own.clone())
                .bootstrap([addr.clone()])
                .bind(&format!("{host}:0"))
                .await?;
            nodes.push(node);
        }
        for node in &nodes {
            node.ready().await;
        }
        for node in &nodes {
            // (A failure leaves that node with what its first bootstrap found.)
            let _ = node.bootstrap().await;
        }
        Ok(Testnet { entry, nodes })
    }

    /// The entry node's address, to bootstrap from.
    pub fn bootstrap(&self) -> String {
        self.entry.local_addr().to_string()
    }

    /// Stops every node.
    pub async fn shutdown(self) {
        for node in &self.nodes {
            node.shutdown().await;
        }
        self.entry.shutdown().await;
    }
}
