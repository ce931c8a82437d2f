//! `plait run FILE`: run a job file's commands, each once its needs have succeeded, as many
//! at once as `--jobs` allows, critical path first.

use std::collections::BinaryHeap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use plait::process::{Command, CommandOutput};

use crate::job::file::{self, Run, TaskSpec};
use crate::job::plan::Plan;
use crate::journal::{self, Journal};
use crate::progress::Progress;

/// Options of `plait run`.
#[derive(clap::Args)]
pub(crate) struct Args {
    /// The job file (TOML: `[tasks.NAME]` tables with `cmd` and `needs`).
    file: PathBuf,
    /// How many CPUs the running tasks may claim at once (each claims its `cpus`, default
    /// 1). Default: the machine's cores.
    #[arg(long, short = 'j', value_name = "N")]
    jobs: Option<usize>,
    /// After a failure, go on with every task that does not need the failed one (default:
    /// stop starting tasks and cancel the running ones).
    #[arg(long)]
    keep_going: bool,
    /// Print the plan by levels and run nothing.
    #[arg(long)]
    dry_run: bool,
}

/// How a task ended.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Status {
    Pending,
    Running,
    Succeeded,
    /// Succeeded in an earlier run with the same fingerprint: not run again.
    UpToDate,
    Failed(String),
    /// Not run: something it needs failed (or the run stopped first).
    Skipped(String),
    /// Stopped by the fail-fast policy while it ran.
    Cancelled,
}

struct Task {
    spec: TaskSpec,
    status: Status,
    attempts: u32,
    /// Needs not yet succeeded.
    waiting_on: usize,
    /// The longest chain of tasks from this one to the end: run the longest first.
    height: usize,
    elapsed: Duration,
    /// What it runs and on what (see `journal`), once its needs have succeeded.
    fingerprint: Option<String>,
}

/// A finished attempt, sent back by its coroutine.
struct Finished {
    task: usize,
    outcome: plait::Result<CommandOutput>,
}

/// What the scheduler waits for.
enum Event {
    Finished(Finished),
    /// SIGINT or SIGTERM: stop, cancel what runs (its process groups are not in plait's,
    /// so the terminal's Ctrl-C does not reach them), report.
    Interrupted(&'static str),
}

pub(crate) fn run(args: &Args) -> Result<ExitCode, String> {
    let specs = file::read(&args.file).map_err(|e| e.to_string())?;
    let plan = Plan::new(&args.file, specs).map_err(|e| e.to_string())?;
    if args.dry_run {
        print!("{}", plan.text());
        return Ok(ExitCode::SUCCESS);
    }
    let rt = plait::Runtime::new().map_err(|e| e.to_string())?;
    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    // Relative paths in the file are relative to the file.
    let base = args
        .file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let journal = Journal::open(&base, &args.file)?;
    let started = Instant::now();
    let mut run = Scheduler::new(plan, jobs, args.keep_going, journal, base.clone());
    run.drive(&rt);
    let failed = run.print_summary(started.elapsed());
    let _ = rt.shutdown(Duration::from_secs(5));
    Ok(match run.interrupted {
        // As a shell reports a command ended by SIGINT (128 + 2) or SIGTERM (128 + 15).
        Some(signal) if signal.contains("SIGINT") => ExitCode::from(130),
        Some(_) => ExitCode::from(143),
        None if failed => ExitCode::FAILURE,
        None => ExitCode::SUCCESS,
    })
}

struct Scheduler {
    tasks: Vec<Task>,
    /// For each task, the tasks it needs and the tasks that need it.
    needs: Vec<Vec<usize>>,
    dependents: Vec<Vec<usize>>,
    journal: Journal,
    progress: Progress,
    /// The job file's folder: where commands run and relative paths start.
    base: PathBuf,
    /// Ready tasks, highest first: (height, then name order for ties).
    ready: BinaryHeap<(usize, std::cmp::Reverse<usize>)>,
    jobs: usize,
    free: usize,
    keep_going: bool,
    stopping: bool,
    /// Set when a signal stopped the run.
    interrupted: Option<&'static str>,
    running: Vec<(usize, plait::CancelHandle)>,
}

impl Scheduler {
    fn new(
        plan: Plan,
        jobs: usize,
        keep_going: bool,
        journal: Journal,
        base: PathBuf,
    ) -> Scheduler {
        let Plan {
            tasks: specs,
            needs,
            levels,
        } = plan;
        let mut dependents = vec![Vec::new(); specs.len()];
        for (task, needs) in needs.iter().enumerate() {
            for &need in needs {
                dependents[need].push(task);
            }
        }
        // Heights, from the last level back: a task's is one more than its tallest dependent.
        let mut order: Vec<usize> = (0..specs.len()).collect();
        order.sort_by_key(|&t| std::cmp::Reverse(levels[t]));
        let mut heights = vec![0; specs.len()];
        for &task in &order {
            heights[task] = dependents[task]
                .iter()
                .map(|&d| heights[d] + 1)
                .max()
                .unwrap_or(0);
        }
        let tasks: Vec<Task> = specs
            .into_iter()
            .enumerate()
            .map(|(i, spec)| Task {
                waiting_on: needs[i].len(),
                height: heights[i],
                spec,
                status: Status::Pending,
                attempts: 0,
                elapsed: Duration::ZERO,
                fingerprint: None,
            })
            .collect();
        let ready = tasks
            .iter()
            .enumerate()
            .filter(|(_, t)| t.waiting_on == 0)
            .map(|(i, t)| (t.height, std::cmp::Reverse(i)))
            .collect();
        Scheduler {
            progress: Progress::new(tasks.len()),
            tasks,
            needs,
            dependents,
            journal,
            base,
            ready,
            jobs,
            free: jobs,
            keep_going,
            stopping: false,
            interrupted: None,
            running: Vec::new(),
        }
    }

