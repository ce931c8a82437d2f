//! [`Strand::Auto`](crate::Strand::Auto)'s routes, and the part of [`Runtime`] that sends closures by strand:
//! how each route decides is told in [`advise::auto`](crate::advise::auto).

use std::any::TypeId;
use std::cell::Cell;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use crate::advise::auto::{Decision, LEAVE_IO_SHARE, RECHECK, WARM_UP};
use crate::advise::{Bound, Profile, profile};
use crate::process::Task;
use crate::{Error, Handle, Runtime, Strand, TaskId};

/// Every route of a runtime.
#[derive(Default)]
pub(crate) struct Router {
    routes: Mutex<HashMap<TypeId, Route>>,
}

struct Route {
    decision: Decision,
    /// Measured calls not reported yet, before the first decision.
    measuring: usize,
    /// The CPU shares of the latest measured runs, at most [`WARM_UP`].
    shares: Vec<f64>,
    /// The call at which the next re-check is due.
    next_check: u64,
}

thread_local! {
    /// The route whose call this thread is running, if any.
    static RUNNING: Cell<Option<TypeId>> = const { Cell::new(None) };
}

/// Marks a call of a route as running on this thread until dropped; restores the one it
/// interrupted (a join that runs the joined task in place runs calls inside calls).
struct Running(Option<TypeId>);

impl Running {
    fn enter(key: TypeId) -> Running {
        Running(RUNNING.with(|running| running.replace(Some(key))))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        RUNNING.with(|running| running.set(self.0));
    }
}

/// A call its route asked to measure. [`run`](Measurement::run) measures and reports it;
/// dropped without running (the call was cancelled before it started, or panicked), it
/// gives its warm-up place back, so that the route still decides.
#[must_use = "a measurement gives its place back when dropped"]
pub(crate) struct Measurement {
    router: Arc<Router>,
    key: TypeId,
    reported: bool,
}

impl Measurement {
    /// Runs `f`, measured, and reports it to its route.
    pub(crate) fn run<T>(mut self, f: impl FnOnce() -> T) -> T {
        let (output, measured) = profile(f);
        self.router.report(self.key, &measured);
        self.reported = true;
        output
    }
}

impl Drop for Measurement {
    fn drop(&mut self) {
        if !self.reported {
            self.router.abandon(self.key);
        }
    }
}

impl Router {
    /// Where the next call of `key` goes, its measurement if it is to be measured, and (if
    /// `want_reason`) the route's reason as it stands, taken under the same lock. `nested`:
    /// the caller is a thread-strand task, whose burst stays on the thread strand.
    pub(crate) fn route(
        router: &Arc<Router>,
        key: TypeId,
        task: &'static str,
        want_reason: bool,
        nested: bool,
    ) -> (Strand, Option<Measurement>, Option<String>) {
        let measurement = || Measurement {
            router: Arc::clone(router),
            key,
            reported: false,
        };
        let mut routes = router.routes.lock().unwrap_or_else(PoisonError::into_inner);
        let route = routes.entry(key).or_insert_with(|| Route {
            decision: Decision {
                task,
                strand: Strand::Thread,
                bound: None,
                cpu_share: 0.0,
                calls: 0,
                measured: 0,
                changes: 0,
                reason: format!("measuring its first {WARM_UP} calls on the thread strand"),
            },
            measuring: 0,
            shares: Vec::with_capacity(WARM_UP),
            next_check: 0,
        });
        route.decision.calls += 1;
        let reason = want_reason.then(|| route.decision.reason.clone());
        // Made from inside a call of this same route: recursive work that splits and joins.
        // Wherever the route sends its calls, these stay on the thread strand, where a join
        // runs its task in place or has a spare take its place (on the blocking-I/O threads
        // each level would hold one of a bounded set of threads).
        if RUNNING.with(Cell::get) == Some(key) {
            return (Strand::Thread, None, reason);
        }
        if route.decision.bound.is_none() {
            // Undecided: measure up to WARM_UP at once on the thread strand; the rest of a
            // burst goes to the blocking-I/O threads, unmeasured (or, nested, stays).
            if route.measuring + route.shares.len() < WARM_UP {
                route.measuring += 1;
                return (Strand::Thread, Some(measurement()), reason);
            }
            let strand = if nested {
                Strand::Thread
            } else {
                Strand::Coroutine
            };
            return (strand, None, reason);
        }
        let measure = route.decision.calls >= route.next_check;
        if measure {
            route.next_check = route.decision.calls + RECHECK;
        }
        (route.decision.strand, measure.then(measurement), reason)
    }

