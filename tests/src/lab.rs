//! The NAT lab: network namespaces joined by veth pairs, a bridge that plays the internet
//! (198.18.0.0/24, the benchmarking range), and hosts each behind its own NAT namespace whose
//! iptables rules give it one [`Nat`] behaviour.
//!
//! Every namespace name carries a prefix unique to the run; dropping the [`Lab`] deletes
//! every namespace it made (processes inside must be stopped first: the caller owns them).
//! Traffic stays on the lab's own addresses.

use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// How a host reaches the lab's internet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Nat {
    /// No NAT: the host has a public address on the bridge.
    Open,
    /// Endpoint-independent mapping and filtering: `SNAT` to the NAT's address (Linux keeps
    /// the source port when it is free), and a `DNAT` of everything arriving on the WAN to
    /// the host, so anyone may send to a mapped port.
    FullCone,
    /// Endpoint-independent mapping, address-restricted filtering: as full cone, but the
    /// `FORWARD` chain lets in only sources whose IP the host has sent to (the `recent`
    /// match records each destination IP), on any port.
    Restricted,
    /// Linux `MASQUERADE` with a connection-tracking firewall (most home routers): mapping
    /// keeps the port; only replies from exactly the address and port the host sent to
    /// get in (conntrack `ESTABLISHED`), in `FORWARD` and in `INPUT`. (Without the `INPUT`
    /// rule the router answers an early probe with ICMP and keeps a conntrack entry for it,
    /// which then forces the host's own outgoing packet to that peer onto another port.)
    PortRestricted,
    /// `MASQUERADE --random-fully`: a new random external port for every destination;
    /// filtering as port-restricted.
    Symmetric,
}

impl Nat {
    /// Every behaviour, from the most open.
    pub const ALL: [Nat; 5] = [
        Nat::Open,
        Nat::FullCone,
        Nat::Restricted,
        Nat::PortRestricted,
        Nat::Symmetric,
    ];

    /// The name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Nat::Open => "open",
            Nat::FullCone => "full-cone",
            Nat::Restricted => "restricted",
            Nat::PortRestricted => "port-restricted",
            Nat::Symmetric => "symmetric",
        }
    }

    /// (endpoint-independent mapping, filtering) that a probe must observe:
    /// filtering is "independent", "address" or "address-and-port".
    pub fn expected(self) -> (bool, &'static str) {
        match self {
            Nat::Open | Nat::FullCone => (true, "independent"),
            Nat::Restricted => (true, "address"),
            Nat::PortRestricted => (true, "address-and-port"),
            Nat::Symmetric => (false, "address-and-port"),
        }
    }
}

/// A host of the lab.
#[derive(Debug, Clone)]
pub struct Host {
    /// The namespace programs of this host run in.
    pub ns: String,
    /// Its behaviour.
    pub nat: Nat,
    /// Its address on the lab's internet (the NAT's WAN address when behind one).
    pub public_ip: Ipv4Addr,
    /// The NAT's namespace, if any.
    pub nat_ns: Option<String>,
}

/// A lab: its namespaces are deleted when it is dropped.
pub struct Lab {
    prefix: String,
    inet: String,
    namespaces: Vec<String>,
    ports: u32,
}

/// Whether the lab can run here: root, `ip` and `iptables`.
pub fn unavailable() -> Option<String> {
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false);
    if !root {
        return Some("the NAT lab needs root (network namespaces and iptables)".into());
    }
    for tool in ["ip", "iptables"] {
        let found = Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
            || Command::new(tool)
                .arg("-V")
                .output()
                .is_ok_and(|o| o.status.success());
        if !found {
            return Some(format!(
                "the NAT lab needs `{tool}` (apt-get install iproute2 iptables)"
            ));
        }
    }
    None
}

/// Deletes the namespaces of earlier runs whose process is gone (killed before its `Lab`
/// could clean up).
fn sweep_stale() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(pid) = name
            .strip_prefix("hdl")
            .and_then(|r| r.split('x').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}