    /// Runs until nothing is running and nothing more can start.
    fn drive(&mut self, rt: &plait::Runtime) {
        let (done, events) = mpsc::channel::<Event>();
        let signals = rt.spawn_async(interruption(done.clone()));
        loop {
            self.start_ready(rt, &done);
            if self.running.is_empty() {
                break;
            }
            match events.recv() {
                Ok(Event::Finished(finished)) => self.finish(finished),
                Ok(Event::Interrupted(signal)) => {
                    self.progress
                        .err(&format!("plait: {signal}; stopping the running tasks"));
                    self.interrupted = Some(signal);
                    self.stop();
                }
                Err(_) => break,
            }
        }
        signals.cancel();
        let why = if self.interrupted.is_some() {
            "the run was interrupted"
        } else {
            "the run stopped at a failure"
        };
        for (i, task) in self.tasks.iter_mut().enumerate() {
            if task.status == Status::Pending {
                let why = why.to_owned();
                self.progress
                    .ended(i, &task.spec.name, &format!("skipped: {why}"));
                task.status = Status::Skipped(why);
            }
        }
        self.progress.finish();
    }

    /// Starts nothing more and cancels what runs.
    fn stop(&mut self) {
        self.stopping = true;
        for (_, cancel) in &self.running {
            cancel.cancel();
        }
    }

    fn start_ready(&mut self, rt: &plait::Runtime, done: &mpsc::Sender<Event>) {
        while !self.stopping {
            let Some(&(_, std::cmp::Reverse(task))) = self.ready.peek() else {
                return;
            };
            if self.tasks[task].fingerprint.is_none() {
                let needs: Vec<&str> = self.needs[task]
                    .iter()
                    .filter_map(|&need| self.tasks[need].fingerprint.as_deref())
                    .collect();
                let fingerprint = journal::fingerprint(&self.tasks[task].spec, &self.base, &needs);
                // A need that ran in this run may have made something new: run again too.
                let a_need_ran = self.needs[task]
                    .iter()
                    .any(|&need| self.tasks[need].status == Status::Succeeded);
                let done = self
                    .journal
                    .is_done(&self.tasks[task].spec, &fingerprint, &self.base);
                self.tasks[task].fingerprint = Some(fingerprint);
                if done && !a_need_ran {
                    self.ready.pop();
                    self.tasks[task].status = Status::UpToDate;
                    self.progress
                        .ended(task, &self.tasks[task].spec.name, "up to date");
                    self.release_dependents(task);
                    continue;
                }
            }
            // A task wanting more CPUs than the whole run has runs alone.
            let cpus = (self.tasks[task].spec.cpus as usize).min(self.jobs);
            if cpus > self.free {
                return;
            }
            self.ready.pop();
            self.free -= cpus;
            self.launch(rt, task, done);
        }
    }

