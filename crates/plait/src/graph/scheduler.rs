//! The scheduler: which node runs next, what a finished node unlocks, what a failure stops.
//!
//! All mutable state sits behind one lock, taken once when a node finishes (to record it,
//! unlock its dependents and pick what runs next) and once more when the executor hands
//! back a canceller. Nothing of the user's runs under the lock: results are dropped,
//! observers told, cancellations sent and executors called after it is released (see
//! [`After`]).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::Waker;
use std::time::{Duration, Instant};

use futures_util::task::AtomicWaker;

use super::after::{self, After, Garbage, Pending, PendingKind};
use super::deps::Value;
use super::event::{EventKind, Observer};
use super::executor::{
    CommandCall, CoroutineCall, Done, Executor, Origin, ProcessCall, ThreadCall, Work,
};
use super::meta::Meta;
use super::{Body, Call, Graph, NodeId};
use crate::{CancelHandle, Error, Strand};

/// Where a node is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Status {
    /// Some inputs have not succeeded yet.
    Waiting,
    /// In its strand's ready queue.
    Ready,
    /// Handed to the executor.
    Running,
    Succeeded,
    Failed,
    /// Not run: a node it needs failed.
    Skipped,
    /// Not run, or stopped while running: the run was cancelled or failed fast.
    Cancelled,
}

/// What never changes during a run, and the lock over what does.
pub(crate) struct Shared {
    pub(crate) meta: Arc<Meta>,
    strands: Vec<Strand>,
    /// Node `i`'s inputs are `inputs[input_starts[i]..input_starts[i + 1]]`.
    inputs: Vec<u32>,
    input_starts: Vec<u32>,
    /// Node `i`'s consumers are `dependents[dependent_starts[i]..dependent_starts[i + 1]]`.
    dependents: Vec<u32>,
    dependent_starts: Vec<u32>,
    /// The longest chain of nodes from each node to a sink: higher runs first.
    priority: Vec<u32>,
    executor: Arc<dyn Executor>,
    observers: Vec<Observer>,
    keep_going: bool,
    windows: [usize; 3],
    pub(crate) stopping: AtomicBool,
    /// Every node has ended (set under the lock).
    ended: AtomicBool,
    /// Locked sections whose garbage is not dropped yet.
    sections: AtomicUsize,
    /// Ended, and every result let go of dropped: waiters may take the results.
    complete: AtomicBool,
    waiter: AtomicWaker,
    state: Mutex<State>,
}

pub(crate) struct State {
    bodies: Vec<Option<Body>>,
    /// Input edges not yet succeeded.
    waiting: Vec<u32>,
    /// Consumer edges not yet finished: the result is released when this reaches 0.
    consumers: Vec<u32>,
    pub(crate) values: Vec<Option<Value>>,
    pub(crate) status: Vec<Status>,
    pub(crate) attempts: Vec<u32>,
    /// Why each failed node failed.
    pub(crate) errors: HashMap<u32, Error>,
    /// For each skipped node, the failed node upstream of it.
    pub(crate) upstream: HashMap<u32, u32>,
    ready: [BinaryHeap<(u32, Reverse<u32>)>; 3],
    /// Units of each strand's window in flight.
    busy: [usize; 3],
    running: HashMap<u32, CancelHandle>,
    unfinished: usize,
}

