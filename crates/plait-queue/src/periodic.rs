//! Periodic tasks: a [`Schedule`] enqueues a task at each tick of a cron expression, and a
//! [`Ticker`] fires a set of schedules on time, as Celery's beat does.
//!
//! **Exactly one enqueue per tick, however many tickers run.** Each tick's task carries
//! the idempotency key `plait-beat:NAME:TICK` (the tick in milliseconds since the epoch):
//! the store keeps the first and refuses the rest, so two or ten `plait beat` processes,
//! on one machine or several, never enqueue a tick twice, and need no leader. Time is the
//! store's (for Redis, the server's clock), so tickers on machines whose clocks differ
//! agree on which tick is due.
//!
//! **Missed ticks.** A ticker fires the latest tick that is due when it looks, if that
//! tick is at most the schedule's grace old (default one hour); older ticks, missed while
//! no ticker ran or while one was paused, are skipped and said, never run in a burst. A
//! ticker that starts within the grace after a tick it missed fires it once, late.
//! Ticks are in UTC.

use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use croner::Cron;

use crate::clock::Millis;
use crate::error::Result;
use crate::store::Store;
use crate::task::{Enqueued, NewTask};

/// How late a missed tick may still fire, unless a schedule says otherwise.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(3600);

/// A cron expression that does not parse, with the schedule's name.
#[derive(Debug, thiserror::Error)]
#[error(
    "schedule {name:?}: {pattern:?} is not a cron expression ({reason}); write five fields \
     (minute hour day-of-month month day-of-week, as \"0 3 * * *\"), or six with seconds first"
)]
pub struct ScheduleError {
    name: String,
    pattern: String,
    reason: String,
}

/// A task enqueued at each tick of a cron expression.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use plait_queue::{NewTask, Payload, Schedule};
///
/// let nightly = Schedule::new(
///     "backup",
///     "0 3 * * *",
///     NewTask::new(Payload::command(["./backup.sh"]).encode()),
/// )?
/// .grace(Duration::from_secs(6 * 3600));
/// assert_eq!(nightly.name(), "backup");
/// # Ok::<(), plait_queue::ScheduleError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Schedule {
    name: String,
    pattern: String,
    cron: Cron,
    task: NewTask,
    grace: Duration,
}

impl Schedule {
    /// A schedule named `name` (it names the ticks' keys: give each schedule its own) that
    /// enqueues `task` at each tick of `cron`: five fields, or six with seconds first; the
    /// extensions of [croner](https://docs.rs/croner) (`L`, `#`, `W`, names) are accepted.
    ///
    /// # Errors
    ///
    /// [`ScheduleError`] if `cron` does not parse; it names the schedule and the pattern.
    pub fn new(
        name: impl Into<String>,
        cron: &str,
        task: NewTask,
    ) -> std::result::Result<Schedule, ScheduleError> {
        let name = name.into();
        let parsed = Cron::new(cron)
            .with_seconds_optional()
            .parse()
            .map_err(|error| ScheduleError {
                name: name.clone(),
                pattern: cron.to_owned(),
                reason: error.to_string(),
            })?;
        Ok(Schedule {
            name,
            pattern: cron.to_owned(),
            cron: parsed,
            task,
            grace: DEFAULT_GRACE,
        })
    }

    /// How late a missed tick may still fire (default [`DEFAULT_GRACE`], an hour).
    #[must_use]
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// The schedule's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The cron expression, as given.
    #[must_use]
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// The latest tick after `since` and at or before `now`, with how many ticks before it
    /// (after `since`) were missed; `None` if there is none. A latest tick older than the
    /// grace does not fire, and is counted among the missed. (At most a million ticks are
    /// counted.)
    #[must_use]
    pub fn due(&self, now: Millis, since: Millis) -> Option<Due> {
        let mut at = utc(since)?;
        let mut latest = None;
        let mut ticks: u64 = 0;
        while ticks < 1_000_000 {
            match self.cron.find_next_occurrence(&at, false) {
                Ok(next) if next.timestamp_millis() <= now => {
                    ticks += 1;
                    latest = Some(next.timestamp_millis());
                    at = next;
                }
                _ => break,
            }
        }
        let tick = latest?;
        let late = Duration::from_millis(u64::try_from(now - tick).unwrap_or(0));
        let fire = late <= self.grace;
        Some(Due {
            tick,
            missed: if fire { ticks - 1 } else { ticks },
            fire,
        })
    }

