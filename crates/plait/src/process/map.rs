//! [`Runtime::map_process`]: many calls of one task, batched, lazy and bounded.
//!
//! A round trip to a worker costs microseconds (two pipe writes and two wake-ups), far more
//! than a tiny task, so items travel in chunks: one frame carries many items' arguments and
//! one frame brings their results back. Chunks start at one item and double while the
//! measured time per item says a bigger chunk still takes under [`CHUNK_TARGET`], so a
//! million tiny items cost a few hundred round trips while a few slow ones still spread
//! over every worker.
//!
//! If a worker dies under a chunk, the chunk's items run again one by one, so that the one
//! item that kills its worker fails alone (with its crash budget, as in
//! [`spawn_process`](Runtime::spawn_process)) and the others succeed.

use std::collections::VecDeque;
use std::future::Future;
use std::iter::Fuse;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;

use super::pool::{Payload, Pool, Reply};
use super::{Call, Task, decode_output, encode_args};
use crate::task::wait;
use crate::{Error, Handle, Result, Runtime, TaskId};

/// How long one chunk aims to keep a worker busy.
const CHUNK_TARGET: Duration = Duration::from_millis(2);
/// The most items in one chunk.
const MAX_CHUNK: usize = 4096;
/// Chunks in flight per worker: enough that a worker finds the next chunk waiting in its
/// pipe when it finishes one.
const CHUNKS_PER_WORKER: usize = 4;

impl Runtime {
    /// Runs `task` on every item in worker processes and yields the results **in input
    /// order**.
    ///
    /// Lazy and bounded like [`map`](Runtime::map): items are taken from `items` only as
    /// room frees up, a few chunks per worker. Tiny tasks are batched automatically. An
    /// item whose arguments are over the payload limit yields its error in its place; the
    /// others run. Dropping the iterator cancels the chunks in flight.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// #[plait::task]
    /// fn collatz_steps(mut n: u64) -> u32 {
    ///     let mut steps = 0;
    ///     while n != 1 {
    ///         n = if n % 2 == 0 { n / 2 } else { 3 * n + 1 };
    ///         steps += 1;
    ///     }
    ///     steps
    /// }
    ///
    /// fn main() -> plait::Result<()> {
    ///     plait::init();
    ///     let rt = plait::Runtime::new()?;
    ///     let steps: Vec<u32> = rt
    ///         .map_process(collatz_steps::task(), 1..100_000u64)
    ///         .collect::<plait::Result<_>>()?;
    ///     assert_eq!(steps[26], 111); // 27 takes 111 steps
    ///     Ok(())
    /// }
    /// ```
    pub fn map_process<T, I>(&self, task: T, items: I) -> MapProcess<T, I::IntoIter>
    where
        T: Task,
        I: IntoIterator<Item = T::Args>,
    {
        MapProcess {
            feeder: Feeder::new(self, task, items.into_iter()),
            window: VecDeque::new(),
            ready: Vec::new().into_iter(),
        }
    }

    /// Like [`map_process`](Runtime::map_process), but yields results **as they
    /// complete**, each with its item's index in the input.
    pub fn map_process_unordered<T, I>(
        &self,
        task: T,
        items: I,
    ) -> MapProcessUnordered<T, I::IntoIter>
    where
        T: Task,
        I: IntoIterator<Item = T::Args>,
    {
        MapProcessUnordered {
            feeder: Feeder::new(self, task, items.into_iter()),
            running: FuturesUnordered::new(),
            ready: Vec::new().into_iter(),
            next_index: 0,
        }
    }
}

/// The results of a chunk, in order.
type Results<O> = Vec<Result<O>>;

/// A run of items handed to the pool, or one refused before it.
struct Piece<O> {
    handle: Handle<Results<O>>,
    start: usize,
    len: usize,
    sent: Instant,
}

/// Takes items from the input, encodes them, and sends them in chunks.
struct Feeder<T: Task, I> {
    rt: Runtime,
    pool: Result<Arc<Pool>>,
    items: Fuse<I>,
    /// The index of the next item to take.
    index: usize,
    /// An item refused after its chunk was started: it goes out alone next.
    refused: Option<Error>,
    chunk: usize,
    max_chunk: usize,
    max_pieces: usize,
    _task: PhantomData<T>,
}

