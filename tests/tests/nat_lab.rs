//! The NAT lab: hole punching between hosts behind real Linux NATs (network namespaces and
//! iptables), for every ordered pair of behaviours, Rust and JavaScript peers. Writes the
//! matrix to `target/reports/NAT.md` (`docs/NAT.md` with `HYPERDHT_WRITE_DOCS=1`).
//!
//! Needs root, `ip` and `iptables`; without them it skips loudly, except under `CI`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;
use hyperdht_tests::agent::Agent;
use hyperdht_tests::lab::{Host, Lab, Nat, start_until};
use hyperdht_tests::procs::binary;
use rand::Rng;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Child;
use tokio::sync::Mutex;

const INFRA: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const THIRD: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 3);
const BOOTSTRAP_PORT: u16 = 49737;
/// The relay (`hyperdht --relay`) on the infra host.
const RELAY_PORT: u16 = BOOTSTRAP_PORT + 4;

/// Starts a process and waits for a stdout line containing `needle`.
async fn start(cmd: tokio::process::Command, needle: &str) -> Child {
    start_until(cmd, needle, Duration::from_secs(20)).await
}

/// What a probe saw of a host's NAT: (endpoint-independent mapping, filtering).
async fn probe(lab: &Lab, host: &Host, slot: u16) -> (bool, String) {
    let probe = binary("lab-probe");
    let mut client = lab.command(&host.ns, &probe);
    client.args([
        "client",
        "4000",
        &format!("{INFRA}:5000"),
        &format!("{INFRA}:5001"),
        "2",
    ]);
    let mut child = client
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("probe");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let first: Value =
        serde_json::from_str(&lines.next_line().await.expect("read").expect("mapped line"))
            .expect("json");
    let mapped: Vec<String> = first["mapped"]
        .as_array()
        .expect("mapped")
        .iter()
        .map(|m| m.as_str().unwrap_or("").to_owned())
        .collect();
    let independent = mapped[0] == mapped[1] && mapped[0] != "timeout";
    for (ns, port) in [
        (format!("{}-third", lab_prefix(lab, host)), 6000 + slot),
        (format!("{}-infra", lab_prefix(lab, host)), 6100 + slot),
    ] {
        let mut send = lab.command(&ns, &probe);
        send.args(["send", &port.to_string(), &mapped[0]]);
        assert!(send.status().await.expect("send").success());
    }
    let second: Value =
        serde_json::from_str(&lines.next_line().await.expect("read").expect("got line"))
            .expect("json");
    let got: Vec<&str> = second["got"]
        .as_array()
        .expect("got")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let filtering = if got.contains(&format!("{THIRD}:{}", 6000 + slot).as_str()) {
        "independent"
    } else if got.contains(&format!("{INFRA}:{}", 6100 + slot).as_str()) {
        "address"
    } else {
        "address-and-port"
    };
    (independent, filtering.to_owned())
}

/// The lab's namespace prefix, from a host's namespace name.
fn lab_prefix(_lab: &Lab, host: &Host) -> String {
    host.ns.split('-').next().expect("prefix").to_owned()
}

struct Peers {
    host: Host,
    rust: Agent,
    js: Agent,
}

