//! `plait run FILE`: run a job file's commands on the library's graph scheduler: each once
//! its needs have succeeded, as many at once as `--jobs` allows (a task's `cpus` count
//! against it), critical path first.
//!
//! Each task is a node on the coroutine strand that decides whether the task is up to date
//! (see `journal`), and if not runs its command in a process group of its own and waits
//! for it. Progress and the summary come from the scheduler's events and results.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use plait::graph::{Event, EventKind, Graph, GraphCanceller, Node, NodeStatus, Results};
use plait::process::{Command, CommandOutput};
use plait::{Error, Runtime, Strand};

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

pub(crate) fn run(args: &Args) -> Result<ExitCode, String> {
    let specs = file::read(&args.file).map_err(|e| e.to_string())?;
    let plan = Plan::new(&args.file, specs).map_err(|e| e.to_string())?;
    if args.dry_run {
        out!("{}", plan.text());
        return Ok(ExitCode::SUCCESS);
    }
    let rt = Runtime::new().map_err(|e| e.to_string())?;
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

    let job = Arc::new(Job::new(plan, journal, base));
    let (graph, nodes) = job.graph(&rt);
    let observer = Arc::clone(&job);
    let run = graph
        .runner(rt.clone())
        .keep_going(args.keep_going)
        .limit(Strand::Coroutine, jobs)
        .observe(move |event| observer.observe(event))
        .start();
    let signals = rt.spawn_async(interruption(run.canceller(), Arc::clone(&job)));
    let results = run.join();
    signals.cancel();
    job.progress().finish();
    let failed = job.print_summary(&results, &nodes, started.elapsed());
    let _ = rt.shutdown(Duration::from_secs(5));
    let interrupted = *job
        .interrupted
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    Ok(match interrupted {
        // As a shell reports a command ended by SIGINT (128 + 2) or SIGTERM (128 + 15).
        Some(signal) if signal.contains("SIGINT") => ExitCode::from(130),
        Some(_) => ExitCode::from(143),
        None if failed => ExitCode::FAILURE,
        None => ExitCode::SUCCESS,
    })
}

/// What a task's node returns: the fingerprint its dependents build theirs on, and whether
/// it ran in this run (a need that ran may have made something new: its dependents run too).
struct Finished {
    fingerprint: String,
    ran: bool,
}

/// What the run keeps per task, beside the scheduler's own books.
#[derive(Default, Clone)]
struct Book {
    /// Times its command was started in this run.
    attempts: u32,
    /// Time its commands ran, all attempts together.
    elapsed: Duration,
}

/// The job, shared by the task nodes, the observer and the signal handler.
struct Job {
    tasks: Vec<TaskSpec>,
    needs: Vec<Vec<usize>>,
    /// The task each node runs: nodes are added in the plan's dependency order (level by
    /// level), tasks are numbered in name order.
    task_of_node: Vec<usize>,
    /// The job file's folder: where commands run and relative paths start.
    base: PathBuf,
    journal: Mutex<Journal>,
    progress: Mutex<Progress>,
    books: Mutex<Vec<Book>>,
    /// Set when a signal stopped the run.
    interrupted: Mutex<Option<&'static str>>,
}

impl Job {
    fn new(plan: Plan, journal: Journal, base: PathBuf) -> Job {
        let task_of_node = plan.dependency_order();
        let Plan {
            tasks,
            needs,
            levels: _,
        } = plan;
        Job {
            progress: Mutex::new(Progress::new(tasks.len())),
            books: Mutex::new(vec![Book::default(); tasks.len()]),
            task_of_node,
            tasks,
            needs,
            base,
            journal: Mutex::new(journal),
            interrupted: Mutex::new(None),
        }
    }

