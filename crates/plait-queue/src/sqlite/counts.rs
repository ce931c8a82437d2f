//! The task counts by queue and state that `queues()` reads instead of scanning the tasks.
//! Every write that adds, moves or deletes tasks tallies what it did, and the tally goes
//! into the `counts` table in the same transaction: one statement per queue and state
//! touched, however many tasks a batch moved (a trigger would pay per task).

use rusqlite::{Transaction, params};

use super::schema::{CANCELLED, DEAD, QUEUED, RUNNING, SUCCEEDED};
use crate::task::State;

/// Changes to the counts, gathered during one transaction.
#[derive(Default)]
pub(super) struct Tally(Vec<(String, i64, i64)>);

impl Tally {
    /// `n` more tasks (fewer, if negative) of `queue` in `state`.
    pub(super) fn add(&mut self, queue: &str, state: i64, n: i64) {
        match self
            .0
            .iter_mut()
            .find(|(q, s, _)| *s == state && q == queue)
        {
            Some((_, _, count)) => *count += n,
            None => self.0.push((queue.to_owned(), state, n)),
        }
    }

    /// A task of `queue` moved from `from` to `to`.
    pub(super) fn moved(&mut self, queue: &str, from: i64, to: i64) {
        if from != to {
            self.add(queue, from, -1);
            self.add(queue, to, 1);
        }
    }

    /// Writes the tally into the counts.
    pub(super) fn write(self, tx: &Transaction<'_>) -> rusqlite::Result<()> {
        let mut upsert = tx.prepare_cached(
            "INSERT INTO counts (queue, state, n) VALUES (?1, ?2, ?3)
                 ON CONFLICT (queue, state) DO UPDATE SET n = n + excluded.n",
        )?;
        for (queue, state, n) in self.0 {
            if n != 0 {
                upsert.execute(params![queue, state, n])?;
            }
        }
        Ok(())
    }
}

/// A state as stored.
pub(super) fn stored(state: State) -> i64 {
    match state {
        State::Queued => QUEUED,
        State::Running => RUNNING,
        State::Succeeded => SUCCEEDED,
        State::Dead => DEAD,
        State::Cancelled => CANCELLED,
    }
}
