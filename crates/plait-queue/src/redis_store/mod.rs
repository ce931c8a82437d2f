//! [`RedisStore`]: the queue on a Redis server, so that workers on many machines share
//! it. The same [`Store`] promises as the embedded store, checked by the same
//! conformance suite.
//!
//! Each change of a task's state is one Lua script over one queue's keys: atomic on the
//! server, and on a cluster one command on one node (a queue's keys share a hash tag).
//! The task's hash is its one record; sorted sets order what waits (by priority, then
//! ready time), what is delayed, what is leased, what is dead and what expires. Fencing
//! is by attempt number, as in the embedded store: a completion or heartbeat for any
//! attempt but the current one changes nothing. Leases are kept by the store's clock
//! (by default the Redis server's own, one clock for every worker on every machine).
//!
//! Waiters (a result's, an idle worker's) block on a stream per queue that each change
//! adds a line to, reading on from the last line they saw: a change between a look and a
//! wait is never missed, nor one made while the waiter reconnected.

mod decode;
mod keys;
mod link;
mod scripts;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use redis::streams::StreamReadReply;
use redis::{Commands, Connection, Value};

use crate::clock::{Clock, Millis, SystemClock, millis};
use crate::error::{QueueError, Result};
use crate::failure::{Failure, FailureKind};
use crate::registry::{KEEP_GONE_MS, WorkerInfo};
use crate::sqlite::DEFAULT_PAYLOAD_LIMIT;
use crate::store::{DEFAULT_RESULT_LIMIT, Store, cap_results, check_new_tasks};
use crate::task::{
    Beat, Cancel, Completion, Enqueued, Lease, NewTask, Outcome, QueueStats, RetryPolicy, Start,
    TaskId, TaskInfo,
};
use decode::{Fields, state, task_info};
use keys::{Keys, padded};
use link::Link;
use scripts::Scripts;

/// How many tasks a purge or an expiry deletes per script, so that the server is never
/// held for long.
const BATCH: usize = 10_000;
/// How many task ids a handle remembers the queue of.
const HOMES: usize = 100_000;

/// The durable queue on a Redis server (or cluster): the backend for workers on several
/// machines.
///
/// ```no_run
/// use plait_queue::{NewTask, RedisStore, Store};
///
/// let store = RedisStore::open("redis://127.0.0.1:6379")?;
/// let task = store.enqueue(&NewTask::new(b"hello".to_vec()))?;
/// println!("task {} queued", task.id);
/// # Ok::<(), plait_queue::QueueError>(())
/// ```
pub struct RedisStore {
    link: Link,
    keys: Keys,
    scripts: Scripts,
    /// `None`: the server's clock.
    clock: Option<Arc<dyn Clock>>,
    payload_limit: usize,
    result_limit: usize,
    look_every: Duration,
    /// The queue of each task id this handle has seen (a task never moves).
    homes: Mutex<HashMap<TaskId, String>>,
}

/// Options for a [`RedisStore`]; made by [`RedisStore::builder`].
#[must_use = "a builder does nothing until `build` is called"]
pub struct RedisBuilder {
    url: String,
    namespace: String,
    clock: Option<Arc<dyn Clock>>,
    payload_limit: usize,
    result_limit: usize,
    look_every: Duration,
    connect_within: Duration,
    tls_ca: Option<Vec<u8>>,
}

impl RedisBuilder {
    /// What every key starts with (default `plait`): several queues systems, or tests,
    /// can share one server under different namespaces.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// Keep time by `clock` rather than by the server's clock (tests move a
    /// [`ManualClock`](crate::ManualClock)). Every handle on one namespace must use the
    /// same clock.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// The largest payload accepted (default [`DEFAULT_PAYLOAD_LIMIT`], 1 MiB).
    pub fn payload_limit(mut self, bytes: usize) -> Self {
        self.payload_limit = bytes;
        self
    }

    /// The largest result kept (default [`DEFAULT_RESULT_LIMIT`], 8 MiB); a larger one
    /// fails its task, saying so.
    pub fn result_limit(mut self, bytes: usize) -> Self {
        self.result_limit = bytes;
        self
    }

    /// The longest a waiter blocks before it looks again without being told (default
    /// 1 s): a bound on how late a wake-up can be if one were ever lost.
    pub fn look_every(mut self, period: Duration) -> Self {
        self.look_every = period;
        self
    }