    fn progress(&self) -> std::sync::MutexGuard<'_, Progress> {
        self.progress.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// One node per task, on the coroutine strand, weighted by its `cpus`.
    fn graph(self: &Arc<Self>, rt: &Runtime) -> (Graph, Vec<Node<Finished>>) {
        let mut graph = Graph::with_capacity(self.tasks.len());
        let mut nodes: Vec<Option<Node<Finished>>> = vec![None; self.tasks.len()];
        for &task in &self.task_of_node {
            let needs: Vec<Node<Finished>> = self.needs[task]
                .iter()
                .map(|&need| nodes[need].expect("needs come first in dependency order"))
                .collect();
            let (job, rt) = (Arc::clone(self), rt.clone());
            let node = graph.try_task_async(needs, move |needs| {
                let (job, rt) = (Arc::clone(&job), rt.clone());
                async move { job.run_task(&rt, task, &needs).await }
            });
            let spec = &self.tasks[task];
            let _ = graph
                .node(node)
                .name(spec.name.clone())
                .retries(spec.retries)
                .weight(spec.cpus)
                .keep();
            nodes[task] = Some(node);
        }
        let nodes = nodes
            .into_iter()
            .map(|node| node.expect("every task has a node"))
            .collect();
        (graph, nodes)
    }

    /// One run of a task: skipped as up to date, or its command run to its end.
    async fn run_task(
        &self,
        rt: &Runtime,
        task: usize,
        needs: &[Arc<Finished>],
    ) -> Result<Finished, String> {
        let spec = &self.tasks[task];
        let name = spec.name.as_str();
        let fingerprint = {
            // Hashing the inputs is work for the thread strand, not a coroutine worker.
            let (spec, base) = (spec.clone(), self.base.clone());
            let needs: Vec<String> = needs.iter().map(|n| n.fingerprint.clone()).collect();
            rt.spawn(move || {
                let needs: Vec<&str> = needs.iter().map(String::as_str).collect();
                journal::fingerprint(&spec, &base, &needs)
            })
            .await
            .map_err(|error| format!("cannot fingerprint its inputs: {error}"))?
        };
        let a_need_ran = needs.iter().any(|need| need.ran);
        let done_before = self
            .journal
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_done(spec, &fingerprint, &self.base);
        if done_before && !a_need_ran {
            self.progress().ended(task, name, "up to date");
            return Ok(Finished {
                fingerprint,
                ran: false,
            });
        }
        let attempt = {
            let mut books = self.books.lock().unwrap_or_else(PoisonError::into_inner);
            books[task].attempts += 1;
            books[task].attempts
        };
        self.progress().started(task, name, attempt);
        let handle = rt.spawn_command(command(spec, &self.base));
        // The node is dropped when the run is cancelled: the command goes with it.
        let _kill = KillOnDrop(handle.cancel_handle());
        let output = handle.await.map_err(|error| reason(&error))?;
        self.books.lock().unwrap_or_else(PoisonError::into_inner)[task].elapsed += output.elapsed;
        print_output(&self.progress(), name, &output);
        if let Err(error) = self
            .journal
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .keep_output(name, &output.stdout, &output.stderr)
        {
            self.progress().err(&format!("plait: {error}"));
        }
        if output.timed_out {
            return Err(format!("timed out after {:.1?}", output.elapsed));
        }
        if !output.success() {
            return Err(format!("exited with {}", output.exit()));
        }
        let took = self.books.lock().unwrap_or_else(PoisonError::into_inner)[task].elapsed;
        self.progress()
            .ended(task, name, &format!("ok in {took:.1?}"));
        if let Err(error) = self
            .journal
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .record(name, &fingerprint)
        {
            self.progress().err(&format!(
                "plait: {error}; the next run will run {name} again"
            ));
        }
        Ok(Finished {
            fingerprint,
            ran: true,
        })
    }