impl Shared {
    pub(crate) fn new(
        graph: Graph,
        executor: Arc<dyn Executor>,
        observers: Vec<Observer>,
        keep_going: bool,
        limits: [Option<usize>; 3],
    ) -> Arc<Shared> {
        let n = graph.specs.len();
        let graph_id = graph.id;
        let mut input_starts = graph.starts;
        input_starts.push(u32::try_from(graph.inputs.len()).expect("fewer than 2^32 edges"));
        let inputs = graph.inputs;

        // Consumers by counting sort of the input edges.
        let mut dependent_starts = vec![0u32; n + 1];
        for &input in &inputs {
            dependent_starts[input as usize + 1] += 1;
        }
        for i in 0..n {
            dependent_starts[i + 1] += dependent_starts[i];
        }
        let mut fill = dependent_starts.clone();
        let mut dependents = vec![0u32; inputs.len()];
        for node in 0..n {
            for &input in &inputs[input_starts[node] as usize..input_starts[node + 1] as usize] {
                dependents[fill[input as usize] as usize] = node as u32;
                fill[input as usize] += 1;
            }
        }

        // Inputs always come before their consumers, so one pass from the end sees every
        // consumer before its inputs.
        let mut priority = vec![0u32; n];
        for node in (0..n).rev() {
            let range = dependent_starts[node] as usize..dependent_starts[node + 1] as usize;
            priority[node] = 1 + dependents[range]
                .iter()
                .map(|&d| priority[d as usize])
                .max()
                .unwrap_or(0);
        }

        let mut strands = Vec::with_capacity(n);
        let mut options = Vec::with_capacity(n);
        let mut bodies = Vec::with_capacity(n);
        for spec in graph.specs {
            strands.push(spec.strand());
            options.push(spec.options);
            bodies.push(Some(spec.body));
        }
        let windows = Strand::ALL.map(|strand| {
            limits[strand.index()]
                .unwrap_or_else(|| executor.capacity(strand))
                .max(1)
        });
        let waiting: Vec<u32> = (0..n)
            .map(|i| input_starts[i + 1] - input_starts[i])
            .collect();
        let consumers: Vec<u32> = (0..n)
            .map(|i| dependent_starts[i + 1] - dependent_starts[i])
            .collect();
        let state = State {
            bodies,
            waiting,
            consumers,
            values: vec![None; n],
            status: vec![Status::Waiting; n],
            attempts: vec![0; n],
            errors: HashMap::new(),
            upstream: HashMap::new(),
            ready: Default::default(),
            busy: [0; 3],
            running: HashMap::new(),
            unfinished: n,
        };
        Arc::new(Shared {
            meta: Arc::new(Meta {
                graph: graph_id,
                options,
            }),
            strands,
            inputs,
            input_starts,
            dependents,
            dependent_starts,
            priority,
            executor,
            observers,
            keep_going,
            windows,
            stopping: AtomicBool::new(false),
            ended: AtomicBool::new(n == 0),
            sections: AtomicUsize::new(0),
            complete: AtomicBool::new(n == 0),
            waiter: AtomicWaker::new(),
            state: Mutex::new(state),
        })
    }

    /// Queues the nodes that need nothing and starts what fits.
    pub(crate) fn start(self: &Arc<Self>) {
        let mut after = After::default();
        {
            let mut state = self.lock();
            for node in 0..self.strands.len() {
                if state.waiting[node] == 0 {
                    self.make_ready(&mut state, node, &mut after);
                }
            }
            self.dispatch(&mut state, &mut after);
            self.leave(&state);
        }
        self.after(after);
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing of the user's runs under the lock, and the scheduler's own code does not
        // panic there; should it, the state is still the best there is.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn len(&self) -> usize {
        self.strands.len()
    }

    pub(crate) fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    pub(crate) fn is_complete(&self) -> bool {
        self.complete.load(Ordering::Acquire)
    }

    pub(crate) fn observed(&self) -> bool {
        !self.observers.is_empty()
    }

    fn option<T>(&self, node: usize, get: impl FnOnce(&super::NodeOptions) -> T, default: T) -> T {
        self.meta.option(node, get, default)
    }

    fn inputs_of(&self, node: usize) -> &[u32] {
        &self.inputs[self.input_starts[node] as usize..self.input_starts[node + 1] as usize]
    }

    fn dependents_of(&self, node: usize) -> &[u32] {
        &self.dependents
            [self.dependent_starts[node] as usize..self.dependent_starts[node + 1] as usize]
    }

    /// Whether a node's result stays to the end of the run.
    fn kept(&self, node: usize) -> bool {
        self.dependents_of(node).is_empty() || self.option(node, |o| o.keep, false)
    }

