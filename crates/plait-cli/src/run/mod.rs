//! `plait run FILE`: run a job file's commands on the library's graph scheduler: each once
//! its needs have succeeded, as many at once as `--jobs` allows (a task's `cpus` count
//! against it), critical path first.
//!
//! Each task is a command node. Before a node goes to the executor, the journal's check
//! ([`UpToDate`]) skips it if it succeeded before with the same fingerprint. The executor
//! is this process's runtime, or with `--queue` the durable queue, whose `plait worker`s
//! run the commands. Progress, each task's output and the summary come from the
//! scheduler's events and results.

mod dry_run;
mod events;
mod logs;
mod summary;
mod up_to_date;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use plait::graph::{CommandFailed, Event, EventKind, Graph, GraphCanceller, Node};
use plait::process::{Command, CommandOutput, Stream};
use plait::{Error, Runtime, Strand};
use plait_queue::{QueueExecutor, RetryPolicy};
use plait_web::dashboard::{Dashboard, NodeState, RunBoard};

use crate::color::{ColorChoice, Paint};
use crate::job::file::{self, Run, TaskSpec};
use crate::job::parsed;
use crate::job::plan::Plan;
use crate::job::state::{JobLock, StatePaths, job_folder};
use crate::journal::{Digests, Journal};
use crate::progress::Progress;
use crate::queue::config::Config;
use events::Events;
use logs::AttemptLog;
use serde_json::json;
use up_to_date::{Marks, UpToDate};

/// Options of `plait run`.
#[derive(clap::Args)]
pub(crate) struct Args {
    /// The job file (TOML: `[tasks.NAME]` tables with `cmd` and `needs`).
    file: PathBuf,
    /// Run only these tasks, and what they need (default: every task).
    #[arg(value_name = "TASK")]
    targets: Vec<String>,
    /// How many CPUs the running tasks may claim at once (each claims its `cpus`, default
    /// 1). Default: the machine's cores.
    #[arg(long, short = 'j', value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    jobs: Option<u32>,
    /// After a failure, go on with every task that does not need the failed one (default:
    /// stop starting tasks and cancel the running ones).
    #[arg(long)]
    keep_going: bool,
    /// Print the plan by levels, with what each task would do and why (its command
    /// changed, an input, what it needs; an output is missing; it never ran); run nothing.
    #[arg(long)]
    dry_run: bool,
    /// Run these tasks (comma-separated; all of them with `--force` alone) even if the
    /// journal says they are up to date; what needs them runs again too.
    #[arg(long, value_name = "TASK,...", num_args = 0..=1, require_equals = true,
          value_delimiter = ',', default_missing_value = "")]
    force: Option<Vec<String>>,
    /// If another run of this job holds its lock, wait for it to end (default: refuse).
    #[arg(long)]
    wait: bool,
    /// Colour task names and statuses: on a terminal unless NO_COLOR is set (auto),
    /// always, or never.
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto)]
    color: ColorChoice,
    /// Write one JSON object per line to standard output for each thing that happens
    /// (queued, started, output, finished, failed, cancelled, skipped), then a summary
    /// object; with `--dry-run`, the plan as one JSON object.
    #[arg(long)]
    json: bool,
    /// Send the tasks to the durable queue (QUEUE, or the configured default), to be run
    /// by `plait worker`s: on this machine, or with a broker (`--broker redis://...`, which
    /// implies `--queue`) on any machine. A run killed and started again takes up the
    /// tasks it had sent rather than running them twice.
    #[arg(long, value_name = "QUEUE", num_args = 0..=1, default_missing_value = "")]
    queue: Option<String>,
    /// Serve a live dashboard of the run (its graph coloured by state, and the task
    /// stream: a lane per slot) at ADDR while it runs (default 127.0.0.1:8700).
    #[arg(long, value_name = "ADDR", num_args = 0..=1, require_equals = true,
          default_missing_value = crate::serve::DEFAULT_BIND)]
    serve: Option<String>,
    #[command(flatten)]
    access: crate::serve::Access,
}