    /// The first tick after `now`.
    #[must_use]
    pub fn next_after(&self, now: Millis) -> Option<Millis> {
        let at = utc(now)?;
        let next = self.cron.find_next_occurrence(&at, false).ok()?;
        Some(next.timestamp_millis())
    }

    /// Enqueues tick `tick`'s task under the tick's key: `created` is false if it was
    /// enqueued already (by another ticker). Its result is kept at least twice the grace,
    /// so that the key outlives every ticker that could still fire the tick.
    ///
    /// # Errors
    ///
    /// As [`Store::enqueue`].
    pub fn fire(&self, store: &dyn Store, tick: Millis) -> Result<Enqueued> {
        let keep = self.task.result_ttl.max(self.grace.saturating_mul(2));
        let task = self
            .task
            .clone()
            .key(format!("plait-beat:{}:{tick}", self.name))
            .result_ttl(keep);
        store.enqueue(&task)
    }
}

/// What [`Schedule::due`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Due {
    /// The latest tick due, in milliseconds since the epoch.
    pub tick: Millis,
    /// Ticks skipped: missed before it (or it too, if it is past the grace).
    pub missed: u64,
    /// Whether it is to fire (it is within the grace).
    pub fire: bool,
}

/// `millis` as a time, to the whole second (ticks fall on whole seconds).
fn utc(millis: Millis) -> Option<DateTime<Utc>> {
    Utc.timestamp_opt(millis.div_euclid(1000), 0).single()
}

/// A tick as text: `2026-12-07T03:00:00Z`.
#[must_use]
pub fn tick_text(tick: Millis) -> String {
    utc(tick).map_or_else(
        || tick.to_string(),
        |at| at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
    )
}

/// What a [`Ticker`] did at a tick, for its caller to tell.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Fired {
    /// The tick's task was enqueued (`created`), or found enqueued by another ticker.
    Enqueued {
        /// The schedule.
        schedule: String,
        /// The tick, in milliseconds since the epoch.
        tick: Millis,
        /// The task, and whether this ticker enqueued it.
        enqueued: Enqueued,
    },
    /// Ticks were skipped: missed, or past the grace.
    Skipped {
        /// The schedule.
        schedule: String,
        /// How many.
        ticks: u64,
        /// The latest tick due: it fires now (`fires`), and the skipped ticks came before
        /// it; or it is past the grace, and is the last of them.
        latest: Millis,
        /// Whether `latest` fires.
        fires: bool,
    },
    /// The store failed; the tick is tried again on the next look.
    Failed {
        /// The schedule.
        schedule: String,
        /// The tick.
        tick: Millis,
        /// Why.
        error: String,
    },
}

/// Fires schedules on time, until stopped.
#[must_use = "a ticker does nothing until `run` is called"]
pub struct Ticker {
    store: Arc<dyn Store>,
    schedules: Vec<Schedule>,
    stop: Arc<(Mutex<bool>, Condvar)>,
}

/// Stops a running [`Ticker`] (from another thread, or a signal handler's thread).
#[derive(Clone)]
pub struct TickerStopper(Arc<(Mutex<bool>, Condvar)>);

impl TickerStopper {
    /// Asks the ticker to return from `run` now.
    pub fn stop(&self) {
        let (stopped, wake) = &*self.0;
        *stopped.lock().unwrap_or_else(PoisonError::into_inner) = true;
        wake.notify_all();
    }
}

/// The longest a ticker sleeps before it looks at the clock again (clocks drift; the
/// store's is the one that counts).
const LOOK_AT_LEAST_EVERY: Duration = Duration::from_secs(60);
/// How long a ticker waits before it tries a failed tick again.
const RETRY_AFTER: Duration = Duration::from_millis(500);

impl Ticker {
    /// A ticker for `schedules` on `store`.
    pub fn new(store: Arc<dyn Store>, schedules: Vec<Schedule>) -> Ticker {
        Ticker {
            store,
            schedules,
            stop: Arc::default(),
        }
    }

    /// A handle that stops [`run`](Ticker::run).
    #[must_use]
    pub fn stopper(&self) -> TickerStopper {
        TickerStopper(Arc::clone(&self.stop))
    }

