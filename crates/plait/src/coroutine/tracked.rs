//! The futures a coroutine task really runs: the user's, with its in-flight guard and time limit.
//!
//! Each returns an [`Outcome`]: the output, or a boxed error. The box keeps tokio's task
//! cell (a multiple of 128 bytes on x86-64) as small as the user's output allows: a
//! `Result<u64, Error>` is 56 bytes and pushed a tiny task's cell into a second 128 bytes
//! (measured: about 70 ns more per spawn from outside the strand), while errors are rare
//! enough to pay for a box.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use super::in_flight::InFlight;

pin_project_lite::pin_project! {
    /// A coroutine's future with its in-flight guard: the guard rides along, so that the task is
    /// booked as finished whether the future completes or is dropped.
    ///
    /// A plain struct rather than an `async` block, which would keep room for the future
    /// twice (once captured, once being awaited) and double the memory of an idle coroutine.
    pub(crate) struct Tracked<F> {
        #[pin]
        future: F,
        in_flight: InFlight,
    }
}

impl<F> Tracked<F> {
    pub(crate) fn new(future: F, in_flight: InFlight) -> Self {
        Tracked { future, in_flight }
    }
}

impl<F: Future> Future for Tracked<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let output = std::task::ready!(poll_holding(this.in_flight, this.future, cx));
        this.in_flight.complete();
        Poll::Ready(output)
    }
}

/// Polls a coroutine's future as a task that holds a slot of its strand: while it waits
/// for tasks (a handle it awaits is unfinished, or it blocks in a join or on a full
/// strand) its slot is released (see `strand::release_slot_while_waiting`).
fn poll_holding<F: Future>(
    in_flight: &mut InFlight,
    future: Pin<&mut F>,
    cx: &mut Context<'_>,
) -> Poll<F::Output> {
    let holding = in_flight.hold_slot();
    crate::strand::take_awaiting_task();
    let output = future.poll(cx);
    let awaits_task = crate::strand::take_awaiting_task();
    drop(holding);
    in_flight.release_while(output.is_pending() && awaits_task);
    output
}

pub(crate) use crate::task::handle::Outcome;

pin_project_lite::pin_project! {
    /// A future without a time limit, its output in the `Result` every coroutine returns.
    /// (Not `FutureExt::map`, which adds a state word to every task.)
    pub(crate) struct Unlimited<F> {
        #[pin]
        future: F,
    }
}

impl<F> Unlimited<F> {
    pub(crate) fn new(future: F) -> Self {
        Unlimited { future }
    }
}

impl<F: Future> Future for Unlimited<F> {
    type Output = Outcome<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().future.poll(cx).map(Ok)
    }
}

pin_project_lite::pin_project! {
    /// A future with a time limit that starts when it is first polled (when the coroutine
    /// starts), not when it is spawned.
    pub(crate) struct Limited<F> {
        #[pin]
        future: F,
        limit: Duration,
        #[pin]
        deadline: Option<tokio::time::Sleep>,
    }
}

impl<F> Limited<F> {
    pub(crate) fn new(future: F, limit: Duration) -> Self {
        Limited {
            future,
            limit,
            deadline: None,
        }
    }
}

impl<F: Future> Future for Limited<F> {
    type Output = Outcome<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if this.deadline.is_none() {
            this.deadline.set(Some(tokio::time::sleep(*this.limit)));
        }
        if let Poll::Ready(output) = this.future.poll(cx) {
            return Poll::Ready(Ok(output));
        }
        let expired = this
            .deadline
            .as_pin_mut()
            .is_some_and(|deadline| deadline.poll(cx).is_ready());
        if expired {
            Poll::Ready(Err(Box::new(crate::Error::TimedOut)))
        } else {
            Poll::Pending
        }
    }
}

pin_project_lite::pin_project! {
    /// A fallible future with its in-flight guard, for tasks whose future reports their own
    /// cancellation (a process task whose worker was stopped): `Err(Cancelled)` is booked as
    /// a cancellation, anything else as a finish.
    pub(crate) struct TrackedResult<F> {
        #[pin]
        future: F,
        in_flight: InFlight,
    }
}

impl<F> TrackedResult<F> {
    pub(crate) fn new(future: F, in_flight: InFlight) -> Self {
        TrackedResult { future, in_flight }
    }
}

impl<F, T> Future for TrackedResult<F>
where
    F: Future<Output = crate::Result<T>>,
{
    type Output = Outcome<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Outcome<T>> {
        let this = self.project();
        let output = std::task::ready!(poll_holding(this.in_flight, this.future, cx));
        if !matches!(output, Err(crate::Error::Cancelled)) {
            this.in_flight.complete();
        }
        Poll::Ready(output.map_err(Box::new))
    }
}

#[cfg(test)]
mod tests {
    use super::Outcome;

    #[test]
    fn an_outcome_is_as_small_as_its_output_allows() {
        // The output and one word at most (for `()`, the box's niche is the tag).
        assert_eq!(size_of::<Outcome<u64>>(), 2 * size_of::<u64>());
        assert_eq!(size_of::<Outcome<()>>(), size_of::<usize>());
    }
}
