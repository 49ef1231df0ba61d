//! [`QueryStream`]: the replies of a running query, as a `Stream`.

use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};

use futures::Stream;
use tokio::sync::mpsc;

use super::Inner;
use crate::events::{QueryError, QueryId, QueryOutcome, Reply};
use crate::machine::Machine;

/// What the driver forwards to a query's stream.
#[derive(Debug)]
pub(crate) enum QueryMsg {
    Reply(Reply),
    Done(Result<QueryOutcome, QueryError>),
}

/// The replies of a query or update, as they arrive. Dropping the stream cancels the query.
///
/// After the stream ends, [`QueryStream::outcome`] tells how the query went; or use
/// [`QueryStream::collect_all`] to wait for everything at once.
#[must_use = "a query runs only while its stream is kept; dropping it cancels it"]
pub struct QueryStream<M: Machine> {
    pub(crate) id: QueryId,
    pub(crate) rx: mpsc::UnboundedReceiver<QueryMsg>,
    pub(crate) inner: Weak<Inner<M>>,
    pub(crate) outcome: Option<Result<QueryOutcome, QueryError>>,
}

impl<M: Machine> QueryStream<M> {
    /// How the query went: `None` until the stream has ended.
    pub fn outcome(&self) -> Option<&Result<QueryOutcome, QueryError>> {
        self.outcome.as_ref()
    }

    /// Waits for the end of the query: every reply, and the outcome.
    pub async fn collect_all(mut self) -> Result<(Vec<Reply>, QueryOutcome), QueryError> {
        let mut replies = Vec::new();
        while let Some(msg) = self.rx.recv().await {
            match msg {
                QueryMsg::Reply(r) => replies.push(r),
                QueryMsg::Done(result) => {
                    self.outcome = Some(result.clone());
                    return result.map(|o| (replies, o));
                }
            }
        }
        Err(QueryError::Cancelled)
    }
}

impl<M: Machine> Stream for QueryStream<M> {
    type Item = Reply;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Reply>> {
        if self.outcome.is_some() {
            return Poll::Ready(None);
        }
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(QueryMsg::Reply(r))) => Poll::Ready(Some(r)),
            Poll::Ready(Some(QueryMsg::Done(result))) => {
                self.outcome = Some(result);
                Poll::Ready(None)
            }
            Poll::Ready(None) => {
                self.outcome = Some(Err(QueryError::Cancelled));
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<M: Machine> Drop for QueryStream<M> {
    fn drop(&mut self) {
        if self.outcome.is_some() {
            return;
        }
        if let Some(inner) = self.inner.upgrade() {
            cancel(&inner, self.id);
        }
    }
}

fn cancel<M: Machine>(inner: &Arc<Inner<M>>, id: QueryId) {
    inner.with_shared(|s| {
        s.queries.remove(&id);
        s.core.rpc_mut().cancel_query(id);
    });
}
