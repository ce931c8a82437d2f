//! A lazy parallel map over an iterator: bounded in flight, batched for tiny items.
//!
//! Items are sent to the pool in chunks whose size adapts to the measured cost of an item:
//! a chunk aims at about [`CHUNK_TARGET`] of work, so a million tiny items cost a few
//! hundred spawns while a handful of slow ones still run one per thread.

use std::collections::VecDeque;
use std::future::Future;
use std::iter;
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;

use crate::task::wait;
use crate::{Error, Handle, Result, Runtime};

/// How much work one chunk aims to hold: large enough that a spawn and a join (about a
/// microsecond with the wake-up) stay near 1 % of it, small enough to spread work evenly.
const CHUNK_TARGET: Duration = Duration::from_micros(100);

/// The largest chunk, in items, whatever the items cost.
const MAX_CHUNK: usize = 1 << 14;

/// Chunks in flight per pool thread: enough to keep every thread busy while the consumer
/// works through finished chunks.
const CHUNKS_PER_THREAD: usize = 4;

impl Runtime {
    /// Applies `f` to every item on the thread strand and yields the results **in input
    /// order**, as they become available.
    ///
    /// The map is lazy: nothing runs until the iterator is polled, and at most
    /// [`max_in_flight`](Map::max_in_flight) items (by default the runtime's
    /// [queue bound](crate::Builder::queue_bound)) are taken from `items` and not yet handed
    /// out, so an endless input runs in bounded memory. Tiny items are batched
    /// automatically. Dropping the map cancels the work not yet done.
    ///
    /// A panic in `f` becomes an `Err` for that item only; the other items go on.
    ///
    /// # Examples
    ///
    /// ```
    /// let rt = plait::Runtime::new()?;
    /// let squares: Vec<u64> = rt.map(0..1_000_000u64, |x| x * x).collect::<Result<_, _>>()?;
    /// assert_eq!(squares[999], 998_001);
    ///
    /// // Lazy: take five results from an endless input.
    /// let firsts: Vec<u64> = rt.map(0u64.., |x| x + 1).take(5).map(Result::unwrap).collect();
    /// assert_eq!(firsts, [1, 2, 3, 4, 5]);
    /// # Ok::<(), plait::Error>(())
    /// ```
    pub fn map<I, F, T>(&self, items: I, f: F) -> Map<I::IntoIter, F, T>
    where
        I: IntoIterator,
        I::Item: Send + 'static,
        F: Fn(I::Item) -> T + Send + Sync + 'static,
        T: Send + 'static,
    {
        Map {
            feeder: Feeder::new(self, items.into_iter(), f),
            window: VecDeque::new(),
            ready: Vec::new().into_iter(),
        }
    }

    /// Like [`map`](Runtime::map), but yields results **as they complete**: one slow item
    /// does not hold back the others. Each result comes with its item's index in the input.
    ///
    /// # Examples
    ///
    /// ```
    /// let rt = plait::Runtime::new()?;
    /// let mut results: Vec<(usize, u32)> = rt
    ///     .map_unordered(vec![30u32, 10, 20], |ms| { std::thread::sleep(std::time::Duration::from_millis(ms.into())); ms })
    ///     .map(|(i, r)| (i, r.unwrap()))
    ///     .collect();
    /// results.sort();
    /// assert_eq!(results, [(0, 30), (1, 10), (2, 20)]);
    /// # Ok::<(), plait::Error>(())
    /// ```
    pub fn map_unordered<I, F, T>(&self, items: I, f: F) -> MapUnordered<I::IntoIter, F, T>
    where
        I: IntoIterator,
        I::Item: Send + 'static,
        F: Fn(I::Item) -> T + Send + Sync + 'static,
        T: Send + 'static,
    {
        MapUnordered {
            feeder: Feeder::new(self, items.into_iter(), f),
            running: FuturesUnordered::new(),
            ready: Vec::new().into_iter(),
            next_index: 0,
        }
    }
}

/// One chunk's results, and how long it took.
struct Chunk<T> {
    results: Vec<Result<T>>,
    elapsed: Duration,
}

/// A chunk on its way: where it starts in the input, and how many items it holds.
struct Pending<T> {
    handle: Handle<Chunk<T>>,
    start: usize,
    len: usize,
}

/// Cuts the input into chunks and spawns them, within the in-flight bounds.
struct Feeder<I, F> {
    rt: Runtime,
    source: I,
    exhausted: bool,
    f: Arc<F>,
    stop: Arc<AtomicBool>,
    taken: usize,
    in_flight: usize,
    max_in_flight: usize,
    chunks: usize,
    max_chunks: usize,
    chunk_size: usize,
}