    /// Shows failures, retries and skips as the scheduler reports them (starts and
    /// successes are shown by the tasks themselves).
    fn observe(&self, event: &Event<'_>) {
        let task = self.task_of_node[event.node.index()];
        let name = self.tasks[task].name.as_str();
        match event.kind {
            EventKind::Failed {
                error,
                retrying: true,
                ..
            } => self.progress().err(&format!(
                "[{name}] attempt {} of {} failed ({}); trying again",
                event.attempt,
                self.tasks[task].retries + 1,
                reason(error)
            )),
            EventKind::Failed { error, .. } if error.is_cancelled() => {
                self.progress().ended(task, name, "cancelled");
            }
            EventKind::Failed { error, .. } => {
                self.progress()
                    .ended(task, name, &format!("failed: {}", reason(error)));
            }
            EventKind::Skipped { error } => {
                let why = self.skip_reason(error);
                self.progress()
                    .ended(task, name, &format!("skipped: {why}"));
            }
            _ => {}
        }
    }

    /// Why a task did not run.
    fn skip_reason(&self, error: &Error) -> String {
        match error {
            Error::Upstream { failed, .. } => format!("needs {failed}, which failed"),
            _ if self
                .interrupted
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .is_some() =>
            {
                "the run was interrupted".to_owned()
            }
            _ => "the run stopped at a failure".to_owned(),
        }
    }

    /// Prints the table of how each task ended; returns whether any did not succeed.
    fn print_summary(&self, results: &Results, nodes: &[Node<Finished>], wall: Duration) -> bool {
        outln!();
        outln!(
            "{:<20} {:<10} {:>8} {:>10}  {:<8} detail",
            "task",
            "status",
            "attempts",
            "time",
            "strand"
        );
        let books = self.books.lock().unwrap_or_else(PoisonError::into_inner);
        let interrupted = *self
            .interrupted
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut order: Vec<usize> = (0..self.tasks.len()).collect();
        order.sort_by(|&a, &b| self.tasks[a].name.cmp(&self.tasks[b].name));
        let mut failed = false;
        for task in order {
            let node = nodes[task];
            let book = &books[task];
            let error = results.error(node.id());
            let (status, detail) = match results.status(node.id()) {
                NodeStatus::Succeeded => match results.get(node) {
                    Ok(finished) if !finished.ran => {
                        ("up to date", "succeeded before; not run again".to_owned())
                    }
                    _ => ("ok", String::new()),
                },
                NodeStatus::Failed => ("failed", error.as_ref().map(reason).unwrap_or_default()),
                NodeStatus::Skipped => (
                    "skipped",
                    error
                        .as_ref()
                        .map(|e| self.skip_reason(e))
                        .unwrap_or_default(),
                ),
                // Started and stopped, or never started.
                _ if book.attempts > 0 => (
                    "cancelled",
                    match interrupted {
                        Some(signal) => format!("stopped: plait was {signal}"),
                        None => "stopped at another task's failure".to_owned(),
                    },
                ),
                _ => ("skipped", self.skip_reason(&Error::Cancelled)),
            };
            failed |= !matches!(status, "ok" | "up to date");
            outln!(
                "{:<20} {:<10} {:>8} {:>10}  {:<8} {detail}",
                self.tasks[task].name,
                status,
                book.attempts,
                format!("{:.1?}", book.elapsed),
                "process",
            );
        }
        outln!("\n{} tasks in {wall:.1?}", self.tasks.len());
        failed
    }
}

/// A task's error as the summary shows it: the task's own message, without the wrapping.
fn reason(error: &Error) -> String {
    match error {
        Error::Failed(inner) => inner.to_string(),
        other => other.to_string(),
    }
}

/// Cancels a running command when its node is dropped.
struct KillOnDrop(plait::CancelHandle);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// Waits for SIGINT or SIGTERM and cancels the run.
async fn interruption(run: GraphCanceller, job: Arc<Job>) {
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
    *job.interrupted
        .lock()
        .unwrap_or_else(PoisonError::into_inner) = Some(signal);
    job.progress()
        .err(&format!("plait: {signal}; stopping the running tasks"));
    run.cancel();
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
