//! `plait matrix`: the decision matrix of concurrency models, measured on this machine.
//!
//! The same workloads run on each strand: tiny tasks, a CPU kernel on every core, 10 ms
//! waits, large payloads, starting a unit, idle tasks, a task that crashes, one that hangs
//! past a time limit, one that leaks. The table keeps the columns of the Python matrix
//! (the unit of concurrency, how memory is shared, who suspends work, what each is for)
//! and adds the measured ones.

mod measure;
mod plot;
mod tasks;

use std::path::PathBuf;
use std::process::ExitCode;

use plait::Runtime;
use plait::process::ProcessOptions;
use serde::Serialize;

use measure::{HANG_LIMIT, Measured, Sizes};

/// Options of `plait matrix`.
#[derive(clap::Args)]
pub(crate) struct Args {
    /// Less work (a few seconds here; under a minute on any machine).
    #[arg(long)]
    quick: bool,
    /// `md` (a Markdown table) or `json` (one object).
    #[arg(long, default_value = "md", value_parser = ["md", "json"])]
    format: String,
    /// Also draw the measured columns as a chart, to this SVG file.
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<PathBuf>,
}

/// One strand's row: what it is, what it measured, what it is for.
#[derive(Serialize)]
pub(crate) struct Row {
    strand: &'static str,
    unit: &'static str,
    memory: &'static str,
    suspended_by: &'static str,
    #[serde(rename = "for")]
    for_what: &'static str,
    measured: Measured,
    crash: String,
    hang: String,
    leak: String,
    recommendation: String,
}

#[derive(Serialize)]
struct Matrix<'a> {
    machine: String,
    cores: usize,
    quick: bool,
    strands: &'a [Row],
}