    /// Records an event for the observers, told once the lock is released.
    fn record(&self, after: &mut After, node: usize, attempt: u32, kind: PendingKind) {
        if self.observed() {
            after.events.push(Pending {
                node: node as u32,
                attempt,
                at: Instant::now(),
                kind,
            });
        }
    }

    /// Tells the observers where `Strand::Auto` sent `node`'s run `attempt`, and why.
    pub(crate) fn routed(&self, node: NodeId, attempt: u32, strand: Strand, reason: &str) {
        self.tell_now(node, attempt, EventKind::Routed { strand, reason });
    }

    /// Tells the observers that `node`'s run `attempt` has started (from [`Done::start`]).
    pub(crate) fn started(&self, node: NodeId, attempt: u32) {
        self.tell_now(node, attempt, EventKind::Started);
    }

    /// Tells the observers, now, from outside the lock.
    fn tell_now(&self, node: NodeId, attempt: u32, kind: EventKind<'_>) {
        after::tell_event(
            &self.observers,
            &self.meta,
            self.strands[node.index()],
            node.0,
            attempt,
            Instant::now(),
            kind,
        );
    }

    fn make_ready(&self, state: &mut State, node: usize, after: &mut After) {
        state.status[node] = Status::Ready;
        state.ready[self.strands[node].index()].push((self.priority[node], Reverse(node as u32)));
        // Told with the attempt it is queued for.
        self.record(after, node, state.attempts[node] + 1, PendingKind::Queued);
    }

    /// Makes `node` ready again once the backoff after its failed run `attempt` has passed
    /// (see [`NodeMut::retry_delay`](super::NodeMut::retry_delay)). Meanwhile it waits, as a
    /// node with inputs to come does, so a stop cancels it.
    fn retry_later(
        self: &Arc<Self>,
        state: &mut State,
        node: usize,
        attempt: u32,
        delay: Duration,
    ) {
        state.status[node] = Status::Waiting;
        let wait = backoff(delay, node, attempt);
        let shared = Arc::clone(self);
        let started = std::thread::Builder::new()
            .name("plait-graph-retry".to_owned())
            .spawn(move || {
                std::thread::sleep(wait);
                shared.retry_due(node, attempt);
            });
        if started.is_err() {
            // No thread for the wait: retry at once rather than never.
            state.status[node] = Status::Ready;
            state.ready[self.strands[node].index()]
                .push((self.priority[node], Reverse(node as u32)));
        }
    }

    /// The backoff of `node`'s failed run `attempt` has passed: it is ready, unless the run
    /// stopped meanwhile.
    fn retry_due(self: &Arc<Self>, node: usize, attempt: u32) {
        let mut after = After::default();
        {
            let mut state = self.lock();
            if self.ended.load(Ordering::Acquire)
                || state.status[node] != Status::Waiting
                || state.attempts[node] != attempt
            {
                return;
            }
            self.make_ready(&mut state, node, &mut after);
            self.dispatch(&mut state, &mut after);
            self.leave(&state);
        }
        self.after(after);
    }

    /// Hands ready nodes to the executor while their strands' windows have room.
    fn dispatch(self: &Arc<Self>, state: &mut State, after: &mut After) {
        if self.is_stopping() {
            return;
        }
        for strand in Strand::ALL {
            let s = strand.index();
            let window = self.windows[s];
            while let Some(&(_, Reverse(node))) = state.ready[s].peek() {
                let node = node as usize;
                let weight = self.weight(node);
                if state.busy[s] + weight > window {
                    break;
                }
                state.ready[s].pop();
                state.busy[s] += weight;
                state.status[node] = Status::Running;
                state.attempts[node] += 1;
                after.works.push(self.work(state, node));
            }
        }
    }

    fn weight(&self, node: usize) -> usize {
        let window = self.windows[self.strands[node].index()];
        (self.option(node, |o| o.weight, 1) as usize).min(window)
    }

