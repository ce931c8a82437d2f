//! [`After`]: what a locked section of the scheduler leaves to do once the lock is released
//! (drop results, cancel runs, tell observers, hand work to the executor), and the
//! trampoline that keeps executors that finish work inline from growing the stack.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::deps::Value;
use super::event::{Event, EventKind, Observer};
use super::executor::Work;
use super::meta::Meta;
use super::{Body, NodeId};
use crate::{CancelHandle, Error, Strand};

#[derive(Default)]
pub(crate) struct After {
    pub(crate) works: Vec<Work>,
    pub(crate) cancels: Vec<CancelHandle>,
    /// Results and bodies let go of: dropped outside the lock, as their destructors may be
    /// slow.
    pub(crate) garbage: Vec<Garbage>,
    /// Events for the observers, in the order they happened.
    pub(crate) events: Vec<Pending>,
}

#[allow(dead_code)] // held only to be dropped
pub(crate) enum Garbage {
    Value(Value),
    Body(Body),
}

/// An event recorded under the lock, to be told once it is released.
pub(crate) struct Pending {
    pub(crate) node: u32,
    pub(crate) attempt: u32,
    pub(crate) at: Instant,
    pub(crate) kind: PendingKind,
}

pub(crate) enum PendingKind {
    Queued,
    /// How long it ran, and its value (kept only when someone observes).
    Finished(Duration, Option<Value>),
    Failed(Error, Duration, bool),
    Skipped(Error),
}

/// Tells every observer about `event`. An observer that panics is reported through
/// `tracing` and does not stop the run or the other observers.
pub(crate) fn tell(observers: &[Observer], meta: &Meta, strand: Strand, pending: &Pending) {
    let kind = match &pending.kind {
        PendingKind::Queued => EventKind::Queued,
        PendingKind::Finished(elapsed, value) => EventKind::Finished {
            elapsed: *elapsed,
            value: value
                .as_deref()
                .map_or(&() as &(dyn Any + Send + Sync), |value| value),
        },
        PendingKind::Failed(error, elapsed, retrying) => EventKind::Failed {
            error,
            elapsed: *elapsed,
            retrying: *retrying,
        },
        PendingKind::Skipped(error) => EventKind::Skipped { error },
    };
    tell_event(
        observers,
        meta,
        strand,
        pending.node,
        pending.attempt,
        pending.at,
        kind,
    );
}

pub(crate) fn tell_event(
    observers: &[Observer],
    meta: &Meta,
    strand: Strand,
    node: u32,
    attempt: u32,
    at: Instant,
    kind: EventKind<'_>,
) {
    let event = Event {
        node: NodeId(node),
        name: meta.name(NodeId(node)),
        strand,
        attempt,
        at,
        kind,
    };
    let _suspended = super::suspend_loop();
    for observer in observers {
        if let Err(message) = crate::error::catch_panic(|| observer(&event)) {
            tracing::error!(node = %event.node, %message, "a graph observer panicked; the run goes on");
        }
    }
}

thread_local! {
    /// Whether this thread is handing work to an executor now.
    static HANDING: Cell<bool> = const { Cell::new(false) };
    /// Work that a nested section (an executor that finished work inline) left for the
    /// outermost one to hand over.
    static DEFERRED: RefCell<Vec<Work>> = const { RefCell::new(Vec::new()) };
}

/// Hands `works` to their executors. If this thread is already doing so further up its
/// stack (an executor finished a node inline, and that made more work), the works wait for
/// that outer loop, so that a chain of inline finishes is a loop, not a recursion.
pub(crate) fn hand_over(works: Vec<Work>) {
    if works.is_empty() {
        return;
    }
    if HANDING.with(Cell::get) {
        DEFERRED.with(|deferred| deferred.borrow_mut().extend(works));
        return;
    }
    HANDING.with(|handing| handing.set(true));
    let _done = Reset;
    for work in works {
        execute(work);
    }
    while let Some(work) = DEFERRED.with(|deferred| deferred.borrow_mut().pop()) {
        execute(work);
    }
}

/// This thread's hand-over loop, suspended while code that is not part of it runs (see
/// [`super::suspend_loop`]); resumed when dropped.
pub(crate) struct SuspendedHandOver {
    /// The loop's deferred work, if a loop was running.
    deferred: Option<Vec<Work>>,
}

impl SuspendedHandOver {
    pub(crate) fn is_empty(&self) -> bool {
        self.deferred.is_none()
    }
}

pub(crate) fn suspend_hand_over() -> SuspendedHandOver {
    let handing = HANDING.with(|handing| handing.replace(false));
    SuspendedHandOver {
        deferred: handing
            .then(|| DEFERRED.with(|deferred| std::mem::take(&mut *deferred.borrow_mut()))),
    }
}

impl Drop for SuspendedHandOver {
    fn drop(&mut self) {
        if let Some(deferred) = self.deferred.take() {
            // Whatever was handed over meanwhile was handed over then: the list is empty
            // (and dropped outside the borrow all the same).
            let left = DEFERRED.with(|mine| std::mem::replace(&mut *mine.borrow_mut(), deferred));
            HANDING.with(|handing| handing.set(true));
            drop(left);
        }
    }
}

/// Hands one work to its run's executor. An executor that panics has dropped the work's
/// `Done`, which failed the node; the loop goes on with the rest.
fn execute(work: Work) {
    let shared = Arc::clone(&work.done.shared);
    if let Err(message) = crate::error::catch_panic(|| shared.execute(work)) {
        tracing::error!(%message, "a graph executor panicked in `execute`; its node failed");
    }
}

struct Reset;

impl Drop for Reset {
    fn drop(&mut self) {
        HANDING.with(|handing| handing.set(false));
    }
}
