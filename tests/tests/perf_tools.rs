//! The instruments of `perf-report` work: `dht-load` gets answers from our node and from the
//! echo in every mode, counts the peers a lookup returns, and stops at its count.

use std::path::{Path, PathBuf};

use hyperdht_tests::perf::{self, Target};
use hyperdht_tests::procs::binary;
use serde_json::Value;

fn bin() -> PathBuf {
    // Our binaries and the hyperdht node's share one folder (target/<profile>).
    binary("hyperdht");
    Path::new(env!("CARGO_BIN_EXE_dht-load"))
        .parent()
        .expect("folder")
        .to_path_buf()
}

fn load(target: Target, args: &[&str]) -> Value {
    let bin = bin();
    let run = perf::start(target, None, &bin, None).expect("target starts");
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let r = perf::load(None, &bin, run.addr, &args).expect("dht-load runs");
    eprintln!("{target:?} {args:?}: {r}");
    r
}

#[test]
fn dht_load_gets_answers_from_our_node_in_every_mode() {
    for mode in ["ping", "find-node", "peers-absent", "peers-20"] {
        let r = load(
            Target::Ours,
            &[
                "--mode",
                mode,
                "--secs",
                "0.5",
                "--sources",
                "64",
                "--window",
                "64",
            ],
        );
        assert_eq!(r["mode"], mode);
        let answered = r["answered"].as_u64().expect("answered");
        assert!(answered >= 100, "{mode}: only {answered} answered");
        assert!(r["latency_us"]["p50"].as_u64().expect("p50") > 0);
        match mode {
            "peers-20" => assert_eq!(r["items_per_answer"].as_f64(), Some(20.0), "{r}"),
            "peers-absent" => assert_eq!(r["items_per_answer"].as_f64(), Some(0.0), "{r}"),
            _ => {}
        }
    }
}

/// `--contacts`: the sources answer the node's checks, enter its table, and the lookups'
/// answers then carry 20 contacts (the filled-table row of `perf-report`).
#[test]
fn dht_load_fills_the_nodes_table_before_the_load() {
    let r = load(
        Target::Ours,
        &[
            "--mode",
            "peers-absent",
            "--secs",
            "0.5",
            "--window",
            "64",
            "--contacts",
            "256",
        ],
    );
    let joined = &r["joined"];
    assert_eq!(joined["sources"], 256, "{r}");
    // Our node pings a requester before it takes it (the defences are on: loopback is not
    // trusted by perf's node); each ping the generator answered is one it could take.
    assert!(
        joined["pings_answered"].as_u64().expect("pings") >= 20,
        "{r}"
    );
    assert_eq!(joined["closest_returned"], 20, "{r}");
    assert!(r["answered"].as_u64().expect("answered") >= 100, "{r}");
}

#[test]
fn dht_load_announces_up_to_its_count_and_measures_latency_at_a_rate() {
    let r = load(
        Target::Ours,
        &[
            "--mode",
            "announce",
            "--count",
            "2000",
            "--secs",
            "20",
            "--sources",
            "64",
        ],
    );
    assert_eq!(r["answered"].as_u64(), Some(2000), "{r}");
    // The last announces are kept: every sampled one that was answered is found by a lookup.
    let checked = r["kept"]["checked"].as_u64().expect("checked");
    assert!((15..=24).contains(&checked), "{r}");
    assert_eq!(r["kept"]["found"], r["kept"]["checked"], "{r}");
    let r = load(
        Target::Ours,
        &[
            "--mode",
            "ping",
            "--rate",
            "1000",
            "--secs",
            "0.5",
            "--sources",
            "16",
        ],
    );
    let sent = r["sent"].as_u64().expect("sent");
    assert!((400..=600).contains(&sent), "1000/s for 0.5 s sent {sent}");
    // Every request answered: in time (counted), or in the drain after (not lost).
    assert_eq!(r["lost"].as_u64(), Some(0), "{r}");
    assert!(
        r["answered"].as_u64().expect("answered") >= sent - 50,
        "{r}"
    );
}

#[test]
fn dht_load_counts_the_echo() {
    let r = load(
        Target::Echo,
        &[
            "--mode",
            "peers-20",
            "--echo",
            "--secs",
            "0.5",
            "--sources",
            "64",
        ],
    );
    assert!(r["answered"].as_u64().expect("answered") >= 100, "{r}");
}

#[test]
fn dht_load_reports_the_busy_time_of_the_targets_core() {
    // The echo pinned to core 0 (when taskset works), so that core is busy with it.
    let bin = bin();
    let core = perf::can_pin().then_some(0);
    let run = perf::start(Target::Echo, core, &bin, None).expect("echo starts");
    let args: Vec<String> = ["--mode", "ping", "--echo", "--secs", "1", "--cpu-core", "0"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let r = perf::load(None, &bin, run.addr, &args).expect("dht-load runs");
    eprintln!("{r}");
    let spent = &r["target_core"];
    assert_eq!(spent["core"], 0, "{r}");
    let busy =
        spent["user_s"].as_f64().expect("user_s") + spent["kernel_s"].as_f64().expect("kernel_s");
    let per = spent["busy_us_per_answer"].as_f64().expect("per answer");
    let answered = r["answered"].as_f64().expect("answered");
    assert!((per - 1e6 * busy / answered).abs() < 1e-6, "{r}");
    if core.is_some() {
        // The echo answered thousands of datagrams on that core in the window.
        assert!(busy > 0.0 && answered > 1000.0, "{r}");
    }
}
