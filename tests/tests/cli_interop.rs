//! JavaScript `hyperdht@1.3.0` nodes and our `hyperdht` node in one network through our
//! `dht-bootstrap`, with announces found both ways by the command-line tools.

use std::net::SocketAddrV4;
use std::time::Duration;

use assert_cmd::Command;
use hyperdht_tests::js::JsGroup;
use hyperdht_tests::procs::{Proc, binary};
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(20);

async fn javascript_and_rust_nodes_through_our_bootstrap() {
    let reference = hyperdht_tests::reference();
    let mut boot = Proc::spawn(
        "dht-bootstrap",
        &["--host", "127.0.0.1", "--port", "0", "--json"],
    );
    let line = boot.line(T, |l| l.contains("listening"));
    let entry: SocketAddrV4 =
        hyperdht_tests::json_addr(&serde_json::from_str::<Value>(&line).expect("json")["address"])
            .expect("address");
    let entry_s = entry.to_string();
    let mut node = Proc::spawn("hyperdht", &["--host", "127.0.0.1", "-b", &entry_s]);
    node.line(T, |l| l.starts_with("bootstrapped"));
    let mut js = JsGroup::spawn(&reference, "hyperdht-nodes.js", 4, &[entry], false).await;

    // JavaScript announces; our lookup command finds it.
    let key_js = "aa".repeat(32);
    let r = js
        .call(json!({"op": "announce", "node": 0, "key": key_js, "port": 4242}))
        .await;
    assert!(r.get("error").is_none(), "{r}");
    let out = Command::new(binary("hyperdht"))
        .args(["lookup", &key_js, "-b", &entry_s, "--json"])
        .timeout(T)
        .assert()
        .success()
        .get_output()
        .clone();
    let peers: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .flat_map(|l| {
            serde_json::from_str::<Value>(l).expect("json")["peers"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|p| hyperdht_tests::json_addr(&p).map(|a| a.to_string()))
        .collect();
    assert!(
        !peers.is_empty() && peers.iter().all(|p| p == "127.0.0.1:4242"),
        "{peers:?}"
    );
    // Our long-lived node stored it too (it is one of the closest of 5).
    node.line(T, |l| {
        l.starts_with(&format!("announce: {key_js} 127.0.0.1:4242"))
    });

    // Our announce command; JavaScript finds it.
    let key_rs = "bb".repeat(32);
    let mut announcer = Proc::spawn(
        "hyperdht",
        &["announce", &key_rs, "--port", "5353", "-b", &entry_s],
    );
    announcer.line(T, |l| l.starts_with("announced"));
    let r = js
        .call(json!({"op": "lookup", "node": 2, "key": key_rs}))
        .await;
    let found: Vec<String> = r["results"]
        .as_array()
        .expect("results")
        .iter()
        .flat_map(|x| x["peers"].as_array().cloned().unwrap_or_default())
        .map(|p| format!("{}:{}", p["host"].as_str().unwrap_or(""), p["port"]))
        .collect();
    assert!(
        !found.is_empty() && found.iter().all(|p| p == "127.0.0.1:5353"),
        "{r}"
    );
    assert!(announcer.terminate().success());
    assert!(node.terminate().success());
    assert!(boot.terminate().success());
}

fn main() {
    use hyperdht_tests::{block_on, trial};
    hyperdht_tests::run_trials(vec![trial(
        "javascript_and_rust_nodes_through_our_bootstrap",
        hyperdht_tests::reference_missing(),
        block_on(javascript_and_rust_nodes_through_our_bootstrap),
    )]);
}