pub(crate) fn run(args: &Args) -> Result<ExitCode, String> {
    if let Some(path) = &args.plot
        && path.extension().is_none_or(|ext| ext != "svg")
    {
        return Err(format!(
            "--plot {} must name an .svg file: the chart is drawn as SVG",
            path.display()
        ));
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let sizes = Sizes::new(args.quick);
    let rt = Runtime::builder()
        .threads(cores)
        .coroutine_workers(cores)
        .processes(ProcessOptions::new().workers(cores))
        .build()
        .map_err(|e| e.to_string())?;
    let kernels = 2 * cores as u64;
    eprintln!(
        "plait matrix: measuring on {cores} cores{}...",
        if args.quick { " (--quick)" } else { "" }
    );
    let (queued, idle) = measure::idle_memory(&rt, sizes);
    let serial = measure::serial_kernels(sizes, kernels);
    fn failed(strand: &'static str) -> impl Fn(plait::Error) -> String {
        move |error| format!("measuring the {strand} strand failed: {error}")
    }
    let process = measure::process(&rt, sizes, kernels, serial).map_err(failed("process"))?;
    let thread = measure::thread(&rt, sizes, kernels, serial, queued).map_err(failed("thread"))?;
    let coroutine =
        measure::coroutine(&rt, sizes, kernels, serial, idle).map_err(failed("coroutine"))?;
    let _ = rt.shutdown(std::time::Duration::from_secs(5));
    let rows = rows(process, thread, coroutine, cores, sizes);
    let machine = machine();
    match args.format.as_str() {
        "json" => {
            let matrix = Matrix {
                machine: machine.clone(),
                cores,
                quick: args.quick,
                strands: &rows,
            };
            outln!(
                "{}",
                serde_json::to_string(&matrix).map_err(|e| e.to_string())?
            );
        }
        _ => out!("{}", markdown(&rows, &machine, sizes)),
    }
    if let Some(path) = &args.plot {
        plot::draw(path, &rows, &machine)?;
        eprintln!("plait matrix: drew {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn rows(
    process: Measured,
    thread: Measured,
    coroutine: Measured,
    cores: usize,
    sizes: Sizes,
) -> Vec<Row> {
    let limit = ms(HANG_LIMIT.as_secs_f64());
    vec![
        Row {
            strand: "process",
            unit: "process",
            memory: "separate address spaces: arguments and results copied over pipes",
            suspended_by: "the OS, preemptively",
            for_what: "isolation: code that crashes, leaks or hangs; hard limits",
            crash: format!(
                "abort: the task reports WorkerLost; the worker is replaced and serving again in {}",
                ms(process.crash_s)
            ),
            hang: format!(
                "the worker is killed at the {limit} limit; serving again {} later",
                ms(process.hang_held_s)
            ),
            leak: format!(
                "{} kept by this program: the leak stays in the worker, until it is recycled",
                mib(process.leak_kept_bytes)
            ),
            recommendation: format!(
                "isolation, not speed: {} per tiny task with many in flight, payloads copied ({:.0} MiB/s)",
                us(1.0 / process.tiny_per_s),
                process.payload_mib_per_s
            ),
            measured: process,
        },
        Row {
            strand: "thread",
            unit: "OS thread (one per core)",
            memory: "shared: the whole program's",
            suspended_by: "the OS, preemptively",
            for_what: "CPU-bound work: no GIL, every core",
            crash: format!(
                "panic: an error on its handle in {}; an abort or a segfault ends the whole program",
                us(thread.crash_s)
            ),
            hang: format!(
                "a thread cannot be killed: the {limit} limit is reported when the task returns, {} late, the thread held till then",
                ms(thread.hang_held_s)
            ),
            leak: format!(
                "{} kept by this program until it exits",
                mib(thread.leak_kept_bytes)
            ),
            recommendation: format!(
                "CPU-bound work: {:.1}x over serial on {cores} cores",
                thread.cpu_speedup
            ),
            measured: thread,
        },
        Row {
            strand: "coroutine",
            unit: "coroutine (a future on an event loop)",
            memory: "shared; each task's state is one small future",
            suspended_by: "the task, cooperatively, at each .await",
            for_what: "I/O-bound waits by the thousand",
            crash: format!(
                "panic: an error on its handle in {}; an abort or a segfault ends the whole program",
                us(coroutine.crash_s)
            ),
            hang: format!(
                "dropped at its .await when the {limit} limit passes: nothing held (next task {} later); a blocking call would hold its worker",
                us(coroutine.hang_held_s)
            ),
            leak: format!(
                "{} kept by this program until it exits",
                mib(coroutine.leak_kept_bytes)
            ),
            recommendation: format!(
                "waits: {:.0} waits of 10 ms per second ({} at once), {} per idle task",
                coroutine.waits_per_s,
                sizes.waits,
                bytes(coroutine.memory_per_task_bytes)
            ),
            measured: coroutine,
        },
    ]
}

fn markdown(rows: &[Row], machine: &str, sizes: Sizes) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(out, "Measured on {machine}.\n");
    let _ = writeln!(
        out,
        "| strand | unit | memory | suspended by | for | tiny tasks | CPU kernel, speedup over serial | {} waits of 10 ms | {} MiB payloads through a task (checksummed) | start-up of one unit | memory per task | a crash | a hang | a leak ({} MiB) | recommendation |",
        sizes.waits, sizes.payload_mib, sizes.leak_mib
    );
    let _ = writeln!(out, "|{}", "---|".repeat(15));
    for row in rows {
        let m = &row.measured;
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {}/s | {:.2}x | {:.0}/s | {:.0} MiB/s | {} | {} | {} | {} | {} | {} |",
            row.strand,
            row.unit,
            row.memory,
            row.suspended_by,
            row.for_what,
            count(m.tiny_per_s),
            m.cpu_speedup,
            m.waits_per_s,
            m.payload_mib_per_s,
            us(m.start_up_s),
            match row.strand {
                "process" => format!("{} per worker", bytes(m.memory_per_task_bytes)),
                "thread" => format!("{} per queued task", bytes(m.memory_per_task_bytes)),
                _ => format!("{} per idle task", bytes(m.memory_per_task_bytes)),
            },
            row.crash,
            row.hang,
            row.leak,
            row.recommendation,
        );
    }
    out
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "an unknown CPU".to_owned());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    format!("{cpu}, {cores} cores")
}

fn count(per_s: f64) -> String {
    if per_s >= 1e6 {
        format!("{:.2} M", per_s / 1e6)
    } else if per_s >= 1e3 {
        format!("{:.1} k", per_s / 1e3)
    } else {
        format!("{per_s:.0}")
    }
}

fn us(s: f64) -> String {
    if s >= 1e-3 {
        ms(s)
    } else {
        format!("{:.1} µs", s * 1e6)
    }
}

fn ms(s: f64) -> String {
    format!("{:.1} ms", s * 1e3)
}

fn mib(b: f64) -> String {
    format!("+{:.1} MiB", b / 1_048_576.0)
}

fn bytes(b: f64) -> String {
    if b >= 1_048_576.0 {
        format!("{:.1} MiB", b / 1_048_576.0)
    } else if b >= 1024.0 {
        format!("{:.1} KiB", b / 1024.0)
    } else {
        format!("{b:.0} B")
    }
}
