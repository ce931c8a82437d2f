//! [`QueueExecutor`]: a task graph whose command and process nodes run on the queue's
//! workers, and whose thread and coroutine nodes run here.
//!
//! The graph's scheduler still decides when each node runs (once its needs have
//! succeeded, within the executor's capacity); the executor enqueues the node's command,
//! or its registered task with its arguments, and waits for its end. A process node's
//! result comes back through the store in the process strand's encoding (so the store's
//! result limit bounds it, and a larger one fails the node saying so); the worker must be a
//! build of the same program, with the same tasks registered. Thread and coroutine nodes,
//! whose closures cannot travel, run on the runtime given to
//! [`QueueExecutorBuilder::local`], or fail saying why. The workers may be anywhere the store reaches (`plait worker`
//! on this machine, for the embedded store). Retries belong to the queue: give the tasks a
//! [`RetryPolicy`](crate::RetryPolicy) through [`QueueExecutorBuilder::prepare`], and
//! leave the graph's nodes without retries of their own, so nothing is retried on two
//! layers.
//!
//! With an idempotency key per node (through `prepare`), a driver that was killed and is
//! run again finds the tasks it enqueued before: it waits for those still running and
//! takes the results of those that finished, instead of running them again. A keyed task
//! that is dead or cancelled is not reused: the node is enqueued afresh, under the key
//! with `#1`, `#2`, … appended.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use plait::graph::{Call, CommandCall, Done, Executor, Output, ProcessCall, Work};
use plait::process::CommandOutput;
use plait::{CancelHandle, Error, Runtime, Strand};

use crate::client::CommandResult;
use crate::error::{ErrorKind, Result};
use crate::payload::Payload;
use crate::store::{Store, check_queue_name};
use crate::task::{NewTask, State, TaskId, TaskInfo};

/// How often a waiting node looks whether the graph run is stopping (a result wakes it at
/// once).
const LOOK_FOR_STOP: Duration = Duration::from_millis(200);

/// How many times a key is extended (`#1`, `#2`, …) past dead or cancelled tasks.
const KEY_TRIES: u32 = 1_000;

/// Sets a node's task options before it is enqueued, from the node's name.
type Prepare = dyn Fn(Option<&str>, NewTask) -> NewTask + Send + Sync;

/// Builds a [`QueueExecutor`]: see [`QueueExecutor::builder`].
#[must_use = "a builder does nothing until `build` is called"]
pub struct QueueExecutorBuilder {
    store: Arc<dyn Store>,
    queue: String,
    in_flight: usize,
    prepare: Option<Box<Prepare>>,
    local: Option<Runtime>,
}

impl QueueExecutorBuilder {
    /// Runs the graph's thread and coroutine nodes on `rt`, here (by default they fail:
    /// their closures cannot travel to a worker).
    pub fn local(mut self, rt: Runtime) -> Self {
        self.local = Some(rt);
        self
    }

    /// The queue the nodes go to (default `default`).
    pub fn queue(mut self, name: impl Into<String>) -> Self {
        self.queue = name.into();
        self
    }

    /// How many nodes may be on the queue at once, waiting or running (default 64).
    pub fn in_flight(mut self, n: usize) -> Self {
        self.in_flight = n.max(1);
        self
    }

    /// Sets each node's task options before it is enqueued, from the node's name (see
    /// [`NodeMut::name`](plait::graph::NodeMut::name)): an idempotency key, a retry
    /// policy, a priority. The node's time limit (or its command's) is set already.
    pub fn prepare(
        mut self,
        prepare: impl Fn(Option<&str>, NewTask) -> NewTask + Send + Sync + 'static,
    ) -> Self {
        self.prepare = Some(Box::new(prepare));
        self
    }

    /// Checks the settings and makes the executor.
    ///
    /// # Errors
    ///
    /// A queue name that is not one.
    pub fn build(self) -> Result<QueueExecutor> {
        check_queue_name(&self.queue)?;
        Ok(QueueExecutor {
            inner: Arc::new(self),
        })
    }
}

