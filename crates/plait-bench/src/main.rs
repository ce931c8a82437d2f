//! `plait-bench`: measures plait against raw rayon, raw tokio and, with `--peers`, the
//! Python systems its users come from, all in one run, and prints the ratios.
//!
//! ```sh
//! cargo run --release -p plait-bench -- --peers          # everything, ~6 minutes
//! cargo run --release -p plait-bench -- --suite spawn    # one suite
//! cargo run --release -p plait-bench -- --quick --json   # a tenth of the work, JSON lines
//! ```

mod alloc;
mod compare;
mod context;
mod peers;
mod report;
mod suites;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

#[global_allocator]
static GLOBAL: alloc::Counting = alloc::Counting;

/// Benchmarks plait against raw rayon, raw tokio and the Python peers, in one run.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Run only these suites (repeatable); see --list.
    #[arg(long = "suite", value_name = "NAME")]
    suites: Vec<String>,
    /// List the suites and exit.
    #[arg(long)]
    list: bool,
    /// Also run the Python peers of the suites chosen (tiny_tasks.py, cpu_bound.py,
    /// io_bound.py, celery_queue.py from ../shared/bench/peers; this crate's
    /// peers/dask_graphs.py and peers/celery_latency.py) in this run.
    #[arg(long)]
    peers: bool,
    /// The Python with the peers' packages installed.
    #[arg(long, default_value = "/tmp/plait-peers-venv/bin/python")]
    python: PathBuf,
    /// Where the peer scripts are (default: ../shared/bench/peers beside the checkout).
    #[arg(long)]
    peers_dir: Option<PathBuf>,
    /// A tenth of the work, three runs each: a smoke run, not numbers to quote.
    #[arg(long)]
    quick: bool,
    /// Timed runs per case, after one warm-up (default 5, or 3 with --quick).
    #[arg(long)]
    repeats: Option<usize>,
    /// One JSON object per result and per comparison, instead of tables.
    #[arg(long)]
    json: bool,
    /// Internal: measure one system's idle coroutines in this (fresh) process.
    #[arg(long, hide = true, num_args = 2, value_names = ["SYSTEM", "N"])]
    memory_child: Vec<String>,
    /// Internal: serve the queue-redis suite's queue, until standard input closes.
    #[arg(long, hide = true, num_args = 2, value_names = ["URL", "NAMESPACE"])]
    redis_worker: Vec<String>,
}

fn main() -> ExitCode {
    // The process suite's workers are this binary, started again: they serve from here.
    plait::init();
    let args = Args::parse();
    if let [system, n] = args.memory_child.as_slice() {
        let n = n.parse().unwrap_or(100_000);
        let measured = if system.starts_with("graph-") {
            suites::graph::child_main(system, n)
        } else {
            suites::memory::child_main(system, n)
        };
        return match measured {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("plait-bench: {error}");
                ExitCode::FAILURE
            }
        };
    }
    if let [url, namespace] = args.redis_worker.as_slice() {
        return match suites::queue_redis::worker_main(url, namespace) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("plait-bench: {error}");
                ExitCode::FAILURE
            }
        };
    }
    if args.list {
        for suite in suites::ALL {
            println!("{:<10} {}", suite.name, suite.about);
        }
        return ExitCode::SUCCESS;
    }
    for name in &args.suites {
        if !suites::ALL.iter().any(|s| s.name == name) {
            let names: Vec<_> = suites::ALL.iter().map(|s| s.name).collect();
            eprintln!(
                "plait-bench: no suite named {name:?}; the suites are: {}",
                names.join(", ")
            );
            return ExitCode::from(2);
        }
    }
    let repeats = args
        .repeats
        .unwrap_or(if args.quick { 3 } else { 5 })
        .max(1);
    let ctx = match context::Context::new(args.quick, repeats) {
        Ok(ctx) => ctx,
        Err(error) => {
            eprintln!("plait-bench: could not start the runtimes: {error}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!("plait-bench: {}", machine(&ctx));
    let mut rows = Vec::new();
    for suite in suites::ALL {
        if args.suites.is_empty() || args.suites.iter().any(|s| s == suite.name) {
            eprintln!("plait-bench: suite {} ({})", suite.name, suite.about);
            rows.extend((suite.run)(&ctx));
        }
    }
    let mut failed = false;
    if args.peers {
        let shared = args.peers_dir.clone().unwrap_or_else(peers::default_dir);
        for peer in peers::PEERS {
            let chosen = args.suites.is_empty()
                || args
                    .suites
                    .iter()
                    .any(|s| peer.suites.contains(&s.as_str()));
            if !chosen {
                continue;
            }
            let dir = if peer.own {
                peers::own_dir()
            } else {
                shared.clone()
            };
            match peers::run(&args.python, &dir, peer.script) {
                Ok(peer_rows) => rows.extend(peer_rows),
                Err(error) => {
                    eprintln!("plait-bench: {error}");
                    failed = true;
                }
            }
        }
    }
    let comparisons = compare::all(&rows);
    if args.json {
        report::print_json(&rows);
        report::print_json(&comparisons);
    } else {
        println!("machine: {}\n", machine(&ctx));
        report::print_table(&rows);
        report::print_comparisons(&comparisons);
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// The CPU and thread counts, for the report.
fn machine(ctx: &context::Context) -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    format!(
        "{cpu}, {} threads per strand, {} runs per case{}",
        ctx.threads,
        ctx.repeats,
        if ctx.quick { ", --quick" } else { "" }
    )
}