fn run(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Lab {
    /// A lab with its internet: a namespace holding the bridge.
    pub fn create() -> Lab {
        sweep_stale();
        static COUNT: AtomicU32 = AtomicU32::new(0);
        let prefix = format!(
            "hdl{}x{}",
            std::process::id(),
            COUNT.fetch_add(1, Ordering::Relaxed)
        );
        let mut lab = Lab {
            inet: format!("{prefix}-inet"),
            prefix,
            namespaces: Vec::new(),
            ports: 0,
        };
        let inet = lab.add_ns("inet");
        lab.exec(&inet, &["ip", "link", "add", "br0", "type", "bridge"]);
        lab.exec(&inet, &["ip", "link", "set", "br0", "up"]);
        lab
    }

    fn add_ns(&mut self, name: &str) -> String {
        let ns = format!("{}-{name}", self.prefix);
        run(&["ip", "netns", "add", &ns]);
        self.namespaces.push(ns.clone());
        self.exec(&ns, &["ip", "link", "set", "lo", "up"]);
        ns
    }

    /// Runs a command inside a namespace; panics on failure.
    pub fn exec(&self, ns: &str, args: &[&str]) {
        let mut full = vec!["ip", "netns", "exec", ns];
        full.extend_from_slice(args);
        run(&full);
    }

    /// Plugs `ns` into the internet bridge with `ip`, as interface `wan`.
    fn attach(&mut self, ns: &str, ip: Ipv4Addr) {
        self.ports += 1;
        let port = format!("p{}", self.ports);
        run(&[
            "ip", "link", "add", "wan", "netns", ns, "type", "veth", "peer", "name", &port,
            "netns", &self.inet,
        ]);
        self.exec(
            &self.inet,
            &["ip", "link", "set", &port, "master", "br0", "up"],
        );
        self.exec(
            ns,
            &["ip", "addr", "add", &format!("{ip}/24"), "dev", "wan"],
        );
        self.exec(ns, &["ip", "link", "set", "wan", "up"]);
    }

    /// A host with a public address.
    pub fn public_host(&mut self, name: &str, ip: Ipv4Addr) -> Host {
        let ns = self.add_ns(name);
        self.attach(&ns, ip);
        Host {
            ns,
            nat: Nat::Open,
            public_ip: ip,
            nat_ns: None,
        }
    }

    /// A host behind its own NAT of behaviour `nat`; `index` (1..=99) picks its addresses:
    /// WAN 198.18.0.(100 + index), LAN 10.(index).0.0/24.
    pub fn host(&mut self, name: &str, nat: Nat, index: u8) -> Host {
        let public_ip = Ipv4Addr::new(198, 18, 0, 100 + index);
        if nat == Nat::Open {
            return self.public_host(name, public_ip);
        }
        let router = self.add_ns(&format!("{name}-nat"));
        let host = self.add_ns(name);
        self.attach(&router, public_ip);
        run(&[
            "ip", "link", "add", "lan", "netns", &router, "type", "veth", "peer", "name", "eth0",
            "netns", &host,
        ]);
        let lan = |last: u8| format!("10.{index}.0.{last}");
        self.exec(
            &router,
            &["ip", "addr", "add", &format!("{}/24", lan(1)), "dev", "lan"],
        );
        self.exec(&router, &["ip", "link", "set", "lan", "up"]);
        self.exec(
            &host,
            &[
                "ip",
                "addr",
                "add",
                &format!("{}/24", lan(2)),
                "dev",
                "eth0",
            ],
        );
        self.exec(&host, &["ip", "link", "set", "eth0", "up"]);
        self.exec(&host, &["ip", "route", "add", "default", "via", &lan(1)]);
        self.exec(&router, &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        let ipt = |rule: &str| {
            let mut args = vec!["iptables"];
            args.extend(rule.split_whitespace());
            self.exec(&router, &args);
        };
        let wan = public_ip.to_string();
        let inside = lan(2);
        match nat {
            Nat::Open => {}
            Nat::FullCone => {
                ipt(&format!(
                    "-t nat -A POSTROUTING -o wan -j SNAT --to-source {wan}"
                ));
                ipt(&format!(
                    "-t nat -A PREROUTING -i wan -j DNAT --to-destination {inside}"
                ));
            }
            Nat::Restricted => {
                ipt(&format!(
                    "-t nat -A POSTROUTING -o wan -j SNAT --to-source {wan}"
                ));
                ipt(&format!(
                    "-t nat -A PREROUTING -i wan -j DNAT --to-destination {inside}"
                ));
                ipt("-A FORWARD -i lan -m recent --name contacted --rdest --set");
                ipt("-A FORWARD -i wan -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT");
                ipt("-A FORWARD -i wan -m recent --name contacted --rcheck --rsource -j ACCEPT");
                ipt("-A FORWARD -i wan -j DROP");
            }
            Nat::PortRestricted | Nat::Symmetric => {
                let random = if nat == Nat::Symmetric {
                    " --random-fully"
                } else {
                    ""
                };
                ipt(&format!(
                    "-t nat -A POSTROUTING -o wan -j MASQUERADE{random}"
                ));
                // The firewall: only replies get in, to the host and to the router itself.
                for chain in ["FORWARD", "INPUT"] {
                    ipt(&format!(
                        "-A {chain} -i wan -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT"
                    ));
                    ipt(&format!("-A {chain} -i wan -j DROP"));
                }
            }
        }
        Host {
            ns: host,
            nat,
            public_ip,
            nat_ns: Some(router),
        }
    }

    /// Forgets which addresses a restricted NAT's host has contacted, so that one trial
    /// does not open the next.
    pub fn forget(&self, host: &Host) {
        if let (Nat::Restricted, Some(router)) = (host.nat, &host.nat_ns) {
            self.exec(
                router,
                &["sh", "-c", "echo / > /proc/net/xt_recent/contacted"],
            );
        }
    }

    /// A command that runs `program` inside `ns`.
    pub fn command(&self, ns: &str, program: &std::path::Path) -> tokio::process::Command {
        let mut c = tokio::process::Command::new("ip");
        c.args(["netns", "exec", ns]).arg(program);
        c
    }
}

/// A child's stdout, line by line.
pub type Lines = tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>;

/// Starts `cmd` with stdout piped and stderr inherited; the child is killed when dropped.
pub fn spawn_piped(mut cmd: tokio::process::Command) -> (tokio::process::Child, Lines) {
    use tokio::io::AsyncBufReadExt;
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    (child, tokio::io::BufReader::new(stdout).lines())
}

/// Reads lines until `pick` returns something, for at most `wait`; `None` if none did.
pub async fn first_line<T>(
    lines: &mut Lines,
    wait: Duration,
    mut pick: impl FnMut(&str) -> Option<T>,
) -> Option<T> {
    let read = async {
        while let Ok(Some(l)) = lines.next_line().await {
            if let Some(t) = pick(&l) {
                return Some(t);
            }
        }
        None
    };
    tokio::time::timeout(wait, read).await.ok().flatten()
}

/// Starts `cmd` and waits up to `wait` for a stdout line containing `needle` (panics if
/// none comes); stdout keeps being drained, so the process never blocks on a full pipe.
pub async fn start_until(
    cmd: tokio::process::Command,
    needle: &str,
    wait: Duration,
) -> tokio::process::Child {
    let (child, mut lines) = spawn_piped(cmd);
    let found = first_line(&mut lines, wait, |l| l.contains(needle).then_some(())).await;
    assert!(found.is_some(), "no {needle:?} line within {wait:?}");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    child
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in self.namespaces.iter().rev() {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}