impl<T: Task, I: Iterator<Item = T::Args>> Feeder<T, I> {
    fn new(rt: &Runtime, _task: T, items: I) -> Self {
        let workers = rt.process_workers();
        let max_pieces = workers * CHUNKS_PER_WORKER;
        // With the input's length known, no chunk takes more than its share.
        let max_chunk = match items.size_hint() {
            (0, _) => MAX_CHUNK,
            (n, _) => n.div_ceil(max_pieces).clamp(1, MAX_CHUNK),
        };
        Feeder {
            rt: rt.clone(),
            pool: rt.shared.processes.pool().cloned(),
            items: items.fuse(),
            index: 0,
            refused: None,
            chunk: 1,
            max_chunk,
            max_pieces,
            _task: PhantomData,
        }
    }

    /// The next piece, if there is room and input left.
    fn next_piece(&mut self, in_flight: usize) -> Option<Piece<T::Output>> {
        if in_flight >= self.max_pieces {
            return None;
        }
        let start = self.index;
        if let Some(error) = self.refused.take() {
            self.index += 1;
            return Some(ready_piece(start, vec![Err(error)]));
        }
        let pool = match &self.pool {
            Ok(pool) => Arc::clone(pool),
            Err(error) => {
                self.items.next()?;
                self.index += 1;
                return Some(ready_piece(start, vec![Err(error.clone())]));
            }
        };
        let mut payloads = Vec::with_capacity(self.chunk);
        while payloads.len() < self.chunk {
            let Some(item) = self.items.next() else { break };
            match encode_args::<T>(&item, pool.options.payload_limit) {
                Ok(bytes) => payloads.push(bytes),
                Err(error) if payloads.is_empty() => {
                    self.index += 1;
                    return Some(ready_piece(start, vec![Err(error)]));
                }
                Err(error) => {
                    self.refused = Some(error);
                    break;
                }
            }
        }
        if payloads.is_empty() {
            return None;
        }
        let len = payloads.len();
        self.index += len;
        // Grow until measurements come back (see `chunk_done`).
        self.chunk = (self.chunk * 2).min(self.max_chunk);
        Some(Piece {
            handle: spawn_chunk::<T>(&self.rt, pool, payloads),
            start,
            len,
            sent: Instant::now(),
        })
    }

    /// Sizes the next chunks by what this one cost per item.
    fn chunk_done(&mut self, len: usize, elapsed: Duration) {
        let per_item = elapsed.as_nanos() / len.max(1) as u128;
        let fits = (CHUNK_TARGET.as_nanos() / per_item.max(1)) as usize;
        self.chunk = self.chunk.min(fits.max(1)).min(self.max_chunk);
    }

    fn size_hint(&self, ready: usize) -> (usize, Option<usize>) {
        let (low, high) = self.items.size_hint();
        let queued = usize::from(self.refused.is_some());
        (
            low.saturating_add(ready + queued),
            high.and_then(|high| high.checked_add(ready + queued)),
        )
    }
}

fn ready_piece<O: Send + 'static>(start: usize, results: Results<O>) -> Piece<O> {
    Piece {
        len: results.len(),
        handle: Handle::ready(TaskId::next(), Ok(results)),
        start,
        sent: Instant::now(),
    }
}

/// Sends one chunk; its future falls back to one call per item if the worker dies under it.
fn spawn_chunk<T: Task>(
    rt: &Runtime,
    pool: Arc<Pool>,
    items: Vec<Bytes>,
) -> Handle<Results<T::Output>> {
    let strand = &rt.shared.processes;
    if let Err(error) = strand.state.admit() {
        return Handle::ready(TaskId::next(), Err(error));
    }
    let call = Call::submit(&pool, T::NAME, Payload::Batch(items.clone()), None);
    let future = async move {
        match call.answer().await {
            Some(Reply::Batch(Ok(outcomes))) => Ok(outcomes
                .into_iter()
                .map(|outcome| outcome.and_then(|bytes| decode_output::<T>(&bytes)))
                .collect()),
            None | Some(Reply::Batch(Err(Error::Cancelled))) => Err(Error::Cancelled),
            Some(Reply::Batch(Err(_)) | Reply::One(_)) => {
                let calls: Vec<Call> = items
                    .into_iter()
                    .map(|args| Call::submit(&pool, T::NAME, Payload::One(args), None))
                    .collect();
                let mut results = Vec::with_capacity(calls.len());
                for call in calls {
                    results.push(match call.answer().await {
                        Some(Reply::One(outcome)) => {
                            outcome.and_then(|bytes| decode_output::<T>(&bytes))
                        }
                        _ => Err(Error::Cancelled),
                    });
                }
                Ok(results)
            }
        }
    };
    rt.shared.coroutines.spawn_booked(future, strand.books)
}