    /// With `rediss://`, trust server certificates signed by this CA (PEM) rather than
    /// the system's roots: a private CA, or a self-signed server.
    pub fn tls_ca(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.tls_ca = Some(pem.into());
        self
    }

    /// How long to wait for a connection to be made (default 5 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_within = timeout;
        self
    }

    /// Connects, and checks that the server answers.
    ///
    /// # Errors
    ///
    /// [`QueueError::Unreachable`] if the URL does not parse or the server cannot be
    /// reached; [`QueueError::Redis`] if it refuses (a wrong password, say). The URL in
    /// the error has no password.
    pub fn build(self) -> Result<RedisStore> {
        let link = Link::new(&self.url, self.tls_ca.as_deref(), self.connect_within)?;
        link.call(true, |conn| redis::cmd("PING").query::<String>(conn))?;
        Ok(RedisStore {
            link,
            keys: Keys::new(&self.namespace),
            scripts: Scripts::new(),
            clock: self.clock,
            payload_limit: self.payload_limit,
            result_limit: self.result_limit,
            look_every: self.look_every,
            homes: Mutex::new(HashMap::new()),
        })
    }
}

impl RedisStore {
    /// Connects to the server at `url` (`redis://[USER:PASSWORD@]HOST[:PORT][/DB]`) with
    /// the default options.
    ///
    /// # Errors
    ///
    /// As [`RedisBuilder::build`].
    pub fn open(url: &str) -> Result<RedisStore> {
        RedisStore::builder(url).build()
    }

    /// A builder for a store on the server at `url`.
    pub fn builder(url: impl Into<String>) -> RedisBuilder {
        RedisBuilder {
            url: url.into(),
            namespace: "plait".to_owned(),
            clock: None,
            payload_limit: DEFAULT_PAYLOAD_LIMIT,
            result_limit: DEFAULT_RESULT_LIMIT,
            look_every: Duration::from_secs(1),
            connect_within: Duration::from_secs(5),
            tls_ca: None,
        }
    }

    /// The server's URL, without its password.
    #[must_use]
    pub fn server(&self) -> &str {
        self.link.server()
    }

    /// Now, as the scripts take it: the caller's clock, or empty for the server's.
    fn now_arg(&self) -> String {
        self.clock
            .as_ref()
            .map_or_else(String::new, |clock| clock.now().to_string())
    }

    /// Every queue name used in this namespace, sorted.
    fn all_queues(&self) -> Result<Vec<String>> {
        let mut queues: Vec<String> = self.link.call(true, |c| c.smembers(self.keys.queues()))?;
        queues.sort();
        Ok(queues)
    }

    /// The queue of each id, or `None` for a task that is not (or no longer) stored.
    fn homes(&self, ids: &[TaskId]) -> Result<Vec<Option<String>>> {
        let mut found: Vec<Option<String>> = {
            let homes = self.homes.lock().unwrap_or_else(PoisonError::into_inner);
            ids.iter().map(|id| homes.get(id).cloned()).collect()
        };
        let missing: Vec<usize> = (0..ids.len()).filter(|&i| found[i].is_none()).collect();
        if missing.is_empty() {
            return Ok(found);
        }
        let queues = self.all_queues()?;
        let exists: Vec<bool> = self.link.call(true, |c| {
            let mut pipe = redis::pipe();
            for &i in &missing {
                for queue in &queues {
                    pipe.exists(self.keys.task(queue, ids[i]));
                }
            }
            pipe.query(c)
        })?;
        for (n, &i) in missing.iter().enumerate() {
            let at = n * queues.len();
            found[i] = (0..queues.len())
                .find(|&q| exists[at + q])
                .map(|q| queues[q].clone());
            if let Some(queue) = &found[i] {
                self.remember(ids[i], queue);
            }
        }
        Ok(found)
    }

    fn remember(&self, id: TaskId, queue: &str) {
        let mut homes = self.homes.lock().unwrap_or_else(PoisonError::into_inner);
        if homes.len() >= HOMES {
            homes.clear();
        }
        homes.insert(id, queue.to_owned());
    }

    fn forget(&self, ids: &[String]) {
        let mut homes = self.homes.lock().unwrap_or_else(PoisonError::into_inner);
        for id in ids {
            if let Ok(n) = id.parse() {
                homes.remove(&TaskId::new(n));
            }
        }
    }

