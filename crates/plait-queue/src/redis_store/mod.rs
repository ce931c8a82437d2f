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
//! On a Redis Cluster (a URL naming several nodes) each queue lives on one node: a batch
//! enqueued over several queues is then atomic per queue, and an idle worker serving
//! several queues blocks on the first one's stream and looks at the others every
//! `look_every`.
//!
//! Waiters (a result's, an idle worker's) block on a stream per queue that each change
//! adds a line to, reading on from the last line they saw: a change between a look and a
//! wait is never missed, nor one made while the waiter reconnected.

mod admin;
mod decode;
mod keys;
mod lifecycle;
mod link;
mod scripts;
mod watch;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use redis::Commands;

use crate::clock::{Clock, Millis, SystemClock};
use crate::error::{QueueError, Result};
use crate::rate::RateLimit;
use crate::registry::WorkerInfo;
use crate::sqlite::DEFAULT_PAYLOAD_LIMIT;
use crate::store::{DEFAULT_RESULT_LIMIT, Store};
use crate::task::{
    Beat, Cancel, Completion, Enqueued, Lease, NewTask, Outcome, QueueStats, TaskId, TaskInfo,
};
use decode::{Fields, TASK_FIELDS, task_info};
use keys::Keys;
use link::Link;
use scripts::Scripts;

/// How many tasks a purge or an expiry deletes per script, so that the server is never
/// held for long.
const BATCH: usize = 10_000;
/// How many task ids a handle remembers the queue of.
const HOMES: usize = 100_000;
/// The most task ids a handle takes from the server's counter at once.
const ID_BLOCK: u64 = 1024;

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
    /// Task ids this handle took from the server's counter and has not used yet.
    ids: Mutex<IdBlock>,
    /// Queues this handle has added to the namespace's list of queues.
    listed: Mutex<HashSet<String>>,
}

/// A run of task ids taken from the server's counter in one round trip: one id at first,
/// then twice as many each time, up to [`ID_BLOCK`]. Ids left when a handle is dropped are
/// never used; none is ever used twice.
#[derive(Default)]
struct IdBlock {
    next: u64,
    end: u64,
    size: u64,
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
    /// What every key starts with (default `plait`; 1 to 64 letters, digits, `-`, `_` or
    /// `.`): several queue systems, or tests, can share one server under different
    /// namespaces.
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
    /// [`QueueError::InvalidNamespace`] for a namespace other than 1 to 64 letters,
    /// digits, `-`, `_` or `.`; [`QueueError::Unreachable`] if the URL does not parse or the
    /// server cannot be reached; [`QueueError::Redis`] if it refuses (a wrong password,
    /// say). The URL in the error has no password.
    pub fn build(self) -> Result<RedisStore> {
        // The same rule as a queue's name: nothing a key prefix or a hash tag cannot hold.
        if crate::store::check_queue_name(&self.namespace).is_err() {
            return Err(QueueError::InvalidNamespace {
                namespace: self.namespace,
            });
        }
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
            ids: Mutex::new(IdBlock::default()),
            listed: Mutex::new(HashSet::new()),
        })
    }
}

impl RedisStore {
    /// Connects to the server at `url` (`redis://[USER:PASSWORD@]HOST[:PORT][/DB]`,
    /// `rediss://` for TLS; for a Redis Cluster, several nodes: `redis://HOST:PORT,HOST:PORT`)
    /// with the default options.
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

