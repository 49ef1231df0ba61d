//! [`PeersReply`] and [`PeersStream`]: what announce and lookup stream back.

use std::collections::VecDeque;
use std::net::SocketAddrV4;
use std::pin::Pin;
use std::task::{Context, Poll};

use dht_rpc::{NodeAddr, QueryError, QueryOutcome, QueryStream, Reply};
use dht_wire::PeersResponse;
use futures::Stream;

use crate::serve::local_addr;

/// One node's answer: the peers it knows for the key.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct PeersReply {
    /// The node that answered.
    pub node: NodeAddr,
    /// The peers announced on the key (never ourselves).
    pub peers: Vec<SocketAddrV4>,
    /// Peers on our LAN: only when we gave a local address, and only those sharing its
    /// first two octets.
    pub local_peers: Vec<SocketAddrV4>,
}

/// Turns a `peers` reply into a [`PeersReply`]; `None` when it carries no usable peers
/// (the reference drops those too).
pub(crate) fn map_reply(reply: &Reply, local: Option<SocketAddrV4>) -> Option<PeersReply> {
    let res = PeersResponse::decode(reply.value.as_deref()?).ok()?;
    Some(to_reply(reply.node, res, local))
}

pub(crate) fn to_reply(
    node: NodeAddr,
    res: PeersResponse,
    local: Option<SocketAddrV4>,
) -> PeersReply {
    let peers = res.peers.and_then(|p| p.into_valid()).unwrap_or_default();
    let local_peers = match (local, res.local_peers) {
        (Some(l), Some(lps)) => {
            let o = l.ip().octets();
            lps.iter().map(|lp| local_addr([o[0], o[1]], lp)).collect()
        }
        _ => Vec::new(),
    };
    PeersReply {
        node,
        peers,
        local_peers,
    }
}

/// The replies of an announce or lookup as they arrive; dropping it cancels the query.
#[must_use = "a lookup or announce runs only while its stream is kept; dropping it cancels it"]
pub struct PeersStream {
    pub(crate) first: VecDeque<PeersReply>,
    pub(crate) inner: QueryStream<crate::core::Core>,
    pub(crate) local: Option<SocketAddrV4>,
}

impl PeersStream {
    /// How the query went: `None` until the stream has ended.
    pub fn outcome(&self) -> Option<&Result<QueryOutcome, QueryError>> {
        self.inner.outcome()
    }

    /// Waits for the end: every reply, and how the query went (for an announce,
    /// `outcome.commits` is the number of nodes that stored it), or the query's error. As
    /// `dht_rpc::QueryStream::collect_all`.
    pub async fn collect_all(mut self) -> Result<(Vec<PeersReply>, QueryOutcome), QueryError> {
        let mut out: Vec<PeersReply> = self.first.drain(..).collect();
        let local = self.local;
        let (replies, outcome) = self.inner.collect_all().await?;
        out.extend(replies.iter().filter_map(|r| map_reply(r, local)));
        Ok((out, outcome))
    }

    /// Waits for the end: every reply, or the query's error ([`PeersStream::collect_all`]
    /// without the outcome).
    pub async fn replies(self) -> Result<Vec<PeersReply>, QueryError> {
        self.collect_all().await.map(|(replies, _)| replies)
    }
}

impl Stream for PeersStream {
    type Item = PeersReply;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<PeersReply>> {
        if let Some(r) = self.first.pop_front() {
            return Poll::Ready(Some(r));
        }
        loop {
            match Pin::new(&mut self.inner).poll_next(cx) {
                Poll::Ready(Some(reply)) => {
                    if let Some(r) = map_reply(&reply, self.local) {
                        return Poll::Ready(Some(r));
                    }
                }
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}
