//! [`ProcessStrand`]: the process strand of a runtime, its pool of workers started on first
//! use, and how a task reaches it.

use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use super::polled::Running;
use super::pool::{Payload, Pool, Replier, Reply, Request, Stop};
use super::remote::Remote;
use super::{Call, EncodedArgs, ProcessOptions, Task, encode_args, registry, worker};
use crate::coroutine::CoroutineStrand;
use crate::error::StrandName;
use crate::strand::StrandState;
use crate::task::raw::TaskRef;
use crate::{Error, Handle, Result, TaskId};

/// The process strand of a runtime: its state and, once first used, its pool of workers.
pub(crate) struct ProcessStrand {
    pub(crate) state: Arc<StrandState>,
    /// The strand's number among the strands whose tasks run as coroutines (its tasks wait
    /// on the coroutine strand's threads).
    pub(crate) number: u64,
    options: ProcessOptions,
    pool: OnceLock<Arc<Pool>>,
    /// Held while the pool starts, so that it starts once.
    starting: Mutex<()>,
    /// Where its waits run: a task by name, a chunk of a map, the supervisors of its
    /// workers are coroutines.
    pub(super) coroutines: Arc<CoroutineStrand>,
    /// Commands running on threads of their own (the graph's command nodes), counted on
    /// this strand: a shutdown stops them with the workers.
    pub(crate) commands: Running,
}

impl ProcessStrand {
    pub(crate) fn state(bound: usize) -> Arc<StrandState> {
        Arc::new(StrandState::new(StrandName::Process, bound))
    }

    pub(crate) fn new(
        state: Arc<StrandState>,
        number: u64,
        options: ProcessOptions,
        coroutines: Arc<CoroutineStrand>,
    ) -> Self {
        ProcessStrand {
            state,
            number,
            options,
            pool: OnceLock::new(),
            starting: Mutex::new(()),
            coroutines,
            commands: Running::default(),
        }
    }

    /// The pool, started on first use (not after a shutdown).
    pub(crate) fn pool(&self) -> Result<&Arc<Pool>> {
        if let Some(pool) = self.pool.get() {
            return Ok(pool);
        }
        if self.state.is_closed() {
            return Err(Error::Shutdown);
        }
        if worker::started_as_worker() && !worker::serving() {
            return Err(Error::WorkerStart {
                reason: "this process was started as a plait worker but did not call \
                         plait::init() before using the process strand; call it first thing \
                         in main (or invoke plait::test_worker!() in a test binary)"
                    .to_owned(),
            });
        }
        let _starting = self.starting.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(pool) = self.pool.get() {
            return Ok(pool);
        }
        let pool = Pool::start(
            self.options.clone(),
            Arc::clone(&self.state),
            &self.coroutines.handle,
        )?;
        Ok(self.pool.get_or_init(|| pool))
    }

    /// Stops the workers, waiting up to `limit` for them to be reaped, and the commands
    /// running on threads of their own.
    pub(crate) fn stop(&self, drain: bool, limit: Duration) {
        let deadline = Instant::now() + limit;
        self.commands.stop_all();
        if let Some(pool) = self.pool.get() {
            pool.stop(if drain { Stop::Drain } else { Stop::Kill }, limit);
        }
        if !self.commands.wait_none(deadline) {
            tracing::warn!(
                "commands stopped by the runtime's end were not reaped within {limit:?}; \
                 their threads reap them when they end"
            );
        }
    }

    pub(crate) fn workers(&self) -> usize {
        self.options.worker_count()
    }
}