pub(crate) fn run(args: &Args) -> Result<ExitCode, String> {
    let text = file::read_text(&args.file).map_err(|e| e.to_string())?;
    if args.dry_run {
        let base = job_folder(&args.file)?;
        let (plan, forced) = plan(args, &text, &base, false)?;
        let journal = Journal::open(&base, &args.file)?;
        let would = dry_run::decide(&plan, &base, &journal, &forced);
        if args.json {
            outln!("{}", dry_run::json(&plan, &would));
        } else {
            out!("{}", dry_run::explain(&plan, &would));
        }
        return Ok(ExitCode::SUCCESS);
    }
    // Relative paths in the file are relative to the file; made absolute, so that a
    // queue's worker, started in any folder, runs each command where the file says.
    let base = job_folder(&args.file)?;
    // A job run before has its journal read while the file is parsed (neither needs the
    // other, and each is a large part of an up-to-date check), if the job's lock can be had
    // at once; if another run holds it, the file is checked first and then the lock waited
    // for or refused. A job never run makes nothing under `.plait` until its file parses.
    let run_before = StatePaths::of(&base, &args.file).journal.exists();
    let (parsed, early) = std::thread::scope(|scope| {
        let early = run_before.then(|| scope.spawn(|| lock_and_open(&base, &args.file, false)));
        (
            plan(args, &text, &base, true),
            early.map(|early| early.join()),
        )
    });
    let (plan, forced) = parsed?;
    // One run of a job at a time: two would both run every task.
    let (_lock, journal) = match early {
        Some(Ok(Ok(taken))) => taken,
        _ => lock_and_open(&base, &args.file, args.wait)?,
    };
    let rt = Runtime::new().map_err(|e| e.to_string())?;
    let jobs = args.jobs.map_or_else(
        || std::thread::available_parallelism().map_or(1, |n| n.get()),
        |n| n as usize,
    );
    let started = Instant::now();

    let events = args.json.then(Events::new);
    // `--broker` alone sends the tasks to the configured default queue on it.
    let queue = args
        .queue
        .clone()
        .or_else(|| crate::queue::config::broker_flag_given().then(String::new));
    let mut job = Job::new(
        plan,
        journal,
        base,
        forced,
        queue.is_some(),
        events,
        Paint::for_stdout(args.color),
    );
    let serving = match &args.serve {
        Some(bind) => {
            let board = job.board_of(&args.file);
            let dashboard = Dashboard::builder().run(board.clone()).runtime(rt.clone());
            job.board = Some(board);
            Some(crate::serve::start(&rt, bind, &args.access, dashboard)?)
        }
        None => None,
    };
    let job = Arc::new(job);
    let (graph, nodes) = job.graph();
    let observer = Arc::clone(&job);
    let runner = match &queue {
        None => graph.runner(UpToDate {
            inner: rt.clone(),
            job: Arc::clone(&job),
        }),
        Some(queue) => graph.runner(UpToDate {
            inner: job.queue_executor(queue, jobs, &args.file)?,
            job: Arc::clone(&job),
        }),
    };
    let run = runner
        .keep_going(args.keep_going)
        .limit(Strand::Process, jobs)
        .observe(move |event| observer.observe(event))
        .start();
    let signals = rt.spawn_async(interruption(run.canceller(), Arc::clone(&job)));
    let results = run.join();
    signals.cancel();
    job.progress().finish();
    if let Some(board) = &job.board {
        board.run_finished();
    }
    if let Some(serving) = serving {
        // Pages that listen are answered to the end: the run's last state reaches them.
        let _ = serving.stop();
    }
    job.journal
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .write_digests();
    // The run used the file as it was read; say so if it is not so now.
    let changed = std::fs::read_to_string(&args.file).ok().as_deref() != Some(text.as_str());
    if changed {
        eprintln!(
            "plait: {} changed while this run ran; the run used it as it was when the run \
             started: run it again for the new version",
            args.file.display()
        );
    }
    let summary = job.summary(&results, &nodes, started.elapsed(), changed);
    match &job.events {
        Some(events) => events.summary(&summary),
        None => out!("{}", summary.render(Paint::for_stdout(args.color))),
    }
    let _ = rt.shutdown(Duration::from_secs(5));
    let interrupted = *job
        .interrupted
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    Ok(match interrupted {
        // As a shell reports a command ended by SIGINT (128 + 2) or SIGTERM (128 + 15).
        Some(signal) if signal.contains("SIGINT") => ExitCode::from(130),
        Some(_) => ExitCode::from(143),
        None if !summary.ok => ExitCode::FAILURE,
        None => ExitCode::SUCCESS,
    })
}

