//! The queue from the shell: `plait submit`, `status`, `result`, `cancel`, `queues`,
//! `dead`, `purge` and `worker`, on the embedded store that `plait.toml` (or the
//! `PLAIT_*` variables) names.

pub(crate) mod beat;
pub(crate) mod config;
pub(crate) mod signals;
pub(crate) mod worker;
pub(crate) mod workers;

use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Args as ClapArgs;
use plait_queue::{
    Cancel, Millis, NewTask, Payload, QueueStats, RetryPolicy, State, TaskId, TaskInfo,
};

pub(crate) use config::Config;
pub(crate) use worker::WorkerArgs;

/// `plait submit`.
#[derive(ClapArgs)]
pub(crate) struct SubmitArgs {
    /// The queue (default: plait.toml's default_queue, or "default").
    #[arg(long, short = 'q', value_name = "QUEUE")]
    queue: Option<String>,
    /// Not to run before this time: 2026-12-24T18:00:00Z (UTC), or @SECONDS.
    #[arg(long, value_name = "TIME", conflicts_with = "countdown")]
    eta: Option<String>,
    /// Not to run before this long from now: 30s, 5m, 2h, 1d.
    #[arg(long, value_name = "DURATION")]
    countdown: Option<String>,
    /// An idempotency key: submitting again with a key still held prints the first
    /// task's id and adds nothing.
    #[arg(long, value_name = "KEY")]
    key: Option<String>,
    /// Higher runs first, among the tasks ready on its queue (default 0).
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    priority: i32,
    /// How often a failed attempt is retried (default 3).
    #[arg(long, value_name = "N")]
    retries: Option<u32>,
    /// Attempts that crash (killed by a signal) before it is dead (default 3).
    #[arg(long, value_name = "N")]
    crash_budget: Option<u32>,
    /// A hard limit on each attempt: 30s, 5m.
    #[arg(long, value_name = "DURATION")]
    time_limit: Option<String>,
    /// A variable for the command, NAME=VALUE (repeat for more).
    #[arg(long = "env", short = 'e', value_name = "NAME=VALUE")]
    env: Vec<String>,
    /// Where the command runs (default: the worker's directory).
    #[arg(long, value_name = "DIR")]
    cwd: Option<std::path::PathBuf>,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    command: Vec<String>,
}