fn pick(p: &mut Peers, s: Side) -> &mut Agent {
    match s {
        Side::Rust => &mut p.rust,
        Side::Js => &mut p.js,
    }
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Side {
    Rust,
    Js,
}

/// One trial: A announces a fresh key, B looks it up, B hole-punches to A through the node
/// that returned A, then B sends an application datagram to A on their DHT sockets and A
/// echoes it back. Returns the time from the punch to the echo on success.
async fn trial(
    lab: &Lab,
    a: &mut Peers,
    b: &mut Peers,
    a_side: Side,
    b_side: Side,
) -> Result<f64, String> {
    lab.forget(&a.host);
    lab.forget(&b.host);
    let a_host_ip = a.host.public_ip;
    let both_symmetric = a.host.nat == Nat::Symmetric && b.host.nat == Nat::Symmetric;
    let aa = pick(a, a_side);
    let bb = pick(b, b_side);
    aa.call(json!({"op": "reset"})).await;
    bb.call(json!({"op": "reset"})).await;
    if a_side == Side::Rust {
        // A Rust announcer keeps a slot on the lab's relay, for the pairs no punch opens.
        let relay = format!("{INFRA}:{RELAY_PORT}");
        let r = aa.call(json!({"op": "reserve", "relay": relay})).await;
        if r["held"] != true {
            return Err(format!("the relay did not hold the reservation: {r}"));
        }
    }
    let key: String = (0..32)
        .map(|_| format!("{:02x}", rand::rng().random::<u8>()))
        .collect();
    let r = aa.call(json!({"op": "announce", "key": key})).await;
    if r.get("error").is_some() {
        return Err(format!("announce: {r}"));
    }
    let r = bb.call(json!({"op": "lookup", "key": key})).await;
    let found = r["results"].as_array().and_then(|rs| {
        rs.iter().find_map(|x| {
            let peer = x["peers"]
                .as_array()?
                .iter()
                .filter_map(Value::as_str)
                .find(|p| p.starts_with(&a_host_ip.to_string()))?;
            Some((peer.to_owned(), x["node"].as_str()?.to_owned()))
        })
    });
    let Some((peer, via)) = found else {
        return Err(format!("lookup found nothing: {r}"));
    };
    // A Rust looker may go on to a birthday punch (a few seconds) and then to the relay; the
    // reference gives up sooner.
    let echo_wait = if b_side == Side::Rust { 14000 } else { 4500 };
    let started = Instant::now();
    let looker = async {
        let p = bb
            .call(json!({"op": "holepunch", "peer": peer, "via": via}))
            .await;
        if p.get("error").is_some() {
            return Err(format!("holepunch: {}", p["error"]));
        }
        // Two Rust peers take the relay only where no punch opens.
        if p["path"] == "circuit" && !both_symmetric {
            return Err(format!("relayed where a punch opens: {p}"));
        }
        let to = p["from"].as_str().unwrap_or(&peer).to_owned();
        bb.call(json!({"op": "send", "to": to, "data": "hello"}))
            .await;
        let r = bb.call(json!({"op": "recv", "timeout_ms": 1500})).await;
        if r["data"] == "echo:hello" {
            Ok(started.elapsed().as_secs_f64() * 1e3)
        } else {
            Err(format!("no echo: {r}"))
        }
    };
    let (result, _) = tokio::join!(
        looker,
        aa.call(json!({"op": "echo", "timeout_ms": echo_wait}))
    );
    result
}

/// Why some cells fail, as the lab's design predicts (the numbers above are measured).
const EXPLANATION: &str = "
## Why cells fail

- **Rust <-> Rust**: every cell opens; symmetric <-> symmetric through a relay. Our looker sends a direct
  probe with the relayed ping, a few rounds apart, so each side's own NAT is opened by its own
  outgoing packet; a restricted NAT in front of the announcer opens once the announcer's pong
  went out, so the next round's probe gets in (the ~300 ms cells). Symmetric <-> port-restricted
  needs the birthday punch (256 extra sockets on the symmetric side, up to 2048 sprayed ports
  from the other, negotiated in the relayed ping's value, which the reference ignores); it
  runs after the ordinary punch fails, hence its ~2.5 s. No punch opens symmetric <->
  symmetric (neither side has a port the other can aim at): after the birthday punch failed,
  the looker asks the announcer, through the referrer, for its relay; the announcer holds a
  reservation on the lab's `hyperdht --relay`, binds a pairing there and says which; the
  looker joins, and the datagram and its echo go through the relay (the trial fails if any
  other cell takes the relay), hence the seconds of that cell.
- **Rust looker, JavaScript announcer**: the announcer only answers pings, as the original
  does, and that is enough wherever one side's port is predictable. The birthday punch needs
  the announcer's help, so symmetric <-> port-restricted (either way round) and symmetric <->
  symmetric fail.
- **JavaScript looker**: the original sends only the relayed ping and never a probe of its
  own, so the announcer's pong is dropped by any looker NAT that filters (restricted,
  port-restricted, symmetric): the defect [PROTOCOL.md](PROTOCOL.md) describes. Behind a symmetric announcer
  the pong arrives (the original matches by transaction id alone) but the original reports no
  address, and the datagram it then sends to the announced address hits a port the
  announcer's NAT opened only toward the DHT node.";

/// Trial outcomes per (pairing, announcer NAT, looker NAT).
type Results = BTreeMap<(usize, Nat, Nat), Vec<Result<f64, String>>>;

fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(v[v.len() / 2])
}

/// Where Rust <-> Rust must succeed: neither side symmetric, or the other side open,
/// full-cone or restricted.
fn must_work(a: Nat, b: Nat) -> bool {
    let easy = |n: Nat| matches!(n, Nat::Open | Nat::FullCone | Nat::Restricted);
    (a != Nat::Symmetric && b != Nat::Symmetric)
        || (a == Nat::Symmetric && easy(b))
        || (b == Nat::Symmetric && easy(a))
}

