//! [`Runtime::map_process`](crate::Runtime::map_process): many calls of one task, batched, lazy and bounded.
//!
//! A round trip to a worker costs microseconds (two pipe writes and two wake-ups), far more
//! than a tiny task, so items travel in chunks: one frame carries many items' arguments and
//! one frame brings their results back. Chunks start at one item and double while the
//! measured time per item says a bigger chunk still takes under [`CHUNK_TARGET`], so a
//! million tiny items cost a few hundred round trips while a few slow ones still spread
//! over every worker.
//!
//! If a worker dies under a chunk, the worker's slot names the item it was running: that
//! item alone is charged with the crash (its crash budget, as in
//! [`spawn_process`](crate::Runtime::spawn_process)), and the chunk's other items run again.

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

use super::ProcessStrand;
use super::pool::{Payload, Pool, Reply};
use super::{Call, Task, codec, decode_output};
use crate::task::wait;
use crate::{Error, Handle, Result, TaskId};

/// How long one chunk aims to keep a worker busy.
const CHUNK_TARGET: Duration = Duration::from_millis(2);
/// The most items in one chunk.
const MAX_CHUNK: usize = 16 * 1024;
/// The most bytes of arguments in one chunk.
const CHUNK_BYTES: usize = 256 * 1024;
/// Chunks in flight per worker: enough that a worker finds the next chunk waiting in its
/// pipe when it finishes one.
const CHUNKS_PER_WORKER: usize = 4;

/// An ordered map of `task` over `items` in `strand`'s workers; see `Runtime::map_process`.
pub(crate) fn map_process<T, I>(
    strand: &Arc<ProcessStrand>,
    task: T,
    items: I,
) -> MapProcess<T, I::IntoIter>
where
    T: Task,
    I: IntoIterator<Item = T::Args>,
{
    MapProcess {
        feeder: Feeder::new(strand, task, items.into_iter()),
        window: VecDeque::new(),
        ready: Ready::empty(),
    }
}

/// [`map_process`] yielding results as they complete; see `Runtime::map_process_unordered`.
pub(crate) fn map_process_unordered<T, I>(
    strand: &Arc<ProcessStrand>,
    task: T,
    items: I,
) -> MapProcessUnordered<T, I::IntoIter>
where
    T: Task,
    I: IntoIterator<Item = T::Args>,
{
    MapProcessUnordered {
        feeder: Feeder::new(strand, task, items.into_iter()),
        running: FuturesUnordered::new(),
        ready: Ready::empty(),
        start: 0,
    }
}

/// A chunk's results: values and errors apart, so that a chunk of `u64`s costs eight bytes
/// an item rather than a whole `Result` each.
pub(super) struct Chunk<O> {
    values: Vec<O>,
    /// Failed items, by position in the chunk, in order.
    errors: Vec<(usize, Error)>,
}

/// A chunk's results in order, as the iterators hand them out.
struct Ready<O> {
    values: std::vec::IntoIter<O>,
    errors: std::iter::Peekable<std::vec::IntoIter<(usize, Error)>>,
    next: usize,
    len: usize,
}

impl<O> Ready<O> {
    fn empty() -> Self {
        Ready::of(
            Chunk {
                values: Vec::new(),
                errors: Vec::new(),
            },
            0,
        )
    }

    fn of(chunk: Chunk<O>, len: usize) -> Self {
        Ready {
            values: chunk.values.into_iter(),
            errors: chunk.errors.into_iter().peekable(),
            next: 0,
            len,
        }
    }

    /// A chunk that failed as a whole: its error for each item.
    fn failed(error: &Error, len: usize) -> Self {
        let errors = (0..len).map(|i| (i, error.clone())).collect();
        Ready::of(
            Chunk {
                values: Vec::new(),
                errors,
            },
            len,
        )
    }

    fn left(&self) -> usize {
        self.len - self.next
    }
}

impl<O> Iterator for Ready<O> {
    type Item = Result<O>;