    fn work(self: &Arc<Self>, state: &State, node: usize) -> Work {
        let inputs: Vec<Value> = self
            .inputs_of(node)
            .iter()
            .map(|&input| {
                state.values[input as usize]
                    .clone()
                    .expect("an input's result is kept until its consumers have run")
            })
            .collect();
        let body = state.bodies[node]
            .clone()
            .expect("a node's body is kept until it has finished");
        let attempt = state.attempts[node];
        let origin = Origin {
            graph: self.meta.graph,
            node: node as u32,
        };
        let call = match body {
            Body::Thread(body, key) => Call::Thread(ThreadCall {
                body,
                inputs,
                origin,
                key,
            }),
            Body::Coroutine(body) => Call::Coroutine(CoroutineCall {
                body,
                inputs,
                origin,
            }),
            Body::Process { task, args, decode } => Call::Process(ProcessCall {
                task,
                args,
                decode,
                inputs: Some(inputs),
                origin,
            }),
            Body::Command(body) => Call::Command(CommandCall {
                body,
                inputs: Some(inputs),
                shown: String::new(),
                origin,
            }),
        };
        Work {
            node: NodeId(node as u32),
            attempt,
            timeout: self.option(node, |o| o.timeout, None),
            placement: self.option(node, |o| o.placement, Strand::Thread),
            call,
            done: Done {
                shared: Arc::clone(self),
                node: NodeId(node as u32),
                attempt,
                started: self.observed().then(Instant::now),
                finished: false,
            },
        }
    }

    /// Records the end of one run of `node` and starts what it unlocks.
    pub(crate) fn finish(
        self: &Arc<Self>,
        node: NodeId,
        attempt: u32,
        started: Option<Instant>,
        output: crate::Result<Value>,
    ) {
        let elapsed = started.map_or(Duration::ZERO, |started| started.elapsed());
        let node = node.index();
        let mut after = After::default();
        {
            let mut state = self.lock();
            debug_assert_eq!(state.status[node], Status::Running);
            debug_assert_eq!(state.attempts[node], attempt);
            state.running.remove(&(node as u32));
            let s = self.strands[node].index();
            state.busy[s] -= self.weight(node);
            match output {
                Ok(value) => self.succeed(&mut state, node, value, elapsed, &mut after),
                Err(error) => {
                    let retries = self.option(node, |o| o.retries, 0);
                    if !self.is_stopping() && !error.is_cancelled() && attempt <= retries {
                        self.record(
                            &mut after,
                            node,
                            attempt,
                            PendingKind::Failed(error, elapsed, true),
                        );
                        match self.option(node, |o| o.retry_delay, None) {
                            Some(delay) => self.retry_later(&mut state, node, attempt, delay),
                            None => self.make_ready(&mut state, node, &mut after),
                        }
                    } else {
                        self.fail(&mut state, node, error, elapsed, &mut after);
                    }
                }
            }
            self.dispatch(&mut state, &mut after);
            self.leave(&state);
        }
        self.after(after);
    }

    fn succeed(
        &self,
        state: &mut State,
        node: usize,
        value: Value,
        elapsed: Duration,
        after: &mut After,
    ) {
        state.status[node] = Status::Succeeded;
        state.unfinished -= 1;
        self.retire(state, node, after);
        // Observers see the value too (an Arc's clone, only when someone observes).
        let shown = self.observed().then(|| Arc::clone(&value));
        if (state.consumers[node] > 0 && !self.is_stopping()) || self.kept(node) {
            state.values[node] = Some(value);
        } else {
            after.garbage.push(Garbage::Value(value));
        }
        self.record(
            after,
            node,
            state.attempts[node],
            PendingKind::Finished(elapsed, shown),
        );
        if self.is_stopping() {
            return;
        }
        for &dependent in self.dependents_of(node) {
            let dependent = dependent as usize;
            state.waiting[dependent] -= 1;
            if state.waiting[dependent] == 0 && state.status[dependent] == Status::Waiting {
                self.make_ready(state, dependent, after);
            }
        }
    }

