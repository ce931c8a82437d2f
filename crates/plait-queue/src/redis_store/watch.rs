//! Waiting on the Redis store: for a task to finish, for work on a queue. Each change adds a
//! line to its queue's stream of events; a waiter reads on from the last line it saw, so
//! a change made between its look and its wait, or while it reconnected, is never missed.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use redis::streams::StreamRangeReply;
use redis::{Commands, Value};

use super::RedisStore;
use super::decode::{self, Fields, TASK_FIELDS, task_info};
use super::keys::padded;
use crate::clock::Millis;
use crate::error::{QueueError, Result};
use crate::task::{TaskId, TaskInfo};

/// The most lines one read takes. A read that takes this many may have fallen behind the
/// stream's trimming (it keeps the last two thousand lines or so), so its reader looks at the
/// tasks themselves again.
const LINES: usize = 1000;

/// What one read of the streams gave: each line's task id and state, and whether the read
/// was full (see [`LINES`]).
struct Lines {
    lines: Vec<(String, String)>,
    full: bool,
}

impl RedisStore {
    /// Blocks until lines are added to `streams` after the line ids given (which it moves
    /// on), or `wait` passes; the `id state` pairs of the lines read.
    fn read_lines(&self, streams: &mut [(String, String)], wait: Duration) -> Result<Lines> {
        // BLOCK 0 would block for ever.
        let block = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1);
        let reply: Value = self.link.blocking(wait, |c| {
            let mut read = redis::cmd("XREAD");
            read.arg("COUNT")
                .arg(LINES)
                .arg("BLOCK")
                .arg(block)
                .arg("STREAMS");
            for (key, _) in streams.iter() {
                read.arg(key);
            }
            for (_, last) in streams.iter() {
                read.arg(last);
            }
            read.query(c)
        })?;
        let mut read = Lines {
            lines: Vec::new(),
            full: false,
        };
        for (key, lines) in entries(reply) {
            let lines = items(lines);
            read.full |= lines.len() >= LINES;
            let mut newest = None;
            for line in lines {
                let mut parts = items(line).into_iter();
                newest = parts.next().and_then(text).or(newest);
                read.lines
                    .extend(pairs(parts.next().map(items).unwrap_or_default()));
            }
            if let (Some(newest), Some(key)) = (newest, text(key))
                && let Some(stream) = streams.iter_mut().find(|(name, _)| *name == key)
            {
                stream.1 = newest;
            }
        }
        Ok(read)
    }

    /// Blocks until a line that `wanted` accepts (by task id and state) is added to one of
    /// `streams`, a read falls behind, or `wait` passes.
    fn wait_for_line(
        &self,
        streams: &mut [(String, String)],
        wait: Duration,
        wanted: impl Fn(&str, &str) -> bool,
    ) -> Result<()> {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            let read = self.read_lines(streams, left)?;
            if read.full || read.lines.iter().any(|(id, state)| wanted(id, state)) {
                return Ok(());
            }
        }
    }

    /// Those of `look` (indexes into `ids`, all on `queue`) whose task has finished, or is
    /// gone (for the whole read that follows to say so): states only, a thousand per round
    /// trip.
    fn finished_among(&self, queue: &str, ids: &[TaskId], look: &[usize]) -> Result<Vec<usize>> {
        let mut finished = Vec::new();
        for chunk in look.chunks(GATHER) {
            let states: Vec<Option<String>> = self.link.call(true, |c| {
                let mut pipe = redis::pipe();
                for &i in chunk {
                    pipe.hget(self.keys.task(queue, ids[i]), "state");
                }
                pipe.query(c)
            })?;
            finished.extend(chunk.iter().zip(states).filter_map(|(&i, stored)| {
                stored
                    .is_none_or(|stored| decode::state(&stored).is_finished())
                    .then_some(i)
            }));
        }
        Ok(finished)
    }
}

/// The items of an array reply (none for anything else).
fn items(value: Value) -> Vec<Value> {
    match value {
        Value::Array(items) => items,
        _ => Vec::new(),
    }
}

