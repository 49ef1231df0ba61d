//! Walks between real nodes, and what they should find: the ids nearest a target among the
//! nodes a test started, or nothing when the only node known is silent.

use std::net::SocketAddrV4;

use dht_rpc::{Node, NodeId, QueryError};

/// Walks `_find_node` for `target` from `from`: the ids the walk found, and the 20 of
/// `ids` (less `from`'s own) nearest `target`, nearest first.
pub async fn walk_closest(
    from: &Node,
    ids: &[NodeId],
    target: NodeId,
) -> (Vec<NodeId>, Vec<NodeId>) {
    let (_, outcome) = from
        .query("_find_node", target, None)
        .collect_all()
        .await
        .expect("query");
    let got = outcome.closest.iter().map(|n| n.id).collect();
    let own = from.id();
    let mut want: Vec<NodeId> = ids.iter().copied().filter(|id| *id != own).collect();
    want.sort_by_key(|id| id.distance(&target));
    want.truncate(20);
    (got, want)
}

/// `a` knows only `silent`, which never answers: a ping to it times out, and so does a
/// walk's one request, so the walk fails with nobody having answered. Two timeouts, and a
/// third when the node's own bootstrap walk to `silent` timed out by then (it started at
/// bind; whether its timer fired first is the scheduler's choice).
pub async fn silent_walk_fails(a: &Node, silent: SocketAddrV4) {
    assert!(a.ping(silent).await.is_err(), "the ping timed out");
    let r = a
        .query("_find_node", NodeId::from_bytes([1; 32]), None)
        .collect_all()
        .await;
    assert_eq!(r.err(), Some(QueryError::NoNodesResponded));
    let timeouts = a.stats().timeouts;
    assert!((2..=3).contains(&timeouts), "{timeouts} timeouts");
}
