//! [`Call`]: a request submitted to the process pool, and its answer to come.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;

use super::pool::{Control, Payload, Pool, Replier, Reply, Request, Ticket};

/// A request submitted to the pool, and its answer to come.
///
/// Dropping it before the answer came cancels the request: a queued one never runs, and a
/// running one costs its worker. Made before the task's future, and moved into it, so that
/// dropping the future unpolled still cancels.
pub(crate) struct Call {
    pool: Arc<Pool>,
    ticket: Arc<Ticket>,
    answer: Option<oneshot::Receiver<Reply>>,
}

impl Call {
    pub(crate) fn submit(
        pool: &Arc<Pool>,
        task: &'static str,
        payload: Payload,
        timeout: Option<Duration>,
    ) -> Call {
        let (sender, answer) = oneshot::channel();
        let ticket = Arc::new(Ticket::default());
        let replier = Replier::Channel {
            sender,
            ticket: Arc::clone(&ticket),
        };
        pool.submit(Request::new(
            pool.next_id(),
            pool,
            task,
            payload,
            timeout,
            replier,
        ));
        Call {
            pool: Arc::clone(pool),
            ticket,
            answer: Some(answer),
        }
    }

    /// The answer; `None` if the request was dropped unanswered (the pool stopped).
    pub(crate) async fn reply(mut self) -> Option<Reply> {
        // Awaited in place, so that a drop during the wait still finds it and cancels.
        let answer = self.answer.as_mut()?.await.ok();
        // Answered (or dropped by the pool): nothing left to cancel.
        self.answer = None;
        answer
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        if self.answer.is_some()
            && let Some(slot) = self.ticket.cancel()
        {
            let _ = self.pool.controls[slot].send(Control::Cancel);
        }
    }
}