    /// A node will not run again: its body goes, and its inputs lose a consumer each.
    fn retire(&self, state: &mut State, node: usize, after: &mut After) {
        if let Some(body) = state.bodies[node].take() {
            after.garbage.push(Garbage::Body(body));
        }
        for &input in self.inputs_of(node) {
            let input = input as usize;
            state.consumers[input] -= 1;
            if state.consumers[input] == 0
                && !self.kept(input)
                && let Some(value) = state.values[input].take()
            {
                after.garbage.push(Garbage::Value(value));
            }
        }
    }

    fn fail(
        &self,
        state: &mut State,
        node: usize,
        error: Error,
        elapsed: Duration,
        after: &mut After,
    ) {
        state.unfinished -= 1;
        self.retire(state, node, after);
        let attempt = state.attempts[node];
        if error.is_cancelled() && self.is_stopping() {
            state.status[node] = Status::Cancelled;
            self.record(
                after,
                node,
                attempt,
                PendingKind::Failed(error, elapsed, false),
            );
            return;
        }
        state.status[node] = Status::Failed;
        if self.observed() {
            self.record(
                after,
                node,
                attempt,
                PendingKind::Failed(error.clone(), elapsed, false),
            );
        }
        state.errors.insert(node as u32, error);
        if !self.is_stopping() {
            // What needs the failure is skipped, with the failure as its reason, whichever
            // the policy; fail-fast then cancels the rest.
            self.skip_downstream(state, node, after);
            if !self.keep_going {
                self.stop(state, after);
            }
        }
    }

    /// Marks everything downstream of the failed `root` as skipped.
    fn skip_downstream(&self, state: &mut State, root: usize, after: &mut After) {
        let mut stack: Vec<u32> = self.dependents_of(root).to_vec();
        while let Some(node) = stack.pop() {
            let node = node as usize;
            // Already skipped through another path (nothing downstream of a failure can
            // have become ready).
            if state.status[node] != Status::Waiting {
                continue;
            }
            state.status[node] = Status::Skipped;
            state.upstream.insert(node as u32, root as u32);
            state.unfinished -= 1;
            self.retire(state, node, after);
            if self.observed() {
                let error = self.meta.upstream_error(node, root as u32);
                self.record(after, node, 0, PendingKind::Skipped(error));
            }
            stack.extend_from_slice(self.dependents_of(node));
        }
    }

    /// Stops the run: nothing more starts, what runs is cancelled, results that only
    /// unstarted nodes needed are released.
    fn stop(&self, state: &mut State, after: &mut After) {
        if self.stopping.swap(true, Ordering::AcqRel) {
            return;
        }
        after
            .cancels
            .extend(state.running.drain().map(|(_, cancel)| cancel));
        for heap in &mut state.ready {
            heap.clear();
        }
        for node in 0..self.len() {
            if matches!(state.status[node], Status::Waiting | Status::Ready) {
                state.status[node] = Status::Cancelled;
                state.unfinished -= 1;
                if let Some(body) = state.bodies[node].take() {
                    after.garbage.push(Garbage::Body(body));
                }
                self.record(
                    after,
                    node,
                    state.attempts[node],
                    PendingKind::Skipped(Error::Cancelled),
                );
            }
        }
        for node in 0..self.len() {
            if state.status[node] == Status::Succeeded
                && !self.kept(node)
                && let Some(value) = state.values[node].take()
            {
                after.garbage.push(Garbage::Value(value));
            }
        }
    }

    /// Cancels the run (from [`GraphRun::cancel`](super::GraphRun::cancel)).
    pub(crate) fn cancel(self: &Arc<Self>) {
        let mut after = After::default();
        {
            let mut state = self.lock();
            // Ended already: its results may have been taken (the state is empty).
            if self.ended.load(Ordering::Acquire) {
                return;
            }
            self.stop(&mut state, &mut after);
            self.leave(&state);
        }
        self.after(after);
    }