impl<I, F, T> Feeder<I, F>
where
    I: Iterator,
    I::Item: Send + 'static,
    F: Fn(I::Item) -> T + Send + Sync + 'static,
    T: Send + 'static,
{
    fn new(rt: &Runtime, source: I, f: F) -> Self {
        Feeder {
            rt: rt.clone(),
            source,
            exhausted: false,
            f: Arc::new(f),
            stop: Arc::new(AtomicBool::new(false)),
            taken: 0,
            in_flight: 0,
            max_in_flight: rt.shared.threads.state.admission.bound(),
            chunks: 0,
            max_chunks: CHUNKS_PER_THREAD * rt.threads(),
            chunk_size: 1,
        }
    }

    /// Spawns the next chunk if the bounds allow and the input has more. `held` is how many
    /// finished results the consumer holds and has not yielded yet: they count as in flight.
    fn next_chunk(&mut self, held: usize) -> Option<Pending<T>> {
        if self.exhausted || self.chunks >= self.max_chunks {
            return None;
        }
        let room = self.max_in_flight.saturating_sub(self.in_flight + held);
        let size = self.chunk_size.min(room);
        if size == 0 {
            return None;
        }
        let items: Vec<I::Item> = self.source.by_ref().take(size).collect();
        if items.len() < size {
            self.exhausted = true;
        }
        if items.is_empty() {
            return None;
        }
        let len = items.len();
        let start = self.taken;
        self.taken += len;
        self.in_flight += len;
        self.chunks += 1;
        let (f, stop) = (Arc::clone(&self.f), Arc::clone(&self.stop));
        let handle = self.rt.spawn(move || run_chunk(&*f, items, &stop));
        Some(Pending { handle, start, len })
    }

    /// Books a chunk handed to the consumer and learns from its timing.
    fn chunk_done(&mut self, len: usize, elapsed: Option<Duration>) {
        self.in_flight -= len;
        self.chunks -= 1;
        if let Some(elapsed) = elapsed {
            self.chunk_size = next_chunk_size(self.chunk_size, len, elapsed);
        }
    }
}

/// The chunk size that should take about [`CHUNK_TARGET`], given that `len` items took
/// `elapsed`; it moves by at most a factor of two at a time.
fn next_chunk_size(current: usize, len: usize, elapsed: Duration) -> usize {
    let per_item = elapsed.as_nanos().max(1) / len.max(1) as u128;
    let ideal = (CHUNK_TARGET.as_nanos() / per_item.max(1)).min(MAX_CHUNK as u128) as usize;
    ideal.clamp((current / 2).max(1), (current * 2).min(MAX_CHUNK))
}

fn run_chunk<X, T, F>(f: &F, items: Vec<X>, stop: &AtomicBool) -> Chunk<T>
where
    F: Fn(X) -> T,
{
    let start = Instant::now();
    let mut results = Vec::with_capacity(items.len());
    let mut items = items.into_iter();
    // One unwinding guard per chunk, re-entered after a panic: the panicking item gets its
    // error and the rest of the chunk goes on.
    loop {
        let finished = panic::catch_unwind(AssertUnwindSafe(|| {
            for item in items.by_ref() {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                results.push(Ok(f(item)));
            }
        }));
        match finished {
            Ok(()) => break,
            Err(payload) => results.push(Err(Error::from_panic(payload))),
        }
    }
    Chunk {
        results,
        elapsed: start.elapsed(),
    }
}

/// Results of a chunk, or the one error that stopped the whole chunk (repeated per item).
fn unpack<T>(
    outcome: Result<Chunk<T>>,
    len: usize,
) -> (std::vec::IntoIter<Result<T>>, Option<Duration>) {
    match outcome {
        Ok(chunk) => (chunk.results.into_iter(), Some(chunk.elapsed)),
        Err(error) => (
            iter::repeat_n(error, len)
                .map(Err)
                .collect::<Vec<_>>()
                .into_iter(),
            None,
        ),
    }
}

/// The iterator returned by [`Runtime::map`].
pub struct Map<I, F, T>
where
    I: Iterator,
{
    feeder: Feeder<I, F>,
    window: VecDeque<Pending<T>>,
    ready: std::vec::IntoIter<Result<T>>,
}

impl<I, F, T> Map<I, F, T>
where
    I: Iterator,
    I::Item: Send + 'static,
    F: Fn(I::Item) -> T + Send + Sync + 'static,
    T: Send + 'static,
{
    /// At most `n` items (at least one) taken from the input and not yet yielded.
    #[must_use]
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.feeder.max_in_flight = n.max(1);
        self
    }

    fn refill(&mut self) {
        while let Some(pending) = self.feeder.next_chunk(self.ready.len()) {
            self.window.push_back(pending);
        }
    }
}

