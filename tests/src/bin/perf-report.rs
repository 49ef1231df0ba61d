//! `perf-report`: our node, the JavaScript reference and the echo measured side by side in
//! one run, and `docs/PERFORMANCE.md` written from the figures.
//!
//! ```sh
//! cargo build --release -p hyperdht-cli && cargo build --release -p hyperdht-tests
//! target/release/perf-report --out docs/PERFORMANCE.md      # about 6 minutes
//! target/release/perf-report --quick                        # a smoke run, target/perf/
//! ```
//!
//! Each measurement starts its target afresh on core 0 (`taskset`) and runs `dht-load` on
//! core 1; the three targets take turns (interleaved) and every measurement is repeated
//! (three times by default); the report gives medians and the spread (min-max). Our node
//! runs with loopback not trusted, so its per-source budgets and quotas are on; the load
//! comes from 1,024 source addresses across 127.1.0.0/16.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use hyperdht_tests::perf::{self, Target};
use serde_json::{Value, json};

/// Measures our node, the JavaScript reference and the echo side by side and writes a
/// Markdown report.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Where to write the report (default: target/perf/PERFORMANCE.md).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Seconds per throughput and latency measurement.
    #[arg(long, default_value_t = 5.0)]
    secs: f64,
    /// Repetitions of every measurement.
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Announces for the memory measurement.
    #[arg(long, default_value_t = 100_000)]
    announces: u64,
    /// The open-loop rate of the latency measurement.
    #[arg(long, default_value_t = 10_000)]
    rate: u64,
    /// A short smoke run: 1 s, one repetition, 10,000 announces.
    #[arg(long)]
    quick: bool,
    /// Leave the JavaScript reference out.
    #[arg(long)]
    no_js: bool,
    /// Measure nothing: write the report from the figures of an earlier run
    /// (target/perf/runs.json), as when only the report's layout changed.
    #[arg(long, value_name = "FILE")]
    from_runs: Option<PathBuf>,
    #[arg(skip)]
    reps_done: bool,
}

/// `_ping` with every request its own datagram (no GSO train from the generator).
const SINGLE_SENDS: (&str, &str) = (
    "ping-1",
    "`_ping` answered/s, the generator sending one datagram per call",
);

/// `peers` lookups of absent keys on a node whose routing table 1,024 sources joined first:
/// every answer carries the 20 closest contacts, as in a network (the echo is left out).
const TABLE: (&str, &str) = (
    "peers-table",
    "`peers` lookups/s, key absent, 1,024 sources offered to the node's table first",
);

/// The throughput rows: load mode and label.
const RATES: [(&str, &str); 3] = [
    ("ping", "`_ping` answered/s, saturated"),
    ("peers-absent", "`peers` lookups/s, key absent"),
    ("peers-20", "`peers` lookups/s, 20 peers on the key"),
];