/// A chunk's results, or its error for each of its items.
fn unpack<O>(outcome: Result<Results<O>>, len: usize) -> std::vec::IntoIter<Result<O>> {
    match outcome {
        Ok(results) => results.into_iter(),
        Err(error) => vec![error; len]
            .into_iter()
            .map(Err)
            .collect::<Vec<_>>()
            .into_iter(),
    }
}

/// The iterator returned by [`Runtime::map_process`]: results in input order.
#[must_use = "a map does nothing until iterated"]
pub struct MapProcess<T: Task, I> {
    feeder: Feeder<T, I>,
    window: VecDeque<Piece<T::Output>>,
    ready: std::vec::IntoIter<Result<T::Output>>,
}

impl<T: Task, I: Iterator<Item = T::Args>> Iterator for MapProcess<T, I> {
    type Item = Result<T::Output>;

    fn next(&mut self) -> Option<Result<T::Output>> {
        loop {
            if let Some(result) = self.ready.next() {
                return Some(result);
            }
            while let Some(piece) = self.feeder.next_piece(self.window.len()) {
                self.window.push_back(piece);
            }
            let piece = self.window.pop_front()?;
            let outcome = piece.handle.join();
            if outcome.is_ok() {
                self.feeder.chunk_done(piece.len, piece.sent.elapsed());
            }
            self.ready = unpack(outcome, piece.len);
            // Keep the workers busy while the caller works through this chunk.
            while let Some(piece) = self.feeder.next_piece(self.window.len()) {
                self.window.push_back(piece);
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let in_window: usize = self.window.iter().map(|piece| piece.len).sum();
        self.feeder.size_hint(self.ready.len() + in_window)
    }
}

impl<T: Task, I> Drop for MapProcess<T, I> {
    fn drop(&mut self) {
        for piece in &self.window {
            piece.handle.cancel();
        }
    }
}

type Running<O> =
    Pin<Box<dyn Future<Output = (Result<Results<O>>, usize, usize, Duration)> + Send>>;

/// The iterator returned by [`Runtime::map_process_unordered`]: `(index, result)` pairs in
/// completion order.
#[must_use = "a map does nothing until iterated"]
pub struct MapProcessUnordered<T: Task, I> {
    feeder: Feeder<T, I>,
    running: FuturesUnordered<Running<T::Output>>,
    ready: std::vec::IntoIter<Result<T::Output>>,
    next_index: usize,
}

impl<T: Task, I: Iterator<Item = T::Args>> Iterator for MapProcessUnordered<T, I> {
    type Item = (usize, Result<T::Output>);

    fn next(&mut self) -> Option<(usize, Result<T::Output>)> {
        loop {
            if let Some(result) = self.ready.next() {
                self.next_index += 1;
                return Some((self.next_index - 1, result));
            }
            while let Some(piece) = self.feeder.next_piece(self.running.len()) {
                let Piece {
                    handle,
                    start,
                    len,
                    sent,
                } = piece;
                // Dropping the map drops this future: cancel the chunk then, not detach it.
                let cancel = CancelOnDrop(Some(handle.cancel_handle()));
                self.running.push(Box::pin(async move {
                    let outcome = handle.await;
                    cancel.disarm();
                    (outcome, start, len, sent.elapsed())
                }));
            }
            let running = &mut self.running;
            let (outcome, start, len, elapsed) =
                wait::blocking_region(|| wait::block_on(running.next(), None)).flatten()?;
            if outcome.is_ok() {
                self.feeder.chunk_done(len, elapsed);
            }
            self.ready = unpack(outcome, len);
            self.next_index = start;
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.feeder.size_hint(self.ready.len())
    }
}

/// Cancels a task when dropped, unless disarmed.
struct CancelOnDrop(Option<crate::CancelHandle>);

impl CancelOnDrop {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(cancel) = self.0.take() {
            cancel.cancel();
        }
    }
}