    /// A measured call of `key` ended without a report: its warm-up place is free again.
    fn abandon(&self, key: TypeId) {
        let mut routes = self.routes.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(route) = routes.get_mut(&key) {
            route.measuring = route.measuring.saturating_sub(1);
        }
    }

    /// Records a measured call of `key` and decides, or re-decides.
    pub(crate) fn report(&self, key: TypeId, profile: &Profile) {
        let mut routes = self.routes.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(route) = routes.get_mut(&key) else {
            return;
        };
        route.decision.measured += 1;
        route.measuring = route.measuring.saturating_sub(1);
        if route.shares.len() == WARM_UP {
            route.shares.remove(0);
        }
        route.shares.push(profile.cpu_share());
        if route.shares.len() < WARM_UP {
            return;
        }
        let mut sorted = route.shares.clone();
        sorted.sort_by(f64::total_cmp);
        let share = sorted[sorted.len() / 2];
        let bound = Profile {
            wall: std::time::Duration::from_secs(1),
            user: std::time::Duration::from_secs_f64(share.max(0.0)),
            ..Profile::default()
        }
        .bound();
        let on_io = route.decision.strand == Strand::Coroutine && route.decision.bound.is_some();
        let strand = if bound == Bound::Io || (on_io && share < LEAVE_IO_SHARE) {
            Strand::Coroutine
        } else {
            Strand::Thread
        };
        let decision = &mut route.decision;
        let first = decision.bound.is_none();
        if !first && decision.strand != strand {
            decision.changes += 1;
        }
        decision.bound = Some(bound);
        decision.cpu_share = share;
        decision.reason = format!(
            "{bound}: a median CPU share of {share:.2} over its last {WARM_UP} measured calls ({}); {}",
            match bound {
                Bound::Cpu => "it computes",
                Bound::Io => "it waits",
                Bound::Mixed => "it computes and waits",
            },
            match strand {
                Strand::Coroutine =>
                    "its calls go to the coroutine strand's threads for blocking I/O, where a wait holds no core",
                _ => "its calls stay on the thread strand, one per core",
            }
        );
        if decision.strand != strand || first {
            tracing::debug!(task = decision.task, %strand, reason = %decision.reason, "Strand::Auto decided");
        }
        decision.strand = strand;
        if first {
            route.next_check = decision.calls + RECHECK;
        }
    }

    /// `f` as a call of route `key` (so that calls it makes of the same route are known
    /// as recursive), measured and reported if it comes with a measurement.
    pub(crate) fn routed<T, F: FnOnce() -> T>(
        key: TypeId,
        measurement: Option<Measurement>,
        f: F,
    ) -> impl FnOnce() -> T + use<T, F> {
        move || {
            let _running = Running::enter(key);
            match measurement {
                None => f(),
                Some(measurement) => measurement.run(f),
            }
        }
    }

    fn explain(&self) -> Vec<Decision> {
        let routes = self.routes.lock().unwrap_or_else(PoisonError::into_inner);
        let mut decisions: Vec<Decision> = routes
            .values()
            .map(|route| route.decision.clone())
            .collect();
        decisions.sort_by(|a, b| a.task.cmp(b.task));
        decisions
    }
}