/// Runs a task graph's command nodes on the queue's workers.
///
/// # Examples
///
/// ```no_run
/// use std::sync::Arc;
/// use plait::graph::Graph;
/// use plait::process::Command;
/// use plait_queue::{QueueExecutor, RetryPolicy, SqliteStore};
///
/// let store = Arc::new(SqliteStore::open(".plait/queue.db")?);
/// let executor = QueueExecutor::builder(store)
///     .prepare(|name, task| {
///         task.retry(RetryPolicy { max_retries: 2, ..Default::default() })
///             .key(format!("nightly-2026-12-06/{}", name.unwrap_or("?")))
///     })
///     .build()?;
///
/// let mut graph = Graph::new();
/// let fetch = graph.command((), |()| Command::shell("curl -sO https://example.com/data.csv"));
/// let _ = graph.node(fetch).name("fetch");
/// let count = graph.command(fetch, |_| Command::shell("wc -l data.csv"));
/// let _ = graph.node(count).name("count");
/// // Run by `plait worker`s, started anywhere on this machine.
/// let mut results = graph.runner(executor).start().join();
/// println!("{}", String::from_utf8_lossy(&results.take(count)?.stdout));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct QueueExecutor {
    inner: Arc<QueueExecutorBuilder>,
}

impl QueueExecutor {
    /// A builder for an executor on `store`.
    pub fn builder(store: Arc<dyn Store>) -> QueueExecutorBuilder {
        QueueExecutorBuilder {
            store,
            queue: "default".to_owned(),
            in_flight: 64,
            prepare: None,
            local: None,
        }
    }

    /// The payload of a node's call, and the call kept to make its output; `Err` is the
    /// node's failure.
    fn payload(call: Call) -> std::result::Result<(Payload, Remote, Option<Duration>), Error> {
        match call {
            Call::Command(mut call) => {
                let command = call.command()?;
                if !command.stdin.is_empty() {
                    return Err(Error::failed(
                        "a command sent to the queue cannot be given standard input; write \
                         it to a file and pass the file's path",
                    ));
                }
                let payload = Payload::Command {
                    argv: command.argv.clone(),
                    env: command.env.iter().cloned().collect::<BTreeMap<_, _>>(),
                    cwd: command.cwd.clone(),
                };
                Ok((payload, Remote::Command(call), command.timeout))
            }
            Call::Process(mut call) => {
                let name = call.task();
                let payload = Payload::Encoded {
                    name: name.to_owned(),
                    version: plait::process::task_version(name).unwrap_or(1),
                    args: call.encode_args()?,
                };
                Ok((payload, Remote::Process(call), None))
            }
            other => Err(Error::failed(format!(
                "the queue runs command and process nodes; this node is for the {} strand, \
                 and its closure cannot travel to a worker (give the executor a runtime for \
                 it: QueueExecutorBuilder::local)",
                other.strand()
            ))),
        }
    }

    /// Enqueues node `name`'s payload; `Err` is the node's failure.
    fn submit(
        &self,
        name: Option<&str>,
        timeout: Option<Duration>,
        payload: &Payload,
    ) -> std::result::Result<TaskId, Error> {
        let settings = &self.inner;
        let mut task = NewTask::new(payload.encode()).queue(settings.queue.clone());
        if let Some(limit) = timeout {
            task = task.time_limit(limit);
        }
        if let Some(prepare) = &settings.prepare {
            task = prepare(name, task);
        }
        submit_keyed(settings.store.as_ref(), task).map_err(Error::failed)
    }
}

impl std::fmt::Debug for QueueExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueExecutor")
            .field("queue", &self.inner.queue)
            .field("in_flight", &self.inner.in_flight)
            .finish_non_exhaustive()
    }
}

/// Enqueues `task`; under a key whose task is dead or cancelled, under the key extended.
fn submit_keyed(store: &dyn Store, mut task: NewTask) -> Result<TaskId> {
    let Some(key) = task.key.clone() else {
        return Ok(store.enqueue(&task)?.id);
    };
    for n in 0..KEY_TRIES {
        if n > 0 {
            task.key = Some(format!("{key}#{n}"));
        }
        let enqueued = store.enqueue(&task)?;
        if enqueued.created {
            return Ok(enqueued.id);
        }
        let reusable = store
            .get(enqueued.id)?
            .is_some_and(|found| !matches!(found.state, State::Dead | State::Cancelled));
        if reusable {
            return Ok(enqueued.id);
        }
    }
    // So many failed runs of one node under one key: run it without one.
    task.key = None;
    Ok(store.enqueue(&task)?.id)
}