    fn launch(&mut self, rt: &plait::Runtime, task: usize, done: &mpsc::Sender<Event>) {
        let entry = &mut self.tasks[task];
        entry.status = Status::Running;
        entry.attempts += 1;
        self.progress
            .started(task, &entry.spec.name, entry.attempts);
        let command = command(&entry.spec, &self.base);
        let handle = rt.spawn_command(command);
        self.running.push((task, handle.cancel_handle()));
        // The handle is awaited on the coroutine strand; the result comes back here.
        let forward = {
            let done = done.clone();
            rt.spawn_async(async move {
                let outcome = handle.await;
                let _ = done.send(Event::Finished(Finished { task, outcome }));
            })
        };
        // Refused (the runtime is shutting down): nothing will send, so say it here.
        if forward.is_finished()
            && let Err(error) = forward.join()
        {
            let _ = done.send(Event::Finished(Finished {
                task,
                outcome: Err(error),
            }));
        }
    }

    fn finish(&mut self, Finished { task, outcome }: Finished) {
        self.running.retain(|(t, _)| *t != task);
        let entry = &mut self.tasks[task];
        self.free += (entry.spec.cpus as usize).min(self.jobs);
        let name = entry.spec.name.clone();
        let failure = match &outcome {
            Ok(out) => {
                entry.elapsed += out.elapsed;
                print_output(&self.progress, &name, out);
                if let Err(error) = self.journal.keep_output(&name, &out.stdout, &out.stderr) {
                    self.progress.err(&format!("plait: {error}"));
                }
                if out.success() {
                    None
                } else if out.timed_out {
                    Some(format!("timed out after {:.1?}", out.elapsed))
                } else {
                    Some(format!("exited with {}", out.exit()))
                }
            }
            Err(error) if error.is_cancelled() => {
                entry.status = Status::Cancelled;
                self.progress.ended(task, &name, "cancelled");
                return;
            }
            Err(error) => {
                self.progress.err(&format!("[{name}] {error}"));
                Some(error.to_string())
            }
        };
        let Some(failure) = failure else {
            entry.status = Status::Succeeded;
            let took = format!("ok in {:.1?}", entry.elapsed);
            let fingerprint = entry.fingerprint.clone().unwrap_or_default();
            self.progress.ended(task, &name, &took);
            if let Err(error) = self.journal.record(&name, &fingerprint) {
                self.progress.err(&format!(
                    "plait: {error}; the next run will run {name} again"
                ));
            }
            self.release_dependents(task);
            return;
        };
        if entry.attempts <= entry.spec.retries && !self.stopping {
            self.progress.err(&format!(
                "[{name}] attempt {} of {} failed ({failure}); trying again",
                entry.attempts,
                entry.spec.retries + 1
            ));
            entry.status = Status::Pending;
            self.ready.push((entry.height, std::cmp::Reverse(task)));
            return;
        }
        self.progress
            .ended(task, &name, &format!("failed: {failure}"));
        entry.status = Status::Failed(failure);
        self.skip_downstream(task);
        if !self.keep_going {
            self.stop();
        }
    }

    /// `task` succeeded: what needed only it (and others done) is ready.
    fn release_dependents(&mut self, task: usize) {
        for &dependent in &self.dependents[task] {
            let next = &mut self.tasks[dependent];
            next.waiting_on -= 1;
            if next.waiting_on == 0 && next.status == Status::Pending {
                self.ready.push((next.height, std::cmp::Reverse(dependent)));
            }
        }
    }

