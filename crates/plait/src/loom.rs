//! The synchronisation primitives that hand-rolled code in this crate is built on.
//!
//! Under `--cfg plait_loom` they are loom's, so the model tests (`task/loom_test.rs`,
//! `pool/sleep.rs`, `process/pool.rs`) explore every interleaving of the code that uses them; otherwise they
//! are std's, at no cost.

#[cfg(not(plait_loom))]
pub(crate) mod sync {
    pub(crate) use std::sync::Mutex;
    pub(crate) use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering, fence};
}

#[cfg(plait_loom)]
pub(crate) mod sync {
    pub(crate) use loom::sync::Mutex;
    pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering, fence};
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
