//! What `perf-report` measures: one target process (our `hyperdht` node, the JavaScript
//! reference, or the echo) pinned to one core, loaded by `dht-load` pinned to the other,
//! with its resident memory read from `/proc`.

use std::io::{BufRead, BufReader};
use std::net::SocketAddrV4;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

/// What is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Our `hyperdht` node, loopback not trusted (the defences on), batched I/O.
    Ours,
    /// The same with `--no-batch-io`: one receive and one send call per datagram.
    OursSingle,
    /// `hyperdht@1.3.0` (on `dht-rpc@2.3.0`), one node.
    Js,
    /// `udp-echo`: one `recv_from` and one `send_to` per datagram.
    Echo,
}

impl Target {
    /// The column name.
    pub fn name(self) -> &'static str {
        match self {
            Target::Ours => "hyperdht-rs",
            Target::OursSingle => "hyperdht-rs, 1 datagram per call",
            Target::Js => "hyperdht@1.3.0",
            Target::Echo => "echo",
        }
    }
}

/// A running target, killed when dropped.
pub struct Running {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddrV4,
}

impl Running {
    /// Its resident memory in KiB.
    pub fn rss_kib(&self) -> Option<u64> {
        rss_kib(self.child.id())
    }
}

/// The resident memory (`VmRSS`) of process `pid`, in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `cmd` pinned to `core` when `taskset` exists.
pub fn pinned(core: Option<usize>, program: &Path) -> Command {
    match core {
        Some(c) => {
            let mut cmd = Command::new("taskset");
            cmd.arg("-c").arg(c.to_string()).arg(program);
            cmd
        }
        None => Command::new(program),
    }
}

/// Whether `taskset` works here.
pub fn can_pin() -> bool {
    Command::new("taskset")
        .args(["-c", "0", "true"])
        .status()
        .is_ok_and(|s| s.success())
}

/// Starts `target` on `core`; `bin` is the folder of our binaries, `js_dir` where the
/// reference is installed. Waits for its `{"address": ...}` line.
pub fn start(
    target: Target,
    core: Option<usize>,
    bin: &Path,
    js_dir: Option<&Path>,
) -> Result<Running, String> {
    let mut cmd = match target {
        Target::Ours | Target::OursSingle => {
            let mut c = pinned(core, &bin.join("hyperdht"));
            c.args(["--host", "127.0.0.1", "--no-trust-loopback", "--json", "-q"]);
            if target == Target::OursSingle {
                c.arg("--no-batch-io");
            }
            c
        }
        Target::Js => {
            let dir = js_dir.ok_or("the reference is not installed")?;
            let node = which("node").ok_or("node not found")?;
            let mut c = pinned(core, &node);
            c.current_dir(dir).args(["perf-node.js", "0", "600"]);
            c
        }
        Target::Echo => {
            let mut c = pinned(core, &bin.join("udp-echo"));
            c.args(["--secs", "600"]);
            c
        }
    };
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("starting {}: {e}", target.name()))?;
    let mut line = String::new();
    let stdout = child.stdout.take().ok_or("no stdout")?;
    BufReader::new(stdout)
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    let v: Value = serde_json::from_str(&line)
        .map_err(|e| format!("{}: bad first line {line:?}: {e}", target.name()))?;
    let addr = crate::json_addr(&v["address"])
        .ok_or_else(|| format!("{}: no address in {line:?}", target.name()))?;
    // Let it settle (the JavaScript runtime warms up; our node bootstraps alone).
    std::thread::sleep(Duration::from_millis(500));
    Ok(Running { child, addr })
}

/// Runs `dht-load` on `core` with `args` against `addr`; its JSON report.
pub fn load(
    core: Option<usize>,
    bin: &Path,
    addr: SocketAddrV4,
    args: &[String],
) -> Result<Value, String> {
    let out = pinned(core, &bin.join("dht-load"))
        .arg("--target")
        .arg(addr.to_string())
        .args(args)
        .output()
        .map_err(|e| format!("dht-load: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "dht-load {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("dht-load output: {e}"))
}

/// `program` on the `PATH`.
pub fn which(program: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(program))
            .find(|p| p.is_file())
    })
}

/// The median and the spread of `xs`.
pub fn median(xs: &[f64]) -> Option<(f64, f64, f64)> {
    if xs.is_empty() {
        return None;
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let m = if v.len() % 2 == 1 {
        v[v.len() / 2]
    } else {
        (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
    };
    Some((m, v[0], v[v.len() - 1]))
}

/// Time one core spent busy, from `/proc/stat`, in seconds: in user space (`user`, `nice`)
/// and in the kernel (`system`, `irq`, `softirq`: a datagram's delivery to a loopback peer
/// runs in the sender's softirq). Steal and idle time are left out.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CoreTimes {
    /// Seconds in user space.
    pub user: f64,
    /// Seconds in the kernel.
    pub kernel: f64,
}

impl CoreTimes {
    /// What `core` spent busy since boot; `None` without `/proc/stat`.
    pub fn read(core: usize) -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        parse_core_times(&stat, core)
    }

    /// The time spent between `earlier` and `self`.
    pub fn since(self, earlier: CoreTimes) -> CoreTimes {
        CoreTimes {
            user: self.user - earlier.user,
            kernel: self.kernel - earlier.kernel,
        }
    }
}

/// [`CoreTimes`] of `core` from the text of `/proc/stat` (whose counts are in `USER_HZ`,
/// 100 a second on every Linux architecture we run on).
pub fn parse_core_times(stat: &str, core: usize) -> Option<CoreTimes> {
    const USER_HZ: f64 = 100.0;
    let name = format!("cpu{core}");
    let line = stat
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name.as_str()))?;
    let f: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    let at = |i: usize| f.get(i).copied().unwrap_or(0.0);
    // user nice system idle iowait irq softirq steal ...
    Some(CoreTimes {
        user: (at(0) + at(1)) / USER_HZ,
        kernel: (at(2) + at(5) + at(6)) / USER_HZ,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_times_come_from_the_cores_own_line() {
        let stat = "cpu  900 0 900 0 0 0 0 0 0 0\n\
                    cpu0 100 50 200 999 7 10 40 3 0 0\n\
                    cpu1 1 1 1 1 1 1 1 1 0 0\n";
        let t = parse_core_times(stat, 0).expect("cpu0");
        assert_eq!(
            t,
            CoreTimes {
                user: 1.5,
                kernel: 2.5
            }
        );
        assert!(parse_core_times(stat, 2).is_none());
        let d = parse_core_times(stat, 1).expect("cpu1").since(t);
        assert!((d.user + 1.48).abs() < 1e-9);
    }
}
