//! The NAT lab's outcomes as docs/NAT.md records them (its Rust <-> Rust matrix), to
//! compare the simulator's hole punching with.
//!
//! ```
//! let cells = dht_sim::lab::rust_matrix(dht_sim::lab::NAT_MD);
//! assert_eq!(cells.len(), 25);
//! // Every cell opens (symmetric <-> symmetric through a relay), in milliseconds.
//! assert!(cells.iter().all(|c| c.opened && c.ms.is_some()));
//! ```

use crate::NatKind;

/// The NAT lab's docs/NAT.md, as built into the simulator.
pub const NAT_MD: &str = include_str!("../../../docs/NAT.md");

/// One cell of the lab's matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LabCell {
    /// The row: the announcer's NAT (the peer punched to).
    pub announcer: NatKind,
    /// The column: the looker's NAT (the one that punches).
    pub looker: NatKind,
    /// Every trial opened a path.
    pub opened: bool,
    /// The median time from the punch's start to the echo, when any trial opened.
    pub ms: Option<u64>,
}

/// The cells of the "Rust <-> Rust" table of a docs/NAT.md, row by row; empty when the
/// document has no such table.
pub fn rust_matrix(doc: &str) -> Vec<LabCell> {
    let Some(section) = doc
        .split("## Rust <-> Rust")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
    else {
        return Vec::new();
    };
    let kind = |name: &str| {
        NatKind::ALL
            .into_iter()
            .find(|k| k.name() == name.trim().trim_matches('*'))
    };
    let mut cells = Vec::new();
    for line in section.lines().filter(|l| l.starts_with("| **")) {
        let cols: Vec<&str> = line.split('|').map(str::trim).collect();
        let Some(announcer) = cols.get(1).and_then(|c| kind(c)) else {
            continue;
        };
        for (looker, cell) in NatKind::ALL.into_iter().zip(cols.iter().skip(2)) {
            let (score, time) = cell.split_once(' ').unwrap_or((cell, ""));
            let opened = score
                .split_once('/')
                .is_some_and(|(ok, of)| ok == of && ok != "0");
            let ms = time.trim_end_matches(" ms").parse().ok();
            cells.push(LabCell {
                announcer,
                looker,
                opened,
                ms,
            });
        }
    }
    cells
}