impl ProcessStrand {
    /// Runs the registered task `T` with `args` in a worker, with an optional hard time
    /// limit; see `Runtime::spawn_process`.
    pub(crate) fn spawn<T: Task>(
        &self,
        args: T::Args,
        timeout: Option<Duration>,
    ) -> Handle<T::Output> {
        let strand = self;
        let refused = |error| Handle::ready(TaskId::next(), Err(error));
        let pool = match strand.pool() {
            Ok(pool) => Arc::clone(pool),
            Err(error) => return refused(error),
        };
        let args = match encode_args::<T>(&args, pool.options.payload_limit) {
            Ok(args) => args,
            Err(error) => return refused(error),
        };
        if let Err(error) = strand.state.admit() {
            return refused(error);
        }
        let id = TaskId::next();
        let remote = Arc::new(Remote::<T>::new(id, Arc::clone(&pool)));
        pool.submit(Request::new(
            pool.next_id(),
            &pool,
            T::NAME,
            Payload::One(args),
            timeout,
            Replier::Direct(Arc::clone(&remote) as _),
        ));
        Handle::thread(TaskRef::never_queued(remote))
    }

    /// Runs the task registered as `name` with encoded arguments, with an optional hard
    /// time limit; see `Runtime::spawn_process_by_name`.
    pub(crate) fn spawn_by_name(
        &self,
        name: &str,
        args: EncodedArgs,
        timeout: Option<Duration>,
    ) -> Handle<Vec<u8>> {
        match self.call_by_name(name, args, timeout) {
            Ok(reply) => self.coroutines.spawn_counted(reply, self.number),
            Err(error) => Handle::ready(TaskId::next(), Err(error)),
        }
    }

    /// Runs the task registered as `name` with arguments and result as JSON, with an
    /// optional hard time limit; see `Runtime::spawn_process_json`.
    pub(crate) fn spawn_json(
        &self,
        name: &str,
        args: &str,
        timeout: Option<Duration>,
    ) -> Handle<String> {
        let call = registry::lookup(name)
            .ok_or_else(|| registry::unknown_task(name))
            .and_then(|registration| {
                let args = (registration.args_from_json)(args)?;
                let reply = self.call_by_name(name, args, timeout)?;
                Ok((reply, registration.output_to_json))
            });
        match call {
            Ok((reply, to_json)) => self
                .coroutines
                .spawn_counted(async move { to_json(&reply.await?) }, self.number),
            Err(error) => Handle::ready(TaskId::next(), Err(error)),
        }
    }

    /// Submits a call of the task registered as `name`; its encoded result to come.
    fn call_by_name(
        &self,
        name: &str,
        args: EncodedArgs,
        timeout: Option<Duration>,
    ) -> Result<impl Future<Output = Result<Vec<u8>>> + Send + 'static> {
        let registration = registry::lookup(name).ok_or_else(|| registry::unknown_task(name))?;
        let takes = (registration.args_type)();
        if args.type_name() != takes {
            return Err(Error::Codec {
                task: registration.name.to_owned(),
                reason: format!(
                    "the arguments were encoded as `{}`, but the task takes `{takes}`",
                    args.type_name()
                ),
            });
        }
        let args = args.into_bytes();
        let pool = Arc::clone(self.pool()?);
        if args.len() > pool.options.payload_limit {
            return Err(Error::PayloadTooLarge {
                task: name.to_owned(),
                bytes: args.len(),
                limit: pool.options.payload_limit,
            });
        }
        self.state.admit()?;
        let call = Call::submit(&pool, registration.name, Payload::One(args.into()), timeout);
        Ok(async move {
            match call.reply().await {
                Some(Reply::One(result)) => result.map(|bytes| bytes.to_vec()),
                Some(Reply::Batch(_) | Reply::BatchLost { .. }) => {
                    unreachable!("a call is answered by a call's reply")
                }
                None => Err(Error::Cancelled),
            }
        })
    }

    /// Starts the workers now and waits until every one serves.
    pub(crate) fn start(&self) -> Result<()> {
        if self.state.is_closed() {
            return Err(Error::Shutdown);
        }
        let pool = Arc::clone(self.pool()?);
        self.coroutines
            .block_on(async move { pool.wait_serving().await })
    }

    /// Worker processes started so far, replacements included.
    pub(crate) fn workers_started(&self) -> usize {
        self.pool.get().map_or(0, |pool| {
            pool.started.load(std::sync::atomic::Ordering::Relaxed)
        })
    }
}
