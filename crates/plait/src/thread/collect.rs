//! The eager end of a map: every item mapped in parallel, each result written straight into
//! its place in the output `Vec` ([`Map::collect_vec`](super::Map::collect_vec)).
//!
//! The lazy map hands results to one consumer thread, which then copies them into whatever it
//! builds: that copy, and the page faults of a large output, run on one thread. Here the
//! threads that compute the results write them, so the output is filled in parallel, as
//! rayon's indexed `collect` fills it.
//!
//! The input is an iterator, not a splittable range, so it is shared: a participant takes the
//! next run of items *and* the same run of output slots under one lock, then maps them outside
//! it. Runs shrink as the input does (guided self-scheduling: a share of what is left, at most
//! [`MAX_RUN`]), so threads finish together whatever the items cost, and the lock is taken a
//! few thousand times over ten million items. The caller works too, and pool threads help as
//! they arrive; a helper that has not started by the time the work is gone is cancelled
//! unrun, so a tiny input costs about what a loop costs.

use std::any::Any;
use std::mem::{self, MaybeUninit};
use std::ops::Range;
use std::panic::{self, AssertUnwindSafe};
use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::ThreadStrand;
use crate::Error;

/// The most items one participant takes at a time: 4,096 eight-byte items are 32 KiB, which
/// stays in cache between the pull and the map.
const MAX_RUN: usize = 1 << 12;

/// Output slots reserved per round when the input does not say how long it is.
const MIN_ROUND: usize = 1 << 10;

/// Why the collection stopped early.
pub(crate) enum Failure {
    /// An item's closure panicked: its index in the input, and the panic as an error.
    Item(usize, Error),
    /// The input iterator itself panicked: the panic goes on in the caller.
    Source(Box<dyn Any + Send>),
}

/// Below this many items (as the input tells), helpers are called at once: a few items may
/// each be long, and timing the first would leave the pool idle for all of it.
const PROBE_MIN_ITEMS: usize = 256;

/// Work that would take less than this alone is done alone: waking a helper, and waiting
/// for it to leave at the end, costs about as much.
const ALONE_BUDGET: Duration = Duration::from_micros(50);

/// What [`alone`] found.
enum Alone {
    Finished,
    WorthSharing,
}

/// Maps the first items on this thread, in growing batches, timing them: if the whole
/// input then looks cheaper than [`ALONE_BUDGET`], finishes it here, as a plain loop would;
/// otherwise leaves the rest to be shared.
fn alone<I, F, T>(source: &mut I, f: &F, out: &mut Vec<T>) -> Result<Alone, Failure>
where
    I: Iterator,
    F: Fn(I::Item) -> T,
{
    let (lower, upper) = source.size_hint();
    if upper.unwrap_or(usize::MAX) < PROBE_MIN_ITEMS {
        return Ok(Alone::WorthSharing);
    }
    out.reserve(lower);
    let start = Instant::now();
    let mut done = 0usize;
    let mut batch = 16;
    loop {
        let before = out.len();
        // Whether a panic came from `f` (an item's failure) or from the input (the caller's).
        let mut in_f = false;
        let pulled = panic::catch_unwind(AssertUnwindSafe(|| {
            out.extend(source.by_ref().take(batch).map(|item| {
                in_f = true;
                let value = f(item);
                in_f = false;
                value
            }));
            out.len() - before
        }));
        let pulled = match pulled {
            Ok(pulled) => pulled,
            Err(payload) if in_f => {
                return Err(Failure::Item(out.len(), Error::from_panic(payload)));
            }
            Err(payload) => return Err(Failure::Source(payload)),
        };
        done += pulled;
        if pulled < batch {
            return Ok(Alone::Finished);
        }
        debug_assert_eq!(out.len(), before + pulled);
        let (lower, upper) = source.size_hint();
        let left = upper.unwrap_or(usize::MAX).max(lower);
        let per_item = start.elapsed() / u32::try_from(done).unwrap_or(u32::MAX);
        let estimate = per_item.saturating_mul(u32::try_from(left).unwrap_or(u32::MAX));
        if estimate >= ALONE_BUDGET.saturating_sub(start.elapsed()) {
            return Ok(Alone::WorthSharing);
        }
        batch = (batch * 2).min(MAX_RUN);
    }
}

