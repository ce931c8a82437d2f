//! `plait`: run work on the right model of concurrency from the shell.

#[macro_use]
mod output;

mod advise;
mod clean;
mod color;
mod demo;
mod duration;
mod graph;
mod job;
mod journal;
mod matrix;
mod progress;
mod queue;
mod run;
mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// plait: threads for computing, coroutines for waiting, one task API.
#[derive(Parser)]
#[command(name = "plait", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// The queue's Redis server, for the queue's commands and `run`: workers on any
    /// machine share it (default: PLAIT_BROKER, plait.toml's [queue] broker, or the
    /// embedded file .plait/queue.db).
    #[arg(long, global = true, value_name = "redis://HOST[:PORT]")]
    broker: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Run a command and measure what bounds it (CPU time against wall time, context
    /// switches, memory, I/O); say which strand fits it and how many to run at once.
    Advise(advise::Args),
    /// Hash files on the thread strand while a local server is queried on the coroutine
    /// strand, then hash them again in worker processes beside a task that crashes its
    /// worker; show what ran where and how long it took.
    Demo(demo::Args),
    /// Read a job file and show its plan: the tasks by level, or the graph as Graphviz dot,
    /// a Mermaid flowchart or JSON.
    Graph(graph::Args),
    /// Measure the decision matrix on this machine: the same workloads on processes,
    /// threads and coroutines, with the columns of the Python matrix and the measured ones.
    Matrix(matrix::Args),
    /// Run a job file: each task's command once what it needs has succeeded, as many at
    /// once as --jobs allows; print each task's output under its name, then a summary.
    Run(run::Args),
    /// Print the shell's completion script for plait: `plait completions bash >
    /// ~/.local/share/bash-completion/completions/plait` (or zsh, fish, elvish,
    /// powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Forget what `plait run` recorded of a job (its journal and its tasks' last
    /// output), so that its next run runs every task.
    Clean(clean::Args),
    /// Put a command on the durable queue, to be run by a `plait worker`; print its id.
    Submit(queue::SubmitArgs),
    /// Run the queue's tasks until SIGTERM (drain) or a second signal (stop now).
    Worker(queue::WorkerArgs),
    /// A task's state by id, or every queue's counts.
    Status(queue::StatusArgs),
    /// A finished task's result (a command's output); --wait to wait for it.
    Result(queue::ResultArgs),
    /// Cancel a task: at once if it waits, at its worker's next heartbeat if it runs.
    Cancel(queue::CancelArgs),
    /// Every queue's tasks, counted by state.
    Queues(queue::QueuesArgs),
    /// The dead letters, with why each died; --requeue or --all puts them back.
    Dead(queue::DeadArgs),
    /// Delete the waiting tasks of a queue, or of all.
    Purge(queue::PurgeArgs),
    /// The workers of the queue: active, lost (unheard past their lease) or stopped,
    /// with what each holds and has done.
    Workers(queue::workers::WorkersArgs),
    /// Enqueue a schedule file's commands at the ticks of their cron expressions, once per
    /// tick however many beats run, until SIGINT or SIGTERM.
    Beat(queue::beat::BeatArgs),
    /// Serve the dashboard (queues, workers, failures, dead letters, live), the queue's
    /// HTTP API and Prometheus /metrics, on 127.0.0.1:8700 unless --bind says otherwise.
    Serve(serve::ServeArgs),
}

fn main() -> ExitCode {
    // A worker process of the process strand is this binary, started again: it serves
    // from here and never reaches the command line.
    plait::init();
    let cli = Cli::parse();
    queue::config::set_broker_flag(cli.broker);
    let outcome = match cli.command {
        Command::Advise(args) => advise::run(&args),
        Command::Demo(args) => demo::run(&args).map(|()| ExitCode::SUCCESS),
        Command::Graph(args) => graph::run(&args).map(|()| ExitCode::SUCCESS),
        Command::Matrix(args) => matrix::run(&args),
        Command::Run(args) => run::run(&args),
        Command::Clean(args) => clean::run(&args),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut command = Cli::command();
            clap_complete::generate(shell, &mut command, "plait", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Submit(args) => queue::submit(&args),
        Command::Worker(args) => queue::worker::run(&args),
        Command::Status(args) => queue::status(&args),
        Command::Result(args) => queue::result(&args),
        Command::Cancel(args) => queue::cancel(&args),
        Command::Queues(args) => queue::queues(&args),
        Command::Dead(args) => queue::dead(&args),
        Command::Purge(args) => queue::purge(&args),
        Command::Workers(args) => queue::workers::run(&args),
        Command::Beat(args) => queue::beat::run(&args),
        Command::Serve(args) => serve::run(&args),
    };
    match outcome {
        Ok(code) => code,
        Err(error) => {
            eprintln!("plait: {error}");
            ExitCode::FAILURE
        }
    }
}
