//! A lazy parallel map over an iterator: bounded in flight, batched for tiny items.
//!
//! Items are sent to the pool in chunks whose size adapts to the measured cost of an item:
//! a chunk aims at about [`CHUNK_TARGET`] of work, so a million tiny items cost a few
//! hundred spawns while a handful of slow ones still run one per thread.

use std::collections::VecDeque;
use std::future::Future;
use std::mem;
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crossbeam_utils::Backoff;
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};

use super::{ThreadStrand, collect};
use crate::task::wait;
use crate::{Error, Handle, Result};

/// How much work one chunk aims to hold: large enough that a spawn and a join (about a
/// microsecond with the wake-up) stay near 1 % of it, small enough to spread work evenly.
const CHUNK_TARGET: Duration = Duration::from_micros(100);

/// The largest chunk, in items, whatever the items cost. A chunk of 4,096 eight-byte items
/// is 32 KiB, well under the size where the system allocator maps fresh pages (and takes
/// page faults) for every chunk.
const MAX_CHUNK: usize = 1 << 12;

/// Chunks in flight per pool thread: enough to keep every thread busy while the consumer
/// works through finished chunks.
const CHUNKS_PER_THREAD: usize = 4;

/// A lazy, ordered parallel map of `f` over `items` on `strand`; see `Runtime::map`.
pub(crate) fn map<I, F, T>(strand: &Arc<ThreadStrand>, items: I, f: F) -> Map<I::IntoIter, F, T>
where
    I: IntoIterator,
    I::Item: Send + 'static,
    F: Fn(I::Item) -> T + Send + Sync + 'static,
    T: Send + 'static,
{
    Map {
        feeder: Feeder::new(strand, items.into_iter(), f),
        window: VecDeque::new(),
        ready: Results::empty(),
    }
}

/// [`map`] yielding results as they complete; see `Runtime::map_unordered`.
pub(crate) fn map_unordered<I, F, T>(
    strand: &Arc<ThreadStrand>,
    items: I,
    f: F,
) -> MapUnordered<I::IntoIter, F, T>
where
    I: IntoIterator,
    I::Item: Send + 'static,
    F: Fn(I::Item) -> T + Send + Sync + 'static,
    T: Send + 'static,
{
    MapUnordered {
        feeder: Feeder::new(strand, items.into_iter(), f),
        running: FuturesUnordered::new(),
        ready: Results::empty(),
        next_index: 0,
    }
}

/// One chunk's results, and how long it took. Values and errors are kept apart, so a chunk
/// of `u64`s costs eight bytes an item rather than a whole `Result` each.
struct Chunk<T> {
    values: Vec<T>,
    /// Items that panicked, by position in the chunk, in order.
    errors: Vec<(usize, Error)>,
    elapsed: Duration,
}

/// A chunk's results in order.
enum Results<T> {
    /// Every item succeeded: the common case, and the fast one.
    Values(std::vec::IntoIter<T>),
    /// Some items panicked: the values, with the errors at their places.
    Mixed {
        values: std::vec::IntoIter<T>,
        errors: std::iter::Peekable<std::vec::IntoIter<(usize, Error)>>,
        position: usize,
        len: usize,
    },
    /// The chunk never ran: one error stands for each of its items.
    Failed { error: Error, left: usize },
}

impl<T> Results<T> {
    fn empty() -> Self {
        Results::Values(Vec::new().into_iter())
    }

    fn of(chunk: Chunk<T>) -> Self {
        if chunk.errors.is_empty() {
            return Results::Values(chunk.values.into_iter());
        }
        Results::Mixed {
            len: chunk.values.len() + chunk.errors.len(),
            values: chunk.values.into_iter(),
            errors: chunk.errors.into_iter().peekable(),
            position: 0,
        }
    }
}

impl<T> Iterator for Results<T> {
    type Item = Result<T>;

    #[inline]
    fn next(&mut self) -> Option<Result<T>> {
        match self {
            Results::Values(values) => values.next().map(Ok),
            Results::Mixed {
                values,
                errors,
                position,
                len,
            } => {
                if *position == *len {
                    return None;
                }
                let at = *position;
                *position += 1;
                if errors.peek().is_some_and(|(p, _)| *p == at) {
                    return errors.next().map(|(_, error)| Err(error));
                }
                values.next().map(Ok)
            }
            Results::Failed { error, left } => {
                if *left == 0 {
                    return None;
                }
                *left -= 1;
                Some(Err(error.clone()))
            }
        }
    }

