//! The `dht-bootstrap` binary. Its commands arrive with the binaries issue; until then it explains
//! that and exits with an error, so that no script mistakes it for a working node.

use clap::Parser;

/// An ephemeral dht-rpc 2.x entry node that other nodes bootstrap from.
///
/// Not yet functional in this version: see the status table in the README.
#[derive(Parser, Debug)]
#[command(version)]
struct Cli {}

fn main() -> anyhow::Result<()> {
    let _cli = Cli::parse();
    anyhow::bail!(
        "dht-bootstrap is not functional yet in this version (see the README's status table)"
    )
}