fn main() -> anyhow::Result<()> {
    let mut a = Args::parse();
    if a.quick {
        (a.secs, a.reps, a.announces) = (1.0, 1, 10_000);
    }
    let bin = std::env::current_exe()?
        .parent()
        .context("binary folder")?
        .to_path_buf();
    let core = |c: usize| perf::can_pin().then_some(c);
    let js_dir = if a.no_js {
        None
    } else {
        match hyperdht_tests::reference_missing() {
            None => Some(hyperdht_tests::reference().dir),
            Some(why) => {
                eprintln!("perf-report: no JavaScript column: {why} (or pass --no-js)");
                None
            }
        }
    };
    let mut targets = vec![Target::Ours, Target::OursSingle, Target::Echo];
    if js_dir.is_some() {
        targets.insert(1, Target::Js);
    }
    // results[row][target] = values of the repetitions
    let mut results: BTreeMap<String, BTreeMap<&'static str, Vec<f64>>> = BTreeMap::new();
    let mut runs: Vec<Value> = Vec::new();
    let mut record = |row: &str, t: Target, v: f64, raw: Value| {
        results
            .entry(row.to_string())
            .or_default()
            .entry(t.name())
            .or_default()
            .push(v);
        runs.push(json!({"row": row, "target": t.name(), "value": v, "raw": raw}));
    };
    let secs = format!("{}", a.secs);
    if let Some(file) = &a.from_runs {
        let saved: Value = serde_json::from_slice(&std::fs::read(file)?)?;
        let all = [Target::Ours, Target::OursSingle, Target::Js, Target::Echo];
        for r in saved["runs"].as_array().context("no runs in the file")? {
            let t = all
                .into_iter()
                .find(|t| r["target"] == t.name())
                .context("unknown target")?;
            let row = r["row"].as_str().context("row")?;
            record(row, t, num(&r["value"]), r["raw"].clone());
        }
        if let Some(args) = saved.get("args") {
            a.secs = args["secs"].as_f64().unwrap_or(a.secs);
            a.reps = args["reps"].as_u64().map_or(a.reps, |r| r as usize);
            a.announces = args["announces"].as_u64().unwrap_or(a.announces);
            a.rate = args["rate"].as_u64().unwrap_or(a.rate);
        }
        a.reps_done = true;
    }
    for rep in 0..if a.reps_done { 0 } else { a.reps } {
        // Interleaved: the targets take turns, in a rotated order each repetition.
        let mut order = targets.clone();
        order.rotate_left(rep % targets.len());
        for (row, _) in RATES.iter().chain([&SINGLE_SENDS, &TABLE]) {
            let (mode, burst, contacts) = match *row {
                "ping-1" => ("ping", "1", "0"),
                "peers-table" => ("peers-absent", "16", "1024"),
                m => (m, "16", "0"),
            };
            for &t in &order {
                if t == Target::Echo && contacts != "0" {
                    continue;
                }
                let run =
                    perf::start(t, core(0), &bin, js_dir.as_deref()).map_err(anyhow::Error::msg)?;
                let mut args: Vec<String> = [
                    "--mode",
                    mode,
                    "--secs",
                    &secs,
                    "--burst",
                    burst,
                    "--contacts",
                    contacts,
                ]
                .iter()
                .map(|s| s.to_string())
                .collect();
                if t == Target::Echo {
                    args.push("--echo".into());
                }
                if let Some(c) = core(0) {
                    args.extend(["--cpu-core".into(), c.to_string()]);
                }
                let r = perf::load(core(1), &bin, run.addr, &args).map_err(anyhow::Error::msg)?;
                eprintln!(
                    "rep {rep} {row:<13} {:<33} {:>9.0}/s",
                    t.name(),
                    num(&r["rate"])
                );
                // What the target's core spent per answer over the measured window, while
                // the generator had the other core (only when pinned: otherwise the two
                // share both).
                let spent = &r["target_core"];
                if let Some(per) = spent["busy_us_per_answer"].as_f64() {
                    record(&format!("cpu-{row}"), t, per, Value::Null);
                    let (user, kernel) = (num(&spent["user_s"]), num(&spent["kernel_s"]));
                    if user + kernel > 0.0 {
                        record(
                            &format!("kernel-{row}"),
                            t,
                            kernel / (user + kernel),
                            Value::Null,
                        );
                    }
                }
                record(row, t, num(&r["rate"]), r);
            }
        }
        for &t in &order {
            let run =
                perf::start(t, core(0), &bin, js_dir.as_deref()).map_err(anyhow::Error::msg)?;
            let mut args = vec![
                "--mode".into(),
                "peers-absent".into(),
                "--secs".into(),
                secs.clone(),
                "--rate".into(),
                a.rate.to_string(),
            ];
            if t == Target::Echo {
                args.push("--echo".into());
            }
            let r = perf::load(core(1), &bin, run.addr, &args).map_err(anyhow::Error::msg)?;
            let (p50, p99) = (num(&r["latency_us"]["p50"]), num(&r["latency_us"]["p99"]));
            eprintln!(
                "rep {rep} latency       {:<15} p50 {p50} us p99 {p99} us",
                t.name()
            );
            record("lat50", t, p50, r.clone());
            record("lat99", t, p99, Value::Null);
        }
        for &t in order
            .iter()
            .filter(|t| matches!(t, Target::Ours | Target::Js))
        {
            let run =
                perf::start(t, core(0), &bin, js_dir.as_deref()).map_err(anyhow::Error::msg)?;
            std::thread::sleep(Duration::from_secs(1));
            let idle = run.rss_kib().unwrap_or(0) as f64 / 1024.0;
            let args = [
                "--mode".into(),
                "announce".into(),
                "--count".into(),
                a.announces.to_string(),
                "--secs".into(),
                "120".into(),
            ];
            let r = perf::load(core(1), &bin, run.addr, &args).map_err(anyhow::Error::msg)?;
            std::thread::sleep(Duration::from_secs(1));
            let after = run.rss_kib().unwrap_or(0) as f64 / 1024.0;
            eprintln!(
                "rep {rep} announces     {:<33} {:>9.0}/s, {idle:.1} MiB idle, {after:.1} MiB after {} answered",
                t.name(),
                num(&r["rate"]),
                r["answered"]
            );
            record(
                "kept",
                t,
                num(&r["kept"]["found"]) / num(&r["kept"]["checked"]).max(1.0),
                Value::Null,
            );
            record("announce", t, num(&r["rate"]), r);
            record("idle", t, idle, Value::Null);
            record("after", t, after, Value::Null);
        }
    }
    let report = markdown(&a, &results, perf::can_pin());
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| bin.join("../perf/PERFORMANCE.md"));
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&out, &report)?;
    let raw = bin.join("../perf/runs.json");
    std::fs::create_dir_all(raw.parent().context("folder")?)?;
    if a.from_runs.is_none() {
        let saved = json!({
            "args": {"secs": a.secs, "reps": a.reps, "announces": a.announces, "rate": a.rate},
            "runs": runs,
        });
        std::fs::write(&raw, serde_json::to_string_pretty(&saved)?)?;
    }
    println!("{report}");
    eprintln!("wrote {} and {}", out.display(), raw.display());
    Ok(())
}