    /// Marks everything that needs `task`, directly or not, as skipped.
    fn skip_downstream(&mut self, task: usize) {
        let reason = format!("needs {}, which failed", self.tasks[task].spec.name);
        let mut stack = self.dependents[task].clone();
        while let Some(next) = stack.pop() {
            if self.tasks[next].status == Status::Pending {
                let name = &self.tasks[next].spec.name;
                self.progress
                    .ended(next, name, &format!("skipped: {reason}"));
                self.tasks[next].status = Status::Skipped(reason.clone());
                stack.extend(self.dependents[next].iter().copied());
            }
        }
    }

    /// Prints the table of how each task ended; returns whether any did not succeed.
    fn print_summary(&self, wall: Duration) -> bool {
        println!();
        println!(
            "{:<20} {:<10} {:>8} {:>10}  {:<8} detail",
            "task", "status", "attempts", "time", "strand"
        );
        let mut failed = false;
        let mut order: Vec<&Task> = self.tasks.iter().collect();
        order.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
        for task in order {
            let (status, detail) = match &task.status {
                Status::Succeeded => ("ok", String::new()),
                Status::UpToDate => ("up to date", "succeeded before; not run again".to_owned()),
                Status::Failed(why) => ("failed", why.clone()),
                Status::Skipped(why) => ("skipped", why.clone()),
                Status::Cancelled => (
                    "cancelled",
                    match self.interrupted {
                        Some(signal) => format!("stopped: plait was {signal}"),
                        None => "stopped at another task's failure".to_owned(),
                    },
                ),
                Status::Pending | Status::Running => ("not run", String::new()),
            };
            failed |= !matches!(task.status, Status::Succeeded | Status::UpToDate);
            println!(
                "{:<20} {:<10} {:>8} {:>10}  {:<8} {detail}",
                task.spec.name,
                status,
                task.attempts,
                format!("{:.1?}", task.elapsed),
                "process",
            );
        }
        println!("\n{} tasks in {wall:.1?}", self.tasks.len());
        failed
    }
}

/// Waits for SIGINT or SIGTERM and tells the scheduler.
async fn interruption(done: mpsc::Sender<Event>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut interrupt), Ok(mut terminate)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        // No handler: the default action (ending plait) stays.
        return;
    };
    let signal = tokio::select! {
        _ = interrupt.recv() => "interrupted (SIGINT)",
        _ = terminate.recv() => "terminated (SIGTERM)",
    };
    let _ = done.send(Event::Interrupted(signal));
    // A second signal while the run winds down: the user wants out now.
    tokio::select! {
        _ = interrupt.recv() => std::process::exit(130),
        _ = terminate.recv() => std::process::exit(143),
    }
}

/// The command a task runs, with relative paths taken from the job file's folder.
fn command(spec: &TaskSpec, base: &Path) -> Command {
    let mut command = match &spec.run {
        Run::Shell(line) => Command::shell(line.clone()),
        Run::Argv(argv) => Command::new(argv[0].clone()).args(argv[1..].iter().cloned()),
    };
    for (key, value) in &spec.env {
        command = command.env(key.clone(), value.clone());
    }
    command = command.cwd(match &spec.cwd {
        Some(cwd) => base.join(cwd),
        None => base.to_path_buf(),
    });
    if let Some(limit) = spec.timeout {
        command = command.timeout(limit);
    }
    command
}

/// A task's captured output, each line prefixed by its name.
fn print_output(progress: &Progress, name: &str, out: &CommandOutput) {
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        progress.out(&format!("[{name}] {line}"));
    }
    for line in String::from_utf8_lossy(&out.stderr).lines() {
        progress.err(&format!("[{name}] {line}"));
    }
    for (stream, dropped) in [
        ("output", out.stdout_dropped),
        ("error output", out.stderr_dropped),
    ] {
        if dropped > 0 {
            progress.err(&format!(
                "[{name}] ({dropped} more bytes of {stream} not kept)"
            ));
        }
    }
}
