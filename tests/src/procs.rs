//! The project's binaries as child processes: found (or built) in the target directory,
//! their stdout read line by line, stopped with SIGTERM and always reaped.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The path of one of the workspace's binaries, built first if it is missing (as when only
/// this package's tests were asked for).
pub fn binary(name: &str) -> PathBuf {
    // Built (or found up to date) once per binary and process: cargo is a no-op when it is
    // current, and an existing file alone may be a stale build from an earlier checkout.
    static BUILD: OnceLock<Mutex<std::collections::BTreeSet<String>>> = OnceLock::new();
    let exe = std::env::current_exe().expect("test executable");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(|p| p.parent())
        .expect("target directory")
        .to_path_buf();
    let path = dir.join(name);
    let mut built = BUILD
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if built.insert(name.to_owned()) {
        let package = match name {
            "hyperdht" => "hyperdht-cli",
            "dht-bootstrap" => "dht-bootstrap",
            // lab-peer, lab-probe, udp-echo, dht-load, soak, perf-report: this crate's.
            _ => env!("CARGO_PKG_NAME"),
        };
        let mut build = Command::new(env!("CARGO"));
        build.args(["build", "-q", "-p", package, "--bin", name]);
        if dir.file_name().is_some_and(|p| p == "release") {
            build.arg("--release");
        }
        let status = build.status().expect("run cargo build");
        assert!(status.success(), "building {name} failed");
    }
    path
}

/// A running binary.
pub struct Proc {
    child: Child,
    lines: Receiver<String>,
    /// Everything read from stdout so far.
    pub seen: Vec<String>,
}

impl Proc {
    /// Starts `name` with `args`; stdout is captured, stderr inherited.
    pub fn spawn(name: &str, args: &[&str]) -> Proc {
        let mut child = Command::new(binary(name))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Proc {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Waits for a stdout line that `want` accepts.
    pub fn line(&mut self, timeout: Duration, want: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if want(&l) {
                        return l;
                    }
                }
                Err(_) => panic!("no matching line within {timeout:?}; saw {:?}", self.seen),
            }
        }
    }

    /// Sends SIGTERM and waits (up to 10 s) for the exit.
    pub fn terminate(&mut self) -> ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "process {} ignored SIGTERM",
                self.child.id()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The rest of stdout after the process exited.
    pub fn drain(&mut self) -> Vec<String> {
        let mut rest = Vec::new();
        while let Ok(l) = self.lines.recv_timeout(Duration::from_millis(500)) {
            rest.push(l);
        }
        self.seen.extend(rest.iter().cloned());
        rest
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether a process with this id still exists.
pub fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        && std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| !s.contains(") Z "))
            .unwrap_or(false)
}