/// What a row of the table measures, which decides its ratio columns.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A rate: every ratio, the echo against the reference too (the ceiling).
    Rate,
    /// A cost (CPU, latency): against the echo and the reference.
    Cost,
    /// Against the reference only.
    Other,
    /// No ratio (a share of something else).
    Share,
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

/// "median (min-max)" of a cell, in `unit`.
fn cell(xs: Option<&Vec<f64>>, fmt: fn(f64) -> String) -> String {
    match xs.and_then(|xs| perf::median(xs)) {
        Some((m, lo, hi)) if xs.is_some_and(|x| x.len() > 1) => {
            format!("{} ({}-{})", fmt(m), fmt(lo), fmt(hi))
        }
        Some((m, _, _)) => fmt(m),
        None => "-".into(),
    }
}

fn ratio(row: &BTreeMap<&'static str, Vec<f64>>, a: Target, b: Target, pct: bool) -> String {
    let m = |t: Target| row.get(t.name()).and_then(|x| perf::median(x)).map(|m| m.0);
    match (m(a), m(b)) {
        (Some(x), Some(y)) if y > 0.0 && pct => format!("{:.0} %", 100.0 * x / y),
        (Some(x), Some(y)) if y > 0.0 => format!("{:.2}x", x / y),
        _ => String::new(),
    }
}

