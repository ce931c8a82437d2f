//! `plait worker`: runs the queue's tasks until told to stop. The first SIGTERM or SIGINT
//! stops reserving and lets what runs finish for the grace period, then hands back the
//! rest (uncharged); a second one stops at once, handing back everything still running.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Args as ClapArgs;
use plait_queue::{Store, Worker};

use super::Config;
use super::signals::Signals;
use crate::duration;

/// `plait worker`.
#[derive(ClapArgs)]
pub(crate) struct WorkerArgs {
    /// A queue to serve (repeat for more; default: plait.toml's default_queue, or
    /// "default").
    #[arg(long = "queue", short = 'q', value_name = "QUEUE")]
    queues: Vec<String>,
    /// How many tasks run at once (default: the machine's cores).
    #[arg(long, short = 'c', value_name = "N")]
    concurrency: Option<usize>,
    /// How many worker processes run registered tasks, of those (default: the machine's
    /// cores); each command runs in a process of its own.
    #[arg(long, value_name = "N")]
    processes: Option<usize>,
    /// The lease on each task: a worker that dies loses its tasks this long after its last
    /// heartbeat (default 30s).
    #[arg(long, value_name = "DURATION", default_value = "30s")]
    lease: String,
    /// After SIGTERM, how long running tasks may finish before they are handed back
    /// (default 30s).
    #[arg(long, value_name = "DURATION", default_value = "30s")]
    grace: String,
    /// Start at most RATE tasks named NAME (a registered task, or a command's program),
    /// across every worker given the same limit: `--rate-limit convert=10/s` (also /m,
    /// /h). Repeat for more.
    #[arg(long = "rate-limit", value_name = "NAME=RATE")]
    rate_limits: Vec<String>,
}

pub(crate) fn run(args: &WorkerArgs) -> Result<ExitCode, String> {
    let config = Config::here()?;
    let store: Arc<dyn Store> = config.open()?;
    let queues = if args.queues.is_empty() {
        vec![config.queue.clone()]
    } else {
        args.queues.clone()
    };
    let mut builder = Worker::builder(store)
        .queues(queues.iter().cloned())
        .lease(duration::parse(&args.lease).map_err(|e| format!("--lease: {e}"))?)
        .grace(duration::parse(&args.grace).map_err(|e| format!("--grace: {e}"))?);
    if let Some(n) = args.concurrency {
        builder = builder.concurrency(n);
    }
    if let Some(n) = args.processes {
        builder = builder.processes(n);
    }
    for given in &args.rate_limits {
        let (name, rate) = given
            .split_once('=')
            .filter(|(name, _)| !name.is_empty())
            .ok_or_else(|| {
                format!("--rate-limit {given:?}: write it as NAME=RATE, say convert=10/s")
            })?;
        let limit = rate
            .parse()
            .map_err(|e| format!("--rate-limit {given:?}: {e}"))?;
        builder = builder.rate_limit(name, limit);
    }
    let worker = builder.build().map_err(|e| e.to_string())?;
    let stopper = worker.stopper();
    // The handlers are in place before the worker says it serves and takes its first
    // task: a SIGTERM from then on drains, never kills the worker with tasks in hand.
    let signals = Signals::install()?;
    eprintln!(
        "plait: worker {} serving {} from {}",
        worker.name(),
        queues.join(", "),
        config.place()
    );
    let running = std::thread::Builder::new()
        .name("plait-worker".to_owned())
        .spawn(move || worker.run())
        .map_err(|e| format!("cannot start the worker's thread: {e}"))?;
    let signals = std::thread::Builder::new()
        .name("plait-worker-signals".to_owned())
        .spawn(move || {
            signals.watch(
                |name| {
                    eprintln!(
                        "plait: {name}: no new tasks; running ones may finish, then are \
                         handed back (again to stop now)"
                    );
                    stopper.drain();
                },
                || {
                    eprintln!("plait: stopping now; running tasks are handed back");
                    stopper.abort();
                },
            );
        })
        .map_err(|e| format!("cannot start the signal thread: {e}"))?;
    let report = running
        .join()
        .map_err(|_| "the worker's thread panicked".to_owned())?
        .map_err(|e| e.to_string())?;
    drop(signals);
    eprintln!(
        "plait: worker stopped: {} succeeded, {} failed, {} crashed, {} rejected, {} handed \
         back, {} deferred by rate limits, {} cancelled, {} refused (their leases had been \
         lost)",
        report.succeeded,
        report.failed,
        report.crashed,
        report.rejected,
        report.released,
        report.deferred,
        report.cancelled,
        report.fenced
    );
    Ok(ExitCode::SUCCESS)
}
