//! A counting semaphore usable from both strands.

use crate::task::wait;

/// Limits how many tasks do something at once, from threads or coroutines alike: a thin
/// wrapper over tokio's semaphore that adds a blocking `acquire` for thread tasks.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// let rt = plait::Runtime::new()?;
/// let gate = Arc::new(plait::sync::Semaphore::new(2));
/// let inside = Arc::new(AtomicUsize::new(0));
/// let handles: Vec<_> = (0..8).map(|_| {
///     let (gate, inside) = (gate.clone(), inside.clone());
///     rt.spawn_async(async move {
///         let _permit = gate.acquire().await;
///         assert!(inside.fetch_add(1, Ordering::SeqCst) < 2);
///         tokio::task::yield_now().await;
///         inside.fetch_sub(1, Ordering::SeqCst);
///     })
/// }).collect();
/// for h in handles { h.join()?; }
/// # Ok::<(), plait::Error>(())
/// ```
#[derive(Debug)]
pub struct Semaphore(tokio::sync::Semaphore);

/// One acquired permit; released when dropped.
pub type Permit<'a> = tokio::sync::SemaphorePermit<'a>;

impl Semaphore {
    /// The most permits a semaphore can hold (tokio's limit).
    pub const MAX_PERMITS: usize = tokio::sync::Semaphore::MAX_PERMITS;

    /// A semaphore with `permits` permits.
    ///
    /// # Panics
    ///
    /// If `permits` exceeds [`Semaphore::MAX_PERMITS`].
    #[must_use]
    #[track_caller]
    pub fn new(permits: usize) -> Self {
        Semaphore(tokio::sync::Semaphore::new(permits))
    }

    /// Waits for a permit, in a coroutine. Waiters are served first come, first served.
    pub async fn acquire(&self) -> Permit<'_> {
        match self.0.acquire().await {
            Ok(permit) => permit,
            Err(_) => unreachable!("this semaphore is never closed"),
        }
    }

    /// Waits for a permit, blocking the current thread (a thread task, or synchronous code).
    pub fn acquire_blocking(&self) -> Permit<'_> {
        wait::blocking_region(|| wait::block_on(self.acquire(), None))
            .unwrap_or_else(|| unreachable!("a wait without deadline never times out"))
    }

    /// Takes a permit if one is free now.
    #[must_use]
    pub fn try_acquire(&self) -> Option<Permit<'_>> {
        self.0.try_acquire().ok()
    }

    /// Adds permits.
    ///
    /// # Panics
    ///
    /// If the total would exceed [`Semaphore::MAX_PERMITS`].
    #[track_caller]
    pub fn add_permits(&self, n: usize) {
        self.0.add_permits(n);
    }

    /// Permits free now.
    #[must_use]
    pub fn available_permits(&self) -> usize {
        self.0.available_permits()
    }
}
