//! The thread strand's part of [`Runtime`]: CPU-bound closures on the work-stealing pool
//! (see [`thread`](crate::thread)).

use std::time::Duration;

use crate::error::SpawnError;
use crate::pool::Pool;
use crate::thread::{Map, MapUnordered, Scope, map};
use crate::{Handle, Result, Runtime};

impl Runtime {
    /// Runs `f` on the thread strand and returns a handle to its result.
    ///
    /// If the strand already holds its [queue bound](crate::Builder::queue_bound) of
    /// unfinished tasks, `spawn` waits for room (backpressure); a spare thread takes the
    /// place of a pool thread while it waits, so the queued tasks still run; and a task waiting
    /// for tasks releases its slot in the bound (see [`queue_bound`](crate::Builder::queue_bound)),
    /// so tasks that spawn and join their children cannot deadlock on it. Use
    /// [`try_spawn`](Runtime::try_spawn) not to wait.
    ///
    /// After [`shutdown`](Runtime::shutdown) the returned handle reports
    /// [`Error::Shutdown`](crate::Error::Shutdown).
    ///
    /// # Examples
    ///
    /// ```
    /// let rt = plait::Runtime::new()?;
    /// let handles: Vec<_> = (0..4u64).map(|i| rt.spawn(move || i * i)).collect();
    /// let squares: Vec<u64> = handles.into_iter().map(|h| h.join()).collect::<Result<_, _>>()?;
    /// assert_eq!(squares, [0, 1, 4, 9]);
    /// # Ok::<(), plait::Error>(())
    /// ```
    pub fn spawn<F, T>(&self, f: F) -> Handle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.spawn_thread(f, None)
    }

    pub(crate) fn spawn_thread<F, T>(&self, f: F, limit: Option<Duration>) -> Handle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.shared.threads.spawn(f, limit)
    }

    /// Like [`spawn`](Runtime::spawn), but never waits: if the strand is full (or shut
    /// down) the closure comes back inside the error, so nothing is lost.
    ///
    /// # Errors
    ///
    /// [`Error::QueueFull`](crate::Error::QueueFull) when the strand holds its queue bound of unfinished tasks;
    /// [`Error::Shutdown`](crate::Error::Shutdown) after [`shutdown`](Runtime::shutdown).
    pub fn try_spawn<F, T>(&self, f: F) -> std::result::Result<Handle<T>, SpawnError<F>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.shared.threads.try_spawn(f)
    }

    /// Runs `a` and `b` in parallel and returns both results: the building block of divide
    /// and conquer (rayon's `join`).
    ///
    /// `a` runs on the current thread while `b` is offered to the pool; if no pool thread
    /// has taken `b` by the time `a` is done, the current thread runs it too, so `join`
    /// returns even when every pool thread is busy. If a pool thread has `b`, the current
    /// thread waits for it (with a spare thread in its place, on a pool thread, as
    /// [`Handle::join`](crate::Handle::join) does).
    ///
    /// # Errors
    ///
    /// [`Error::Panicked`](crate::Error::Panicked) if either closure panicked (the other still runs to the end).
    ///
    /// # Examples
    ///
    /// ```
    /// fn sum(rt: &plait::Runtime, xs: &[u64]) -> u64 {
    ///     if xs.len() <= 1024 {
    ///         return xs.iter().sum();
    ///     }
    ///     let (left, right) = xs.split_at(xs.len() / 2);
    ///     let (a, b) = rt.join(|| sum(rt, left), || sum(rt, right)).unwrap();
    ///     a + b
    /// }
    /// let rt = plait::Runtime::new()?;
    /// let xs: Vec<u64> = (1..=100_000).collect();
    /// assert_eq!(sum(&rt, &xs), 5_000_050_000);
    /// # Ok::<(), plait::Error>(())
    /// ```
    pub fn join<A, B, RA, RB>(&self, a: A, b: B) -> Result<(RA, RB)>
    where
        A: FnOnce() -> RA + Send,
        B: FnOnce() -> RB + Send,
        RA: Send,
        RB: Send,
    {
        self.shared.threads.join(a, b)
    }

    /// The number of threads in the thread strand.
    #[must_use]
    pub fn threads(&self) -> usize {
        self.shared.threads.threads()
    }

    pub(crate) fn thread_pool(&self) -> &Pool {
        self.shared.threads.pool()
    }

    /// Runs `op` on the current thread; tasks it spawns may borrow from the current stack.
    /// Returns once every task spawned in the scope has finished.
    ///
    /// Each [`Scope::spawn`](crate::thread::Scope::spawn) returns a [`ScopedHandle`](crate::thread::ScopedHandle): join it to get the task's result
    /// (or its panic, as [`Error::Panicked`](crate::Error::Panicked)). While it waits at the
    /// end, a pool thread runs the scope's own tasks that are still queued on it, and
    /// otherwise has a spare thread take its place (see [`Handle::join`](crate::Handle::join)).
    ///
    /// # Panics
    ///
    /// Like [`std::thread::scope`]: if a task panicked and its handle was dropped without
    /// being joined, the panic is re-raised here once all tasks have finished, so that it is
    /// not lost. A panic of `op` itself is re-raised too, also only once every task has
    /// finished.
    ///
    /// # Examples
    ///
    /// ```
    /// let rt = plait::Runtime::new()?;
    /// let mut data = vec![1u64, 2, 3, 4];
    /// let total: u64 = rt.scope(|s| {
    ///     let (left, right) = data.split_at_mut(2);
    ///     let a = s.spawn(|| { left.iter_mut().for_each(|x| *x *= 10); left.iter().sum::<u64>() });
    ///     let b = s.spawn(|| { right.iter_mut().for_each(|x| *x *= 10); right.iter().sum::<u64>() });
    ///     a.join().unwrap() + b.join().unwrap()
    /// });
    /// assert_eq!(total, 100);
    /// assert_eq!(data, [10, 20, 30, 40]);
    /// # Ok::<(), plait::Error>(())
    /// ```
    pub fn scope<'scope, OP, R>(&self, op: OP) -> R
    where
        OP: FnOnce(&Scope<'_, 'scope>) -> R,
    {
        self.shared.threads.scope(op)
    }

    /// Applies `f` to every item on the thread strand and yields the results **in input
    /// order**, as they become available.
    ///
    /// The map is lazy: nothing runs until the iterator is polled, and at most
    /// [`max_in_flight`](Map::max_in_flight) items (by default the runtime's
    /// [queue bound](crate::Builder::queue_bound)) are taken from `items` and not yet handed
    /// out, so an endless input runs in bounded memory. Tiny items are batched
    /// automatically. Dropping the map cancels the work not yet done.
    ///
    /// A panic in `f` becomes an `Err` for that item only; the other items go on.
    ///
    /// Iterating hands every result to the iterating thread, which suits results consumed
    /// as they come. To gather them all into a `Vec`, [`Map::collect_vec`] is much faster
    /// over many tiny items (as fast as rayon's `par_iter().map().collect()` over a range):
    /// the pool threads write the results in place, and an input small enough to be done
    /// sooner alone than with helpers is done alone.
    ///
    /// # Examples
    ///
    /// ```
    /// let rt = plait::Runtime::new()?;
    /// let squares: Vec<u64> = rt.map(0..1_000_000u64, |x| x * x).collect_vec()?;
    /// assert_eq!(squares[999], 998_001);
    ///
    /// // Lazy: take five results from an endless input.
    /// let firsts: Vec<u64> = rt.map(0u64.., |x| x + 1).take(5).map(Result::unwrap).collect();
    /// assert_eq!(firsts, [1, 2, 3, 4, 5]);
    /// # Ok::<(), plait::Error>(())
    /// ```
    pub fn map<I, F, T>(&self, items: I, f: F) -> Map<I::IntoIter, F, T>
    where
        I: IntoIterator,
        I::Item: Send + 'static,
        F: Fn(I::Item) -> T + Send + Sync + 'static,
        T: Send + 'static,
    {
        map::map(&self.shared.threads, items, f)
    }

    /// Like [`map`](Runtime::map), but yields results **as they complete**: one slow item
    /// does not hold back the others. Each result comes with its item's index in the input.
    ///
    /// # Examples
    ///
    /// ```
    /// let rt = plait::Runtime::new()?;
    /// let mut results: Vec<(usize, u32)> = rt
    ///     .map_unordered(vec![30u32, 10, 20], |ms| { std::thread::sleep(std::time::Duration::from_millis(ms.into())); ms })
    ///     .map(|(i, r)| (i, r.unwrap()))
    ///     .collect();
    /// results.sort();
    /// assert_eq!(results, [(0, 30), (1, 10), (2, 20)]);
    /// # Ok::<(), plait::Error>(())
    /// ```
    pub fn map_unordered<I, F, T>(&self, items: I, f: F) -> MapUnordered<I::IntoIter, F, T>
    where
        I: IntoIterator,
        I::Item: Send + 'static,
        F: Fn(I::Item) -> T + Send + Sync + 'static,
        T: Send + 'static,
    {
        map::map_unordered(&self.shared.threads, items, f)
    }
}