impl<I, F, T> Iterator for Map<I, F, T>
where
    I: Iterator,
    I::Item: Send + 'static,
    F: Fn(I::Item) -> T + Send + Sync + 'static,
    T: Send + 'static,
{
    type Item = Result<T>;

    fn next(&mut self) -> Option<Result<T>> {
        loop {
            if let Some(result) = self.ready.next() {
                return Some(result);
            }
            self.refill();
            let head = self.window.pop_front()?;
            let (ready, elapsed) = unpack(head.handle.join(), head.len);
            self.ready = ready;
            self.feeder.chunk_done(head.len, elapsed);
            // Keep the pool busy while the caller works through this chunk.
            self.refill();
        }
    }
}

impl<I: Iterator, F, T> Drop for Map<I, F, T> {
    fn drop(&mut self) {
        self.feeder.stop.store(true, Ordering::Relaxed);
        for pending in &self.window {
            pending.handle.cancel();
        }
    }
}

/// A chunk in flight, as a future of its results for [`FuturesUnordered`].
struct Running<T>(Option<Pending<T>>);

impl<T> Future for Running<T> {
    type Output = (Result<Chunk<T>>, usize, usize);

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let pending = this.0.as_mut().expect("polled after completion");
        let outcome = std::task::ready!(Pin::new(&mut pending.handle).poll(cx));
        let Pending { start, len, .. } = this.0.take().expect("checked above");
        Poll::Ready((outcome, start, len))
    }
}

/// The iterator returned by [`Runtime::map_unordered`]: `(index, result)` pairs in
/// completion order.
pub struct MapUnordered<I, F, T>
where
    I: Iterator,
{
    feeder: Feeder<I, F>,
    running: FuturesUnordered<Running<T>>,
    /// Results not yet yielded, and the input index of the first.
    ready: std::vec::IntoIter<Result<T>>,
    next_index: usize,
}

impl<I, F, T> MapUnordered<I, F, T>
where
    I: Iterator,
    I::Item: Send + 'static,
    F: Fn(I::Item) -> T + Send + Sync + 'static,
    T: Send + 'static,
{
    /// At most `n` items (at least one) taken from the input and not yet yielded.
    #[must_use]
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.feeder.max_in_flight = n.max(1);
        self
    }
}

impl<I, F, T> Iterator for MapUnordered<I, F, T>
where
    I: Iterator,
    I::Item: Send + 'static,
    F: Fn(I::Item) -> T + Send + Sync + 'static,
    T: Send + 'static,
{
    type Item = (usize, Result<T>);

    fn next(&mut self) -> Option<(usize, Result<T>)> {
        loop {
            if let Some(result) = self.ready.next() {
                self.next_index += 1;
                return Some((self.next_index - 1, result));
            }
            while let Some(pending) = self.feeder.next_chunk(0) {
                self.running.push(Running(Some(pending)));
            }
            let running = &mut self.running;
            let (outcome, start, len) =
                wait::blocking_region(|| wait::block_on_tasks(running.next(), None)).flatten()?;
            let (ready, elapsed) = unpack(outcome, len);
            self.ready = ready;
            self.next_index = start;
            self.feeder.chunk_done(len, elapsed);
        }
    }
}

impl<I: Iterator, F, T> Drop for MapUnordered<I, F, T> {
    fn drop(&mut self) {
        self.feeder.stop.store(true, Ordering::Relaxed);
        for running in self.running.iter() {
            if let Some(pending) = &running.0 {
                pending.handle.cancel();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_size_grows_for_cheap_items_and_shrinks_for_dear_ones() {
        assert_eq!(next_chunk_size(1, 1, Duration::from_nanos(10)), 2);
        assert_eq!(next_chunk_size(64, 64, Duration::from_nanos(640)), 128);
        assert_eq!(next_chunk_size(64, 64, Duration::from_millis(64)), 32);
        assert_eq!(next_chunk_size(1, 1, Duration::from_secs(1)), 1);
        assert_eq!(
            next_chunk_size(MAX_CHUNK, MAX_CHUNK, Duration::from_nanos(1)),
            MAX_CHUNK
        );
    }

    #[test]
    fn a_panicking_item_fails_alone() {
        let stop = AtomicBool::new(false);
        let chunk = run_chunk(
            &|x: u32| {
                assert!(x != 2, "two is poison");
                x
            },
            vec![1, 2, 3],
            &stop,
        );
        let results: Vec<_> = chunk
            .results
            .iter()
            .map(|r| r.as_ref().ok().copied())
            .collect();
        assert_eq!(results, [Some(1), None, Some(3)]);
    }
}