    /// `script` over `queue`'s keys: routed by one of them, given their prefix.
    fn on_queue<'a>(&self, script: &'a redis::Script, queue: &str) -> redis::ScriptInvocation<'a> {
        let mut invocation = script.prepare_invoke();
        invocation
            .key(self.keys.counts(queue))
            .arg(self.keys.prefix(queue));
        invocation
    }

    /// Now, as the scripts take it: the caller's clock, or empty for the server's.
    fn now_arg(&self) -> String {
        self.clock
            .as_ref()
            .map_or_else(String::new, |clock| clock.now().to_string())
    }

    /// `count` task ids in a row, never used before.
    fn take_ids(&self, count: u64) -> Result<u64> {
        let mut ids = self.ids.lock().unwrap_or_else(PoisonError::into_inner);
        if ids.end - ids.next < count {
            ids.size = (ids.size * 2).clamp(1, ID_BLOCK);
            let take = ids.size.max(count);
            let last: u64 = self.link.call(false, |c| c.incr(self.keys.ids(), take))?;
            ids.next = last - take + 1;
            ids.end = last + 1;
        }
        let first = ids.next;
        ids.next += count;
        Ok(first)
    }

    /// Adds `queues` to the namespace's list, once per handle.
    fn list_queues(&self, queues: &[&str]) -> Result<()> {
        let new: Vec<&str> = {
            let listed = self.listed.lock().unwrap_or_else(PoisonError::into_inner);
            queues
                .iter()
                .copied()
                .filter(|q| !listed.contains(*q))
                .collect()
        };
        if new.is_empty() {
            return Ok(());
        }
        self.link
            .call(true, |c| c.sadd::<_, _, ()>(self.keys.queues(), &new))?;
        let mut listed = self.listed.lock().unwrap_or_else(PoisonError::into_inner);
        listed.extend(new.into_iter().map(str::to_owned));
        Ok(())
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
        // One round trip per queue (a queue's keys are on one node of a cluster).
        for queue in self.all_queues()? {
            let exists: Vec<bool> = self.link.call(true, |c| {
                let mut pipe = redis::pipe();
                for &i in &missing {
                    pipe.exists(self.keys.task(&queue, ids[i]));
                }
                pipe.query(c)
            })?;
            for (&i, here) in missing.iter().zip(exists) {
                if here && found[i].is_none() {
                    self.remember(ids[i], &queue);
                    found[i] = Some(queue.clone());
                }
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
            .call(true, |c| c.hmget(self.keys.task(queue, id), &TASK_FIELDS))?;
        Ok(task_info(id, fields))
    }
}

/// `url` as it may be shown: without its password (`redis://:****@host:6379/0`).
#[must_use]
pub fn redacted_url(url: &str) -> String {
    link::redact(url)
}

impl Store for RedisStore {
    fn enqueue_all(&self, tasks: &[NewTask]) -> Result<Vec<Enqueued>> {
        lifecycle::enqueue_all(self, tasks)
    }

    fn reserve(
        &self,
        worker: &str,
        queues: &[&str],
        max: usize,
        lease: Duration,
    ) -> Result<Vec<Lease>> {
        lifecycle::reserve(self, worker, queues, max, lease)
    }

    fn heartbeat(&self, attempts: &[(TaskId, u32)], lease: Duration) -> Result<Vec<Beat>> {
        lifecycle::heartbeat(self, attempts, lease)
    }

    fn complete(&self, ended: &[(TaskId, u32, Outcome)]) -> Result<Vec<Completion>> {
        lifecycle::complete(self, ended)
    }

    fn complete_and_reserve(
        &self,
        ended: &[(TaskId, u32, Outcome)],
        worker: &str,
        queues: &[&str],
        max: usize,
        lease: Duration,
    ) -> Result<(Vec<Completion>, Result<Vec<Lease>>)> {
        lifecycle::complete_and_reserve(self, ended, worker, queues, max, lease)
    }

    fn reclaim_expired(&self) -> Result<usize> {
        lifecycle::reclaim_expired(self)
    }

    fn cancel(&self, id: TaskId) -> Result<Cancel> {
        lifecycle::cancel(self, id)
    }

    fn get(&self, id: TaskId) -> Result<Option<TaskInfo>> {
        match self.homes(&[id])?.remove(0) {
            Some(queue) => self.task(&queue, id),
            None => Ok(None),
        }
    }

    fn wait_finished(&self, id: TaskId, timeout: Duration) -> Result<TaskInfo> {
        watch::wait_finished(self, id, timeout)
    }

    fn wait_all(&self, ids: &[TaskId], timeout: Duration) -> Result<Vec<TaskInfo>> {
        watch::wait_all(self, ids, timeout)
    }

    fn wait_for_work(&self, queues: &[&str], timeout: Duration) -> Result<()> {
        watch::wait_for_work(self, queues, timeout)
    }

    fn queues(&self) -> Result<Vec<QueueStats>> {
        admin::queues(self)
    }

    fn dead(&self, queue: Option<&str>, limit: usize) -> Result<Vec<TaskInfo>> {
        admin::dead(self, queue, limit)
    }

    fn running(&self, queue: Option<&str>, limit: usize) -> Result<Vec<TaskInfo>> {
        admin::running(self, queue, limit)
    }

    fn retrying(&self, queue: Option<&str>, limit: usize) -> Result<Vec<TaskInfo>> {
        admin::retrying(self, queue, limit)
    }

    fn requeue_dead(&self, ids: Option<&[TaskId]>) -> Result<usize> {
        admin::requeue_dead(self, ids)
    }

    fn purge(&self, queue: Option<&str>) -> Result<usize> {
        admin::purge(self, queue)
    }

    fn expire_results(&self) -> Result<usize> {
        admin::expire_results(self)
    }

    fn worker_seen(&self, worker: &WorkerInfo) -> Result<()> {
        admin::worker_seen(self, worker)
    }

    fn worker_stopped(&self, worker: &WorkerInfo) -> Result<()> {
        admin::worker_stopped(self, worker)
    }

    fn workers(&self) -> Result<Vec<WorkerInfo>> {
        admin::workers(self)
    }

    fn take_token(&self, name: &str, limit: RateLimit) -> Result<Option<Duration>> {
        let held: String = self.link.call(false, |c| {
            self.scripts
                .take_token
                .key(self.keys.limit(name))
                .arg(self.now_arg())
                .arg(limit.rate())
                .arg(limit.burst_size())
                .invoke(c)
        })?;
        Ok((held != "taken").then(|| limit.wait_for_token(held.parse().unwrap_or(0.0))))
    }

    fn now(&self) -> Millis {
        if let Some(clock) = &self.clock {
            return clock.now();
        }
        let time = self.link.call(true, |c: &mut link::Conn| {
            redis::cmd("TIME").query::<(i64, i64)>(c)
        });
        match time {
            Ok((seconds, micros)) => seconds * 1000 + micros / 1000,
            // The server cannot be reached: this machine's clock will do until it can.
            Err(_) => SystemClock.now(),
        }
    }
}
