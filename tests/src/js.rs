//! [`JsGroup`]: a group of JavaScript reference nodes in a child process, driven by JSON
//! lines (see `tests/interop/rpc-nodes.js` and `hyperdht-nodes.js`).

use std::net::{Ipv4Addr, SocketAddrV4};

use dht_wire::NodeId;
use serde_json::{Value, json};
use tokio::process::Command;

use crate::Reference;
use crate::agent::Agent;

/// One JavaScript node.
#[derive(Debug, Clone, Copy)]
pub struct JsNode {
    /// Where it listens.
    pub addr: SocketAddrV4,
    /// Its id.
    pub id: NodeId,
}

/// JavaScript nodes in a child process, killed when dropped.
pub struct JsGroup {
    agent: Agent,
    /// The nodes, in the order the script created them.
    pub nodes: Vec<JsNode>,
}

impl JsGroup {
    /// Starts `script` (in `tests/interop`) with `count` nodes bootstrapping from
    /// `bootstrap`, and waits until all are ready.
    pub async fn spawn(
        reference: &Reference,
        script: &str,
        count: usize,
        bootstrap: &[SocketAddrV4],
        ephemeral: bool,
    ) -> JsGroup {
        let mut cmd = Command::new("node");
        cmd.current_dir(&reference.dir)
            .arg(script)
            .arg(count.to_string());
        for b in bootstrap {
            cmd.arg("--bootstrap").arg(b.to_string());
        }
        if ephemeral {
            cmd.arg("--ephemeral");
        }
        let agent = Agent::spawn(cmd).await;
        let nodes = agent.ready["nodes"]
            .as_array()
            .expect("nodes")
            .iter()
            .map(|n| JsNode {
                addr: SocketAddrV4::new(
                    Ipv4Addr::LOCALHOST,
                    u16::try_from(n["port"].as_u64().expect("port")).expect("port"),
                ),
                id: n["id"].as_str().expect("id").parse().expect("id"),
            })
            .collect();
        JsGroup { agent, nodes }
    }

    /// Sends one request (an object with `op`) and waits for its answer.
    pub async fn call(&mut self, req: Value) -> Value {
        self.agent.call(req).await
    }

    /// Bootstraps every node again (so that all know the nodes that joined after them).
    pub async fn bootstrap_all(&mut self) {
        for i in 0..self.nodes.len() {
            self.call(json!({"op": "bootstrap", "node": i})).await;
        }
    }

    /// The child process's id.
    pub fn pid(&self) -> Option<u32> {
        self.agent.pid()
    }

    /// The handler calls recorded since the last call: `{node, kind, target, value, from}`.
    pub async fn handled(&mut self) -> Vec<Value> {
        self.call(json!({"op": "handled"})).await["handled"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}