/// Maps everything `source` yields with `f` on `strand`, appending the results to `out` in
/// input order. On a failure, what `out` holds past its length on entry is unspecified (the
/// caller drops it); the failure is the one with the lowest input index among those seen
/// (after the first, no new run starts).
pub(crate) fn collect_into<I, F, T>(
    strand: &ThreadStrand,
    source: &mut I,
    f: &F,
    out: &mut Vec<T>,
) -> Result<(), Failure>
where
    I: Iterator + Send,
    I::Item: Send,
    F: Fn(I::Item) -> T + Sync,
    T: Send,
{
    if let Alone::Finished = alone(source, f, out)? {
        return Ok(());
    }
    loop {
        let (lower, upper) = source.size_hint();
        let room = if upper == Some(lower) {
            lower
        } else {
            lower.max(out.len()).max(MIN_ROUND)
        };
        if room <= 1 {
            // The input says it has at most one item left: make sure, one at a time.
            let index = out.len();
            match pull(source, 1) {
                Ok(items) if items.is_empty() => return Ok(()),
                Ok(items) => {
                    for item in items {
                        let value = panic::catch_unwind(AssertUnwindSafe(|| f(item)))
                            .map_err(|payload| Failure::Item(index, Error::from_panic(payload)))?;
                        out.push(value);
                    }
                }
                Err(payload) => return Err(Failure::Source(payload)),
            }
            continue;
        }
        out.reserve(room);
        let base = out.len();
        let (written, exhausted) = {
            let slots = &mut out.spare_capacity_mut()[..room];
            round(strand, source, f, slots, base)?
        };
        // SAFETY: the round succeeded, so every one of the first `written` spare slots was
        // handed to exactly one run and written by it (runs take slots front to back, and a
        // run that fails makes the round fail).
        unsafe { out.set_len(base + written) };
        if exhausted {
            return Ok(());
        }
    }
}

/// What the participants of one round share.
struct Round<'s, I, T> {
    next: Mutex<Next<'s, I, T>>,
    /// Set at the first failure: no new run starts after it.
    failed: AtomicBool,
    participants: usize,
    /// What each participant did, left here as it finishes (a helper's handle may be
    /// cancelled while it runs, which would displace a share it returned).
    shares: Mutex<Vec<Share>>,
}

/// The input and the output slots not yet handed out.
struct Next<'s, I, T> {
    source: &'s mut I,
    slots: &'s mut [MaybeUninit<T>],
    /// Slots handed out so far in this round.
    taken: usize,
    exhausted: bool,
}

/// What one participant did: the slot ranges it filled, and how it failed, if it did.
#[derive(Default)]
struct Share {
    filled: Vec<Range<usize>>,
    failure: Option<FailureAt>,
}

/// A failure and where in the round it happened.
struct FailureAt {
    slot: usize,
    failure: Failure,
}

/// Fills `slots` (the output's spare capacity, the first at input index `base`) from
/// `source`; returns how many it wrote, front to back, and whether the input ran out.
fn round<I, F, T>(
    strand: &ThreadStrand,
    source: &mut I,
    f: &F,
    slots: &mut [MaybeUninit<T>],
    base: usize,
) -> Result<(usize, bool), Failure>
where
    I: Iterator + Send,
    I::Item: Send,
    F: Fn(I::Item) -> T + Sync,
    T: Send,
{
    let helpers = strand.threads().saturating_sub(1).max(1);
    let round = Round {
        next: Mutex::new(Next {
            source,
            // A reborrow: once the round is over, `slots` is whole again.
            slots: &mut *slots,
            taken: 0,
            exhausted: false,
        }),
        failed: AtomicBool::new(false),
        participants: helpers + 1,
        shares: Mutex::new(Vec::with_capacity(helpers + 1)),
    };
    strand.scope(|scope| {
        let handles: Vec<_> = (0..helpers)
            .map(|_| scope.spawn(|| participate(&round, f)))
            .collect();
        participate(&round, f);
        for handle in handles {
            // The work is gone: a helper that has not started would only find that out,
            // so it is dropped unrun; one that is running finishes its run (the scope
            // waits for it).
            handle.cancel();
        }
    });
    let shares = round
        .shares
        .into_inner()
        .unwrap_or_else(PoisonError::into_inner);
    // Only the counts: the reborrow of `slots` ends here.
    let Next {
        taken, exhausted, ..
    } = round
        .next
        .into_inner()
        .unwrap_or_else(PoisonError::into_inner);
    let mut failure: Option<FailureAt> = None;
    let mut filled = Vec::new();
    for share in shares {
        filled.extend(share.filled);
        if let Some(seen) = share.failure {
            // The input's own panic wins: it is not the items' to report.
            let better = match &failure {
                None => true,
                Some(kept) => match (&kept.failure, &seen.failure) {
                    (Failure::Source(_), _) => false,
                    (_, Failure::Source(_)) => true,
                    _ => seen.slot < kept.slot,
                },
            };
            if better {
                failure = Some(seen);
            }
        }
    }
    match failure {
        None => {
            debug_assert_eq!(
                filled.iter().map(ExactSizeIterator::len).sum::<usize>(),
                taken
            );
            Ok((taken, exhausted))
        }
        Some(FailureAt { failure, .. }) => {
            for range in filled {
                // SAFETY: each range was written in full by a run that succeeded, and
                // nothing else has read or dropped it; the output's length never covered it.
                unsafe { drop_written(&mut slots[range]) };
            }
            Err(match failure {
                Failure::Item(slot, error) => Failure::Item(base + slot, error),
                source => source,
            })
        }
    }
}