/// An XREAD reply's streams, each its key and its lines: an array of pairs (RESP2) or a map
/// (RESP3).
fn entries(reply: Value) -> Vec<(Value, Value)> {
    match reply {
        Value::Map(entries) => entries,
        Value::Array(streams) => streams
            .into_iter()
            .filter_map(|stream| {
                let mut parts = items(stream).into_iter();
                Some((parts.next()?, parts.next()?))
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// A reply as text.
fn text(value: Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes).ok(),
        Value::SimpleString(text) => Some(text),
        _ => None,
    }
}

/// A line's fields as `(task id, state)` pairs. A line is `id state` pairs, one for each
/// task a script changed; a line written before that layout is `id ID state STATE`.
fn pairs(fields: Vec<Value>) -> Vec<(String, String)> {
    let mut fields = fields.into_iter().map(text);
    let mut pairs = Vec::new();
    while let (Some(Some(name)), Some(Some(value))) = (fields.next(), fields.next()) {
        pairs.push((name, value));
    }
    if let [(id, task), (state, said)] = &pairs[..]
        && id == "id"
        && state == "state"
    {
        return vec![(task.clone(), said.clone())];
    }
    pairs
}

pub(super) fn wait_finished(store: &RedisStore, id: TaskId, timeout: Duration) -> Result<TaskInfo> {
    let not_found = || QueueError::NotFound { id: id.get() };
    let deadline = Instant::now() + timeout;
    let queue = store.homes(&[id])?.remove(0).ok_or_else(not_found)?;
    let mine = padded(id);
    let events = store.keys.events(&queue);
    loop {
        // The stream's last line, then the task, in one round trip (a queue's keys are on
        // one node): a change after the look is a line after that one.
        let (last, fields): (StreamRangeReply, Fields) = store.link.call(true, |c| {
            redis::pipe()
                .xrevrange_count(&events, "+", "-", 1)
                .hmget(store.keys.task(&queue, id), &TASK_FIELDS)
                .query(c)
        })?;
        let task = task_info(id, fields).ok_or_else(not_found)?;
        let left = deadline.saturating_duration_since(Instant::now());
        if task.state.is_finished() || left.is_zero() {
            return Ok(task);
        }
        let mut streams = [(events.clone(), last_id(&last))];
        store.wait_for_line(&mut streams, left.min(store.look_every), |line, _| {
            line == mine
        })?;
    }
}

/// How many tasks one round trip of [`wait_all`] reads.
const GATHER: usize = 1000;

pub(super) fn wait_all(
    store: &RedisStore,
    ids: &[TaskId],
    timeout: Duration,
) -> Result<Vec<TaskInfo>> {
    let deadline = Instant::now() + timeout;
    let homes = store.homes(ids)?;
    if let Some(i) = homes.iter().position(Option::is_none) {
        return Err(QueueError::NotFound { id: ids[i].get() });
    }
    let mut found: Vec<Option<TaskInfo>> = vec![None; ids.len()];
    let mut by_queue: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, home) in homes.into_iter().enumerate() {
        by_queue
            .entry(home.unwrap_or_default())
            .or_default()
            .push(i);
    }
    // Per queue: the stream's last line and every task (a thousand per round trip); then,
    // while some run, the lines that say which finished, and only those tasks again.
    for (queue, members) in by_queue {
        let events = store.keys.events(&queue);
        let last: StreamRangeReply = store
            .link
            .call(true, |c| c.xrevrange_count(&events, "+", "-", 1))?;
        let mut streams = [(events, last_id(&last))];
        // By id: one id may be asked for more than once.
        let mut pending: HashMap<String, Vec<usize>> = HashMap::new();
        for &i in &members {
            pending.entry(padded(ids[i])).or_default().push(i);
        }
        let mut look: Vec<usize> = members;
        // Whether every task in `look` is read whole. Otherwise their states are read first,
        // and only the finished tasks whole: a gather begun as the work is enqueued would
        // otherwise read every task twice, and a task is many times its state.
        let mut whole = false;
        loop {
            if !whole {
                look = store.finished_among(&queue, ids, &look)?;
            }
            for chunk in look.chunks(GATHER) {
                let all: Vec<Fields> = store.link.call(true, |c| {
                    let mut pipe = redis::pipe();
                    for &i in chunk {
                        pipe.hmget(store.keys.task(&queue, ids[i]), &TASK_FIELDS);
                    }
                    pipe.query(c)
                })?;
                for (&i, fields) in chunk.iter().zip(all) {
                    let task = task_info(ids[i], fields)
                        .ok_or(QueueError::NotFound { id: ids[i].get() })?;
                    if task.state.is_finished() || Instant::now() >= deadline {
                        for j in pending.remove(&padded(ids[i])).unwrap_or_default() {
                            found[j] = Some(task.clone());
                        }
                    }
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if pending.is_empty() {
                break;
            }
            if left.is_zero() {
                // Time is up: one more look takes each as it stands (past the deadline,
                // every task read is taken).
                look = pending
                    .values()
                    .filter_map(|all| all.first().copied())
                    .collect();
                whole = true;
                continue;
            }
            let read = store.read_lines(&mut streams, left.min(store.look_every))?;
            // The lines name finished tasks (any state but `queued`): read those whole.
            whole = !read.full && !read.lines.is_empty();
            look = if !whole {
                // Behind the stream, or a quiet spell: look at every task still waited for.
                pending
                    .values()
                    .filter_map(|all| all.first().copied())
                    .collect()
            } else {
                read.lines
                    .iter()
                    .filter(|(_, state)| state != "queued")
                    .filter_map(|(id, _)| pending.get(id).and_then(|all| all.first().copied()))
                    .collect()
            };
            look.sort_unstable();
            look.dedup();
        }
    }
    // Each queue's loop ends with every one of its tasks found.
    ids.iter()
        .zip(found)
        .map(|(id, task)| task.ok_or(QueueError::NotFound { id: id.get() }))
        .collect()
}

/// The id of a stream's last line (`0` for none yet).
fn last_id(last: &StreamRangeReply) -> String {
    last.ids
        .first()
        .map_or_else(|| "0".to_owned(), |line| line.id.clone())
}

/// A queue's stream's last line, its ready count, its earliest delayed task and the
/// server's time.
type Looked = (StreamRangeReply, usize, Vec<(String, f64)>, (i64, i64));

pub(super) fn wait_for_work(store: &RedisStore, queues: &[&str], timeout: Duration) -> Result<()> {
    let mut streams = Vec::with_capacity(queues.len());
    // How long until the earliest delayed task is due, each by its own node's clock (on
    // a cluster, the nodes' clocks may differ).
    let mut due_in: Option<Duration> = None;
    for queue in queues {
        // The stream's last line, then what waits, in one round trip.
        let (last, ready, delayed, time): Looked = store.link.call(true, |c| {
            redis::pipe()
                .xrevrange_count(store.keys.events(queue), "+", "-", 1)
                .zcard(store.keys.prios(queue))
                .zrange_withscores(store.keys.delayed(queue), 0, 0)
                .cmd("TIME")
                .query(c)
        })?;
        if ready > 0 {
            return Ok(());
        }
        if let Some((_, at)) = delayed.first() {
            let now = match &store.clock {
                Some(clock) => clock.now(),
                None => time.0 * 1000 + time.1 / 1000,
            };
            let at = *at as Millis;
            if at <= now {
                return Ok(());
            }
            let wait = Duration::from_millis(u64::try_from(at - now).unwrap_or(0));
            due_in = Some(due_in.map_or(wait, |d| d.min(wait)));
        }
        streams.push((store.keys.events(queue), last_id(&last)));
    }
    // Wake for the earliest delayed task too.
    let wait = due_in.unwrap_or(timeout);
    // On a cluster, one read cannot block on streams of several queues (their keys are
    // on different nodes): it blocks on the first, and looks at the rest at least
    // every `look_every`.
    if store.link.is_cluster() {
        streams.truncate(1);
    }
    store.wait_for_line(
        &mut streams,
        wait.min(timeout).min(store.look_every),
        |_, state| state == "queued",
    )
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use redis::Value;

    use super::pairs;

    fn bulk(text: &str) -> Value {
        Value::BulkString(text.as_bytes().to_vec())
    }

    #[test]
    fn a_line_in_the_earlier_layout_is_one_pair() {
        let line = ["id", "00000000000000000007", "state", "succeeded"].map(bulk);
        assert_eq!(
            pairs(line.to_vec()),
            [("00000000000000000007".to_owned(), "succeeded".to_owned())]
        );
    }

    proptest! {
        /// Whatever ids and states a script wrote, in whatever number, each is read back,
        /// in order; an odd field out is dropped rather than misread.
        #[test]
        fn every_pair_of_a_line_is_read(
            written in prop::collection::vec(("[0-9]{20}", "[a-z]{4,9}"), 0..40),
            odd in proptest::option::of("[0-9]{20}"),
        ) {
            let mut fields: Vec<Value> = written
                .iter()
                .flat_map(|(id, state)| [bulk(id), bulk(state)])
                .collect();
            if let Some(odd) = &odd {
                fields.push(bulk(odd));
            }
            prop_assert_eq!(pairs(fields), written);
        }
    }
}
