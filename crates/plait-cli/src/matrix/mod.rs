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

use std::collections::BTreeMap;
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
    /// Samples of each cell, taken round by round with the strands in turn; the table
    /// shows their medians and spread (default 5, or 3 with --quick).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=50))]
    samples: Option<u32>,
    /// Measure one kind of idle task's memory here and print the bytes per task: what
    /// each sample runs in a fresh process.
    #[arg(long, hide = true, value_enum, value_name = "KIND")]
    probe_memory: Option<measure::Probe>,
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
    /// Each measured figure's smallest and largest sample.
    spread: BTreeMap<String, [f64; 2]>,
    /// CPU speedups above the core count, set aside as impossible.
    impossible_speedups: usize,
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
    samples: u32,
    sizes: Sizes,
    /// The load average when the measuring began, and whether it was high enough to warn.
    load: Option<f64>,
    busy: bool,
    strands: &'a [Row],
}

pub(crate) fn run(args: &Args) -> Result<ExitCode, String> {
    let sizes = Sizes::new(args.quick);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if let Some(probe) = args.probe_memory {
        let rt = runtime(cores)?;
        outln!("{}", measure::idle_memory(&rt, sizes, probe));
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(path) = &args.plot {
        // Checked before minutes of measuring, not after.
        plot::check(path)?;
    }
    let samples = args.samples.unwrap_or(if args.quick { 3 } else { 5 });
    let rt = runtime(cores)?;
    let kernels = 2 * cores as u64;
    let load = load_average();
    let busy = load.is_some_and(|load| load >= 0.5 * cores as f64);
    eprintln!(
        "plait matrix: measuring on {cores} cores, {samples} samples of each cell{}...",
        if args.quick { " (--quick)" } else { "" }
    );
    if busy {
        eprintln!(
            "plait matrix: the machine is busy (load {:.1} on {cores} cores): the figures will vary more; the spread shows by how much",
            load.unwrap_or_default()
        );
    }
    let strands = ["process", "thread", "coroutine"];
    let mut taken: [Vec<Measured>; 3] = Default::default();
    let mut impossible = [0_usize; 3];
    for round in 0..samples as usize {
        let memory = fresh_memory(args.quick)?;
        // The strands in turn, starting one further each round: drift over the run falls
        // on each alike.
        for k in 0..strands.len() {
            let which = (round + k) % strands.len();
            let mut sample = measure_strand(&rt, which, sizes, kernels, memory)?;
            // A speedup above the core count cannot be: its serial baseline was measured
            // slow. Measured again once; set aside if it is again.
            if sample.cpu_speedup > cores as f64 * 1.1 {
                impossible[which] += 1;
                sample = measure_strand(&rt, which, sizes, kernels, memory)?;
                if sample.cpu_speedup > cores as f64 * 1.1 {
                    impossible[which] += 1;
                    continue;
                }
            }
            taken[which].push(sample);
        }
    }
    let _ = rt.shutdown(std::time::Duration::from_secs(5));
    let mut medians = taken.iter().map(|samples| {
        if samples.is_empty() {
            Err("every sample's speedup was above the core count: the machine is too busy to measure; try again on a quieter one".to_owned())
        } else {
            Ok(measure::medians(samples))
        }
    });
    let mut next = || {
        medians
            .next()
            .unwrap_or_else(|| Err("no strand".to_owned()))
    };
    let (process, thread, coroutine) = (next()?, next()?, next()?);
    let rows = rows([process, thread, coroutine], impossible, cores, sizes);
    let machine = machine();
    match args.format.as_str() {
        "json" => {
            let matrix = Matrix {
                machine: machine.clone(),
                cores,
                quick: args.quick,
                samples,
                sizes,
                load,
                busy,
                strands: &rows,
            };
            outln!(
                "{}",
                serde_json::to_string(&matrix).map_err(|e| e.to_string())?
            );
        }
        _ => out!("{}", markdown(&rows, &machine, sizes, samples)),
    }
    if let Some(path) = &args.plot {
        plot::draw(path, &rows, &machine, samples)?;
        eprintln!("plait matrix: drew {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn runtime(cores: usize) -> Result<Runtime, String> {
    Runtime::builder()
        .threads(cores)
        .coroutine_workers(cores)
        .processes(ProcessOptions::new().workers(cores))
        .build()
        .map_err(|e| e.to_string())
}

/// One sample of strand `which` (0 process, 1 thread, 2 coroutine), its CPU speedup over a
/// serial baseline measured just before it.
fn measure_strand(
    rt: &Runtime,
    which: usize,
    sizes: Sizes,
    kernels: u64,
    (queued, idle): (f64, f64),
) -> Result<Measured, String> {
    fn failed(strand: &'static str) -> impl Fn(plait::Error) -> String {
        move |error| format!("measuring the {strand} strand failed: {error}")
    }
    let serial = measure::serial_kernels(sizes, kernels);
    match which {
        0 => measure::process(rt, sizes, kernels, serial).map_err(failed("process")),
        1 => measure::thread(rt, sizes, kernels, serial, queued).map_err(failed("thread")),
        _ => measure::coroutine(rt, sizes, kernels, serial, idle).map_err(failed("coroutine")),
    }
}

/// The idle tasks' memory, each kind measured in a fresh process of its own (this
/// program, `--probe-memory KIND`): in this one, or after the other kind, memory freed by
/// earlier measurements would be reused and read low.
fn fresh_memory(quick: bool) -> Result<(f64, f64), String> {
    let probe = |kind: &str| -> Result<f64, String> {
        let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
        let mut probe = std::process::Command::new(exe);
        probe.args(["matrix", "--probe-memory", kind]);
        if quick {
            probe.arg("--quick");
        }
        let output = probe
            .output()
            .map_err(|e| format!("cannot start the memory probe: {e}"))?;
        String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse()
            .map_err(|e| {
                format!(
                    "the memory probe failed ({e}): {}",
                    String::from_utf8_lossy(&output.stderr)
                )
            })
    };
    Ok((probe("queued")?, probe("idle")?))
}

/// The load average over the last minute.
fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

type Medians = (Measured, BTreeMap<String, [f64; 2]>);

fn rows(
    [
        (process, process_spread),
        (thread, thread_spread),
        (coroutine, coroutine_spread),
    ]: [Medians; 3],
    impossible: [usize; 3],
    cores: usize,
    sizes: Sizes,
) -> Vec<Row> {
    let limit = ms(HANG_LIMIT.as_secs_f64());
    let speedup = |m: &Measured, spread: &BTreeMap<String, [f64; 2]>| {
        let [low, high] = spread.get("cpu_speedup").copied().unwrap_or_default();
        format!("{:.1}x ({low:.1}-{high:.1}x)", m.cpu_speedup)
    };
    let thread_speedup = speedup(&thread, &thread_spread);
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
            spread: process_spread,
            impossible_speedups: impossible[0],
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
                "CPU-bound work: {thread_speedup} over serial on {cores} cores"
            ),
            measured: thread,
            spread: thread_spread,
            impossible_speedups: impossible[1],
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
            spread: coroutine_spread,
            impossible_speedups: impossible[2],
        },
    ]
}

fn markdown(rows: &[Row], machine: &str, sizes: Sizes, samples: u32) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Measured on {machine}: each figure the median of {samples} samples, the range of the samples in brackets where it matters.\n"
    );
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
            "| {} | {} | {} | {} | {} | {}/s | {} | {:.0}/s | {:.0} MiB/s | {} | {} | {} | {} | {} | {} |",
            row.strand,
            row.unit,
            row.memory,
            row.suspended_by,
            row.for_what,
            count(m.tiny_per_s),
            {
                let [low, high] = row.spread.get("cpu_speedup").copied().unwrap_or_default();
                let set_aside = match row.impossible_speedups {
                    0 => String::new(),
                    n => format!(", {n} impossible set aside"),
                };
                format!("{:.2}x ({low:.2}-{high:.2}{set_aside})", m.cpu_speedup)
            },
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