    fn next(&mut self) -> Option<Result<O>> {
        if self.next == self.len {
            return None;
        }
        let at = self.next;
        self.next += 1;
        if self.errors.peek().is_some_and(|(i, _)| *i == at) {
            return self.errors.next().map(|(_, error)| Err(error));
        }
        // A chunk holds a value or an error for each item.
        Some(self.values.next().ok_or_else(|| Error::Cancelled))
    }
}

/// A run of items handed to the pool (or refused before it, with its error ready).
struct Piece<O> {
    handle: Handle<Chunk<O>>,
    start: usize,
    len: usize,
    sent: Instant,
}

/// Takes items from the input, encodes them, and sends them in chunks.
struct Feeder<T: Task, I> {
    strand: Arc<ProcessStrand>,
    pool: Result<Arc<Pool>>,
    items: Fuse<I>,
    /// The index of the next item to take.
    index: usize,
    /// An item refused after its chunk was started: it goes out alone next.
    refused: Option<Error>,
    /// An item's encoded arguments that did not fit its chunk: they start the next one.
    carried: Option<Vec<u8>>,
    chunk: usize,
    max_chunk: usize,
    max_pieces: usize,
    _task: PhantomData<T>,
}

impl<T: Task, I: Iterator<Item = T::Args>> Feeder<T, I> {
    fn new(strand: &Arc<ProcessStrand>, _task: T, items: I) -> Self {
        let workers = strand.workers();
        let max_pieces = workers * CHUNKS_PER_WORKER;
        // With the input's length known, no chunk takes more than its share.
        let max_chunk = match items.size_hint() {
            (0, _) => MAX_CHUNK,
            (n, _) => n.div_ceil(max_pieces).clamp(1, MAX_CHUNK),
        };
        Feeder {
            strand: Arc::clone(strand),
            pool: strand.pool().cloned(),
            items: items.fuse(),
            index: 0,
            refused: None,
            carried: None,
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
        if self.carried.is_none()
            && let Some(error) = self.refused.take()
        {
            self.index += 1;
            return Some(refused_piece(start, error));
        }
        let pool = match &self.pool {
            Ok(pool) => Arc::clone(pool),
            Err(error) => {
                self.items.next()?;
                self.index += 1;
                return Some(refused_piece(start, error.clone()));
            }
        };
        let limit = pool.options.payload_limit;
        let mut items = Vec::with_capacity(self.chunk * 4);
        // Where each item's arguments end, to send them one by one if the chunk's worker dies
        // (decoding them to find out would run user code here).
        let mut ends: Vec<u32> = Vec::with_capacity(self.chunk);
        let mut count = 0;
        // An item that did not fit the last chunk goes first.
        if let Some(carried) = self.carried.take() {
            items.extend_from_slice(&carried);
            ends.push(u32::try_from(items.len()).unwrap_or(u32::MAX));
            count = 1;
        }
        while count < self.chunk && items.len() < CHUNK_BYTES {
            let Some(item) = self.items.next() else { break };
            let before = items.len();
            // The error is built only on the way out: the loop runs per item.
            let refused = match codec::encode_into(&item, &mut items) {
                // A chunk's arguments fit in one payload: an item that would push them over
                // waits for the next chunk (and one up to the limit goes alone).
                Ok(()) if items.len() - before <= limit && items.len() > limit => {
                    self.carried = Some(items[before..].to_vec());
                    items.truncate(before);
                    break;
                }
                Ok(()) if items.len() - before <= limit => {
                    ends.push(u32::try_from(items.len()).unwrap_or(u32::MAX));
                    count += 1;
                    continue;
                }
                Ok(()) => Error::PayloadTooLarge {
                    task: T::NAME.to_owned(),
                    bytes: items.len() - before,
                    limit,
                },
                Err(error) => Error::Codec {
                    task: T::NAME.to_owned(),
                    reason: format!("the arguments could not be encoded: {error}"),
                },
            };
            items.truncate(before);
            if count == 0 {
                self.index += 1;
                return Some(refused_piece(start, refused));
            }
            self.refused = Some(refused);
            break;
        }
        if count == 0 {
            return None;
        }
        let len = count;
        self.index += len;
        // Grow until measurements come back (see `chunk_done`).
        self.chunk = (self.chunk * 2).min(self.max_chunk);
        Some(Piece {
            handle: spawn_chunk::<T>(&self.strand, pool, Bytes::from(items), ends),
            start,
            len,
            sent: Instant::now(),
        })
    }

    /// Sizes the next chunks by what this one cost per item.
    fn chunk_done(&mut self, len: usize, elapsed: Duration) {
        let per_item = elapsed.as_nanos() / len.max(1) as u128;
        let fits = usize::try_from(CHUNK_TARGET.as_nanos() / per_item.max(1)).unwrap_or(usize::MAX);
        self.chunk = self.chunk.min(fits.max(1)).min(self.max_chunk);
    }

    fn size_hint(&self, ready: usize) -> (usize, Option<usize>) {
        let (low, high) = self.items.size_hint();
        let queued = usize::from(self.refused.is_some()) + usize::from(self.carried.is_some());
        (
            low.saturating_add(ready + queued),
            high.and_then(|high| high.checked_add(ready + queued)),
        )
    }
}

fn refused_piece<O: Send + 'static>(start: usize, error: Error) -> Piece<O> {
    Piece {
        handle: Handle::ready(
            TaskId::next(),
            Ok(Chunk {
                values: Vec::new(),
                errors: vec![(0, error)],
            }),
        ),
        start,
        len: 1,
        sent: Instant::now(),
    }
}