    /// The ids and their positions in `ids`, grouped by queue; ids not stored are left out.
    fn by_queue(&self, ids: &[TaskId]) -> Result<BTreeMap<String, Vec<usize>>> {
        let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, home) in self.homes(ids)?.into_iter().enumerate() {
            if let Some(queue) = home {
                groups.entry(queue).or_default().push(i);
            }
        }
        Ok(groups)
    }

    fn task(&self, queue: &str, id: TaskId) -> Result<Option<TaskInfo>> {
        let fields: Fields = self
            .link
            .call(true, |c| c.hgetall(self.keys.task(queue, id)))?;
        Ok(task_info(id, fields))
    }

    /// Blocks until a line that `wanted` accepts is added to one of `streams` after the
    /// line ids given, or `wait` passes.
    fn wait_for_line(
        &self,
        streams: &mut [(String, String)],
        wait: Duration,
        wanted: impl Fn(&HashMap<String, Value>) -> bool,
    ) -> Result<()> {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            // BLOCK 0 would block for ever.
            let block = u64::try_from(left.as_millis()).unwrap_or(u64::MAX).max(1);
            if left.is_zero() {
                return Ok(());
            }
            let reply: Option<StreamReadReply> = self.link.blocking(left, |c| {
                let mut read = redis::cmd("XREAD");
                read.arg("BLOCK").arg(block).arg("STREAMS");
                for (key, _) in streams.iter() {
                    read.arg(key);
                }
                for (_, last) in streams.iter() {
                    read.arg(last);
                }
                read.query(c)
            })?;
            let Some(reply) = reply else {
                return Ok(());
            };
            let mut hit = false;
            for key in reply.keys {
                if let Some(newest) = key.ids.last()
                    && let Some(stream) = streams.iter_mut().find(|(name, _)| *name == key.key)
                {
                    stream.1.clone_from(&newest.id);
                }
                hit |= key.ids.iter().any(|line| wanted(&line.map));
            }
            if hit {
                return Ok(());
            }
        }
    }

    /// The id of the last line of each stream (`0` for none yet).
    fn last_lines(&self, keys: Vec<String>) -> Result<Vec<(String, String)>> {
        let mut lines = Vec::with_capacity(keys.len());
        for key in keys {
            let last: redis::streams::StreamRangeReply = self
                .link
                .call(true, |c| c.xrevrange_count(&key, "+", "-", 1))?;
            let id = last
                .ids
                .first()
                .map_or_else(|| "0".to_owned(), |line| line.id.clone());
            lines.push((key, id));
        }
        Ok(lines)
    }
}

/// `url` as it may be shown: without its password (`redis://:****@host:6379/0`).
#[must_use]
pub fn redacted_url(url: &str) -> String {
    link::redact(url)
}