/// One participant: takes runs and fills them until the input or the slots run out, or
/// something fails; then leaves its share with the round.
fn participate<I, F, T>(round: &Round<'_, I, T>, f: &F)
where
    I: Iterator,
    F: Fn(I::Item) -> T,
{
    let share = work(round, f);
    round
        .shares
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(share);
}

fn work<I, F, T>(round: &Round<'_, I, T>, f: &F) -> Share
where
    I: Iterator,
    F: Fn(I::Item) -> T,
{
    let mut share = Share::default();
    let mut items = Vec::new();
    while !round.failed.load(Ordering::Relaxed) {
        let run = match take_run(round, &mut items) {
            Ok(Some(run)) => run,
            Ok(None) => break,
            Err(failure) => {
                round.failed.store(true, Ordering::Relaxed);
                share.failure = Some(failure);
                break;
            }
        };
        let Run { first, slots } = run;
        let len = slots.len();
        match fill(f, &mut items, slots) {
            Ok(()) => match share.filled.last_mut() {
                Some(last) if last.end == first => last.end += len,
                _ => share.filled.push(first..first + len),
            },
            Err((offset, error)) => {
                round.failed.store(true, Ordering::Relaxed);
                share.failure = Some(FailureAt {
                    slot: first + offset,
                    failure: Failure::Item(first + offset, error),
                });
                break;
            }
        }
    }
    share
}

/// A run of output slots, and where it starts in the round.
struct Run<'s, T> {
    first: usize,
    slots: &'s mut [MaybeUninit<T>],
}

/// Takes the next run of items into `items` and as many slots; `None` once there is
/// nothing left to take.
fn take_run<'s, I, T>(
    round: &Round<'s, I, T>,
    items: &mut Vec<I::Item>,
) -> Result<Option<Run<'s, T>>, FailureAt>
where
    I: Iterator,
{
    let mut next = round.next.lock().unwrap_or_else(PoisonError::into_inner);
    if next.exhausted || next.slots.is_empty() {
        return Ok(None);
    }
    let size = (next.slots.len() / (2 * round.participants)).clamp(1, MAX_RUN);
    let first = next.taken;
    match panic::catch_unwind(AssertUnwindSafe(|| {
        items.extend(next.source.by_ref().take(size));
    })) {
        Ok(()) => {}
        Err(payload) => {
            items.clear();
            next.exhausted = true;
            return Err(FailureAt {
                slot: first,
                failure: Failure::Source(payload),
            });
        }
    }
    if items.len() < size {
        next.exhausted = true;
    }
    if items.is_empty() {
        return Ok(None);
    }
    let (run, rest) = mem::take(&mut next.slots).split_at_mut(items.len());
    next.slots = rest;
    next.taken += run.len();
    Ok(Some(Run { first, slots: run }))
}

/// Pulls up to `n` items, catching a panic of the iterator.
fn pull<I: Iterator>(source: &mut I, n: usize) -> Result<Vec<I::Item>, Box<dyn Any + Send>> {
    panic::catch_unwind(AssertUnwindSafe(|| source.by_ref().take(n).collect()))
}

/// Maps `items` (as many as `slots`) into `slots`. On a panic, what this run wrote is
/// dropped and the failing item's offset in the run comes back with the panic.
fn fill<X, T, F>(
    f: &F,
    items: &mut Vec<X>,
    slots: &mut [MaybeUninit<T>],
) -> Result<(), (usize, Error)>
where
    F: Fn(X) -> T,
{
    debug_assert_eq!(items.len(), slots.len());
    let mut written = Written { slots, len: 0 };
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
        let Written { slots, len } = &mut written;
        for (slot, item) in slots.iter_mut().zip(items.drain(..)) {
            slot.write(f(item));
            *len += 1;
        }
    }));
    match outcome {
        Ok(()) => {
            written.keep();
            Ok(())
        }
        Err(payload) => Err((written.len, Error::from_panic(payload))),
    }
}

/// The slots of a run written so far; drops them unless the run completes.
struct Written<'a, T> {
    slots: &'a mut [MaybeUninit<T>],
    len: usize,
}

impl<T> Written<'_, T> {
    /// The run completed: its values now belong to the output.
    fn keep(self) {
        mem::forget(self);
    }
}

impl<T> Drop for Written<'_, T> {
    fn drop(&mut self) {
        // SAFETY: the first `len` slots were written by this run and handed to no one.
        unsafe { drop_written(&mut self.slots[..self.len]) }
    }
}

/// Drops the values in `slots`.
///
/// # Safety
///
/// Every slot holds a value that nothing else will read or drop.
unsafe fn drop_written<T>(slots: &mut [MaybeUninit<T>]) {
    let values = ptr::slice_from_raw_parts_mut(slots.as_mut_ptr().cast::<T>(), slots.len());
    // SAFETY: `MaybeUninit<T>` has `T`'s layout, and the caller vouches that each is set.
    unsafe { ptr::drop_in_place(values) }
}
