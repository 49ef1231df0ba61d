//! The real binaries, spawned on 127.0.0.1: `dht-bootstrap`, `hyperdht` nodes and commands.

use std::time::Duration;

use assert_cmd::Command;
use hyperdht_tests::json_addr;
use hyperdht_tests::procs::{Proc, alive, binary};
use serde_json::Value;

const KEY: &str = "01234567012345670123456701234567";
const T: Duration = Duration::from_secs(20);

fn cmd(name: &str) -> Command {
    let mut c = Command::new(binary(name));
    c.timeout(Duration::from_secs(30));
    c
}

/// Runs a command that must succeed; its stdout.
fn ok(name: &str, args: &[&str]) -> String {
    let out = cmd(name).args(args).assert().success().get_output().clone();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a command that must fail with `code`; its error, which must be one line.
fn fails(name: &str, args: &[&str], code: i32) -> String {
    let out = cmd(name)
        .args(args)
        .assert()
        .code(code)
        .get_output()
        .clone();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(err.trim().lines().count(), 1, "one line: {err:?}");
    err
}

/// The address after "listening on" in a line.
fn listening(line: &str) -> String {
    line.split_whitespace()
        .skip_while(|w| *w != "on")
        .nth(1)
        .expect("an address after 'on'")
        .to_owned()
}

#[test]
fn demo_runs_every_step_and_exits_0() {
    let text = ok("hyperdht", &["demo"]);
    for step in [
        "1. started",
        "2. peer A",
        "3. peer B",
        "4. B pinged",
        "5. B hole-punched",
        "6. B sent A",
        "7. A unannounced",
        "done:",
    ] {
        assert!(text.contains(step), "missing {step:?} in:\n{text}");
    }
    let out = ok("hyperdht", &["demo", "--json"]);
    let steps: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    let names: Vec<&str> = steps
        .iter()
        .map(|s| s["step"].as_str().expect("step"))
        .collect();
    assert_eq!(
        names,
        [
            "network",
            "announce",
            "lookup",
            "ping",
            "holepunch",
            "datagrams",
            "unannounce"
        ]
    );
    assert!(steps.iter().all(|s| s["ms"].as_f64().is_some()));
}

#[test]
fn a_bootstrap_two_nodes_announce_lookup_ping_holepunch() {
    let mut boot = Proc::spawn("dht-bootstrap", &["--host", "127.0.0.1", "--port", "0"]);
    let entry = listening(&boot.line(T, |l| l.contains("listening on")));
    let mut n1 = Proc::spawn("hyperdht", &["--host", "127.0.0.1", "-b", &entry]);
    let mut n2 = Proc::spawn("hyperdht", &["--host", "127.0.0.1", "-b", &entry, "--json"]);
    let a1 = listening(&n1.line(T, |l| l.contains("listening on")));
    let a2 = n2.line(T, |l| l.contains("\"listening\""));
    let a2: Value = serde_json::from_str(&a2).expect("json");
    let a2 = json_addr(&a2["address"]).expect("address").to_string();
    n1.line(T, |l| l.starts_with("bootstrapped"));
    n2.line(T, |l| l.contains("\"bootstrapped\""));

    // announce in one process ...
    let mut announcer = Proc::spawn(
        "hyperdht",
        &["announce", KEY, "--port", "7777", "-b", &entry],
    );
    let line = announcer.line(T, |l| l.starts_with("announced"));
    assert!(line.contains("on 2 node(s)"), "{line}");
    // ... the long-lived nodes log it ...
    n1.line(T, |l| l.starts_with("announce: 3031323334353637"));
    let logged = n2.line(T, |l| l.contains("\"announce\""));
    let logged: Value = serde_json::from_str(&logged).expect("json");
    assert_eq!(
        logged["key"],
        "3031323334353637303132333435363730313233343536373031323334353637"
    );
    assert_eq!(logged["peer"]["port"], 7777, "{logged}");
    assert_eq!(logged["peer"]["host"], "127.0.0.1", "{logged}");

    // ... and a lookup in another finds it, with JSON output parsed.
    let out = ok("hyperdht", &["lookup", KEY, "-b", &entry, "--json"]);
    let replies: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(replies.len(), 2, "both nodes answer: {replies:?}");
    for r in &replies {
        assert_eq!(r["event"], "reply", "{r}");
        assert_eq!(
            r["peers"],
            serde_json::json!([{"host": "127.0.0.1", "port": 7777}]),
            "{r}"
        );
        assert_eq!(r["node"]["host"], "127.0.0.1", "{r}");
        assert!(r["node"]["id"].as_str().is_some_and(|id| id.len() == 64));
    }
    let out = ok("hyperdht", &["lookup", KEY, "-b", &entry]);
    assert!(
        out.contains("found 1 peer(s); 3 node(s) answered, 2 with peers"),
        "{}",
        out
    );

    // ping and holepunch.
    let out = ok("hyperdht", &["ping", &a1, "--json"]);
    let pong: Value = serde_json::from_str(out.trim()).expect("json");
    assert_eq!(pong["id"].as_str().map(str::len), Some(64));
    assert_eq!(pong["event"], "pong", "{pong}");
    assert_eq!(pong["observed"]["host"], "127.0.0.1", "{pong}");
    assert_eq!(
        json_addr(&pong["node"]).map(|a| a.to_string()),
        Some(a1.clone())
    );
    // Milliseconds to the microsecond: at most three decimals.
    let rtt = pong["rtt_ms"].to_string();
    assert!(rtt.split('.').nth(1).is_none_or(|d| d.len() <= 3), "{rtt}");
    let out = ok("hyperdht", &["holepunch", &a1, "--via", &a2]);
    assert!(out.contains("path to"), "{}", out);

    // Ctrl-C / SIGTERM: the announcer unannounces and exits 0.
    let status = announcer.terminate();
    assert!(status.success(), "{status:?}");
    assert!(
        announcer
            .drain()
            .iter()
            .any(|l| l.starts_with("unannounced")),
        "{:?}",
        announcer.seen
    );
    // Nothing found: exit 5, the nodes that answered still said so.
    let (text, errors) = lookup_finds_nothing(&entry);
    assert!(
        text.contains("found 0 peer(s); 3 node(s) answered, 0 with peers"),
        "{text}"
    );
    assert!(errors.contains("no peer announced"), "{errors}");

    // SIGTERM leaves no process behind.
    let pids = [boot.id(), n1.id(), n2.id(), announcer.id()];
    for p in [&mut n1, &mut n2, &mut boot] {
        let status = p.terminate();
        assert!(status.success(), "{status:?}");
    }
    for pid in pids {
        assert!(!alive(pid), "process {pid} is still there");
    }
}

#[test]
fn errors_read_as_one_line_with_their_exit_code() {
    // Malformed key: usage, 2.
    assert!(
        fails("hyperdht", &["lookup", "not-a-key", "-b", "127.0.0.1:1"], 2)
            .contains("malformed key")
    );
    // A missing bootstrap: usage, 2.
    assert!(fails("hyperdht", &["lookup", KEY], 2).contains("--bootstrap"));
    // Unknown flag: clap's usage error, 2.
    cmd("hyperdht").arg("--no-such-flag").assert().code(2);
    // Numbers out of their range, and malformed ranges: usage, 2 (not a huge allocation).
    for args in [
        &["testnet", "--nodes", "4000000000"][..],
        &["testnet", "--nodes", "0"],
        &["demo", "--nodes", "100000"],
        &["ping", "127.0.0.1:1", "--timeout-ms", "0"],
        &["--trust", "10.0.0.0/33"],
        &["--trust", "not-an-ip"],
    ] {
        cmd("hyperdht").args(args).assert().code(2);
    }
    // No bootstrap node answering: 3.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let silent = silent.local_addr().expect("addr").to_string();
    assert!(fails("hyperdht", &["lookup", KEY, "-b", &silent], 3).contains("no node answered"));
    assert!(fails("hyperdht", &["ping", &silent, "--timeout-ms", "300"], 3).contains("no answer"));
    assert!(fails("hyperdht", &["holepunch", &silent, "--via", &silent], 3).contains("no path"));
    // A port out of range is a usage error, not an unknown host: 2.
    assert!(fails("hyperdht", &["lookup", KEY, "-b", "127.0.0.1:99999"], 2).contains("port"));
    // --bootstrap where a command does not use it: 2, rather than silently ignored.
    for args in [
        &["ping", "127.0.0.1:1", "-b", "127.0.0.1:2"][..],
        &[
            "holepunch",
            "127.0.0.1:1",
            "--via",
            "127.0.0.1:2",
            "-b",
            "127.0.0.1:3",
        ],
        &["demo", "-b", "127.0.0.1:2"],
        &["testnet", "-b", "127.0.0.1:2"],
    ] {
        assert!(
            fails("hyperdht", args, 2).contains("does not use --bootstrap"),
            "{args:?}"
        );
    }
    // unannounce without the port that was announced: 2 (it used to remove nothing, and
    // say it had).
    assert!(fails("hyperdht", &["unannounce", KEY, "-b", "127.0.0.1:1"], 2).contains("--port"));
    // An unknown host: 4 (refused before any resolver is asked).
    assert!(fails("hyperdht", &["ping", "no such host"], 4).contains("cannot resolve"));
    // A port in use: 4.
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port().to_string();
    assert!(
        fails(
            "dht-bootstrap",
            &["--host", "127.0.0.1", "--port", &port],
            4
        )
        .contains("Address already in use")
    );
    assert!(
        fails("hyperdht", &["--host", "127.0.0.1", "--port", &port], 4)
            .contains("Address already in use")
    );
}

#[test]
fn help_and_version() {
    for bin in ["hyperdht", "dht-bootstrap"] {
        let text = ok(bin, &["--help"]);
        assert!(
            text.contains("Examples:") && text.contains("Exit codes"),
            "{text}"
        );
        cmd(bin).arg("--version").assert().success();
    }
    for sub in [
        "lookup",
        "announce",
        "unannounce",
        "ping",
        "holepunch",
        "testnet",
        "demo",
    ] {
        cmd("hyperdht").args([sub, "--help"]).assert().success();
    }
}

#[test]
fn testnet_stays_up_and_serves_lookups() {
    // JSON: the bootstrap and every node as addresses.
    let mut json_net = Proc::spawn(
        "hyperdht",
        &["testnet", "--nodes", "3", "--port", "0", "--json"],
    );
    let v: Value =
        serde_json::from_str(&json_net.line(T, |l| l.contains("\"testnet\""))).expect("json");
    assert!(json_addr(&v["bootstrap"]).is_some(), "{v}");
    let nodes = v["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 3, "{v}");
    assert!(nodes.iter().all(|n| json_addr(n).is_some()), "{v}");
    assert!(json_net.terminate().success());

    let mut net = Proc::spawn("hyperdht", &["testnet", "--nodes", "5", "--port", "0"]);
    let line = net.line(T, |l| l.starts_with("testnet:"));
    let entry = line
        .split_whitespace()
        .skip_while(|w| *w != "at")
        .nth(1)
        .expect("address")
        .to_owned();
    let (text, _) = lookup_finds_nothing(&entry);
    assert!(text.contains("found 0 peer(s);"), "{text}");
    assert!(net.terminate().success());
}

/// `--log-format json` writes one JSON object per log line; text logs written to a file (not
/// a terminal) carry no colour codes. Both for the node and for `dht-bootstrap`.
#[test]
fn logs_as_json_lines_or_plain_text() {
    for (bin, json) in [
        ("hyperdht", true),
        ("hyperdht", false),
        ("dht-bootstrap", true),
        ("dht-bootstrap", false),
    ] {
        let mut args = vec!["--host", "127.0.0.1", "-v"];
        if bin == "dht-bootstrap" {
            args.extend(["--port", "0"]);
        }
        if json {
            args.extend(["--log-format", "json"]);
        }
        let child = std::process::Command::new(binary(bin))
            .args(&args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn");
        std::thread::sleep(Duration::from_millis(700));
        // SIGTERM: the node logs its shutdown (info) and exits.
        let killed = std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill");
        assert!(killed.success());
        let out = child.wait_with_output().expect("wait");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !err.contains('\u{1b}'),
            "{bin}: no escape codes in a file: {err:?}"
        );
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        assert!(!lines.is_empty(), "{bin} logged nothing at -v");
        for l in &lines {
            let parsed = serde_json::from_str::<Value>(l);
            if json {
                let v = parsed.unwrap_or_else(|e| panic!("{bin}: not JSON: {l:?}: {e}"));
                assert!(v["level"].is_string() && v["fields"].is_object(), "{l}");
            } else {
                assert!(parsed.is_err(), "{bin}: text, not JSON: {l}");
            }
        }
    }
}

/// `GET /metrics` of a running node, as a map of sample (name with labels) to value; every
/// line parsed (comments apart) or the test fails.
fn scrape(port: u16) -> std::collections::HashMap<String, f64> {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    c.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    let mut text = String::new();
    c.read_to_string(&mut text).expect("read");
    let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert!(body.ends_with("# EOF\n"), "OpenMetrics ends with # EOF");
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let (name, value) = l.rsplit_once(' ').expect("name value");
            let v: f64 = value.parse().unwrap_or_else(|_| panic!("a number: {l}"));
            (name.to_string(), v)
        })
        .collect()
}