    fn fold<B, G>(self, init: B, mut g: G) -> B
    where
        G: FnMut(B, Result<T>) -> B,
    {
        match self {
            Results::Values(values) => values.fold(init, |acc, value| g(acc, Ok(value))),
            other => {
                let mut acc = init;
                for result in other {
                    acc = g(acc, result);
                }
                acc
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = match self {
            Results::Values(values) => values.len(),
            Results::Mixed { position, len, .. } => len - position,
            Results::Failed { left, .. } => *left,
        };
        (left, Some(left))
    }
}

impl<T> ExactSizeIterator for Results<T> {}

/// A chunk on its way: where it starts in the input, and how many items it holds.
struct Pending<T> {
    handle: Handle<Chunk<T>>,
    start: usize,
    len: usize,
}

/// Cuts the input into chunks and spawns them, within the in-flight bounds.
struct Feeder<I, F> {
    strand: Arc<ThreadStrand>,
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
    fn new(strand: &Arc<ThreadStrand>, source: I, f: F) -> Self {
        Feeder {
            strand: Arc::clone(strand),
            source,
            exhausted: false,
            f: Arc::new(f),
            stop: Arc::new(AtomicBool::new(false)),
            taken: 0,
            in_flight: 0,
            max_in_flight: strand.state.admission.bound(),
            chunks: 0,
            max_chunks: CHUNKS_PER_THREAD * strand.threads(),
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
        let handle = self
            .strand
            .spawn(move || run_chunk(&*f, items, &stop), None);
        Some(Pending { handle, start, len })
    }

    /// Every item yields one result: those held, those in flight, and those still in the
    /// input.
    fn size_hint(&self, held: usize) -> (usize, Option<usize>) {
        let (low, high) = if self.exhausted {
            (0, Some(0))
        } else {
            self.source.size_hint()
        };
        let known = held + self.in_flight;
        (
            low.saturating_add(known),
            high.and_then(|h| h.checked_add(known)),
        )
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
    let mut values = Vec::with_capacity(items.len());
    let mut errors = Vec::new();
    let mut items = items.into_iter();
    // One unwinding guard per chunk, re-entered after a panic: the panicking item gets its
    // error and the rest of the chunk goes on.
    loop {
        let finished = panic::catch_unwind(AssertUnwindSafe(|| {
            for item in items.by_ref() {
                // Abandoned by the consumer: stop early (checked now and then, not per item).
                if values.len() % 64 == 0 && stop.load(Ordering::Relaxed) {
                    return;
                }
                values.push(f(item));
            }
        }));
        match finished {
            Ok(()) => break,
            Err(payload) => errors.push((values.len() + errors.len(), Error::from_panic(payload))),
        }
    }
    Chunk {
        values,
        errors,
        elapsed: start.elapsed(),
    }
}

/// Results of a chunk, or the one error that stopped the whole chunk (repeated per item).
fn unpack<T>(outcome: Result<Chunk<T>>, len: usize) -> (Results<T>, Option<Duration>) {
    match outcome {
        Ok(chunk) => {
            let elapsed = chunk.elapsed;
            (Results::of(chunk), Some(elapsed))
        }
        Err(error) => (Results::Failed { error, left: len }, None),
    }
}

/// The iterator returned by [`Runtime::map`](crate::Runtime::map).
pub struct Map<I, F, T>
where
    I: Iterator,
{
    feeder: Feeder<I, F>,
    window: VecDeque<Pending<T>>,
    ready: Results<T>,
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

    /// Runs the rest of the map at once and returns every result in input order: the
    /// parallel counterpart of `.collect::<Result<Vec<T>>>()`, and much faster than it over
    /// many tiny items.
    ///
    /// Iterating hands each result to the one thread that iterates, which then stores it;
    /// here the threads that compute the results write them straight into their places in
    /// the returned `Vec`, as rayon's indexed `collect` does, and the calling thread works
    /// too. Where the input knows its length (a range, a slice, a `Vec`, any
    /// [`ExactSizeIterator`]) the `Vec` is allocated once; otherwise it grows round by
    /// round. The whole output is held at once, so the in-flight bound
    /// ([`max_in_flight`](Map::max_in_flight)) does not apply. Results already on their
    /// way when this is called are kept, in order.
    ///
    /// # Errors
    ///
    /// [`Error::Panicked`] for the first item, in input order among those that ran, whose
    /// closure panicked; after a failure no new items start, and the results computed are
    /// dropped.
    ///
    /// # Panics
    ///
    /// If the input iterator itself panics, the panic continues here.
    ///
    /// # Examples
    ///
    /// ```
    /// let rt = plait::Runtime::new()?;
    /// let squares: Vec<u64> = rt.map(0..1_000_000u64, |x| x * x).collect_vec()?;
    /// assert_eq!(squares[999], 998_001);
    ///
    /// let err = rt.map(0..10u32, |x| 10 / (x - 5)).collect_vec().unwrap_err();
    /// assert!(err.is_panic());
    /// # Ok::<(), plait::Error>(())
    /// ```
    pub fn collect_vec(mut self) -> Result<Vec<T>>
    where
        I: Send,
    {
        let mut out = Vec::new();
        // What is already on its way, in order, before the rest.
        loop {
            for result in self.ready.by_ref() {
                out.push(result?);
            }
            let Some(head) = self.window.pop_front() else {
                break;
            };
            let (ready, elapsed) = unpack(head.handle.join(), head.len);
            self.ready = ready;
            self.feeder.chunk_done(head.len, elapsed);
        }
        if self.feeder.exhausted {
            return Ok(out);
        }
        let feeder = &mut self.feeder;
        match collect::collect_into(&feeder.strand, &mut feeder.source, &*feeder.f, &mut out) {
            Ok(()) => Ok(out),
            Err(collect::Failure::Item(_, error)) => Err(error),
            Err(collect::Failure::Source(payload)) => panic::resume_unwind(payload),
        }
    }

    /// The next result once the chunk at hand has none left, or is not plain values.
    #[inline(never)]
    fn next_slow(&mut self) -> Option<Result<T>> {
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

    #[inline]
    fn next(&mut self) -> Option<Result<T>> {
        // The per-item path is a pointer bump; chunk changes are out of line.
        if let Results::Values(values) = &mut self.ready
            && let Some(value) = values.next()
        {
            return Some(Ok(value));
        }
        self.next_slow()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.feeder.size_hint(self.ready.len())
    }

    fn fold<B, G>(mut self, init: B, mut g: G) -> B
    where
        G: FnMut(B, Result<T>) -> B,
    {
        // A chunk at a time, each in a tight loop: what `sum`, `for_each` and the like use.
        let mut acc = init;
        loop {
            acc = mem::replace(&mut self.ready, Results::empty()).fold(acc, &mut g);
            match self.next_slow() {
                Some(result) => acc = g(acc, result),
                None => return acc,
            }
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

/// The iterator returned by [`Runtime::map_unordered`](crate::Runtime::map_unordered): `(index, result)` pairs in
/// completion order.
pub struct MapUnordered<I, F, T>
where
    I: Iterator,
{
    feeder: Feeder<I, F>,
    running: FuturesUnordered<Running<T>>,
    /// Results not yet yielded, and the input index of the first.
    ready: Results<T>,
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

    /// The next result once the chunk at hand has none left, or is not plain values.
    #[inline(never)]
    fn next_slow(&mut self) -> Option<(usize, Result<T>)> {
        loop {
            if let Some(result) = self.ready.next() {
                self.next_index += 1;
                return Some((self.next_index - 1, result));
            }
            while let Some(pending) = self.feeder.next_chunk(0) {
                self.running.push(Running(Some(pending)));
            }
            let running = &mut self.running;
            // A chunk that finishes within a short spin needs no blocking wait (nor a
            // waker, nor a park), as a join of one handle spins first.
            let backoff = Backoff::new();
            let next = loop {
                if let Some(next) = running.next().now_or_never() {
                    break next;
                }
                if backoff.is_completed() {
                    break wait::blocking_region(|| wait::block_on_tasks(running.next(), None))
                        .flatten();
                }
                backoff.snooze();
            };
            let (outcome, start, len) = next?;
            let (ready, elapsed) = unpack(outcome, len);
            self.ready = ready;
            self.next_index = start;
            self.feeder.chunk_done(len, elapsed);
        }
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

    #[inline]
    fn next(&mut self) -> Option<(usize, Result<T>)> {
        if let Results::Values(values) = &mut self.ready
            && let Some(value) = values.next()
        {
            self.next_index += 1;
            return Some((self.next_index - 1, Ok(value)));
        }
        self.next_slow()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.feeder.size_hint(self.ready.len())
    }

    fn fold<B, G>(mut self, init: B, mut g: G) -> B
    where
        G: FnMut(B, (usize, Result<T>)) -> B,
    {
        let mut acc = init;
        loop {
            let first = self.next_index;
            let mut taken = 0;
            acc = mem::replace(&mut self.ready, Results::empty()).fold(acc, |acc, result| {
                taken += 1;
                g(acc, (first + taken - 1, result))
            });
            self.next_index += taken;
            match self.next_slow() {
                Some(item) => acc = g(acc, item),
                None => return acc,
            }
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
        let (results, _) = unpack(Ok(chunk), 3);
        let results: Vec<_> = results.map(Result::ok).collect();
        assert_eq!(results, [Some(1), None, Some(3)]);
    }
}