    /// The end of a locked section whose [`After`] is to be handled: counted, so that the
    /// run is marked complete only once every section's garbage is gone.
    fn leave(&self, state: &State) {
        if state.unfinished == 0 {
            self.ended.store(true, Ordering::Release);
        }
        self.sections.fetch_add(1, Ordering::AcqRel);
    }

    /// A section's garbage is gone; the last one out after every node has ended completes
    /// the run.
    fn settle(&self) {
        if self.sections.fetch_sub(1, Ordering::AcqRel) == 1
            && self.ended.load(Ordering::Acquire)
            && !self.complete.swap(true, Ordering::AcqRel)
        {
            self.waiter.wake();
        }
    }

    /// Registers the waker of whoever waits for the run; `true` if it is complete already.
    pub(crate) fn register(&self, waker: &Waker) -> bool {
        if self.is_complete() {
            return true;
        }
        self.waiter.register(waker);
        self.is_complete()
    }

    fn after(self: &Arc<Self>, mut after: After) {
        /// Settles the section however `after` ends: a result whose `Drop` panics must not
        /// keep the run from completing.
        struct Settle<'a>(&'a Shared);
        impl Drop for Settle<'_> {
            fn drop(&mut self) {
                self.0.settle();
            }
        }
        let settle = Settle(self);
        // Told first, as soon as the lock is gone, and before the work they announce
        // starts, so each node's events stay in order.
        for pending in &after.events {
            let strand = self.strands[pending.node as usize];
            after::tell(&self.observers, &self.meta, strand, pending);
        }
        drop(after.events);
        for cancel in after.cancels.drain(..) {
            cancel.cancel();
        }
        let garbage = std::mem::take(&mut after.garbage);
        let dropped = {
            let _suspended = super::suspend_loop();
            crate::error::catch_panic(|| drop(garbage))
        };
        if let Err(message) = dropped {
            tracing::error!(%message, "dropping a graph node's result or closure panicked; the run goes on");
        }
        drop(settle);
        after::hand_over(after.works);
    }

    /// Hands one work to the executor and keeps its canceller while it runs.
    pub(crate) fn execute(self: &Arc<Self>, work: Work) {
        let node = work.node.0;
        let attempt = work.attempt;
        if let Some(cancel) = self.executor.execute(work) {
            let mut state = self.lock();
            // The run may have ended, and its results been taken, meanwhile.
            let live = state.status.get(node as usize) == Some(&Status::Running)
                && state.attempts.get(node as usize) == Some(&attempt);
            if live && !self.is_stopping() {
                state.running.insert(node, cancel);
            } else if live {
                drop(state);
                cancel.cancel();
            }
        }
    }
}

/// The wait before retrying after failed run `attempt` of `node`: `delay` doubled for each
/// run after the first, at most 64 times, less up to half of it, by a hash of the node and
/// the attempt.
fn backoff(delay: Duration, node: usize, attempt: u32) -> Duration {
    let full = delay.saturating_mul(1 << attempt.saturating_sub(1).min(6));
    let mut x = (node as u64) ^ (u64::from(attempt) << 32) ^ 0x9E37_79B9_7F4A_7C15;
    // splitmix64's finaliser: a well-spread number from the pair.
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 31;
    let fraction = (x >> 11) as f64 / (1_u64 << 53) as f64;
    full.mul_f64(1.0 - fraction / 2.0)
}

#[cfg(test)]
mod backoff_tests {
    use super::backoff;
    use std::time::Duration;

    #[test]
    fn the_wait_doubles_within_its_jitter_and_stops_growing() {
        let delay = Duration::from_millis(100);
        for node in 0..50 {
            for attempt in 1..12 {
                let full = delay * (1 << (attempt - 1).min(6));
                let wait = backoff(delay, node, attempt);
                assert!(wait <= full && wait >= full / 2, "{wait:?} for {full:?}");
                assert_eq!(wait, backoff(delay, node, attempt));
            }
        }
    }
}