/// `hyperdht lookup KEY` through `entry`, which must find nothing (exit 5): its stdout and
/// stderr.
fn lookup_finds_nothing(entry: &str) -> (String, String) {
    let out = cmd("hyperdht")
        .args(["lookup", KEY, "-b", entry])
        .assert()
        .code(5)
        .get_output()
        .clone();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (text(&out.stdout), text(&out.stderr))
}

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// Spawns `bin` with `args`, then `--metrics` on a free loopback port and `--json`; the
/// port to scrape.
fn spawn_with_metrics(bin: &str, args: &[&str]) -> (Proc, u16) {
    let port = free_tcp_port();
    let metrics = format!("127.0.0.1:{port}");
    let mut all = args.to_vec();
    all.extend(["--metrics", &metrics, "--json"]);
    (Proc::spawn(bin, &all), port)
}

/// `--metrics`: the node serves Prometheus metrics, and they move with the traffic it
/// serves; so does dht-bootstrap's.
#[test]
fn metrics_are_served_and_count_what_the_node_does() {
    let (mut node, port) = spawn_with_metrics("hyperdht", &["--host", "127.0.0.1"]);
    let line = node.line(T, |l| l.contains("listening"));
    let v: Value = serde_json::from_str(&line).expect("json");
    let addr = json_addr(&v["address"]).expect("address").to_string();
    std::thread::sleep(Duration::from_millis(300));
    let before = scrape(port);
    for _ in 0..3 {
        ok("hyperdht", &["ping", &addr]);
    }
    // (Nobody announced KEY: the lookup exits 5, after asking the node.)
    cmd("hyperdht")
        .args(["lookup", KEY, "-b", &addr])
        .assert()
        .code(5);
    let after = scrape(port);
    let get = |m: &std::collections::HashMap<String, f64>, k: &str| {
        *m.get(k).unwrap_or_else(|| panic!("no {k} in {m:?}"))
    };
    let pings = r#"dht_requests_served_total{command="_ping"}"#;
    assert!(get(&after, pings) - get(&before, pings) >= 3.0, "{after:?}");
    for k in [
        "dht_datagrams_received_total",
        "dht_datagrams_sent_total",
        "dht_received_bytes_total",
        "dht_sent_bytes_total",
        r#"dht_requests_served_total{command="other"}"#,
    ] {
        assert!(get(&after, k) > get(&before, k), "{k} moved: {after:?}");
    }
    assert_eq!(
        get(&after, r#"dht_reachability{verdict="unknown"}"#)
            + get(&after, r#"dht_reachability{verdict="reachable"}"#)
            + get(&after, r#"dht_reachability{verdict="firewalled"}"#),
        1.0
    );
    assert!(get(&after, "dht_uptime_seconds") > 0.0);
    assert!(after.contains_key("hyperdht_store_keys"));
    assert!(after.contains_key(r#"dht_query_duration_seconds_bucket{le="+Inf"}"#));
    drop(node);

    let (mut boot, port) =
        spawn_with_metrics("dht-bootstrap", &["--host", "127.0.0.1", "--port", "0"]);
    boot.line(T, |l| l.contains("listening"));
    std::thread::sleep(Duration::from_millis(300));
    let m = scrape(port);
    assert!(m.contains_key("dht_routing_table_contacts"), "{m:?}");
}

/// `--state-dir`: a restarted node keeps its id and comes up through the contacts of its last
/// run although its bootstrap does not answer; a corrupt state file is ignored.
#[test]
fn a_restart_with_a_state_dir_keeps_the_id_and_needs_no_bootstrap() {
    let dir = std::env::temp_dir().join(format!("hyperdht-state-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let state = dir.to_str().expect("utf-8").to_string();
    let json_line = |p: &mut Proc, what: &str| -> Value {
        serde_json::from_str(&p.line(T, |l| l.contains(what))).expect("json")
    };
    let mut entry = Proc::spawn("hyperdht", &["--host", "127.0.0.1", "--json"]);
    let entry_addr = json_addr(&json_line(&mut entry, "listening")["address"])
        .expect("address")
        .to_string();

    let args = |bootstrap: &str| {
        vec![
            "--host".to_string(),
            "127.0.0.1".into(),
            "--json".into(),
            "--state-dir".into(),
            state.clone(),
            "-b".into(),
            bootstrap.to_string(),
        ]
    };
    let first_args = args(&entry_addr);
    let mut first = Proc::spawn("hyperdht", &refs(&first_args));
    let id = json_line(&mut first, "listening")["id"]
        .as_str()
        .expect("id")
        .to_string();
    assert!(json_line(&mut first, "bootstrapped")["nodes"].as_u64() >= Some(1));
    assert!(first.terminate().success());
    let saved: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("node.json")).expect("saved"))
            .expect("json");
    assert_eq!(saved["id"], id.as_str(), "{saved}");
    let entry_port: u64 = entry_addr
        .rsplit(':')
        .next()
        .expect("port")
        .parse()
        .expect("port");
    assert!(
        saved["contacts"]
            .as_array()
            .expect("contacts")
            .iter()
            .any(|c| c["port"] == entry_port && c["host"] == "127.0.0.1"),
        "the entry node saved as a contact: {saved}"
    );

    // The configured bootstrap is silent (nothing listens on port 9): the saved contact
    // brings the node up, with the same id.
    let again_args = args("127.0.0.1:9");
    let mut again = Proc::spawn("hyperdht", &refs(&again_args));
    assert_eq!(json_line(&mut again, "listening")["id"], id.as_str());
    assert!(json_line(&mut again, "bootstrapped")["nodes"].as_u64() >= Some(1));
    assert!(again.terminate().success());

    // A corrupt file: logged and ignored, the node starts with a new id.
    std::fs::write(dir.join("node.json"), "{ garbage").expect("write");
    let mut fresh = Proc::spawn("hyperdht", &refs(&again_args));
    assert_ne!(json_line(&mut fresh, "listening")["id"], id.as_str());
    assert!(fresh.terminate().success());
    drop(entry);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `hyperdht [global args] announce KEY -b entry --json` on 127.0.0.1, and its first
/// "announced" line.
fn announce_json(entry: &str, global: &[&str]) -> (Proc, Value) {
    let mut args = vec!["--host", "127.0.0.1"];
    args.extend_from_slice(global);
    args.extend(["announce", KEY, "-b", entry, "--json"]);
    let mut p = Proc::spawn("hyperdht", &args);
    let line = p.line(T, |l| l.contains("\"announced\""));
    (p, serde_json::from_str(&line).expect("json"))
}

/// The README's walkthrough, step by step: a bootstrap, a node, an announcer (without
/// --port, so that its announced port is its DHT socket), a lookup that finds it, a hole
/// punch to what the lookup returned through the node that returned it, and a datagram
/// over the punched path that the announcer prints.
#[test]
fn the_walkthrough_announce_lookup_punch_and_a_datagram() {
    let mut boot = Proc::spawn(
        "dht-bootstrap",
        &["--host", "127.0.0.1", "--port", "0", "--json"],
    );
    let entry =
        json_addr(
            &serde_json::from_str::<Value>(&boot.line(T, |l| l.contains("listening")))
                .expect("json")["address"],
        )
        .expect("address")
        .to_string();
    let mut node = Proc::spawn("hyperdht", &["--host", "127.0.0.1", "-b", &entry]);
    // The first node of a network: the entry node answered, nobody else yet.
    let first = node.line(T, |l| l.starts_with("bootstrapped"));
    assert!(first.contains("the entry node answered"), "{first}");
    // A node with no bootstrap at all says it is an entry node.
    let mut alone = Proc::spawn("hyperdht", &["--host", "127.0.0.1"]);
    alone.line(T, |l| l.contains("serving as an entry node"));
    drop(alone);

    // -p binds the command's own DHT socket: announced without --port, that is the port.
    let port = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        s.local_addr().expect("addr").port()
    };
    let (mut fixed, v) = announce_json(&entry, &["-p", &port.to_string()]);
    assert_eq!(v["dht_port"], port, "{v}");
    assert_eq!(v["port"], port, "{v}");
    assert!(fixed.terminate().success());

    let (mut announcer, announced) = announce_json(&entry, &[]);
    let dht_port = announced["dht_port"].as_u64().expect("dht_port");
    assert_eq!(
        announced["port"], dht_port,
        "announced its DHT socket: {announced}"
    );

    let out = ok("hyperdht", &["lookup", KEY, "-b", &entry, "--json"]);
    let (peer, via) = out
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("json"))
        .find_map(|r| {
            let peer = json_addr(r["peers"].as_array()?.first()?)?;
            Some((peer, json_addr(&r["node"])?))
        })
        .expect("a reply with the announcer");
    assert_eq!(u64::from(peer.port()), dht_port);
    // -q silences notes and logs, not the results.
    let quiet = ok("hyperdht", &["-q", "lookup", KEY, "-b", &entry]);
    assert!(quiet.contains(&format!("peers {peer}")), "{quiet}");
    assert!(
        !quiet.contains("found "),
        "no summary note under -q: {quiet}"
    );
    // -v: the lookup says what it did on stderr (and -vv shows its query span).
    let logged = cmd("hyperdht")
        .args(["-vv", "lookup", KEY, "-b", &entry])
        .assert()
        .success()
        .get_output()
        .clone();
    let err = String::from_utf8_lossy(&logged.stderr);
    assert!(
        err.contains("lookup done") && err.contains("peers=1"),
        "{err}"
    );
    assert!(err.contains("query{"), "the query's span: {err}");

    let (peer_s, via_s) = (peer.to_string(), via.to_string());
    let punch = |text: &str, extra: &[&str]| {
        let mut args = vec!["holepunch", &peer_s, "--via", &via_s, "--send", text];
        args.extend_from_slice(extra);
        ok("hyperdht", &args)
    };
    let out = punch("hello", &[]);
    assert!(
        out.contains("path to") && out.contains("sent \"hello\""),
        "{out}"
    );
    let got: Value =
        serde_json::from_str(&announcer.line(T, |l| l.contains("\"datagram\""))).expect("json");
    assert_eq!(got["text"], "hello", "{got}");
    assert!(json_addr(&got["from"]).is_some(), "{got}");
    // The same in JSON: the documented shapes.
    let out = punch("again", &["--json"]);
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines[0]["event"], "holepunched", "{out}");
    assert_eq!(json_addr(&lines[0]["peer"]), Some(peer));
    assert_eq!(json_addr(&lines[0]["via"]), Some(via));
    assert!(lines[0]["ms"].as_f64().is_some() && lines[0]["path"].is_string());
    assert_eq!(lines[1]["event"], "sent", "{out}");
    assert_eq!(lines[1]["text"], "again");
    assert!(announcer.terminate().success());
    drop((node, boot));
}

/// `hyperdht --relay` lists itself on the DHT's relay key once bootstrapped, and
/// `announce --relay auto` finds it there and reserves on it; `lookup` of the key shows it.
#[test]
fn announce_relay_auto_finds_the_relay_on_the_dht() {
    let mut boot = Proc::spawn("dht-bootstrap", &["--host", "127.0.0.1", "--port", "0"]);
    let entry = listening(&boot.line(T, |l| l.contains("listening on")));
    let mut plain = Proc::spawn("hyperdht", &["--host", "127.0.0.1", "-b", &entry]);
    let plain_addr = listening(&plain.line(T, |l| l.contains("listening on")));
    plain.line(T, |l| l.starts_with("bootstrapped"));
    let (mut relay, metrics_port) = spawn_with_metrics(
        "hyperdht",
        &["--host", "127.0.0.1", "-b", &entry, "--relay"],
    );
    let listen: Value =
        serde_json::from_str(&relay.line(T, |l| l.contains("\"listening\""))).expect("json");
    assert_eq!(listen["relay"], true, "{listen}");
    let relay_addr = json_addr(&listen["address"]).expect("address").to_string();
    relay.line(T, |l| l.contains("\"bootstrapped\""));
    // The relay's own announce on the key is stored (the plain node logs it).
    let key = hyperdht::relay::RELAY_KEY.to_string();
    plain.line(T, |l| l.starts_with(&format!("announce: {key}")));
    let found = ok(
        "hyperdht",
        &[
            "lookup",
            "hyperdht-rs/relays/v1/well-known",
            "-b",
            &entry,
            "--json",
        ],
    );
    let listed = found
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .any(|r| {
            r["peers"].as_array().is_some_and(|ps| {
                ps.iter()
                    .any(|p| json_addr(p).map(|a| a.to_string()).as_deref() == Some(&relay_addr))
            })
        });
    assert!(
        listed,
        "the lookup of the relay key names the relay: {found}"
    );
    let mut announcer = Proc::spawn(
        "hyperdht",
        &[
            "--host",
            "127.0.0.1",
            "announce",
            KEY,
            "-b",
            &entry,
            "--relay",
            "auto",
            "--json",
        ],
    );
    let line = announcer.line(T, |l| l.contains("\"relay\""));
    let v: Value = serde_json::from_str(&line).expect("json");
    assert_eq!(
        json_addr(&v["relay"]).map(|a| a.to_string()),
        Some(relay_addr.clone()),
        "{v}"
    );
    announcer.line(T, |l| l.contains("\"announced\""));
    // holepunch reserves first when asked: on the relay it names, or on one it finds.
    for relay_arg in [relay_addr.as_str(), "auto"] {
        let mut args = vec![
            "--host",
            "127.0.0.1",
            "holepunch",
            &plain_addr,
            "--via",
            &relay_addr,
        ];
        args.extend(["--relay", relay_arg, "--json"]);
        if relay_arg == "auto" {
            args.extend(["-b", &entry]);
        }
        let out = ok("hyperdht", &args);
        let events: Vec<Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).expect("JSON line"))
            .collect();
        assert_eq!(events.len(), 2, "{out}");
        assert_eq!(events[0]["event"], "relay", "{out}");
        assert_eq!(
            json_addr(&events[0]["relay"]).map(|a| a.to_string()),
            Some(relay_addr.clone())
        );
        assert_eq!(events[1]["event"], "holepunched", "{out}");
    }
    // The relay's metrics: the announcer's and the two punchers' reservations, each
    // challenged once; nothing refused.
    let m = scrape(metrics_port);
    assert_eq!(m.get("hyperdht_relay_reservations"), Some(&3.0), "{m:?}");
    assert_eq!(m.get("hyperdht_relay_circuits"), Some(&0.0));
    assert_eq!(m.get("hyperdht_relay_challenges_total"), Some(&3.0));
    assert_eq!(
        m.get("hyperdht_relay_refused_total{reason=\"per_source\"}"),
        Some(&0.0)
    );
    for p in [&mut announcer, &mut relay, &mut plain, &mut boot] {
        assert!(p.terminate().success());
    }
}