/// Sends one chunk (`ends` says where each item's arguments end in `items`); if its worker
/// dies under it, its future sends the items again (see [`recover`]).
fn spawn_chunk<T: Task>(
    strand: &ProcessStrand,
    pool: Arc<Pool>,
    items: Bytes,
    ends: Vec<u32>,
) -> Handle<Chunk<T::Output>> {
    let len = ends.len();
    if let Err(error) = strand.state.admit() {
        return Handle::ready(TaskId::next(), Err(error));
    }
    let payload = Payload::Batch {
        items: items.clone(),
        count: u32::try_from(len).unwrap_or(u32::MAX),
    };
    let call = Call::submit(&pool, T::NAME, payload, None);
    let future = async move {
        match call.reply().await {
            Some(Reply::Batch(Ok(body))) => decode_chunk::<T>(&body, len),
            None | Some(Reply::Batch(Err(Error::Cancelled))) => Err(Error::Cancelled),
            Some(Reply::BatchLost { item, error }) => {
                recover::<T>(&pool, &items, &ends, (item, error)).await
            }
            Some(Reply::Batch(Err(_)) | Reply::One(_)) => {
                one_by_one::<T>(&pool, &items, &ends, &(0..len).collect::<Vec<_>>()).await
            }
        }
    };
    strand.coroutines.spawn_counted(future, strand.number)
}

