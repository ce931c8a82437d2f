//! The synchronisation primitives that hand-rolled code in this crate is built on.
//!
//! Under `--cfg plait_loom` they are loom's, so the model tests (`task/loom_test.rs`,
//! `pool/sleep.rs`, `pool/latch.rs` (the scope and join latches), `strand/admission.rs`, `process/pool.rs`) explore every
//! interleaving of the code that uses them; otherwise they are std's, at no cost.

#[cfg(not(plait_loom))]
pub(crate) mod sync {
    pub(crate) use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering, fence};
    pub(crate) use std::sync::{Condvar, Mutex, MutexGuard};
}

#[cfg(plait_loom)]
pub(crate) mod sync {
    pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering, fence};
    pub(crate) use loom::sync::{Condvar, Mutex, MutexGuard};
}

/// Marks a place that relies on the single total order of `SeqCst` accesses: two threads
/// that each write one location and then read the other, so that at least one sees the
/// other's write. Nothing in a real build, where the `SeqCst` accesses give that order; a
/// `SeqCst` fence under loom, which models `SeqCst` accesses as `AcqRel` (the first
/// limitation its README lists) but models `SeqCst` fences, and would otherwise report the
/// outcome the total order rules out.
#[inline(always)]
pub(crate) fn seq_cst_accesses_order_this() {
    #[cfg(plait_loom)]
    loom::sync::atomic::fence(loom::sync::atomic::Ordering::SeqCst);
}

#[cfg(not(plait_loom))]
pub(crate) mod thread {
    pub(crate) use std::thread::{Thread, current, park};
}

#[cfg(plait_loom)]
pub(crate) mod thread {
    pub(crate) use loom::thread::{Thread, current, park};
}

#[cfg(not(plait_loom))]
pub(crate) mod cell {
    /// `std::cell::UnsafeCell` behind loom's closure-based API, so one body of code compiles
    /// against both.
    #[derive(Debug)]
    pub(crate) struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

    impl<T> UnsafeCell<T> {
        pub(crate) const fn new(value: T) -> Self {
            Self(std::cell::UnsafeCell::new(value))
        }

        /// Gives `f` a shared pointer to the contents.
        pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
            f(self.0.get())
        }

        /// Gives `f` an exclusive pointer to the contents.
        pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
            f(self.0.get())
        }
    }
}

#[cfg(plait_loom)]
pub(crate) mod cell {
    pub(crate) use loom::cell::UnsafeCell;
}

/// Runs a model test: explores the interleavings of `f` with at most three preemptions
/// (what tokio runs in CI; raise it with `LOOM_MAX_PREEMPTIONS`).
#[cfg(all(test, plait_loom))]
pub(crate) fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(3);
    }
    builder.check(f);
}