/// The job file's tasks as a plan (only the targets and what they need), and which are
/// forced to run. The file's tasks come from its last parse where its text is the same;
/// a fresh parse is kept for the next run if `keep`.
fn plan(args: &Args, text: &str, base: &Path, keep: bool) -> Result<(Plan, Vec<bool>), String> {
    let state = StatePaths::of(base, &args.file);
    let (specs, fresh) =
        parsed::tasks(&args.file, text, &state, keep).map_err(|e| e.to_string())?;
    let plan = Plan::new(&args.file, specs)
        .and_then(|plan| plan.only(&args.file, &args.targets))
        .map_err(|e| e.to_string())?;
    if let Some(fresh) = fresh {
        fresh.keep(&state);
    }
    let forced = forced(&plan, args.force.as_deref()).map_err(|e| e.to_string())?;
    Ok((plan, forced))
}

/// The job's lock (waiting for it with `wait`), then its journal.
fn lock_and_open(base: &Path, job: &Path, wait: bool) -> Result<(JobLock, Journal), String> {
    let lock = JobLock::take(&StatePaths::of(base, job), job, wait)?;
    let mut journal = Journal::open(base, job)?;
    journal.compact()?;
    Ok((lock, journal))
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
    /// The journal's digests of input files, reached without holding the journal.
    digests: Arc<Digests>,
    progress: Mutex<Progress>,
    books: Mutex<Vec<Book>>,
    /// Set when a signal stopped the run.
    interrupted: Mutex<Option<&'static str>>,
    /// What the journal's check decided for each task.
    marks: Marks,
    /// The tasks to run whatever the journal says (`--force`), by task.
    forced: Vec<bool>,
    /// Whether the tasks go to the queue.
    queued: bool,
    /// Where events go with `--json`.
    events: Option<Events>,
    /// The dashboard's view of the run, with `--serve`.
    board: Option<RunBoard>,
}

impl Job {
    fn new(
        plan: Plan,
        journal: Journal,
        base: PathBuf,
        forced: Vec<bool>,
        queued: bool,
        events: Option<Events>,
        paint: Paint,
    ) -> Job {
        let task_of_node = plan.dependency_order();
        let tasks_len = plan.tasks.len();
        let Plan {
            tasks,
            needs,
            levels: _,
        } = plan;
        Job {
            progress: Mutex::new(if events.is_some() {
                Progress::quiet()
            } else {
                Progress::new(tasks.len(), paint)
            }),
            books: Mutex::new(vec![Book::default(); tasks.len()]),
            task_of_node,
            tasks,
            needs,
            base,
            digests: journal.digests(),
            journal: Mutex::new(journal),
            interrupted: Mutex::new(None),
            marks: Marks::new(tasks_len),
            forced,
            queued,
            events,
            board: None,
        }
    }

    fn progress(&self) -> std::sync::MutexGuard<'_, Progress> {
        self.progress.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// One command node per task, weighted by its `cpus`. Its retries are the graph's,
    /// or with the queue the queue's (never both).
    fn graph(self: &Arc<Self>) -> (Graph, Vec<Node<CommandOutput>>) {
        let mut graph = Graph::with_capacity(self.tasks.len());
        let mut nodes: Vec<Option<Node<CommandOutput>>> = vec![None; self.tasks.len()];
        for &task in &self.task_of_node {
            let needs: Vec<Node<CommandOutput>> = self.needs[task]
                .iter()
                .map(|&need| nodes[need].expect("needs come first in dependency order"))
                .collect();
            let job = Arc::clone(self);
            let node = graph.command(needs, move |_| job.command(task));
            let spec = &self.tasks[task];
            let mut options = graph
                .node(node)
                .name(spec.name.clone())
                .retries(if self.queued { 0 } else { spec.retries })
                .weight(spec.cpus);
            if let Some(delay) = spec.retry_delay.filter(|_| !self.queued) {
                options = options.retry_delay(delay);
            }
            let _ = options;
            nodes[task] = Some(node);
        }
        let nodes = nodes
            .into_iter()
            .map(|node| node.expect("every task has a node"))
            .collect();
        (graph, nodes)
    }

