//! The coroutine strand's part of [`Runtime`]: futures on the tokio runtime (see
//! [`coroutine`](crate::coroutine)).

use std::future::Future;
use std::time::Duration;

use crate::coroutine::{MapAsync, MapAsyncUnordered, map};
use crate::error::SpawnError;
use crate::{Handle, Result, Runtime};

impl Runtime {
    /// Runs `future` on the coroutine strand and returns a handle to its output.
    ///
    /// Waits for room if the strand holds its [queue bound](crate::Builder::queue_bound) of
    /// unfinished coroutines (see [`try_spawn_async`](Runtime::try_spawn_async)); a
    /// coroutine waiting for tasks releases its slot (see
    /// [`queue_bound`](crate::Builder::queue_bound)), so coroutines that spawn and await
    /// their children cannot deadlock on the bound. After
    /// [`shutdown`](Runtime::shutdown) the handle reports [`Error::Shutdown`](crate::Error::Shutdown).
    ///
    /// The future is made by the caller, outside the runtime: one whose making needs the
    /// runtime (`tokio::time::sleep(d)` registers a timer) must be made inside an `async`
    /// block, as below, or it panics for want of a runtime.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let rt = plait::Runtime::new()?;
    /// let waits: Vec<_> = (0..1000)
    ///     .map(|i| rt.spawn_async(async move {
    ///         tokio::time::sleep(Duration::from_millis(20)).await;
    ///         i
    ///     }))
    ///     .collect();
    /// let started = std::time::Instant::now();
    /// let total: u64 = waits.into_iter().map(|h| h.join().unwrap()).sum();
    /// assert_eq!(total, 499_500);
    /// assert!(started.elapsed() < Duration::from_secs(2)); // 1000 waits at once, not in turn
    /// # Ok::<(), plait::Error>(())
    /// ```
    pub fn spawn_async<Fut>(&self, future: Fut) -> Handle<Fut::Output>
    where
        Fut: Future + Send + 'static,
        Fut::Output: Send + 'static,
    {
        self.spawn_coroutine(future, None)
    }

    pub(crate) fn spawn_coroutine<Fut>(
        &self,
        future: Fut,
        limit: Option<Duration>,
    ) -> Handle<Fut::Output>
    where
        Fut: Future + Send + 'static,
        Fut::Output: Send + 'static,
    {
        self.shared.coroutines.spawn(future, limit)
    }

    /// Spawns a future that reports its own errors (flattened into the handle's).
    pub(crate) fn spawn_coroutine_fallible<Fut, T>(&self, future: Fut) -> Handle<T>
    where
        Fut: Future<Output = Result<T>> + Send + 'static,
        T: Send + 'static,
    {
        self.shared.coroutines.spawn_fallible(future)
    }

    /// Like [`spawn_async`](Runtime::spawn_async), but never waits: if the strand is full
    /// (or shut down) the future comes back inside the error.
    ///
    /// # Errors
    ///
    /// [`Error::QueueFull`](crate::Error::QueueFull) or [`Error::Shutdown`](crate::Error::Shutdown), with the future.
    pub fn try_spawn_async<Fut>(
        &self,
        future: Fut,
    ) -> std::result::Result<Handle<Fut::Output>, SpawnError<Fut>>
    where
        Fut: Future + Send + 'static,
        Fut::Output: Send + 'static,
    {
        self.shared.coroutines.try_spawn(future)
    }

    /// Runs `future` to completion on the current thread and returns its output: the bridge
    /// from synchronous code into coroutines. Tokio's timers, sockets and channels work
    /// inside it.
    ///
    /// Safe to call from inside a coroutine (the worker's other tasks move to another thread
    /// first), though `.await` is better there. Inside a thread-strand task it holds the pool
    /// thread while the future waits, like any blocking call: if the future waits for other
    /// thread tasks, [`Handle::join`](crate::Handle::join) them instead, which has a spare
    /// thread take its place while it waits.
    ///
    /// # Examples
    ///
    /// ```
    /// let rt = plait::Runtime::new()?;
    /// let answer = rt.block_on(async {
    ///     let a = rt.spawn_async(async { 20 });
    ///     let b = rt.spawn(|| 22);
    ///     a.await.unwrap() + b.await.unwrap()
    /// });
    /// assert_eq!(answer, 42);
    /// # Ok::<(), plait::Error>(())
    /// ```
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        super::current::within(&self.shared.home, || {
            self.shared.coroutines.block_on(future)
        })
    }

    /// The number of worker threads of the coroutine strand.
    #[must_use]
    pub fn coroutine_workers(&self) -> usize {
        self.shared.coroutines.workers()
    }

    /// Runs `f(item)` as a coroutine for every item, at most `limit` at a time, and yields
    /// the outputs **in input order**.
    ///
    /// The result is a [`Stream`](crate::coroutine::Stream) for async code, and turns into a blocking iterator with
    /// `into_iter()` (or a `for` loop) for synchronous code. It is lazy: coroutines are
    /// spawned as results are consumed, so the input may be endless. `limit` is at least 1.
    ///
    /// Ordered output means a slow item holds back the ones after it, which keep their
    /// slots meanwhile; use [`map_async_unordered`](Runtime::map_async_unordered) when order
    /// does not matter.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let rt = plait::Runtime::new()?;
    /// let lengths: Vec<usize> = rt
    ///     .map_async(["a", "bb", "ccc"], 100, |name| async move {
    ///         tokio::time::sleep(Duration::from_millis(5)).await; // a request, say
    ///         name.len()
    ///     })
    ///     .into_iter()
    ///     .collect::<Result<_, _>>()?;
    /// assert_eq!(lengths, [1, 2, 3]);
    /// # Ok::<(), plait::Error>(())
    /// ```
    pub fn map_async<I, F, Fut>(
        &self,
        items: I,
        limit: usize,
        f: F,
    ) -> MapAsync<I::IntoIter, F, Fut::Output>
    where
        I: IntoIterator,
        F: FnMut(I::Item) -> Fut,
        Fut: Future + Send + 'static,
        Fut::Output: Send + 'static,
    {
        map::map_async(&self.shared.coroutines, items, limit, f)
    }

    /// Like [`map_async`](Runtime::map_async), but yields `(index, output)` pairs **as they
    /// complete**, so one slow item never holds back the rest.
    pub fn map_async_unordered<I, F, Fut>(
        &self,
        items: I,
        limit: usize,
        f: F,
    ) -> MapAsyncUnordered<I::IntoIter, F, Fut::Output>
    where
        I: IntoIterator,
        F: FnMut(I::Item) -> Fut,
        Fut: Future + Send + 'static,
        Fut::Output: Send + 'static,
    {
        map::map_async_unordered(&self.shared.coroutines, items, limit, f)
    }
}