    /// Fires each schedule's ticks as they come (see the [module docs](self) for missed
    /// ticks), telling `told` what it did, until stopped. Storage errors are told and the
    /// tick tried again: a ticker never stops on its own.
    pub fn run(self, mut told: impl FnMut(Fired)) {
        let now = self.store.now();
        // A tick missed within the grace before this ticker started fires once.
        let mut handled: Vec<Millis> = self
            .schedules
            .iter()
            .map(|s| {
                let grace = Millis::try_from(s.grace.as_millis()).unwrap_or(Millis::MAX);
                now.saturating_sub(grace).saturating_sub(1000)
            })
            .collect();
        loop {
            let now = self.store.now();
            let mut retry = false;
            for (schedule, handled) in self.schedules.iter().zip(&mut handled) {
                let Some(due) = schedule.due(now, *handled) else {
                    continue;
                };
                let skipped = due.missed;
                if skipped > 0 {
                    told(Fired::Skipped {
                        schedule: schedule.name.clone(),
                        ticks: skipped,
                        latest: due.tick,
                        fires: due.fire,
                    });
                }
                if !due.fire {
                    *handled = due.tick;
                    continue;
                }
                match schedule.fire(self.store.as_ref(), due.tick) {
                    Ok(enqueued) => {
                        *handled = due.tick;
                        told(Fired::Enqueued {
                            schedule: schedule.name.clone(),
                            tick: due.tick,
                            enqueued,
                        });
                    }
                    Err(error) => {
                        retry = true;
                        told(Fired::Failed {
                            schedule: schedule.name.clone(),
                            tick: due.tick,
                            error: error.to_string(),
                        });
                    }
                }
            }
            let next = self
                .schedules
                .iter()
                .filter_map(|s| s.next_after(now))
                .min();
            let wait = match next {
                _ if retry => RETRY_AFTER,
                Some(at) => Duration::from_millis(u64::try_from(at - now).unwrap_or(0)),
                None => LOOK_AT_LEAST_EVERY,
            };
            if self.sleep(wait.min(LOOK_AT_LEAST_EVERY)) {
                return;
            }
        }
    }

    /// Sleeps for `wait` unless stopped; whether it was stopped.
    fn sleep(&self, wait: Duration) -> bool {
        let (stopped, wake) = &*self.stop;
        let guard = stopped.lock().unwrap_or_else(PoisonError::into_inner);
        let (guard, _) = wake
            .wait_timeout_while(guard, wait, |stopped| !*stopped)
            .unwrap_or_else(PoisonError::into_inner);
        *guard
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Millis {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .timestamp_millis()
    }

    fn nightly() -> Schedule {
        Schedule::new("nightly", "0 3 * * *", NewTask::new(b"x".to_vec())).unwrap()
    }

    #[test]
    fn the_latest_tick_is_due_once_within_the_grace() {
        let s = nightly();
        let due = s
            .due(at("2026-12-07T03:20:00Z"), at("2026-12-07T02:20:00Z"))
            .unwrap();
        assert_eq!(due.tick, at("2026-12-07T03:00:00Z"));
        assert!(due.fire);
        assert_eq!(due.missed, 0);
        // Once handled, not again until the next.
        assert_eq!(s.due(at("2026-12-07T04:00:00Z"), due.tick), None);
        assert_eq!(
            s.next_after(at("2026-12-07T03:20:00Z")),
            Some(at("2026-12-08T03:00:00Z"))
        );
    }

    #[test]
    fn ticks_missed_are_skipped_and_one_past_the_grace_does_not_fire() {
        let s = nightly();
        // Down for three nights: the latest fires (within the grace), two are skipped.
        let due = s
            .due(at("2026-12-10T03:30:00Z"), at("2026-12-07T03:00:00Z"))
            .unwrap();
        assert_eq!(
            (due.tick, due.missed, due.fire),
            (at("2026-12-10T03:00:00Z"), 2, true)
        );
        // Past the grace: nothing fires, and the latest is skipped too.
        let due = s
            .due(at("2026-12-10T05:00:00Z"), at("2026-12-07T03:00:00Z"))
            .unwrap();
        assert_eq!((due.missed, due.fire), (3, false));
    }

    #[test]
    fn seconds_may_come_first_and_a_bad_pattern_is_named() {
        let every_second =
            Schedule::new("fast", "* * * * * *", NewTask::new(b"x".to_vec())).unwrap();
        let now = at("2026-12-07T03:00:00.500Z");
        assert_eq!(
            every_second.next_after(now),
            Some(at("2026-12-07T03:00:01Z"))
        );
        let error = Schedule::new("bad", "61 * * * *", NewTask::new(b"x".to_vec())).unwrap_err();
        let said = error.to_string();
        assert!(
            said.contains("\"bad\"") && said.contains("\"61 * * * *\""),
            "{said}"
        );
        assert!(said.contains("five fields"), "{said}");
        assert_eq!(
            tick_text(at("2026-12-07T03:00:00Z")),
            "2026-12-07T03:00:00Z"
        );
    }
}