    /// The queue's executor: each task under a key made of the job file, its name and its
    /// fingerprint (the same work, so a run started again takes up the task it sent), and
    /// with the task's retries.
    fn queue_executor(
        self: &Arc<Self>,
        queue: &str,
        jobs: usize,
        file: &Path,
    ) -> Result<QueueExecutor, String> {
        let config = Config::here()?;
        let queue = if queue.is_empty() {
            config.queue.clone()
        } else {
            queue.to_owned()
        };
        let store = config.open()?;
        let job_file = std::fs::canonicalize(file).unwrap_or_else(|_| file.to_path_buf());
        let by_name: HashMap<String, usize> = self
            .tasks
            .iter()
            .enumerate()
            .map(|(task, spec)| (spec.name.clone(), task))
            .collect();
        let job = Arc::clone(self);
        QueueExecutor::builder(store)
            .queue(queue)
            .in_flight(jobs)
            .prepare(move |name, task| {
                let Some(&index) = name.and_then(|name| by_name.get(name)) else {
                    return task;
                };
                let spec = &job.tasks[index];
                let defaults = RetryPolicy::default();
                let task = task.retry(RetryPolicy {
                    max_retries: spec.retries,
                    backoff: spec.retry_delay.unwrap_or(defaults.backoff),
                    max_backoff: defaults
                        .max_backoff
                        .max(spec.retry_delay.unwrap_or_default() * 64),
                    ..defaults
                });
                match job.marks.get(index) {
                    Some(mark) => task.key(format!(
                        "plait-run:{}:{}:{}",
                        job_file.display(),
                        spec.name,
                        mark.fingerprint
                    )),
                    None => task,
                }
            })
            .build()
            .map_err(|e| e.to_string())
    }

    /// Task `task`'s command for one attempt. Run here, its lines are shown as they come
    /// and kept whole in its log files; sent to the queue, its output is shown when it
    /// ends.
    fn command(self: &Arc<Self>, task: usize) -> Command {
        let command = command(&self.tasks[task], &self.base);
        if self.queued {
            return command;
        }
        let name = self.tasks[task].name.clone();
        let logs = {
            let journal = self.journal.lock().unwrap_or_else(PoisonError::into_inner);
            ["stdout", "stderr"].map(|stream| AttemptLog::fresh(journal.log_of(&name, stream)))
        };
        let job = Arc::clone(self);
        command.on_line(move |stream, line| {
            if let Some(events) = &job.events {
                events.output(&name, stream_name(stream), line);
            } else {
                let text = String::from_utf8_lossy(line);
                let progress = job.progress();
                match stream {
                    Stream::Stdout => progress.task_line(task, &name, &text, false),
                    Stream::Stderr => progress.task_line(task, &name, &text, true),
                }
            }
            let log = match stream {
                Stream::Stdout => &logs[0],
                Stream::Stderr => &logs[1],
            };
            log.write_line(line, |why| job.progress().err(&format!("plait: {why}")));
        })
    }

    fn books(&self) -> std::sync::MutexGuard<'_, Vec<Book>> {
        self.books.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A task's output, printed under its name and kept beside the journal.
    fn show_output(&self, task: usize, name: &str, output: &CommandOutput) {
        match &self.events {
            Some(events) => {
                for (stream, bytes) in [("stdout", &output.stdout), ("stderr", &output.stderr)] {
                    for line in bytes.split_inclusive(|&b| b == b'\n') {
                        events.output(name, stream, line.strip_suffix(b"\n").unwrap_or(line));
                    }
                }
                print_dropped(&self.progress(), task, name, output);
            }
            None => print_output(&self.progress(), task, name, output),
        }
        if let Err(error) = self
            .journal
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .keep_output(name, &output.stdout, &output.stderr)
        {
            self.progress().err(&format!("plait: {error}"));
        }
    }

