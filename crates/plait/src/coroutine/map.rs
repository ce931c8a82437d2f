//! A future per item with a concurrency limit: [`Runtime::map_async`](crate::Runtime::map_async).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::stream::{FuturesOrdered, FuturesUnordered, Stream, StreamExt};

use super::CoroutineStrand;
use crate::task::as_completed::Indexed;
use crate::task::wait;
use crate::{Handle, Result};

/// An ordered map of a coroutine per item on `strand`; see `Runtime::map_async`.
pub(crate) fn map_async<I, F, Fut>(
    strand: &Arc<CoroutineStrand>,
    items: I,
    limit: usize,
    f: F,
) -> MapAsync<I::IntoIter, F, Fut::Output>
where
    I: IntoIterator,
    F: FnMut(I::Item) -> Fut,
    Fut: Future + Send + 'static,
    Fut::Output: Send + 'static,
{
    MapAsync {
        feed: Feed::new(strand, items.into_iter(), limit, f),
        running: FuturesOrdered::new(),
    }
}

/// [`map_async`] yielding outputs as they complete; see `Runtime::map_async_unordered`.
pub(crate) fn map_async_unordered<I, F, Fut>(
    strand: &Arc<CoroutineStrand>,
    items: I,
    limit: usize,
    f: F,
) -> MapAsyncUnordered<I::IntoIter, F, Fut::Output>
where
    I: IntoIterator,
    F: FnMut(I::Item) -> Fut,
    Fut: Future + Send + 'static,
    Fut::Output: Send + 'static,
{
    MapAsyncUnordered {
        feed: Feed::new(strand, items.into_iter(), limit, f),
        running: FuturesUnordered::new(),
    }
}

/// Takes items from the input and spawns their coroutines.
struct Feed<I, F> {
    strand: Arc<CoroutineStrand>,
    source: I,
    exhausted: bool,
    next_index: usize,
    limit: usize,
    f: F,
}

impl<I, F, Fut> Feed<I, F>
where
    I: Iterator,
    F: FnMut(I::Item) -> Fut,
    Fut: Future + Send + 'static,
    Fut::Output: Send + 'static,
{
    fn new(strand: &Arc<CoroutineStrand>, source: I, limit: usize, f: F) -> Self {
        Feed {
            strand: Arc::clone(strand),
            source,
            exhausted: false,
            next_index: 0,
            limit: limit.max(1),
            f,
        }
    }

    /// Spawns coroutines while fewer than `limit` run; each goes to `push` with its index.
    fn refill(&mut self, running: usize, mut push: impl FnMut(usize, Handle<Fut::Output>)) {
        // `f` may build tokio timers or sockets right away (`|_| tokio::time::sleep(..)`),
        // which needs the runtime's context even on a caller's thread.
        let _context = self.strand.handle.enter();
        for _ in running..self.limit {
            if self.exhausted {
                return;
            }
            match self.source.next() {
                Some(item) => {
                    let handle = self.strand.spawn((self.f)(item), None);
                    push(self.next_index, handle);
                    self.next_index += 1;
                }
                None => self.exhausted = true,
            }
        }
    }
}

/// The stream returned by [`Runtime::map_async`](crate::Runtime::map_async).
pub struct MapAsync<I, F, T> {
    feed: Feed<I, F>,
    running: FuturesOrdered<Handle<T>>,
}

// Nothing here is ever pinned in place: the input and the closure are only called through
// `&mut`, and handles are `Unpin`.
impl<I, F, T> Unpin for MapAsync<I, F, T> {}

impl<I, F, Fut> Stream for MapAsync<I, F, Fut::Output>
where
    I: Iterator,
    F: FnMut(I::Item) -> Fut,
    Fut: Future + Send + 'static,
    Fut::Output: Send + 'static,
{
    type Item = Result<Fut::Output>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let running = &mut this.running;
        this.feed
            .refill(running.len(), |_, handle| running.push_back(handle));
        let next = std::task::ready!(this.running.poll_next_unpin(cx));
        Poll::Ready(next)
    }
}

/// The stream returned by [`Runtime::map_async_unordered`](crate::Runtime::map_async_unordered).
pub struct MapAsyncUnordered<I, F, T> {
    feed: Feed<I, F>,
    running: FuturesUnordered<Indexed<T>>,
}

// As for `MapAsync`.
impl<I, F, T> Unpin for MapAsyncUnordered<I, F, T> {}

impl<I, F, Fut> Stream for MapAsyncUnordered<I, F, Fut::Output>
where
    I: Iterator,
    F: FnMut(I::Item) -> Fut,
    Fut: Future + Send + 'static,
    Fut::Output: Send + 'static,
{
    type Item = (usize, Result<Fut::Output>);

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let running = &mut this.running;
        this.feed.refill(running.len(), |index, handle| {
            running.push(Indexed(index, handle))
        });
        let next = std::task::ready!(this.running.poll_next_unpin(cx));
        Poll::Ready(next)
    }
}

impl<I, F, Fut> IntoIterator for MapAsync<I, F, Fut::Output>
where
    I: Iterator,
    F: FnMut(I::Item) -> Fut,
    Fut: Future + Send + 'static,
    Fut::Output: Send + 'static,
{
    type Item = Result<Fut::Output>;
    type IntoIter = BlockingIter<Self>;

    fn into_iter(self) -> BlockingIter<Self> {
        BlockingIter(self)
    }
}

impl<I, F, Fut> IntoIterator for MapAsyncUnordered<I, F, Fut::Output>
where
    I: Iterator,
    F: FnMut(I::Item) -> Fut,
    Fut: Future + Send + 'static,
    Fut::Output: Send + 'static,
{
    type Item = (usize, Result<Fut::Output>);
    type IntoIter = BlockingIter<Self>;

    fn into_iter(self) -> BlockingIter<Self> {
        BlockingIter(self)
    }
}

/// A stream's items as a blocking iterator, for synchronous callers; each `next` waits for
/// the next item (see [`Runtime::block_on`](crate::Runtime::block_on) on where waiting is safe).
pub struct BlockingIter<S>(S);

impl<S: Stream + Unpin> Iterator for BlockingIter<S> {
    type Item = S::Item;

    fn next(&mut self) -> Option<S::Item> {
        let stream = &mut self.0;
        wait::blocking_region(|| wait::block_on_tasks(stream.next(), None)).flatten()
    }
}
