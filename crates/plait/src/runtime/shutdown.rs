//! Shutting a runtime down: finish what can finish, cancel the rest, say which was which.

use std::fmt;
use std::time::{Duration, Instant};

use super::Runtime;
use crate::strand::StrandState;
use crate::strand::admission::Admission;
use crate::task::wait;

/// How long the cancellation phase waits without seeing any task finish before it gives up
/// on the rest (thread tasks that do not check for cancellation).
const SETTLE: Duration = Duration::from_millis(20);

/// How long a shutdown waits for worker processes to be stopped and reaped.
const REAP: Duration = Duration::from_secs(2);

/// What [`Runtime::shutdown`] did with the tasks in flight.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Thread-strand tasks.
    pub threads: StrandReport,
    /// Coroutine-strand tasks.
    pub coroutines: StrandReport,
    /// Process-strand tasks.
    pub processes: StrandReport,
    /// How long the shutdown took.
    pub elapsed: Duration,
}

/// One strand's part of a [`ShutdownReport`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StrandReport {
    /// Tasks that finished during the shutdown (with a value, an error or a panic).
    pub completed: u64,
    /// Tasks that were cancelled: never started, dropped at an `.await`, or stopped after
    /// seeing the cancellation. Their handles report [`Error::Cancelled`](crate::Error::Cancelled).
    pub cancelled: u64,
    /// Thread tasks still running when the shutdown returned: they were asked to stop but
    /// have not checked yet. Their handles will report the cancellation when they end;
    /// nothing is lost, but they still hold a thread.
    pub unfinished: u64,
}

impl ShutdownReport {
    /// `true` if every task in flight finished and none had to be cancelled.
    #[must_use]
    pub fn is_clean(&self) -> bool {
        [self.threads, self.coroutines, self.processes]
            .iter()
            .all(|strand| strand.cancelled + strand.unfinished == 0)
    }
}

impl fmt::Display for ShutdownReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "shut down in {:.1?}: threads {} completed, {} cancelled, {} unfinished; \
             coroutines {} completed, {} cancelled, {} unfinished; \
             processes {} completed, {} cancelled, {} unfinished",
            self.elapsed,
            self.threads.completed,
            self.threads.cancelled,
            self.threads.unfinished,
            self.coroutines.completed,
            self.coroutines.cancelled,
            self.coroutines.unfinished,
            self.processes.completed,
            self.processes.cancelled,
            self.processes.unfinished,
        )
    }
}

impl Runtime {
    /// Resolves once [`shutdown`](Runtime::shutdown) has begun: the cue for a coroutine
    /// that runs until told, such as a server's accept loop, to stop taking new work and
    /// finish what it holds before the shutdown's timeout runs out (the shutdown waits for
    /// it as for any task).
    ///
    /// ```
    /// use std::time::Duration;
    /// let rt = plait::Runtime::new()?;
    /// let closing = rt.closing();
    /// let server = rt.spawn_async(async move {
    ///     closing.await; // until the shutdown begins: accept, serve...
    ///     "drained"
    /// });
    /// let report = rt.shutdown(Duration::from_secs(5));
    /// assert_eq!(server.join()?, "drained");
    /// assert_eq!(report.coroutines.cancelled, 0);
    /// # Ok::<(), plait::Error>(())
    /// ```
    pub fn closing(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut closing = self.shared.closing.subscribe();
        async move {
            // An error means the runtime is gone: closed all the same.
            let _ = closing.wait_for(|closing| *closing).await;
        }
    }