/// A node's call sent to the queue, kept to make the node's output from the task's end.
enum Remote {
    Command(CommandCall),
    Process(ProcessCall),
}

impl Executor for QueueExecutor {
    fn execute(&self, work: Work) -> Option<CancelHandle> {
        if let (Some(local), Strand::Thread | Strand::Coroutine) =
            (&self.inner.local, work.strand())
        {
            return local.execute(work);
        }
        let name = work.name().map(str::to_owned);
        let timeout = work.timeout();
        let (call, mut done) = work.into_parts();
        let submitted = Self::payload(call).and_then(|(payload, call, own_limit)| {
            self.submit(name.as_deref(), timeout.or(own_limit), &payload)
                .map(|id| (id, call))
        });
        let (id, call) = match submitted {
            Ok(submitted) => submitted,
            Err(error) => {
                done.finish(Output::failed(error));
                return None;
            }
        };
        done.start();
        let store = Arc::clone(&self.inner.store);
        // One waiting thread per node on the queue (at most `in_flight`); should none
        // start, the dropped `Done` fails the node, saying so.
        let _ = std::thread::Builder::new()
            .name("plait-queue-node".to_owned())
            .spawn(move || wait(store.as_ref(), id, &call, done));
        None
    }

    fn capacity(&self, strand: Strand) -> usize {
        match (strand, &self.inner.local) {
            (Strand::Process, _) => self.inner.in_flight,
            (_, Some(local)) => local.capacity(strand),
            (_, None) => 1,
        }
    }
}

/// Waits for task `id` to finish and reports its end as the node's; cancels it if the
/// graph run stops first.
fn wait(store: &dyn Store, id: TaskId, call: &Remote, done: Done) {
    loop {
        if done.is_stopping() {
            let _ = store.cancel(id);
            done.finish(Output::failed(Error::Cancelled));
            return;
        }
        match store.wait_finished(id, LOOK_FOR_STOP) {
            Ok(task) if task.state.is_finished() => {
                done.finish(output(call, task));
                return;
            }
            Ok(_) => {}
            // A busy or briefly failing store: look again.
            Err(error)
                if matches!(
                    error.kind(),
                    ErrorKind::Busy | ErrorKind::Storage | ErrorKind::Unreachable
                ) =>
            {
                std::thread::sleep(LOOK_FOR_STOP);
            }
            Err(error) => {
                done.finish(Output::failed(Error::failed(error)));
                return;
            }
        }
    }
}

/// The node's output for a finished task.
fn output(call: &Remote, task: TaskInfo) -> Output {
    match (task.state, call) {
        (State::Succeeded, Remote::Process(call)) => {
            call.output(Ok(task.result.unwrap_or_default()))
        }
        (State::Succeeded, Remote::Command(call)) => {
            let result = task.result.unwrap_or_default();
            match serde_json::from_slice::<CommandResult>(&result) {
                Ok(ran) => {
                    let mut output = CommandOutput::exited(
                        ran.code,
                        ran.stdout.into_bytes(),
                        ran.stderr.into_bytes(),
                        Duration::from_millis(ran.elapsed_ms),
                    );
                    output.signal = ran.signal;
                    call.output(Ok(output))
                }
                Err(error) => Output::failed(Error::failed(format!(
                    "task {} succeeded, but its result is not a command's ({error})",
                    task.id
                ))),
            }
        }
        (State::Cancelled, _) => Output::failed(Error::Cancelled),
        _ => {
            let reason = task.reason.unwrap_or_else(|| "no reason kept".to_owned());
            Output::failed(Error::failed(format!(
                "queued as task {}, it is dead after {} attempts: {reason}",
                task.id, task.attempts
            )))
        }
    }
}
