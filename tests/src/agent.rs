//! [`Agent`]: a child process driven by JSON lines: one request line in, one answer line
//! out (matched by its `re` field), after a first line holding `"ready"`.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// How long one answer may take.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

/// A JSON-lines child process, killed when dropped.
pub struct Agent {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
    next: u64,
    /// The agent's first line.
    pub ready: Value,
}

impl Agent {
    /// Starts `cmd` and waits for its `ready` line.
    pub async fn spawn(mut cmd: Command) -> Agent {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn agent");
        let stdin = child.stdin.take().expect("stdin");
        let lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut agent = Agent {
            child,
            stdin,
            lines,
            next: 0,
            ready: Value::Null,
        };
        agent.ready = agent
            .read_until("start", |v| v.get("ready").is_some())
            .await;
        agent
    }

    async fn read_until(&mut self, what: &str, mut want: impl FnMut(&Value) -> bool) -> Value {
        loop {
            let line = tokio::time::timeout(ANSWER_TIMEOUT, self.lines.next_line())
                .await
                .unwrap_or_else(|_| panic!("the agent answers {what} in time"))
                .expect("read stdout")
                .expect("the agent is still running");
            let Ok(v) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
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
        let what = req.to_string();
        self.read_until(&what, |v| v["re"].as_u64() == Some(re))
            .await
    }

    /// The child process's id.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }
}