    /// Stops taking tasks, lets the tasks in flight finish for up to `timeout`, cancels
    /// whatever is left, and reports what happened to each.
    ///
    /// Every task in flight ends one of two ways, and its handle says which: it ran (and
    /// reports its value or error), or it was cancelled (and reports
    /// [`Error::Cancelled`](crate::Error::Cancelled)). At the deadline, queued tasks are
    /// dropped unrun (queued thread tasks by the caller's thread, which runs their
    /// closures' destructors), coroutines are dropped at their next `.await`, and running
    /// thread tasks are asked to stop; the shutdown then waits while cancellations keep
    /// landing, and returns once none has for 20 ms (or after `timeout` more in all, if they
    /// keep trickling in; worker processes are given 2 s more to die). Thread tasks still
    /// running then, having ignored the request, are counted as `unfinished`. The report
    /// adds up: `completed + cancelled + unfinished` on each strand is what was in flight
    /// when the shutdown began.
    ///
    /// After a shutdown, spawns on any clone of this runtime return handles that report
    /// [`Error::Shutdown`](crate::Error::Shutdown) (tasks of a [`scope`](Runtime::scope) still
    /// running then report [`Error::Cancelled`](crate::Error::Cancelled)). Call it from
    /// synchronous code outside the runtime: called from one of the runtime's own tasks, it
    /// waits out the whole `timeout`, since that task is itself in flight.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let rt = plait::Runtime::new()?;
    /// let quick = rt.spawn(|| 1 + 1);
    /// let stuck = rt.spawn_async(std::future::pending::<()>());
    /// let report = rt.shutdown(Duration::from_millis(50));
    /// assert_eq!(quick.join()?, 2);
    /// assert!(stuck.join().unwrap_err().is_cancelled());
    /// assert_eq!(report.coroutines.cancelled, 1);
    /// # Ok::<(), plait::Error>(())
    /// ```
    pub fn shutdown(&self, timeout: Duration) -> ShutdownReport {
        let started = Instant::now();
        // Long-running coroutines (a server's accept loop) hear it first, and may finish
        // what they hold within the timeout.
        self.shared.closing.send_replace(true);
        let deadline = started.checked_add(timeout).unwrap_or_else(far_future);
        let (threads, coroutines, processes) = (
            &self.shared.threads,
            &self.shared.coroutines,
            &self.shared.processes,
        );
        threads.state.close();
        coroutines.state.close();
        processes.state.close();
        wait::blocking_region(|| {
            let drained = threads.state.admission.wait_idle(deadline)
                && coroutines.state.admission.wait_idle(deadline)
                && processes.state.admission.wait_idle(deadline);
            threads.state.cancel_all();
            coroutines.state.cancel_all();
            processes.state.cancel_all();
            // Queued thread tasks are cancelled now, here, even if every pool thread is
            // held by a task that ignores the request.
            threads.pool().drain_cancelled();
            // Workers finish what they hold (nothing, if drained) or are killed; either way
            // they are reaped before the coroutines that supervise them stop.
            processes.stop(drained, REAP);
            // One allowance for every strand's settling, not one each.
            let end = Instant::now()
                .checked_add(timeout.max(SETTLE))
                .unwrap_or_else(far_future);
            settle(&processes.state.admission, SETTLE, end);
            // Waits for the coroutines to be dropped: on a busy machine tokio's threads may
            // take longer to drop them than the settling below waits between cancellations.
            coroutines.stop(Some(REAP));
            if !drained {
                settle(&coroutines.state.admission, SETTLE, end);
                settle(&threads.state.admission, SETTLE, end);
            }
        });
        ShutdownReport {
            threads: strand_report(&threads.state),
            coroutines: strand_report(&coroutines.state),
            processes: strand_report(&processes.state),
            elapsed: started.elapsed(),
        }
    }
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(60 * 60 * 24 * 365)
}

/// Waits while cancelled tasks keep landing: until none has for `quiet` (a wake-up with
/// nothing landed does not end the wait), or until `end`.
fn settle(admission: &Admission, quiet: Duration, end: Instant) {
    let mut quiet_until = Instant::now() + quiet;
    let mut left = admission.in_flight();
    while left > 0 {
        let wait = quiet_until
            .min(end)
            .saturating_duration_since(Instant::now());
        if wait.is_zero() {
            return;
        }
        let now = admission.wait_change(wait);
        if now < left {
            left = now;
            quiet_until = Instant::now() + quiet;
        }
    }
}

fn strand_report(state: &StrandState) -> StrandReport {
    let (completed, cancelled) = state.tally();
    StrandReport {
        completed,
        cancelled,
        unfinished: state.admission.in_flight() as u64,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn settling_outlasts_a_wake_up_with_nothing_landed_and_waits_for_a_quiet_spell() {
        let admission = Arc::new(Admission::new(10));
        for _ in 0..3 {
            assert!(admission.try_admit());
        }
        let quiet = Duration::from_millis(300);
        let landing = {
            let admission = Arc::clone(&admission);
            std::thread::spawn(move || {
                // A wake-up that lands nothing, then three landings well within `quiet` of
                // one another.
                std::thread::sleep(Duration::from_millis(10));
                admission.wake_all();
                for _ in 0..3 {
                    std::thread::sleep(Duration::from_millis(30));
                    admission.finish();
                }
            })
        };
        settle(&admission, quiet, Instant::now() + Duration::from_secs(60));
        assert_eq!(
            admission.in_flight(),
            0,
            "settling ended before the landings"
        );
        landing.join().unwrap();
    }
}