    /// Shows each task's start, output and end as the scheduler reports them, and
    /// records each success in the journal.
    fn observe(&self, event: &Event<'_>) {
        let task = self.task_of_node[event.node.index()];
        let name = self.tasks[task].name.as_str();
        let attempt = event.attempt;
        // The fields are made only for `--json` (thousands of tasks found up to date each
        // tell one).
        let tell = |kind: &str, fields: &dyn Fn() -> serde_json::Value| {
            if let Some(events) = &self.events {
                events.task(kind, name, attempt, fields());
            }
        };

        match event.kind {
            EventKind::Queued => tell("queued", &|| json!({})),
            EventKind::Started => {
                self.books()[task].attempts += 1;
                tell("started", &|| json!({}));
                if let Some(board) = &self.board {
                    board.started(name);
                }
                self.progress().started(task, name, attempt);
            }
            EventKind::Finished { elapsed, value } => {
                let Some(mark) = self.marks.get(task).filter(|mark| mark.ran) else {
                    tell(
                        "finished",
                        &|| json!({ "status": "up to date", "elapsed": 0.0 }),
                    );
                    self.mark(name, NodeState::UpToDate);
                    self.progress().ended(task, name, "up to date", "");
                    return;
                };
                // Run here, its lines were shown as they came.
                if let Some(output) = value.downcast_ref::<CommandOutput>()
                    && self.queued
                {
                    self.show_output(task, name, output);
                }
                let took = {
                    let mut books = self.books();
                    books[task].elapsed += elapsed;
                    books[task].elapsed
                };
                tell(
                    "finished",
                    &|| json!({ "status": "ok", "elapsed": events::seconds(elapsed) }),
                );
                self.mark(name, NodeState::Succeeded);
                self.progress()
                    .ended(task, name, "ok", &format!(" in {took:.1?}"));
                if let Err(error) = self
                    .journal
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .record(name, &mark.fingerprint)
                {
                    self.progress().err(&format!(
                        "plait: {error}; the next run will run {name} again"
                    ));
                }
            }
            EventKind::Failed {
                error,
                elapsed,
                retrying,
            } => {
                self.books()[task].elapsed += elapsed;
                if let Error::Failed(inner) = error
                    && let Some(failed) = inner.downcast_ref::<CommandFailed>()
                    && self.queued
                {
                    self.show_output(task, name, failed.output());
                }
                let elapsed = events::seconds(elapsed);
                self.mark(
                    name,
                    match (retrying, error.is_cancelled()) {
                        (true, _) => NodeState::Waiting,
                        (false, true) => NodeState::Cancelled,
                        (false, false) => NodeState::Failed,
                    },
                );
                if error.is_cancelled() && !retrying {
                    tell("cancelled", &|| json!({ "elapsed": elapsed }));
                    self.progress().ended(task, name, "cancelled", "");
                    return;
                }
                let why = reason(error);
                tell(
                    "failed",
                    &|| json!({ "error": why, "elapsed": elapsed, "retrying": retrying }),
                );
                if !retrying {
                    self.progress()
                        .ended(task, name, "failed", &format!(": {why}"));
                } else if self.events.is_none() {
                    self.progress().err(&format!(
                        "[{name}] attempt {attempt} of {} failed ({why}); trying again",
                        self.tasks[task].retries + 1,
                    ));
                }
            }
            EventKind::Skipped { error } => {
                let why = self.skip_reason(error);
                tell("skipped", &|| json!({ "reason": why }));
                self.mark(name, NodeState::Skipped);
                self.progress()
                    .ended(task, name, "skipped", &format!(": {why}"));
            }
            _ => {}
        }
    }

    /// The dashboard's view of this job: its tasks in dependency order, each with what it
    /// needs, all waiting.
    fn board_of(&self, file: &Path) -> RunBoard {
        let name = file.file_stem().map_or_else(
            || file.display().to_string(),
            |stem| stem.to_string_lossy().into_owned(),
        );
        let board = RunBoard::new(name);
        for &task in &self.task_of_node {
            let needs: Vec<String> = self.needs[task]
                .iter()
                .map(|&need| self.tasks[need].name.clone())
                .collect();
            board.add_task(&self.tasks[task].name, "process", &needs);
        }
        board
    }