async fn nat_lab() {
    let reference = hyperdht_tests::reference();
    let started = Instant::now();
    let mut lab = Lab::create();
    let infra = lab.public_host("infra", INFRA);
    let _third = lab.public_host("third", THIRD);
    let a_hosts: Vec<Host> = Nat::ALL
        .iter()
        .enumerate()
        .map(|(i, n)| lab.host(&format!("a{i}"), *n, 1 + i as u8))
        .collect();
    let b_hosts: Vec<Host> = Nat::ALL
        .iter()
        .enumerate()
        .map(|(i, n)| lab.host(&format!("b{i}"), *n, 11 + i as u8))
        .collect();
    let lab = Arc::new(lab);

    // Verify each NAT with a probe before trusting it.
    let probe_bin = binary("lab-probe");
    let mut echo = Vec::new();
    for port in ["5000", "5001"] {
        let mut c = lab.command(&infra.ns, &probe_bin);
        c.args(["echo", port, "60"]).kill_on_drop(true);
        echo.push(c.spawn().expect("echo"));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let probes = join_all(a_hosts.iter().chain(&b_hosts).enumerate().map(|(i, h)| {
        let lab = lab.clone();
        let h = h.clone();
        async move { (h.nat, probe(&lab, &h, i as u16).await) }
    }))
    .await;
    drop(echo);
    let mut probe_report = String::new();
    for (nat, (independent, filtering)) in &probes {
        let mapping = if *independent {
            "endpoint-independent"
        } else {
            "endpoint-dependent"
        };
        writeln!(probe_report, "| {} | {mapping} | {filtering} |", nat.name()).expect("write");
        assert_eq!(
            (*independent, filtering.as_str()),
            nat.expected(),
            "the {} NAT does not behave as documented",
            nat.name()
        );
    }

    // The internet's DHT: a bootstrap node and three nodes, all Rust, on 198.18.0.2.
    let bootstrap = format!("{INFRA}:{BOOTSTRAP_PORT}");
    let mut infra_procs = Vec::new();
    let mut c = lab.command(&infra.ns, &binary("dht-bootstrap"));
    c.args([
        "--host",
        &INFRA.to_string(),
        "--port",
        &BOOTSTRAP_PORT.to_string(),
    ]);
    infra_procs.push(start(c, "listening").await);
    for i in 1..=3u16 {
        let mut c = lab.command(&infra.ns, &binary("hyperdht"));
        c.args([
            "--host",
            &INFRA.to_string(),
            "-p",
            &(BOOTSTRAP_PORT + i).to_string(),
            "-b",
            &bootstrap,
            "-q",
        ]);
        infra_procs.push(start(c, "listening").await);
    }
    let mut c = lab.command(&infra.ns, &binary("hyperdht"));
    c.args([
        "--host",
        &INFRA.to_string(),
        "-p",
        &RELAY_PORT.to_string(),
        "-b",
        &bootstrap,
        "--relay",
        "--trust",
        "198.18.0.0/15",
        "-q",
    ]);
    infra_procs.push(start(c, "listening").await);

    // A Rust and a JavaScript peer on every host.
    let lab_peer = binary("lab-peer");
    let mut peers = Vec::new();
    for h in a_hosts.iter().chain(&b_hosts) {
        let mut c = lab.command(&h.ns, &lab_peer);
        c.args(["--bootstrap", &bootstrap]);
        let rust = Agent::spawn(c).await;
        let mut c = tokio::process::Command::new("ip");
        c.args(["netns", "exec", &h.ns, "node"])
            .arg(reference.dir.join("lab-peer.js"))
            .args(["--bootstrap", &bootstrap])
            .current_dir(&reference.dir);
        let js = Agent::spawn(c).await;
        peers.push(Arc::new(Mutex::new(Peers {
            host: h.clone(),
            rust,
            js,
        })));
    }
    let (a_peers, b_peers) = peers.split_at(5);

    let pairings = [
        ("Rust <-> Rust", Side::Rust, Side::Rust, 3),
        ("Rust looker, JavaScript announcer", Side::Js, Side::Rust, 2),
        ("JavaScript looker, Rust announcer", Side::Rust, Side::Js, 2),
        ("JavaScript <-> JavaScript", Side::Js, Side::Js, 2),
    ];

    // Five cells at a time: each round pairs every announcer host with a different looker host.
    let results: Arc<Mutex<Results>> = Arc::default();
    for round in 0..5 {
        join_all((0..5).map(|i| {
            let j = (i + round) % 5;
            let (a, b, lab, results, pairings) = (
                a_peers[i].clone(),
                b_peers[j].clone(),
                lab.clone(),
                results.clone(),
                pairings,
            );
            async move {
                let mut a = a.lock().await;
                let mut b = b.lock().await;
                for (p, (_, a_side, b_side, trials)) in pairings.iter().enumerate() {
                    for _ in 0..*trials {
                        let r = trial(&lab, &mut a, &mut b, *a_side, *b_side).await;
                        results
                            .lock()
                            .await
                            .entry((p, a.host.nat, b.host.nat))
                            .or_default()
                            .push(r);
                    }
                }
            }
        }))
        .await;
    }
    let results = results.lock().await.clone();
    drop(peers);
    drop(infra_procs);
    let elapsed = started.elapsed();

    // The report, regenerated on every run.
    let mut doc = String::new();
    writeln!(doc, "# Hole punching behind real NATs\n").expect("w");
    writeln!(doc, "Generated by `tests/tests/nat_lab.rs` (`cargo test -p hyperdht-tests --test nat_lab`, as root); do not edit.\n").expect("w");
    writeln!(doc, "Each trial: A (announcer, behind the row's NAT) announces a fresh key; B (looker, behind the column's NAT) looks it up, hole-punches to A through the DHT node that returned A, sends an application datagram to A on its DHT socket, and A echoes it back. A cell gives successes/trials and the median time from the start of the punch to the echo.\n").expect("w");
    writeln!(doc, "The NATs, as a probe observed them before the run:\n\n| NAT | mapping | filtering |\n|---|---|---|").expect("w");
    let mut seen = std::collections::BTreeSet::new();
    for line in probe_report.lines() {
        if seen.insert(line.to_owned()) {
            writeln!(doc, "{line}").expect("w");
        }
    }
    for (p, (name, _, _, _)) in pairings.iter().enumerate() {
        writeln!(doc, "\n## {name}\n").expect("w");
        write!(doc, "| A \\ B |").expect("w");
        for b in Nat::ALL {
            write!(doc, " {} |", b.name()).expect("w");
        }
        write!(doc, "\n|---|").expect("w");
        for _ in Nat::ALL {
            write!(doc, "---|").expect("w");
        }
        writeln!(doc).expect("w");
        for a in Nat::ALL {
            write!(doc, "| **{}** |", a.name()).expect("w");
            for b in Nat::ALL {
                let rs = results.get(&(p, a, b)).cloned().unwrap_or_default();
                let mut ok: Vec<f64> = rs.iter().filter_map(|r| r.as_ref().ok().copied()).collect();
                let n = ok.len();
                match median(&mut ok) {
                    Some(m) => write!(doc, " {n}/{} {m:.0} ms |", rs.len()).expect("w"),
                    None => write!(doc, " 0/{} |", rs.len()).expect("w"),
                }
            }
            writeln!(doc).expect("w");
        }
    }
    writeln!(doc, "{EXPLANATION}").expect("w");
    writeln!(
        doc,
        "\nThe whole lab ran in {:.0} s.",
        elapsed.as_secs_f64()
    )
    .expect("w");
    println!("{doc}");
    let path = hyperdht_tests::report_path("NAT.md");
    std::fs::create_dir_all(path.parent().expect("docs")).expect("docs dir");
    std::fs::write(&path, &doc).expect("write the report");
    eprintln!("wrote {}", path.display());

    // What must hold.
    let mut failures = Vec::new();
    for a in Nat::ALL {
        for b in Nat::ALL {
            if !must_work(a, b) {
                continue;
            }
            for (p, name) in [
                (0, "Rust <-> Rust"),
                (1, "Rust looker, JavaScript announcer"),
            ] {
                if p == 0 {
                    // Every Rust <-> Rust cell opens (below).
                    continue;
                }
                if let Some(rs) = results.get(&(p, a, b)) {
                    for r in rs {
                        if let Err(e) = r {
                            failures.push(format!("{name}: A {} / B {}: {e}", a.name(), b.name()));
                        }
                    }
                }
            }
        }
    }
    // Every Rust <-> Rust cell opens, symmetric <-> symmetric through the relay (the trial
    // fails a circuit anywhere else).
    for a in Nat::ALL {
        for b in Nat::ALL {
            for r in results.get(&(0, a, b)).into_iter().flatten() {
                if let Err(e) = r {
                    failures.push(format!(
                        "Rust <-> Rust: A {} / B {}: {e}",
                        a.name(),
                        b.name()
                    ));
                }
            }
        }
    }
    // Beyond: the birthday punch between two Rust peers, symmetric <-> port-restricted.
    for (a, b) in [
        (Nat::Symmetric, Nat::PortRestricted),
        (Nat::PortRestricted, Nat::Symmetric),
    ] {
        let ok = results
            .get(&(0, a, b))
            .map_or(0, |rs| rs.iter().filter(|r| r.is_ok()).count());
        if ok == 0 {
            failures.push(format!(
                "Rust <-> Rust: A {} / B {}: the birthday punch never met",
                a.name(),
                b.name()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "hole punching failed where it must work:\n{}",
        failures.join("\n")
    );
}

fn main() {
    use hyperdht_tests::{block_on, trial};
    hyperdht_tests::run_trials(vec![trial(
        "nat_lab",
        hyperdht_tests::lab::unavailable().or_else(hyperdht_tests::reference_missing),
        block_on(nat_lab),
    )]);
}