fn markdown(
    a: &Args,
    r: &BTreeMap<String, BTreeMap<&'static str, Vec<f64>>>,
    pinned: bool,
) -> String {
    let per_s = |x: f64| {
        format!("{:.0}", x)
            .chars()
            .rev()
            .collect::<Vec<_>>()
            .chunks(3)
            .map(|c| c.iter().collect::<String>())
            .collect::<Vec<_>>()
            .join(",")
            .chars()
            .rev()
            .collect()
    };
    let us = |x: f64| format!("{x:.0} us");
    let us2 = |x: f64| format!("{x:.2}");
    let mib = |x: f64| format!("{x:.1}");
    let pct = |x: f64| format!("{:.0} %", 100.0 * x);
    let empty = BTreeMap::new();
    let row = |k: &str| r.get(k).unwrap_or(&empty);
    let (o, j, e, o1) = (Target::Ours, Target::Js, Target::Echo, Target::OursSingle);
    let mut s = String::new();
    let _ = writeln!(s, "# Performance\n");
    let _ = writeln!(
        s,
        "Written by `perf-report` (`tests/src/bin/perf-report.rs`); do not edit by hand. To \
         regenerate:\n\n```sh\ncargo build --release -p hyperdht-cli && cargo build --release -p hyperdht-tests\n\
         target/release/perf-report --out docs/PERFORMANCE.md\n```\n"
    );
    let _ = writeln!(
        s,
        "One run: {} repetitions of {} s per measurement, targets interleaved, each started \
         afresh; medians, with the spread (min-max) in brackets. {}",
        a.reps,
        a.secs,
        if pinned {
            "Each target ran pinned to core 0 and the load generator to core 1 (`taskset`)."
        } else {
            "**Not pinned** (`taskset` missing): the figures are noisy."
        }
    );
    let _ = writeln!(
        s,
        "\n| | hyperdht-rs | hyperdht-rs, 1 datagram per call | hyperdht@1.3.0 | echo | \
         ours / echo | ours, 1 per call / echo | ours / JS | ours, 1 per call / JS | echo / JS |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|");
    // One row: the four targets' cells, then the ratios that apply to its kind.
    let line = |s: &mut String, label: &str, k: &str, fmt: fn(f64) -> String, kind: Kind| {
        let x = row(k);
        let c = |t: Target| cell(x.get(t.name()), fmt);
        let q = |a: Target, b: Target, pct: bool| ratio(x, a, b, pct);
        let (oe, o1e) = if matches!(kind, Kind::Other | Kind::Share) {
            (String::new(), String::new())
        } else {
            (q(o, e, true), q(o1, e, true))
        };
        // The echo against the reference is the ceiling of a rate; of a cost it would be
        // a floor, which the column does not mean.
        let ej = if kind == Kind::Rate {
            q(e, j, false)
        } else {
            String::new()
        };
        let _ = writeln!(
            s,
            "| {label} | {} | {} | {} | {} | {oe} | {o1e} | {} | {} | {ej} |",
            c(o),
            c(o1),
            c(j),
            c(e),
            if kind == Kind::Share {
                String::new()
            } else {
                q(o, j, false)
            },
            if kind == Kind::Share {
                String::new()
            } else {
                q(o1, j, false)
            },
        );
    };
    for (k, label) in RATES.iter().chain([&SINGLE_SENDS, &TABLE]) {
        line(&mut s, label, k, per_s, Kind::Rate);
    }
    for (k, label) in RATES.iter().chain([&TABLE]) {
        let what = label.split(" answered/s").next().unwrap_or(label);
        let what = what.replace(" lookups/s", " lookup").replace(
            ", 1,024 sources offered to the node's table first",
            ", table filled",
        );
        line(
            &mut s,
            &format!("CPU of the target's core per {what}, us"),
            &format!("cpu-{k}"),
            us2,
            Kind::Cost,
        );
        line(
            &mut s,
            "of that CPU, the share in the kernel",
            &format!("kernel-{k}"),
            pct,
            Kind::Share,
        );
    }
    let rate = per_s(a.rate as f64);
    line(
        &mut s,
        &format!("p50 latency of a `peers` lookup at {rate} req/s"),
        "lat50",
        us,
        Kind::Cost,
    );
    line(
        &mut s,
        &format!("p99 latency of a `peers` lookup at {rate} req/s"),
        "lat99",
        us,
        Kind::Cost,
    );
    line(
        &mut s,
        "announces stored/s (each with its source's token)",
        "announce",
        per_s,
        Kind::Other,
    );
    line(
        &mut s,
        "of those, the last ones found by a lookup (200 sampled)",
        "kept",
        pct,
        Kind::Other,
    );
    line(
        &mut s,
        "resident memory idle, MiB",
        "idle",
        mib,
        Kind::Other,
    );
    line(
        &mut s,
        &format!(
            "resident memory after {} announces, MiB",
            per_s(a.announces as f64)
        ),
        "after",
        mib,
        Kind::Other,
    );
    let _ = writeln!(s, "\n## What was measured\n");
    let _ = writeln!(
        s,
        "- **hyperdht-rs**: `hyperdht --host 127.0.0.1 --no-trust-loopback --json -q` (a \
         long-lived node, no bootstrap, its defences on: per-IP and per-/24 request budgets, \
         response budgets, store quotas). Saturated, it meets its node-wide request budget \
         (1,000,000 a second, burst 2,000,000, a default): the excess is dropped (counted as \
         `over_budget_total`) and every drop holds one of the generator's slots for its \
         300 ms timeout, so its rates show that budget more than its speed; its CPU per \
         request shows the speed.\n\
         - **hyperdht@1.3.0**: `tests/interop/perf-node.js`, one node of the reference on \
         `dht-rpc@2.3.0`, Node.js {}.\n\
         - **hyperdht-rs, 1 datagram per call**: the same node with `--no-batch-io`: one \
         `recv_from` and one `send_to` per datagram, as the echo, on a thread of its own that \
         blocks in `recv_from` (the socket is not registered with the runtime's epoll).\n\
         - **echo**: `udp-echo`, a loop of one `recv_from` and one `send_to` per datagram: the \
         ceiling of any server making two system calls per datagram.\n\
         - **Load**: `dht-load` from 1,024 source addresses (127.1.0.1 onwards, four per /24), \
         one socket sending each source's requests in GSO trains of 16 (but in the row that \
         says otherwise) and receiving with `recvmmsg`, 512 requests in flight (closed loop) \
         for the rates. A node reading with GRO (ours, batched) receives a train as one \
         buffer; the echo and the single-call node get it as 16 datagrams. In the row with \
         one datagram per call the generator, itself making one send call per request, is \
         the bottleneck of the fastest targets; open loop at a fixed \
         rate, one datagram per send, for the latency. `peers-20`: 20 announces on one key \
         (each from its own source, with its token) first, then lookups of that key. The echo \
         gets the same requests and sends them back.\n\
         - **CPU per request**: the busy time of the target's core (user, system, irq and \
         softirq in `/proc/stat`, read by `dht-load --cpu-core`) over the measured window \
         (the setup, such as the join or the announces of `peers-20`, left out), over the \
         answers in that window. A datagram to a loopback peer is delivered in its sender's \
         softirq, so this is everything a request costs the target, the delivery of its \
         answer included. Only the target and the generator are pinned: the machine's other \
         processes may also run on the target's core, which would raise every target's \
         figure alike. The echo's is what the kernel alone takes for one receive and one \
         send; what a node spends beyond it is its own work. *echo / JS* is left out of \
         these rows and of the latency rows: it bounds rates, not costs.\n\
         - **A filled table** (the row that says so): first each of the 1,024 sources pings \
         the node with an id of its own and answers the node's own pings as a node would. \
         Ours checks a requester with a ping before it enters the table and keeps what its \
         20-contact buckets hold (92 contacts when measured by hand); the reference adds \
         requesters unchecked, as many as its buckets hold. A \
         `_find_node` then returns 20 contacts from either, and every lookup's answer carries \
         the 20 closest, as in a network. The echo is left out (its answers would be the \
         small requests). The generator, receiving these larger answers, limits the fastest \
         targets: their CPU per request shows their speed.\n\
         - **echo / JS** is the ceiling of *ours, 1 per call / JS*: no server that makes two \
         system calls per datagram goes faster than the echo.\n\
         - A request unanswered for 300 ms counts as lost and is replaced (the reference \
         drops some announces when 512 arrive at once: its socket buffer overflows).\n\
         - **Memory**: `VmRSS` 1 s after start, and 1 s after {} announces of random keys \
         (each source takes its token with a `_ping` first; the store's own limits apply).",
        version("node"),
        per_s(a.announces as f64)
    );
    let _ = writeln!(s, "\n## Machine\n");
    let _ = writeln!(
        s,
        "- {}\n- {} cores, {}\n- {}\n- commit {}",
        cpu(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        kernel(),
        version("rustc"),
        commit()
    );
    s
}

fn version(program: &str) -> String {
    std::process::Command::new(program)
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "?".into())
}

fn cpu() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "cpu unknown".into())
}

fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| format!("Linux {}", s.trim()))
        .unwrap_or_else(|_| "kernel unknown".into())
}

fn commit() -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    std::process::Command::new("git")
        .arg("-C")
        .arg(root)
        .args(["describe", "--always", "--dirty"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "?".into())
}