/// The field of a stream line as text.
fn field(line: &HashMap<String, Value>, name: &str) -> Option<String> {
    match line.get(name)? {
        Value::BulkString(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
        Value::SimpleString(text) => Some(text.clone()),
        _ => None,
    }
}

/// An outcome as `complete.lua` takes it: kind, data, the failure as text.
fn outcome_args(outcome: &Outcome) -> (&'static str, Vec<u8>, String) {
    let failure = |kind, failure: &Failure| {
        (
            kind,
            serde_json::to_vec(failure).unwrap_or_default(),
            failure.to_string(),
        )
    };
    match outcome {
        Outcome::Succeeded(result) => ("ok", result.clone(), String::new()),
        Outcome::Failed {
            failure: f,
            retry: true,
        } => failure("retry", f),
        Outcome::Failed { failure: f, .. } => failure("fail", f),
        Outcome::Crashed(f) => failure("crash", f),
        Outcome::Rejected(f) => failure("reject", f),
        Outcome::Released => ("release", Vec::new(), String::new()),
        Outcome::Cancelled => failure(
            "cancel",
            &Failure::new(FailureKind::Cancelled, "cancelled while it ran"),
        ),
    }
}

impl Store for RedisStore {
    fn enqueue_all(&self, tasks: &[NewTask]) -> Result<Vec<Enqueued>> {
        check_new_tasks(tasks, self.payload_limit)?;
        if tasks.is_empty() {
            return Ok(Vec::new());
        }
        let mut queues: Vec<&str> = tasks.iter().map(|t| t.queue.as_str()).collect();
        queues.sort_unstable();
        queues.dedup();
        let count = tasks.len() as u64;
        let last: u64 = self.link.call(false, |c| c.incr(self.keys.ids(), count))?;
        self.link
            .call(true, |c| c.sadd::<_, _, ()>(self.keys.queues(), &queues))?;
        let mut invocation = self.scripts.enqueue.prepare_invoke();
        for queue in &queues {
            invocation.key(self.keys.counts(queue));
        }
        invocation.arg(self.now_arg());
        for (n, task) in tasks.iter().enumerate() {
            let id = TaskId::new(last - count + 1 + n as u64);
            let (start, at) = match task.start {
                Start::Now => ("now", 0),
                Start::At(at) => (
                    "at",
                    at.duration_since(std::time::UNIX_EPOCH).map_or(0, millis),
                ),
                Start::After(delay) => ("after", millis(delay)),
            };
            let retry = &task.retry;
            invocation
                .arg(self.keys.prefix(&task.queue))
                .arg(padded(id))
                .arg(task.key.as_deref().unwrap_or(""))
                .arg(task.priority)
                .arg(start)
                .arg(at)
                .arg(&task.payload[..])
                .arg(retry.max_retries)
                .arg(millis(retry.backoff))
                .arg(millis(retry.max_backoff))
                .arg(retry.crash_budget.max(1))
                .arg(
                    task.time_limit
                        .map_or_else(String::new, |l| millis(l).to_string()),
                )
                .arg(millis(task.result_ttl));
        }
        let answers: Vec<(String, u8)> = self.link.call(false, |c| invocation.invoke(c))?;
        let mut done = Vec::with_capacity(tasks.len());
        for ((id, created), task) in answers.into_iter().zip(tasks) {
            let id = TaskId::new(id.parse().unwrap_or(0));
            self.remember(id, &task.queue);
            done.push(Enqueued {
                id,
                created: created == 1,
            });
        }
        Ok(done)
    }

    fn reserve(
        &self,
        worker: &str,
        queues: &[&str],
        max: usize,
        lease: Duration,
    ) -> Result<Vec<Lease>> {
        type Reserved = (Millis, Vec<(String, u32, Vec<u8>, String, u32, u32)>);
        let mut leases = Vec::new();
        for queue in queues {
            if leases.len() >= max {
                break;
            }
            let (lease_until, tasks): Reserved = self.link.call(false, |c| {
                self.scripts
                    .reserve
                    .key(self.keys.counts(queue))
                    .arg(self.keys.prefix(queue))
                    .arg(self.now_arg())
                    .arg(worker)
                    .arg(max - leases.len())
                    .arg(millis(lease))
                    .invoke(c)
            })?;
            for (id, attempt, payload, limit, failures, crashes) in tasks {
                let id = TaskId::new(id.parse().unwrap_or(0));
                self.remember(id, queue);
                leases.push(Lease {
                    id,
                    attempt,
                    queue: (*queue).to_owned(),
                    payload,
                    time_limit: limit.parse().ok().map(Duration::from_millis),
                    lease_until,
                    failures,
                    crashes,
                });
            }
        }
        Ok(leases)
    }

    fn heartbeat(&self, attempts: &[(TaskId, u32)], lease: Duration) -> Result<Vec<Beat>> {
        let ids: Vec<TaskId> = attempts.iter().map(|(id, _)| *id).collect();
        let mut beats = vec![Beat::Lost; attempts.len()];
        for (queue, members) in self.by_queue(&ids)? {
            let mut invocation = self.scripts.heartbeat.prepare_invoke();
            invocation
                .key(self.keys.counts(&queue))
                .arg(self.keys.prefix(&queue))
                .arg(self.now_arg())
                .arg(millis(lease));
            for &i in &members {
                invocation.arg(padded(attempts[i].0)).arg(attempts[i].1);
            }
            let answers: Vec<String> = self.link.call(true, |c| invocation.invoke(c))?;
            for (&i, answer) in members.iter().zip(answers) {
                beats[i] = match answer.as_str() {
                    "renewed" => Beat::Renewed,
                    "cancel" => Beat::CancelRequested,
                    _ => Beat::Lost,
                };
            }
        }
        Ok(beats)
    }

    fn complete(&self, ended: &[(TaskId, u32, Outcome)]) -> Result<Vec<Completion>> {
        let ended = &cap_results(ended, self.result_limit)[..];
        let ids: Vec<TaskId> = ended.iter().map(|(id, _, _)| *id).collect();
        let mut completions = vec![Completion::Fenced; ended.len()];
        for (queue, mut members) in self.by_queue(&ids)? {
            // A retry's wait depends on the failures so far: read them, and go again for
            // any that changed in between.
            for _ in 0..3 {
                if members.is_empty() {
                    break;
                }
                let policies: Vec<(Option<u32>, Option<u64>, Option<u64>)> =
                    self.link.call(true, |c| {
                        let mut pipe = redis::pipe();
                        for &i in &members {
                            pipe.hmget(
                                self.keys.task(&queue, ids[i]),
                                &["failures", "backoff_ms", "max_backoff_ms"],
                            );
                        }
                        pipe.query(c)
                    })?;
                let mut invocation = self.scripts.complete.prepare_invoke();
                invocation
                    .key(self.keys.counts(&queue))
                    .arg(self.keys.prefix(&queue))
                    .arg(self.now_arg());
                for (&i, (failures, backoff, max_backoff)) in members.iter().zip(&policies) {
                    let (id, attempt, outcome) = &ended[i];
                    let (kind, data, text) = outcome_args(outcome);
                    let policy = RetryPolicy {
                        backoff: Duration::from_millis(backoff.unwrap_or(0)),
                        max_backoff: Duration::from_millis(max_backoff.unwrap_or(0)),
                        ..RetryPolicy::never()
                    };
                    let failures = failures.unwrap_or(0);
                    let wait = policy.backoff_before(*id, failures + 1);
                    invocation
                        .arg(padded(*id))
                        .arg(*attempt)
                        .arg(kind)
                        .arg(data)
                        .arg(text)
                        .arg(failures)
                        .arg(millis(wait));
                }
                let answers: Vec<String> = self.link.call(false, |c| invocation.invoke(c))?;
                let mut stale = Vec::new();
                for (&i, answer) in members.iter().zip(answers) {
                    match answer.as_str() {
                        "fenced" => completions[i] = Completion::Fenced,
                        "stale" => stale.push(i),
                        state_now => completions[i] = Completion::Recorded(state(state_now)),
                    }
                }
                members = stale;
            }
        }
        Ok(completions)
    }

    fn reclaim_expired(&self) -> Result<usize> {
        let mut reclaimed = 0;
        for queue in self.all_queues()? {
            let n: usize = self.link.call(false, |c| {
                self.scripts
                    .reclaim
                    .key(self.keys.counts(&queue))
                    .arg(self.keys.prefix(&queue))
                    .arg(self.now_arg())
                    .invoke(c)
            })?;
            reclaimed += n;
        }
        Ok(reclaimed)
    }

    fn cancel(&self, id: TaskId) -> Result<Cancel> {
        let not_found = || QueueError::NotFound { id: id.get() };
        let queue = self.homes(&[id])?.remove(0).ok_or_else(not_found)?;
        let failure = Failure::new(FailureKind::Cancelled, "cancelled before it ran");
        let answer: String = self.link.call(true, |c| {
            self.scripts
                .cancel
                .key(self.keys.counts(&queue))
                .arg(self.keys.prefix(&queue))
                .arg(self.now_arg())
                .arg(padded(id))
                .arg(serde_json::to_string(&failure).unwrap_or_default())
                .invoke(c)
        })?;
        Ok(match answer.as_str() {
            "now" => Cancel::Cancelled,
            "requested" => Cancel::Requested,
            "missing" => return Err(not_found()),
            finished => Cancel::AlreadyFinished(state(
                finished.strip_prefix("finished:").unwrap_or(finished),
            )),
        })
    }

    fn get(&self, id: TaskId) -> Result<Option<TaskInfo>> {
        match self.homes(&[id])?.remove(0) {
            Some(queue) => self.task(&queue, id),
            None => Ok(None),
        }
    }

    fn wait_finished(&self, id: TaskId, timeout: Duration) -> Result<TaskInfo> {
        let not_found = || QueueError::NotFound { id: id.get() };
        let deadline = Instant::now() + timeout;
        let queue = self.homes(&[id])?.remove(0).ok_or_else(not_found)?;
        let mine = padded(id);
        let mut streams = self.last_lines(vec![self.keys.events(&queue)])?;
        loop {
            let task = self.task(&queue, id)?.ok_or_else(not_found)?;
            let left = deadline.saturating_duration_since(Instant::now());
            if task.state.is_finished() || left.is_zero() {
                return Ok(task);
            }
            self.wait_for_line(&mut streams, left.min(self.look_every), |line| {
                field(line, "id").as_deref() == Some(mine.as_str())
            })?;
        }
    }

    fn wait_for_work(&self, queues: &[&str], timeout: Duration) -> Result<()> {
        let mut streams =
            self.last_lines(queues.iter().map(|queue| self.keys.events(queue)).collect())?;
        let now = self.now();
        let mut next: Option<Millis> = None;
        for queue in queues {
            let (ready, delayed): (usize, Vec<(String, f64)>) = self.link.call(true, |c| {
                redis::pipe()
                    .zcard(self.keys.prios(queue))
                    .zrange_withscores(self.keys.delayed(queue), 0, 0)
                    .query(c)
            })?;
            if ready > 0 {
                return Ok(());
            }
            if let Some((_, at)) = delayed.first() {
                let at = *at as Millis;
                next = Some(next.map_or(at, |n| n.min(at)));
            }
        }
        let wait = match next {
            Some(at) if at <= now => return Ok(()),
            // Wake for the earliest delayed task too.
            Some(at) => Duration::from_millis(u64::try_from(at - now).unwrap_or(0)),
            None => timeout,
        };
        self.wait_for_line(
            &mut streams,
            wait.min(timeout).min(self.look_every),
            |line| field(line, "state").as_deref() == Some("queued"),
        )
    }

    fn queues(&self) -> Result<Vec<QueueStats>> {
        let now = self.now();
        let mut stats = Vec::new();
        for queue in self.all_queues()? {
            let (counts, scheduled): (HashMap<String, u64>, u64) = self.link.call(true, |c| {
                redis::pipe()
                    .hgetall(self.keys.counts(&queue))
                    .zcount(self.keys.delayed(&queue), format!("({now}"), "+inf")
                    .query(c)
            })?;
            let n = |state: &str| counts.get(state).copied().unwrap_or(0);
            let entry = QueueStats {
                ready: n("queued").saturating_sub(scheduled),
                scheduled,
                running: n("running"),
                succeeded: n("succeeded"),
                dead: n("dead"),
                cancelled: n("cancelled"),
                queue,
            };
            if counts.values().any(|&n| n > 0) {
                stats.push(entry);
            }
        }
        Ok(stats)
    }

    fn dead(&self, queue: Option<&str>, limit: usize) -> Result<Vec<TaskInfo>> {
        let queues = match queue {
            Some(queue) => vec![queue.to_owned()],
            None => self.all_queues()?,
        };
        let stop = isize::try_from(limit).unwrap_or(isize::MAX) - 1;
        let mut found: Vec<(f64, String, String)> = Vec::new();
        for queue in &queues {
            if limit == 0 {
                break;
            }
            let dead: Vec<(String, f64)> = self.link.call(true, |c| {
                c.zrange_withscores(self.keys.dead(queue), 0, stop)
            })?;
            found.extend(dead.into_iter().map(|(id, at)| (at, id, queue.clone())));
        }
        found.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
        found.truncate(limit);
        let mut tasks = Vec::with_capacity(found.len());
        for (_, id, queue) in found {
            let id = TaskId::new(id.parse().unwrap_or(0));
            tasks.extend(self.task(&queue, id)?);
        }
        Ok(tasks)
    }

    fn requeue_dead(&self, ids: Option<&[TaskId]>) -> Result<usize> {
        let groups: Vec<(String, Vec<String>)> = match ids {
            None => self
                .all_queues()?
                .into_iter()
                .map(|queue| (queue, Vec::new()))
                .collect(),
            Some(ids) => self
                .by_queue(ids)?
                .into_iter()
                .map(|(queue, members)| (queue, members.iter().map(|&i| padded(ids[i])).collect()))
                .collect(),
        };
        let mut requeued = 0;
        for (queue, members) in groups {
            let n: usize = self.link.call(true, |c| {
                self.scripts
                    .requeue_dead
                    .key(self.keys.counts(&queue))
                    .arg(self.keys.prefix(&queue))
                    .arg(self.now_arg())
                    .arg(&members)
                    .invoke(c)
            })?;
            requeued += n;
        }
        Ok(requeued)
    }

    fn purge(&self, queue: Option<&str>) -> Result<usize> {
        let queues = match queue {
            Some(queue) => vec![queue.to_owned()],
            None => self.all_queues()?,
        };
        let mut purged = 0;
        for queue in queues {
            loop {
                let ids: Vec<String> = self.link.call(true, |c| {
                    self.scripts
                        .purge
                        .key(self.keys.counts(&queue))
                        .arg(self.keys.prefix(&queue))
                        .arg(BATCH)
                        .invoke(c)
                })?;
                if ids.is_empty() {
                    break;
                }
                purged += ids.len();
                self.forget(&ids);
            }
        }
        Ok(purged)
    }

    fn expire_results(&self) -> Result<usize> {
        let mut expired = 0;
        for queue in self.all_queues()? {
            loop {
                let ids: Vec<String> = self.link.call(true, |c| {
                    self.scripts
                        .expire
                        .key(self.keys.counts(&queue))
                        .arg(self.keys.prefix(&queue))
                        .arg(self.now_arg())
                        .arg(BATCH)
                        .invoke(c)
                })?;
                if ids.is_empty() {
                    break;
                }
                expired += ids.len();
                self.forget(&ids);
            }
        }
        Ok(expired)
    }

    fn worker_seen(&self, worker: &WorkerInfo) -> Result<()> {
        let now = self.now();
        let key = self.keys.workers();
        let all: HashMap<String, String> = self.link.call(true, |c| c.hgetall(&key))?;
        let known = all
            .get(&worker.name)
            .and_then(|json| serde_json::from_str::<WorkerInfo>(json).ok());
        let record = WorkerInfo {
            started_at: known.as_ref().map_or(now, |w| w.started_at),
            stopped_at: known.as_ref().and_then(|w| w.stopped_at),
            seen_at: now,
            ..worker.clone()
        };
        // Workers gone for a day are forgotten.
        let gone: Vec<&String> = all
            .iter()
            .filter_map(|(name, json)| {
                let w = serde_json::from_str::<WorkerInfo>(json).ok()?;
                let lease = Millis::try_from(w.lease_ms).unwrap_or(Millis::MAX);
                let forget = w.seen_at < now - KEEP_GONE_MS
                    && (w.stopped_at.is_some() || w.seen_at.saturating_add(lease) < now);
                (forget && *name != worker.name).then_some(name)
            })
            .collect();
        let json = serde_json::to_string(&record).unwrap_or_default();
        self.link.call(true, |c| {
            let mut pipe = redis::pipe();
            pipe.hset(&key, &worker.name, &json).ignore();
            if !gone.is_empty() {
                pipe.hdel(&key, &gone).ignore();
            }
            pipe.query::<()>(c)
        })
    }

    fn worker_stopped(&self, worker: &WorkerInfo) -> Result<()> {
        let now = self.now();
        let key = self.keys.workers();
        let known: Option<String> = self.link.call(true, |c| c.hget(&key, &worker.name))?;
        let Some(mut record) =
            known.and_then(|json| serde_json::from_str::<WorkerInfo>(&json).ok())
        else {
            return Ok(());
        };
        record.stopped_at = Some(now);
        record.seen_at = now;
        record.running = 0;
        record.succeeded = worker.succeeded;
        record.failed = worker.failed;
        let json = serde_json::to_string(&record).unwrap_or_default();
        self.link
            .call(true, |c| c.hset::<_, _, _, ()>(&key, &worker.name, &json))
    }

    fn workers(&self) -> Result<Vec<WorkerInfo>> {
        let all: HashMap<String, String> =
            self.link.call(true, |c| c.hgetall(self.keys.workers()))?;
        let mut workers: Vec<WorkerInfo> = all
            .values()
            .filter_map(|json| serde_json::from_str(json).ok())
            .collect();
        workers.sort_by(|a, b| {
            b.started_at
                .cmp(&a.started_at)
                .then_with(|| a.name.cmp(&b.name))
        });
        Ok(workers)
    }

    fn now(&self) -> Millis {
        if let Some(clock) = &self.clock {
            return clock.now();
        }
        let time = self.link.call(true, |c: &mut Connection| {
            redis::cmd("TIME").query::<(i64, i64)>(c)
        });
        match time {
            Ok((seconds, micros)) => seconds * 1000 + micros / 1000,
            // The server cannot be reached: this machine's clock will do until it can.
            Err(_) => SystemClock.now(),
        }
    }
}
