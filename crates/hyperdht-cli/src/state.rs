//! `hyperdht --state-dir DIR`: the node's id and a snapshot of its good contacts, kept across
//! restarts. Written every few minutes and at shutdown by atomic replace (a temporary file
//! renamed over the old one); read at start, where the contacts become extra bootstrap nodes
//! (nothing restored is trusted until it answers: the bootstrap walk pings them like any
//! bootstrap node). A missing or unreadable file is logged and ignored.

use std::net::SocketAddrV4;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use dht_rpc::NodeId;
use serde_json::{Value, json};

/// The file in the state directory.
const FILE: &str = "node.json";
/// Contacts kept in a snapshot at most.
pub const MAX_CONTACTS: usize = 128;

/// What a state file holds.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct State {
    /// The node's id.
    pub id: Option<NodeId>,
    /// Contacts that answered us, closest to our id first.
    pub contacts: Vec<SocketAddrV4>,
}

fn path(dir: &Path) -> PathBuf {
    dir.join(FILE)
}

/// Reads the state in `dir`; a missing or corrupt file gives an empty state (logged).
pub fn load(dir: &Path) -> State {
    let file = path(dir);
    let text = match std::fs::read_to_string(&file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            tracing::info!(file = %file.display(), "no saved state: a fresh start");
            return State::default();
        }
        Err(e) => {
            tracing::warn!(file = %file.display(), error = %e, "saved state unreadable, ignored");
            return State::default();
        }
    };
    match parse(&text) {
        Some(s) => {
            tracing::info!(file = %file.display(), contacts = s.contacts.len(), "state restored");
            s
        }
        None => {
            tracing::warn!(file = %file.display(), "saved state corrupt, ignored");
            State::default()
        }
    }
}

fn parse(text: &str) -> Option<State> {
    let v: Value = serde_json::from_str(text).ok()?;
    if v["version"] != 1 {
        return None;
    }
    let id = match v["id"].as_str() {
        Some(h) => Some(h.parse::<NodeId>().ok()?),
        None => None,
    };
    let contacts = v["contacts"]
        .as_array()?
        .iter()
        .filter_map(|c| {
            let ip = c["host"].as_str()?.parse().ok()?;
            let port = u16::try_from(c["port"].as_u64()?).ok()?;
            Some(SocketAddrV4::new(ip, port))
        })
        .take(MAX_CONTACTS)
        .collect();
    Some(State { id, contacts })
}

/// Writes `state` into `dir` (created if missing) by atomic replace.
pub fn save(dir: &Path, state: &State) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let saved_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let v = json!({
        "version": 1,
        "saved_at": saved_at,
        "id": state.id.map(|id| id.to_string()),
        "contacts": state.contacts.iter().take(MAX_CONTACTS)
            .map(crate::cmd::addr_json)
            .collect::<Vec<_>>(),
    });
    let tmp = dir.join(format!("{FILE}.tmp"));
    std::fs::write(&tmp, format!("{v:#}\n"))?;
    std::fs::rename(&tmp, path(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_and_loads_and_ignores_what_it_cannot_read() {
        let dir = std::env::temp_dir().join(format!("hyperdht-state-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(load(&dir), State::default(), "missing: empty");
        let s = State {
            id: Some(NodeId::from_bytes([7; 32])),
            contacts: vec!["127.0.0.1:10000".parse().expect("addr")],
        };
        save(&dir, &s).expect("save");
        assert_eq!(load(&dir), s);
        std::fs::write(path(&dir), "{ not json").expect("write");
        assert_eq!(load(&dir), State::default(), "corrupt: empty");
        std::fs::write(path(&dir), r#"{"version": 2, "contacts": []}"#).expect("write");
        assert_eq!(load(&dir), State::default(), "unknown version: empty");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
