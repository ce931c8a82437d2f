//! `plait beat FILE`: enqueues the commands of a schedule file at the ticks of their cron
//! expressions, on the queue `plait.toml` (or `--broker`) names, until SIGINT or SIGTERM.
//! Any number may run, on one machine or several: each tick is enqueued once (see
//! `plait_queue::periodic`).
//!
//! ```toml
//! [schedules.backup]
//! cron = "0 3 * * *"          # minute hour day month weekday, UTC (six fields: seconds first)
//! cmd = "./backup.sh"         # or argv = ["./backup.sh", "--full"]
//! queue = "maintenance"       # default: the configured default queue
//! grace = "6h"                # how late a missed tick may still run (default 1h)
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::Args as ClapArgs;
use plait_queue::periodic::{Fired, Schedule, Ticker, tick_text};
use plait_queue::{NewTask, Payload, RetryPolicy};
use serde::Deserialize;

use super::Config;
use super::signals::Signals;
use crate::duration;

/// `plait beat`.
#[derive(ClapArgs)]
pub(crate) struct BeatArgs {
    /// The schedule file (TOML: `[schedules.NAME]` tables with `cron` and `cmd` or `argv`).
    file: PathBuf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    schedules: BTreeMap<String, Entry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    cron: String,
    cmd: Option<String>,
    argv: Option<Vec<String>>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    cwd: Option<PathBuf>,
    queue: Option<String>,
    #[serde(default)]
    priority: i32,
    retries: Option<u32>,
    time_limit: Option<String>,
    grace: Option<String>,
}

pub(crate) fn run(args: &BeatArgs) -> Result<ExitCode, String> {
    let config = Config::here()?;
    let schedules = read(&args.file, &config.queue)?;
    let store = config.open()?;
    let ticker = Ticker::new(Arc::clone(&store), schedules.clone());
    let stopper = ticker.stopper();
    // Caught before the first tick: a SIGTERM from then on stops the ticker in order.
    let signals = Signals::install()?;
    eprintln!(
        "plait: beat: {} schedule{} on {}: {}",
        schedules.len(),
        if schedules.len() == 1 { "" } else { "s" },
        config.place(),
        schedules
            .iter()
            .map(|s| format!("{} ({})", s.name(), s.pattern()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _signals = std::thread::Builder::new()
        .name("plait-beat-signals".to_owned())
        .spawn(move || {
            signals.watch(
                |name| {
                    eprintln!("plait: beat: {name}: stopping");
                    stopper.stop();
                },
                || std::process::exit(130),
            );
        })
        .map_err(|e| format!("cannot start the signal thread: {e}"))?;
    ticker.run(|fired| match fired {
        Fired::Enqueued {
            schedule,
            tick,
            enqueued,
        } if enqueued.created => eprintln!(
            "plait: beat: {schedule}: tick {} enqueued as task {}",
            tick_text(tick),
            enqueued.id
        ),
        Fired::Enqueued {
            schedule,
            tick,
            enqueued,
        } => eprintln!(
            "plait: beat: {schedule}: tick {} already enqueued (task {}, by another beat)",
            tick_text(tick),
            enqueued.id
        ),
        Fired::Skipped {
            schedule,
            ticks,
            latest,
            fires,
        } => {
            let plural = if ticks == 1 { "" } else { "s" };
            if fires {
                eprintln!(
                    "plait: beat: {schedule}: {ticks} missed tick{plural} before {} skipped; \
                     that one, the latest, runs now",
                    tick_text(latest)
                );
            } else {
                eprintln!(
                    "plait: beat: {schedule}: {ticks} missed tick{plural} up to {} skipped: \
                     past the grace",
                    tick_text(latest)
                );
            }
        }
        Fired::Failed {
            schedule,
            tick,
            error,
        } => eprintln!(
            "plait: beat: {schedule}: tick {} not enqueued yet ({error}); trying again",
            tick_text(tick)
        ),
        _ => {}
    });
    eprintln!("plait: beat stopped");
    Ok(ExitCode::SUCCESS)
}

/// The schedules of `file`, each checked, with errors that name the file and schedule.
fn read(file: &Path, default_queue: &str) -> Result<Vec<Schedule>, String> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("{}: cannot read it: {e}", file.display()))?;
    let parsed: File =
        toml::from_str(&text).map_err(|e| format!("{}: {}", file.display(), e.message()))?;
    if parsed.schedules.is_empty() {
        return Err(format!(
            "{}: no schedules; add a [schedules.NAME] table with cron and cmd",
            file.display()
        ));
    }
    let base = file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let base = std::fs::canonicalize(&base).unwrap_or(base);
    let mut schedules = Vec::with_capacity(parsed.schedules.len());
    for (name, entry) in parsed.schedules {
        let at = |key: &str| format!("{} [schedules.{name}] {key}", file.display());
        let argv = match (entry.cmd, entry.argv) {
            (Some(cmd), None) => vec!["sh".to_owned(), "-c".to_owned(), cmd],
            (None, Some(argv)) if !argv.is_empty() => argv,
            (None, Some(_)) => return Err(format!("{}: give the program", at("argv"))),
            _ => return Err(format!("{}: give cmd or argv, one of them", at("cmd"))),
        };
        let payload = Payload::Command {
            argv,
            env: entry.env,
            cwd: Some(entry.cwd.map_or_else(|| base.clone(), |cwd| base.join(cwd))),
        };
        let queue = entry.queue.unwrap_or_else(|| default_queue.to_owned());
        plait_queue::check_queue_name(&queue).map_err(|e| format!("{}: {e}", at("queue")))?;
        let mut task = NewTask::new(payload.encode())
            .queue(queue)
            .priority(entry.priority);
        if let Some(retries) = entry.retries {
            task = task.retry(RetryPolicy {
                max_retries: retries,
                ..RetryPolicy::default()
            });
        }
        if let Some(limit) = &entry.time_limit {
            task = task.time_limit(
                duration::parse(limit).map_err(|e| format!("{}: {e}", at("time_limit")))?,
            );
        }
        let mut schedule = Schedule::new(name.clone(), &entry.cron, task)
            .map_err(|e| format!("{}: {e}", file.display()))?;
        if let Some(grace) = &entry.grace {
            schedule = schedule
                .grace(duration::parse(grace).map_err(|e| format!("{}: {e}", at("grace")))?);
        }
        schedules.push(schedule);
    }
    Ok(schedules)
}