    /// Shows `name` in `state` on the dashboard, if one is served.
    fn mark(&self, name: &str, state: NodeState) {
        if let Some(board) = &self.board {
            board.finished(name, state);
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
}

/// Which tasks `--force` names (all of them for `--force` alone), by task.
fn forced(plan: &Plan, force: Option<&[String]>) -> Result<Vec<bool>, String> {
    let mut forced = vec![false; plan.tasks.len()];
    match force {
        None => {}
        Some(names) if names.iter().all(String::is_empty) => forced.fill(true),
        Some(names) => {
            for name in names.iter().filter(|name| !name.is_empty()) {
                let task = plan.index_of(name).ok_or_else(|| {
                    format!("--force names `{name}`, which is not a task of this run")
                })?;
                forced[task] = true;
            }
        }
    }
    Ok(forced)
}

/// A task's error as the summary shows it: the task's own message, without the wrapping.
fn reason(error: &Error) -> String {
    match error {
        Error::Failed(inner) => match inner.downcast_ref::<CommandFailed>() {
            // Its output is shown above; the summary says how it ended.
            Some(failed) if failed.output().timed_out => {
                format!("timed out after {:.1?}", failed.output().elapsed)
            }
            Some(failed) => format!("exited with {}", failed.output().exit()),
            None => inner.to_string(),
        },
        other => other.to_string(),
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
        Run::Shell(line) => match plain_words(line) {
            // Nothing for a shell to do: run the program itself, as make does.
            Some(words) => Command::new(words[0].clone()).args(words[1..].iter().cloned()),
            None => Command::shell(line.clone()),
        },
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

/// The words of a shell line that a shell would run as they are: no quoting, expansion,
/// redirection, operator or comment, no variable assignment, and a first word that is a
/// program rather than a shell builtin or keyword (GNU make's list). `None` otherwise.
fn plain_words(line: &str) -> Option<Vec<String>> {
    const SHELL_WORDS: &[&str] = &[
        ".", ":", "alias", "bg", "break", "case", "cd", "command", "continue", "eval", "exec",
        "exit", "export", "fc", "fg", "for", "getopts", "hash", "if", "jobs", "login", "logout",
        "read", "readonly", "return", "set", "shift", "test", "times", "trap", "type", "ulimit",
        "umask", "unalias", "unset", "wait", "while", "[", "!", "{", "}", "until", "function",
        "select", "source", "local", "declare", "typeset", "let",
    ];
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./,+@%:=".contains(c);
    if !line.chars().all(|c| plain(c) || c == ' ' || c == '\t') {
        return None;
    }
    let words: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
    let first = words.first()?;
    if first.contains('=') || SHELL_WORDS.contains(&first.as_str()) {
        return None;
    }
    Some(words)
}

fn stream_name(stream: Stream) -> &'static str {
    match stream {
        Stream::Stdout => "stdout",
        Stream::Stderr => "stderr",
    }
}

/// A task's captured output, each line prefixed by its name.
fn print_output(progress: &Progress, task: usize, name: &str, out: &CommandOutput) {
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        progress.task_line(task, name, line, false);
    }
    for line in String::from_utf8_lossy(&out.stderr).lines() {
        progress.task_line(task, name, line, true);
    }
    print_dropped(progress, task, name, out);
}

/// Says how much of a task's output the capture did not keep, if any.
fn print_dropped(progress: &Progress, task: usize, name: &str, out: &CommandOutput) {
    for (stream, dropped) in [
        ("output", out.stdout_dropped),
        ("error output", out.stderr_dropped),
    ] {
        if dropped > 0 {
            progress.err(&format!(
                "{} ({dropped} more bytes of {stream} not kept)",
                progress.paint().prefix(name, task)
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::plain_words;

    #[test]
    fn only_lines_a_shell_would_run_as_they_are_skip_the_shell() {
        let words = |line: &str| plain_words(line).map(|w| w.join("|"));
        assert_eq!(words("true").as_deref(), Some("true"));
        assert_eq!(
            words("  gzip -9 -k data/a.csv ").as_deref(),
            Some("gzip|-9|-k|data/a.csv")
        );
        assert_eq!(
            words("cc -DNAME=x -o out.o").as_deref(),
            Some("cc|-DNAME=x|-o|out.o")
        );
        for shell in [
            "echo $HOME",
            "a && b",
            "a; b",
            "ls *.txt",
            "echo 'quoted'",
            "cat < in",
            "X=1 run",
            "exit 3",
            "cd dir",
            "test -f x",
            "echo ~",
            "a # comment",
            "",
            "a\nb",
        ] {
            assert_eq!(words(shell), None, "{shell:?} needs a shell");
        }
    }
}