/// Finishes a chunk whose worker died on one of its items (`lost`: the item's place in the
/// chunk, and its error). That item alone is charged with the crash: it runs again while
/// its crash budget lasts, and otherwise fails. The items before it ran, but their results
/// died with the worker; those after it never started. All of them go again, as a batch.
async fn recover<T: Task>(
    pool: &Arc<Pool>,
    items: &Bytes,
    ends: &[u32],
    lost: (u32, Error),
) -> Result<Chunk<T::Output>> {
    let len = ends.len();
    let mut outcomes: Vec<Option<Result<T::Output>>> = (0..len).map(|_| None).collect();
    let mut budget = vec![pool.options.crash_retries; len];
    // The items without an outcome yet, by place in the chunk.
    let mut pending: Vec<usize> = (0..len).collect();
    let mut lost = Some(lost);
    while let Some((at, error)) = lost.take() {
        let Some(&item) = pending.get(at as usize) else {
            break; // a worker that names an item the batch does not have: run the rest alone
        };
        let retry = matches!(error, Error::WorkerLost { .. }) && budget[item] > 0;
        if retry {
            budget[item] -= 1;
            tracing::warn!(
                task = T::NAME,
                item,
                "a worker died under a task; running it again"
            );
        } else {
            outcomes[item] = Some(Err(error));
            pending.remove(at as usize);
        }
        if pending.is_empty() {
            break;
        }
        let (batch, count) = gather(items, ends, &pending);
        let call = Call::submit(
            pool,
            T::NAME,
            Payload::Batch {
                items: batch,
                count,
            },
            None,
        );
        match call.reply().await {
            Some(Reply::Batch(Ok(body))) => {
                let chunk = decode_chunk::<T>(&body, pending.len())?;
                place(&mut outcomes, &pending, chunk);
                pending.clear();
            }
            None | Some(Reply::Batch(Err(Error::Cancelled))) => return Err(Error::Cancelled),
            Some(Reply::BatchLost { item, error }) => lost = Some((item, error)),
            Some(Reply::Batch(Err(_)) | Reply::One(_)) => break,
        }
    }
    if !pending.is_empty() {
        let chunk = one_by_one::<T>(pool, items, ends, &pending).await?;
        place(&mut outcomes, &pending, chunk);
    }
    let mut chunk = Chunk {
        values: Vec::with_capacity(len),
        errors: Vec::new(),
    };
    for (i, outcome) in outcomes.into_iter().enumerate() {
        match outcome.unwrap_or(Err(Error::Cancelled)) {
            Ok(value) => chunk.values.push(value),
            Err(error) => chunk.errors.push((i, error)),
        }
    }
    Ok(chunk)
}

/// The arguments of the items at `places` in a chunk, back to back, and their count.
fn gather(items: &Bytes, ends: &[u32], places: &[usize]) -> (Bytes, u32) {
    let mut batch = Vec::new();
    for &place in places {
        batch.extend_from_slice(&items[span(ends, place)]);
    }
    (
        Bytes::from(batch),
        u32::try_from(places.len()).unwrap_or(u32::MAX),
    )
}

/// Where item `place`'s arguments lie in a chunk's.
fn span(ends: &[u32], place: usize) -> std::ops::Range<usize> {
    let start = place
        .checked_sub(1)
        .map_or(0, |before| ends[before] as usize);
    start..ends[place] as usize
}

/// Puts the outcomes of a batch of the items at `places` in their places.
fn place<O>(outcomes: &mut [Option<Result<O>>], places: &[usize], chunk: Chunk<O>) {
    let mut errors = chunk.errors.into_iter().peekable();
    let mut values = chunk.values.into_iter();
    for (i, &place) in places.iter().enumerate() {
        outcomes[place] = Some(match errors.next_if(|(at, _)| *at == i) {
            Some((_, error)) => Err(error),
            None => values.next().ok_or(Error::Cancelled),
        });
    }
}

/// Runs the items at `places` of a chunk one call each (each with its own crash budget):
/// for a batch whose answer failed as a whole.
async fn one_by_one<T: Task>(
    pool: &Arc<Pool>,
    items: &Bytes,
    ends: &[u32],
    places: &[usize],
) -> Result<Chunk<T::Output>> {
    let calls: Vec<Call> = places
        .iter()
        .map(|&place| {
            let args = items.slice(span(ends, place));
            Call::submit(pool, T::NAME, Payload::One(args), None)
        })
        .collect();
    let mut chunk = Chunk {
        values: Vec::with_capacity(places.len()),
        errors: Vec::new(),
    };
    for (i, call) in calls.into_iter().enumerate() {
        let result = match call.reply().await {
            Some(Reply::One(outcome)) => outcome.and_then(|bytes| decode_output::<T>(&bytes)),
            _ => Err(Error::Cancelled),
        };
        match result {
            Ok(value) => chunk.values.push(value),
            Err(error) => chunk.errors.push((i, error)),
        }
    }
    Ok(chunk)
}

