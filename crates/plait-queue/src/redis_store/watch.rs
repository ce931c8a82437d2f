//! Waiting on the Redis store: for a task to finish, for work on a queue. Each change adds a
//! line to its queue's stream of events; a waiter reads on from the last line it saw, so
//! a change made between its look and its wait, or while it reconnected, is never missed.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use redis::streams::StreamReadReply;
use redis::{Commands, Value};

use super::RedisStore;
use super::keys::padded;
use crate::clock::Millis;
use crate::error::{QueueError, Result};
use crate::store::Store;
use crate::task::{TaskId, TaskInfo};

impl RedisStore {
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

/// The field of a stream line as text.
fn field(line: &HashMap<String, Value>, name: &str) -> Option<String> {
    match line.get(name)? {
        Value::BulkString(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
        Value::SimpleString(text) => Some(text.clone()),
        _ => None,
    }
}

pub(super) fn wait_finished(store: &RedisStore, id: TaskId, timeout: Duration) -> Result<TaskInfo> {
    let not_found = || QueueError::NotFound { id: id.get() };
    let deadline = Instant::now() + timeout;
    let queue = store.homes(&[id])?.remove(0).ok_or_else(not_found)?;
    let mine = padded(id);
    let mut streams = store.last_lines(vec![store.keys.events(&queue)])?;
    loop {
        let task = store.task(&queue, id)?.ok_or_else(not_found)?;
        let left = deadline.saturating_duration_since(Instant::now());
        if task.state.is_finished() || left.is_zero() {
            return Ok(task);
        }
        store.wait_for_line(&mut streams, left.min(store.look_every), |line| {
            field(line, "id").as_deref() == Some(mine.as_str())
        })?;
    }
}

pub(super) fn wait_for_work(store: &RedisStore, queues: &[&str], timeout: Duration) -> Result<()> {
    let mut streams = store.last_lines(
        queues
            .iter()
            .map(|queue| store.keys.events(queue))
            .collect(),
    )?;
    let now = store.now();
    let mut next: Option<Millis> = None;
    for queue in queues {
        let (ready, delayed): (usize, Vec<(String, f64)>) = store.link.call(true, |c| {
            redis::pipe()
                .zcard(store.keys.prios(queue))
                .zrange_withscores(store.keys.delayed(queue), 0, 0)
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
    // On a cluster, one read cannot block on streams of several queues (their keys are
    // on different nodes): it blocks on the first, and looks at the rest at least
    // every `look_every`.
    if store.link.is_cluster() {
        streams.truncate(1);
    }
    store.wait_for_line(
        &mut streams,
        wait.min(timeout).min(store.look_every),
        |line| field(line, "state").as_deref() == Some("queued"),
    )
}
