//! `plait workers`: the worker registry, as the store holds it.

use std::process::ExitCode;

use clap::Args as ClapArgs;
use plait_queue::{WorkerInfo, WorkerState};

use super::config::Config;
use super::{json, when};

/// `plait workers`.
#[derive(ClapArgs)]
pub(crate) struct WorkersArgs {
    /// A JSON array, one object per worker, with its state.
    #[arg(long)]
    json: bool,
}

/// A worker as `--json` shows it: the stored fields, and its state now.
#[derive(serde::Serialize)]
struct WorkerView<'a> {
    #[serde(flatten)]
    worker: &'a WorkerInfo,
    state: WorkerState,
}

pub(crate) fn run(args: &WorkersArgs) -> Result<ExitCode, String> {
    let store = Config::here()?.open()?;
    let workers = store.workers().map_err(|e| e.to_string())?;
    let now = store.now();
    if args.json {
        let views: Vec<_> = workers
            .iter()
            .map(|worker| WorkerView {
                worker,
                state: worker.state(now),
            })
            .collect();
        outln!("{}", json(&views));
        return Ok(ExitCode::SUCCESS);
    }
    if workers.is_empty() {
        outln!("no workers (none started on this queue in the last day)");
        return Ok(ExitCode::SUCCESS);
    }
    outln!(
        "{:<32} {:<8} {:>9} {:>10} {:>7}  {:<20} last seen",
        "worker",
        "state",
        "running",
        "succeeded",
        "failed",
        "queues"
    );
    for worker in &workers {
        outln!(
            "{:<32} {:<8} {:>9} {:>10} {:>7}  {:<20} {}",
            worker.name,
            worker.state(now).as_str(),
            format!("{}/{}", worker.running, worker.concurrency),
            worker.succeeded,
            worker.failed,
            worker.queues.join(","),
            when(worker.seen_at)
        );
    }
    Ok(ExitCode::SUCCESS)
}
