//! [`JsGroup`]: a group of JavaScript reference nodes in a child process, driven by JSON
//! lines (see `tests/interop/rpc-nodes.js`).

use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::Stdio;
use std::time::Duration;

use dht_wire::NodeId;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::Reference;

/// How long one answer from the JavaScript side may take.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

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
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
    /// The nodes, in the order the script created them.
    pub nodes: Vec<JsNode>,
    next: u64,
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
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn node");
        let stdin = child.stdin.take().expect("stdin");
        let lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut group = JsGroup {
            child,
            stdin,
            lines,
            nodes: Vec::new(),
            next: 0,
        };
        let ready = group.read_until(|v| v.get("ready").is_some()).await;
        group.nodes = ready["nodes"]
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
        group
    }

    async fn read_until(&mut self, mut want: impl FnMut(&Value) -> bool) -> Value {
        loop {
            let line = tokio::time::timeout(ANSWER_TIMEOUT, self.lines.next_line())
                .await
                .expect("the JavaScript side answers in time")
                .expect("read stdout")
                .expect("the JavaScript side is still running");
            let v: Value = serde_json::from_str(&line).expect("a JSON line");
            if want(&v) {
                return v;
            }
        }
    }

    /// Sends one request (an object with `op`) and waits for its answer.
    pub async fn call(&mut self, mut req: Value) -> Value {
        self.next += 1;
        let re = self.next;
        req["re"] = json!(re);
        let mut line = req.to_string();
        line.push('\n');
        self.stdin
            .write_all(line.as_bytes())
            .await
            .expect("write stdin");
        self.read_until(|v| v["re"].as_u64() == Some(re)).await
    }

    /// The child process's id.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// The handler calls recorded since the last call: `{node, kind, target, value, from}`.
    pub async fn handled(&mut self) -> Vec<Value> {
        self.call(json!({"op": "handled"})).await["handled"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}
