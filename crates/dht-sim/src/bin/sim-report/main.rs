//! `sim-report`: runs the simulator's experiments on whole hyperdht nodes and writes
//! docs/SCALE.md with its SVG plots (docs/scale/). Every figure in the document comes from
//! this run.
//!
//! ```sh
//! cargo run --release -p dht-sim --bin sim-report                 # the full run (100,000 nodes)
//! cargo run --release -p dht-sim --bin sim-report -- --quick --out target/scale/SCALE.md
//! ```

mod plot;
mod sections;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Parser;

/// Runs the simulator's experiments (lookups against network size and loss, announces
/// through a mass failure and under churn, NAT populations with hole punching, a network
/// growing from empty) and writes a Markdown report with SVG plots.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Where the report goes; its plots go to a `scale/` folder beside it.
    #[arg(long, default_value = "docs/SCALE.md")]
    out: PathBuf,
    /// Network sizes of the size experiment, each run in a process of its own (so that its
    /// memory is measured alone).
    #[arg(long, value_delimiter = ',', default_value = "1000,10000,100000")]
    sizes: Vec<usize>,
    /// Smaller networks and fewer trials everywhere (a few minutes in all).
    #[arg(long)]
    quick: bool,
    /// The seed of every network.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Only these experiments (size, loss, failure, churn, nat, growth).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Rows measured earlier: a file of lines that `--one-size N` printed (one per line),
    /// added to the size table, for a size too slow to run with the rest (100,000 nodes:
    /// about 100 minutes). Example: --size-lines target/scale/size-100000.txt
    #[arg(long, value_name = "FILE")]
    size_lines: Option<PathBuf>,
    /// Run one size and print its figures as one line (the size experiment runs each size
    /// so, in a process of its own; `--size-lines` takes such lines).
    #[arg(long)]
    one_size: Option<usize>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(n) = args.one_size {
        let line = sections::size_line(n, args.seed, args.quick);
        println!("{line}");
        return Ok(());
    }
    let started = Instant::now();
    let dir = args
        .out
        .parent()
        .map(|p| p.join("scale"))
        .unwrap_or_else(|| PathBuf::from("scale"));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let want = |name: &str| args.only.is_empty() || args.only.iter().any(|o| o == name);
    let mut doc = sections::Doc::new(&dir);
    if want("size") {
        let measured = match &args.size_lines {
            Some(p) => std::fs::read_to_string(p)
                .with_context(|| format!("reading {}", p.display()))?
                .lines()
                .map(str::trim)
                .filter(|l| l.starts_with("n="))
                .map(String::from)
                .collect(),
            None => Vec::new(),
        };
        sections::size(&mut doc, &args.sizes, args.seed, args.quick, &measured)?;
    }
    if want("loss") {
        sections::loss(&mut doc, args.seed, args.quick);
    }
    if want("failure") {
        sections::failure(&mut doc, args.seed, args.quick);
    }
    if want("churn") {
        sections::churn(&mut doc, args.seed, args.quick);
    }
    if want("nat") {
        sections::nat(&mut doc, args.seed, args.quick);
    }
    if want("growth") {
        sections::growth(&mut doc, args.seed, args.quick);
    }
    let command = std::env::args().skip(1).collect::<Vec<_>>().join(" ");
    let text = doc.finish(&command, started.elapsed());
    std::fs::write(&args.out, text).with_context(|| format!("writing {}", args.out.display()))?;
    eprintln!(
        "sim-report: wrote {} in {:.0} s",
        args.out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
