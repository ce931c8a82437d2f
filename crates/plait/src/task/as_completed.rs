//! Results of many handles in the order their tasks finish (Python's `as_completed`).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;

use super::wait;
use crate::{Handle, Result};

/// Yields `(index, result)` for each handle, in the order the tasks finish; `index` is the
/// handle's position in `handles`. Handles of any strand can be mixed.
///
/// The iterator blocks while it waits (safe anywhere, see [`Handle::join`]). In async code,
/// put the handles in a `futures::stream::FuturesUnordered` instead: a [`Handle`] is a
/// future.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// let rt = plait::Runtime::new()?;
/// let slow = rt.spawn(|| { std::thread::sleep(Duration::from_millis(50)); "slow" });
/// let fast = rt.spawn_async(async { "fast" });
/// let order: Vec<_> = plait::as_completed([slow, fast]).map(|(i, r)| (i, r.unwrap())).collect();
/// assert_eq!(order, [(1, "fast"), (0, "slow")]);
/// # Ok::<(), plait::Error>(())
/// ```
pub fn as_completed<T, I>(handles: I) -> AsCompleted<T>
where
    I: IntoIterator<Item = Handle<T>>,
{
    AsCompleted {
        pending: handles
            .into_iter()
            .enumerate()
            .map(|(index, handle)| Indexed(index, handle))
            .collect(),
    }
}

/// The iterator returned by [`as_completed`]. Dropping it detaches the handles not yet
/// yielded.
pub struct AsCompleted<T> {
    pending: FuturesUnordered<Indexed<T>>,
}

impl<T> AsCompleted<T> {
    /// How many results are still to come.
    #[must_use]
    pub fn remaining(&self) -> usize {
        self.pending.len()
    }
}

impl<T> Iterator for AsCompleted<T> {
    type Item = (usize, Result<T>);

    fn next(&mut self) -> Option<Self::Item> {
        let pending = &mut self.pending;
        wait::blocking_region(|| wait::block_on_tasks(pending.next(), None)).flatten()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.pending.len(), Some(self.pending.len()))
    }
}

/// A handle that remembers its position.
pub(crate) struct Indexed<T>(pub(crate) usize, pub(crate) Handle<T>);

impl<T> Future for Indexed<T> {
    type Output = (usize, Result<T>);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let result = std::task::ready!(Pin::new(&mut self.1).poll(cx));
        Poll::Ready((self.0, result))
    }
}