/// Decodes a `BatchDone` body of `len` items.
pub(super) fn decode_chunk<T: Task>(body: &[u8], len: usize) -> Result<Chunk<T::Output>> {
    let codec_error = |reason: String| Error::Codec {
        task: T::NAME.to_owned(),
        reason,
    };
    let (count, mut stream) = body
        .split_first_chunk::<4>()
        .map(|(count, rest)| (u32::from_le_bytes(*count) as usize, rest))
        .ok_or_else(|| codec_error("a batch result without its count".to_owned()))?;
    if count != len {
        return Err(codec_error(format!("{count} results for a batch of {len}")));
    }
    let mut chunk = Chunk {
        values: Vec::with_capacity(len),
        errors: Vec::new(),
    };
    for i in 0..len {
        match codec::take_item(&mut stream).map_err(|error| codec_error(error.0))? {
            Ok(()) => {
                let (value, rest) =
                    postcard::take_from_bytes::<T::Output>(stream).map_err(|error| {
                        codec_error(format!(
                            "the result of item {i} could not be decoded: {error}"
                        ))
                    })?;
                chunk.values.push(value);
                stream = rest;
            }
            Err(failure) => chunk.errors.push((i, failure.into_error(T::NAME))),
        }
    }
    if !stream.is_empty() {
        return Err(codec_error(format!(
            "{} bytes after a batch's last result",
            stream.len()
        )));
    }
    Ok(chunk)
}

/// The iterator returned by [`Runtime::map_process`](crate::Runtime::map_process): results in input order.
#[must_use = "a map does nothing until iterated"]
pub struct MapProcess<T: Task, I> {
    feeder: Feeder<T, I>,
    window: VecDeque<Piece<T::Output>>,
    ready: Ready<T::Output>,
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
            self.ready = match piece.handle.join() {
                Ok(chunk) => {
                    self.feeder.chunk_done(piece.len, piece.sent.elapsed());
                    Ready::of(chunk, piece.len)
                }
                Err(error) => Ready::failed(&error, piece.len),
            };
            // Keep the workers busy while the caller works through this chunk.
            while let Some(piece) = self.feeder.next_piece(self.window.len()) {
                self.window.push_back(piece);
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let in_window: usize = self.window.iter().map(|piece| piece.len).sum();
        self.feeder.size_hint(self.ready.left() + in_window)
    }
}

impl<T: Task, I> Drop for MapProcess<T, I> {
    fn drop(&mut self) {
        for piece in &self.window {
            piece.handle.cancel();
        }
    }
}

type Running<O> = Pin<Box<dyn Future<Output = (Result<Chunk<O>>, usize, usize, Duration)> + Send>>;

/// The iterator returned by [`Runtime::map_process_unordered`](crate::Runtime::map_process_unordered): `(index, result)` pairs in
/// completion order.
#[must_use = "a map does nothing until iterated"]
pub struct MapProcessUnordered<T: Task, I> {
    feeder: Feeder<T, I>,
    running: FuturesUnordered<Running<T::Output>>,
    ready: Ready<T::Output>,
    /// The input index of `ready`'s first item.
    start: usize,
}

impl<T: Task, I: Iterator<Item = T::Args>> Iterator for MapProcessUnordered<T, I> {
    type Item = (usize, Result<T::Output>);

    fn next(&mut self) -> Option<(usize, Result<T::Output>)> {
        loop {
            let at = self.start + self.ready.next;
            if let Some(result) = self.ready.next() {
                return Some((at, result));
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
            self.ready = match outcome {
                Ok(chunk) => {
                    self.feeder.chunk_done(len, elapsed);
                    Ready::of(chunk, len)
                }
                Err(error) => Ready::failed(&error, len),
            };
            self.start = start;
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.feeder.size_hint(self.ready.left())
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
