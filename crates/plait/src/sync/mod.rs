//! Synchronisation between tasks: which primitive to use from which strand.
//!
//! plait writes none of these itself: they are the well-kept crates' versions, re-exported
//! or thinly wrapped. What matters is picking the one that fits the strand you are on. A
//! blocking primitive inside a coroutine stalls every coroutine on that worker; an async one
//! in a thread task needs a runtime to drive it.
//!
//! | Python | from threads (blocking) | from coroutines (`.await`) | from both |
//! |---|---|---|---|
//! | `queue.Queue` / `asyncio.Queue` | | | [`channel::bounded`] (`send_blocking` / `send().await`) |
//! | `threading.Semaphore` / `asyncio.Semaphore` | | | [`Semaphore`] (`acquire_blocking` / `acquire().await`) |
//! | `threading.Event` / `asyncio.Event` | | | [`Event`] (`wait` / `wait_async().await`) |
//! | `threading.Lock` / `asyncio.Lock` | [`blocking::Mutex`] | [`coroutine::Mutex`] | |
//! | `threading.RLock` | none: restructure, or a [`blocking::Mutex`] around the shared part | | |
//! | `threading.Condition` / `asyncio.Condition` | [`blocking::Condvar`] | [`coroutine::Notify`] | |
//! | `threading.Barrier` / `asyncio.Barrier` | [`blocking::Barrier`] | [`coroutine::Barrier`] | |
//! | `concurrent.futures.Future` | | | [`Handle`](crate::Handle), or [`coroutine::oneshot`] |
//!
//! Rules of thumb:
//!
//! * A [`blocking::Mutex`] is fine inside a coroutine **if it is never held across an
//!   `.await`** and its critical sections are short; it is faster than the async one. Hold a
//!   lock across `.await` only with [`coroutine::Mutex`].
//! * Never call a `*_blocking` method or [`Event::wait`] inside a coroutine; use the async
//!   form.
//! * On a thread-strand task, a `*_blocking` method, [`Event::wait`] or a blocking lock holds
//!   its pool thread until it returns (unlike [`Handle::join`](crate::Handle::join), which
//!   has a spare thread take its place). If what it waits for is a task queued behind it
//!   and every pool thread is held so, nothing runs that task: make such waits from
//!   coroutines, or keep the producer off the pool.
//! * To hand results from threads to coroutines or back, use a [`channel`]: both ends work
//!   from both strands.
//!
//! # Examples
//!
//! A thread task produces, a coroutine consumes:
//!
//! ```
//! use plait::sync::channel;
//! let rt = plait::Runtime::new()?;
//! let (tx, rx) = channel::bounded::<u64>(16);
//! let producer = rt.spawn(move || {
//!     for i in 0..100 {
//!         tx.send_blocking(i * i).unwrap();
//!     }
//! });
//! let consumer = rt.spawn_async(async move {
//!     let mut sum = 0;
//!     while let Ok(x) = rx.recv().await {
//!         sum += x;
//!     }
//!     sum
//! });
//! producer.join()?;
//! assert_eq!(consumer.join()?, 328_350);
//! # Ok::<(), plait::Error>(())
//! ```

mod event;
mod semaphore;

pub use event::Event;
pub use semaphore::{Permit, Semaphore};

/// Multi-producer, multi-consumer channels usable from both strands (the `async-channel`
/// crate): `send().await` / `recv().await` in coroutines, `send_blocking` / `recv_blocking`
/// in threads. A channel closes when all senders or all receivers are dropped.
pub mod channel {
    pub use async_channel::{
        Receiver, RecvError, SendError, Sender, TryRecvError, TrySendError, bounded, unbounded,
    };
}

/// Blocking primitives for thread-strand tasks (the standard library's).
pub mod blocking {
    pub use std::sync::{Barrier, Condvar, Mutex, MutexGuard, RwLock};
}

/// Async primitives for coroutines (tokio's).
pub mod coroutine {
    pub use tokio::sync::{
        Barrier, Mutex, MutexGuard, Notify, RwLock, broadcast, mpsc, oneshot, watch,
    };
}