pub(crate) fn submit(args: &SubmitArgs) -> Result<ExitCode, String> {
    let config = Config::here()?;
    let mut env = std::collections::BTreeMap::new();
    for pair in &args.env {
        let (name, value) = pair
            .split_once('=')
            .filter(|(name, _)| !name.is_empty())
            .ok_or_else(|| format!("--env {pair:?}: write it as NAME=VALUE"))?;
        env.insert(name.to_owned(), value.to_owned());
    }
    let payload = Payload::Command {
        argv: args.command.clone(),
        env,
        cwd: args.cwd.clone(),
    };
    let mut task = NewTask::new(payload.encode())
        .queue(args.queue.clone().unwrap_or_else(|| config.queue.clone()))
        .priority(args.priority);
    if let Some(eta) = &args.eta {
        task = task.eta(config::moment(eta).map_err(|e| format!("--eta: {e}"))?);
    }
    if let Some(countdown) = &args.countdown {
        task = task
            .countdown(crate::duration::parse(countdown).map_err(|e| format!("--countdown: {e}"))?);
    }
    if let Some(key) = &args.key {
        task = task.key(key.clone());
    }
    if args.retries.is_some() || args.crash_budget.is_some() {
        let default = RetryPolicy::default();
        task = task.retry(RetryPolicy {
            max_retries: args.retries.unwrap_or(default.max_retries),
            crash_budget: args.crash_budget.unwrap_or(default.crash_budget),
            ..default
        });
    }
    if let Some(limit) = &args.time_limit {
        task = task
            .time_limit(crate::duration::parse(limit).map_err(|e| format!("--time-limit: {e}"))?);
    }
    let store = config.open()?;
    let done = store.enqueue(&task).map_err(|e| e.to_string())?;
    outln!("{}", done.id);
    if !done.created {
        eprintln!(
            "plait: the key is held by task {}; nothing was added",
            done.id
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `plait status`.
#[derive(ClapArgs)]
pub(crate) struct StatusArgs {
    /// A task's id; without one, every queue's counts.
    id: Option<String>,
    /// One JSON object (a task, or the queues).
    #[arg(long)]
    json: bool,
}

pub(crate) fn status(args: &StatusArgs) -> Result<ExitCode, String> {
    let store = Config::here()?.open()?;
    let Some(id) = &args.id else {
        let queues = store.queues().map_err(|e| e.to_string())?;
        if args.json {
            outln!("{}", json(&queues));
        } else {
            print_queues(&queues);
        }
        return Ok(ExitCode::SUCCESS);
    };
    let id: TaskId = id.parse()?;
    let task = store.get(id).map_err(|e| e.to_string())?.ok_or_else(|| {
        format!("no task {id} in the queue (it never existed, or its result expired)")
    })?;
    if args.json {
        outln!("{}", json(&task.to_json()));
    } else {
        print_task(&task);
    }
    Ok(ExitCode::SUCCESS)
}

/// `plait queues`.
#[derive(ClapArgs)]
pub(crate) struct QueuesArgs {
    /// A JSON array, one object per queue.
    #[arg(long)]
    json: bool,
}

pub(crate) fn queues(args: &QueuesArgs) -> Result<ExitCode, String> {
    let queues = Config::here()?
        .open()?
        .queues()
        .map_err(|e| e.to_string())?;
    if args.json {
        outln!("{}", json(&queues));
    } else {
        print_queues(&queues);
    }
    Ok(ExitCode::SUCCESS)
}

/// `plait result`.
#[derive(ClapArgs)]
pub(crate) struct ResultArgs {
    /// The task's id, as `plait submit` printed it.
    id: String,
    /// Wait until it has finished.
    #[arg(long)]
    wait: bool,
    /// With --wait, give up after this long (default: wait for good).
    #[arg(long, value_name = "DURATION", requires = "wait")]
    timeout: Option<String>,
    /// The task as one JSON object, result and error included.
    #[arg(long)]
    json: bool,
}

/// Exit statuses of `plait result`: 0 succeeded, 1 dead or cancelled, 2 usage and other
/// errors, 3 not finished (yet).
const NOT_FINISHED: u8 = 3;

pub(crate) fn result(args: &ResultArgs) -> Result<ExitCode, String> {
    let id: TaskId = args.id.parse()?;
    let store = Config::here()?.open()?;
    let task = if args.wait {
        let timeout = match &args.timeout {
            Some(timeout) => {
                crate::duration::parse(timeout).map_err(|e| format!("--timeout: {e}"))?
            }
            None => Duration::from_secs(u64::from(u32::MAX)),
        };
        store
            .wait_finished(id, timeout)
            .map_err(|e| e.to_string())?
    } else {
        store.get(id).map_err(|e| e.to_string())?.ok_or_else(|| {
            format!("no task {id} in the queue (it never existed, or its result expired)")
        })?
    };
    if args.json {
        outln!("{}", json(&task.to_json()));
    }
    match task.state {
        State::Succeeded => {
            if !args.json {
                print_result(task.result.as_deref().unwrap_or_default());
            }
            Ok(ExitCode::SUCCESS)
        }
        State::Dead | State::Cancelled => {
            if !args.json {
                let why = task
                    .reason
                    .clone()
                    .unwrap_or_else(|| task.state.to_string());
                eprintln!("plait: task {id} is {}: {why}", task.state);
            }
            Ok(ExitCode::FAILURE)
        }
        State::Queued | State::Running => {
            if !args.json {
                eprintln!(
                    "plait: task {id} is {} (attempt {}); `plait result {id} --wait` waits for it",
                    task.state, task.attempts
                );
            }
            Ok(ExitCode::from(NOT_FINISHED))
        }
    }
}

/// A command's result is its output: print its standard output as it was; a task's is
/// JSON: print it.
fn print_result(result: &[u8]) {
    let parsed: Option<serde_json::Value> = serde_json::from_slice(result).ok();
    match parsed
        .as_ref()
        .and_then(|value| value.get("stdout"))
        .and_then(|v| v.as_str())
    {
        Some(stdout) => out!("{stdout}"),
        None => outln!("{}", String::from_utf8_lossy(result)),
    }
}

/// `plait cancel`.
#[derive(ClapArgs)]
pub(crate) struct CancelArgs {
    /// The task's id.
    id: String,
}

pub(crate) fn cancel(args: &CancelArgs) -> Result<ExitCode, String> {
    let id: TaskId = args.id.parse()?;
    let store = Config::here()?.open()?;
    match store.cancel(id).map_err(|e| e.to_string())? {
        Cancel::Cancelled => outln!("task {id} cancelled: it will not run"),
        Cancel::Requested => {
            outln!("task {id} is running; its worker stops it at its next heartbeat")
        }
        Cancel::AlreadyFinished(state) => outln!("task {id} had already finished: {state}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// `plait dead`.
#[derive(ClapArgs)]
pub(crate) struct DeadArgs {
    /// Only this queue's.
    #[arg(long, short = 'q', value_name = "QUEUE")]
    queue: Option<String>,
    /// Put these dead tasks back on their queues, with fresh budgets.
    #[arg(long, value_name = "ID", num_args = 1.., conflicts_with = "all")]
    requeue: Vec<String>,
    /// Put every dead task back on its queue.
    #[arg(long)]
    all: bool,
    /// A JSON array of the dead tasks.
    #[arg(long)]
    json: bool,
}

pub(crate) fn dead(args: &DeadArgs) -> Result<ExitCode, String> {
    let store = Config::here()?.open()?;
    if args.all || !args.requeue.is_empty() {
        let ids: Vec<TaskId> = args
            .requeue
            .iter()
            .map(|id| id.parse())
            .collect::<Result<_, _>>()?;
        let requeued = store
            .requeue_dead((!args.all).then_some(ids.as_slice()))
            .map_err(|e| e.to_string())?;
        outln!("{requeued} dead task(s) requeued");
        return Ok(ExitCode::SUCCESS);
    }
    let dead = store
        .dead(args.queue.as_deref(), 1000)
        .map_err(|e| e.to_string())?;
    if args.json {
        let views: Vec<serde_json::Value> = dead.iter().map(TaskInfo::to_json).collect();
        outln!("{}", json(&views));
        return Ok(ExitCode::SUCCESS);
    }
    if dead.is_empty() {
        outln!("no dead tasks");
    }
    for task in &dead {
        outln!(
            "{:>8}  {:<12} {}  {}",
            task.id,
            task.queue,
            task.describe(),
            task.reason.as_deref().unwrap_or("")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `plait purge`.
#[derive(ClapArgs)]
pub(crate) struct PurgeArgs {
    /// Only this queue's waiting tasks (default: every queue's).
    #[arg(long, short = 'q', value_name = "QUEUE")]
    queue: Option<String>,
}

pub(crate) fn purge(args: &PurgeArgs) -> Result<ExitCode, String> {
    let store = Config::here()?.open()?;
    let purged = store
        .purge(args.queue.as_deref())
        .map_err(|e| e.to_string())?;
    outln!("{purged} waiting task(s) deleted");
    Ok(ExitCode::SUCCESS)
}

fn print_queues(queues: &[QueueStats]) {
    if queues.is_empty() {
        outln!("no tasks");
        return;
    }
    outln!(
        "{:<16} {:>8} {:>9} {:>8} {:>10} {:>6} {:>9}",
        "queue",
        "ready",
        "scheduled",
        "running",
        "succeeded",
        "dead",
        "cancelled"
    );
    for q in queues {
        outln!(
            "{:<16} {:>8} {:>9} {:>8} {:>10} {:>6} {:>9}",
            q.queue,
            q.ready,
            q.scheduled,
            q.running,
            q.succeeded,
            q.dead,
            q.cancelled
        );
    }
}

fn print_task(task: &TaskInfo) {
    outln!("task {}  {}  on {}", task.id, task.state, task.queue);
    outln!("  runs      {}", task.describe());
    outln!(
        "  attempts  {} ({} failed, {} crashed)",
        task.attempts,
        task.failures,
        task.crashes
    );
    outln!("  enqueued  {}", when(task.enqueued_at));
    if task.state == State::Queued && task.ready_at > task.enqueued_at {
        outln!("  ready at  {}", when(task.ready_at));
    }
    if let Some(worker) = &task.worker {
        outln!("  worker    {worker}");
    }
    if let Some(error) = &task.error {
        outln!("  error     {error}");
    }
    if let Some(reason) = &task.reason {
        outln!("  reason    {reason}");
    }
}

/// A stored time as UTC, to the second.
fn when(at: Millis) -> String {
    let seconds = u64::try_from(at / 1000).unwrap_or(0);
    let time = UNIX_EPOCH + Duration::from_secs(seconds);
    let age = SystemTime::now().duration_since(time).map_or_else(
        |_| "from now".to_owned(),
        |ago| format!("{}s ago", ago.as_secs()),
    );
    format!("{} ({age})", utc(seconds))
}

/// `YYYY-MM-DD hh:mm:ss UTC` for seconds since the epoch (the civil calendar from a day
/// count, as in Howard Hinnant's `civil_from_days`).
fn utc(seconds: u64) -> String {
    let (days, time) = (seconds / 86_400, seconds % 86_400);
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        time / 3600,
        time / 60 % 60,
        time % 60
    )
}

fn json(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::utc;

    #[test]
    fn utc_dates_match_the_calendar() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        // `date -u -d @951782400`: the leap day of 2000.
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_796_567_555), "2026-12-06 14:32:35 UTC");
        assert_eq!(utc(4_107_542_399), "2100-02-28 23:59:59 UTC");
    }
}