impl Runtime {
    /// Runs the closure `f` on the strand `strand` names:
    ///
    /// * [`Strand::Thread`](crate::Strand::Thread): as [`spawn`](Runtime::spawn).
    /// * [`Strand::Coroutine`](crate::Strand::Coroutine): on the coroutine strand's threads for blocking I/O (a
    ///   closure is synchronous: where it waits, it waits there without holding one of the
    ///   thread strand's cores).
    /// * [`Strand::Auto`](crate::Strand::Auto): where its measured calls say it fits; see
    ///   [`advise::auto`](crate::advise::auto) (what a routed closure gives up: cooperative
    ///   cancellation on the blocking-I/O threads) and [`explain_auto`](Runtime::explain_auto).
    /// * [`Strand::Process`](crate::Strand::Process): refused, as a closure cannot cross into another process: the
    ///   handle reports [`Error::Failed`](crate::Error::Failed) saying to register a task (`#[plait::task]`).
    ///
    /// # Examples
    ///
    /// ```
    /// use plait::Strand;
    /// let rt = plait::Runtime::new()?;
    /// for _ in 0..8 {
    ///     rt.spawn_on(Strand::Auto, || std::thread::sleep(std::time::Duration::from_millis(5)))
    ///         .join()?;
    /// }
    /// let decision = &rt.explain_auto()[0];
    /// assert_eq!(decision.strand, Strand::Coroutine);
    /// println!("{decision}");
    /// # Ok::<(), plait::Error>(())
    /// ```
    pub fn spawn_on<F, T>(&self, strand: Strand, f: F) -> Handle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        match strand {
            Strand::Thread => self.spawn(f),
            Strand::Coroutine => self.spawn_blocking_io(f),
            Strand::Auto => self.spawn_auto(f),
            Strand::Process => Handle::ready(TaskId::next(), Err(closure_in_process())),
        }
    }

    /// Runs the registered task `task` (see [`#[plait::task]`](macro@crate::task)) with
    /// `args` on the strand `strand` names:
    ///
    /// * [`Strand::Process`](crate::Strand::Process): in a worker process, as
    ///   [`spawn_process`](Runtime::spawn_process).
    /// * [`Strand::Thread`](crate::Strand::Thread) and [`Strand::Coroutine`](crate::Strand::Coroutine): the function, called in this process,
    ///   on the thread strand or on the coroutine strand's blocking-I/O threads.
    /// * [`Strand::Auto`](crate::Strand::Auto): in this process, where its measured calls say it fits, as for a
    ///   closure ([`spawn_on`](Runtime::spawn_on)); its route is the task's, and
    ///   [`explain_auto`](Runtime::explain_auto) names it by the task's name. Auto does not
    ///   choose the process strand: whether a task may crash, leak or hang cannot be
    ///   measured without risking it. Choose [`Strand::Process`](crate::Strand::Process) for tasks that need
    ///   isolation.
    ///
    /// # Examples
    ///
    /// ```
    /// use plait::Strand;
    ///
    /// #[plait::task]
    /// fn fetch(ms: u64) -> u64 {
    ///     std::thread::sleep(std::time::Duration::from_millis(ms)); // a blocking wait
    ///     ms
    /// }
    ///
    /// let rt = plait::Runtime::new()?;
    /// for _ in 0..6 {
    ///     assert_eq!(rt.spawn_task_on(Strand::Auto, fetch::task(), 5).join()?, 5);
    /// }
    /// let decision = &rt.explain_auto()[0];
    /// assert!(decision.task.ends_with("fetch"));
    /// assert_eq!(decision.strand, Strand::Coroutine);
    /// # Ok::<(), plait::Error>(())
    /// ```
    pub fn spawn_task_on<K: Task>(
        &self,
        strand: Strand,
        task: K,
        args: K::Args,
    ) -> Handle<K::Output> {
        match strand {
            Strand::Process => self.spawn_process(task, args),
            Strand::Thread => self.spawn(move || K::run(args)),
            Strand::Coroutine => self.spawn_blocking_io(move || K::run(args)),
            Strand::Auto => {
                let key = TypeId::of::<K>();
                let nested = self.thread_pool().is_current();
                let (strand, measurement, _) =
                    Router::route(&self.shared.auto, key, K::NAME, false, nested);
                let body = Router::routed(key, measurement, move || K::run(args));
                match strand {
                    Strand::Coroutine => self.spawn_blocking_io(body),
                    _ => self.spawn(body),
                }
            }
        }
    }

    fn spawn_auto<F, T>(&self, f: F) -> Handle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let key = TypeId::of::<F>();
        let (strand, measurement, _) = Router::route(
            &self.shared.auto,
            key,
            std::any::type_name::<F>(),
            false,
            self.thread_pool().is_current(),
        );
        let body = Router::routed(key, measurement, f);
        match strand {
            Strand::Coroutine => self.spawn_blocking_io(body),
            _ => self.spawn(body),
        }
    }

    /// Runs `f` on the coroutine strand's threads for blocking I/O.
    pub(crate) fn spawn_blocking_io<F, T>(&self, f: F) -> Handle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        // It holds a slot of the coroutine strand, where it is counted: it releases it while it
        // waits for tasks, as a coroutine does.
        let strand = Arc::clone(&self.shared.coroutines.state);
        let f = move || {
            let _holding = strand.hold_slot();
            f()
        };
        self.spawn_coroutine_fallible(async move {
            tokio::task::spawn_blocking(f).await.map_err(|error| {
                if error.is_panic() {
                    Error::from_panic(error.into_panic())
                } else {
                    Error::Cancelled
                }
            })
        })
    }

    /// Where [`Strand::Auto`](crate::Strand::Auto) sends each closure it has seen, and why: one [`Decision`](crate::advise::Decision) per
    /// closure type, in name order.
    #[must_use]
    pub fn explain_auto(&self) -> Vec<Decision> {
        self.shared.auto.explain()
    }
}

/// Why a closure cannot be sent to the process strand, and the way out.
pub(crate) fn closure_in_process() -> Error {
    Error::failed(
        "a closure cannot run in another process: register a function with #[plait::task] and use spawn_process (or Graph::process)",
    )
}
