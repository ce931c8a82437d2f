//! `plait advise -- CMD ARGS...`: run a command, measure what bounds it, and say which
//! strand and how many at once fit it, with the numbers behind the advice. `plait advise
//! --task NAME --args JSON` does the same for a task registered in this program, run here
//! with a sample argument.

use std::process::{ExitCode, Stdio};

use plait::advise::{Advice, Profile, profile_command};
use serde::Serialize;

/// Options of `plait advise`.
#[derive(clap::Args)]
pub(crate) struct Args {
    /// Print one JSON object (the command's own output goes to standard error).
    #[arg(long)]
    json: bool,
    /// Advise for this many cores (default: this machine's).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    cores: Option<u32>,
    /// A registered task to measure instead of a command, run here on one thread (a task
    /// that crashes takes plait with it); `plait advise --list-tasks` names them.
    #[arg(long, value_name = "NAME", conflicts_with = "command")]
    task: Option<String>,
    /// The task's sample argument, as JSON (several as a JSON array).
    #[arg(long, value_name = "JSON", default_value = "null", requires = "task")]
    args: String,
    /// Name the tasks registered in this program, and exit.
    #[arg(long)]
    list_tasks: bool,
    /// The command and its arguments, after `--`.
    #[arg(last = true, value_name = "CMD")]
    command: Vec<String>,
}

/// What `--json` prints.
#[derive(Serialize)]
struct Report<'a> {
    command: &'a [String],
    exit_code: Option<i32>,
    signal: Option<i32>,
    wall_s: f64,
    user_s: f64,
    system_s: f64,
    cpu_share: f64,
    voluntary_switches: u64,
    involuntary_switches: u64,
    peak_rss_bytes: Option<u64>,
    read_bytes: Option<u64>,
    written_bytes: Option<u64>,
    bound: &'static str,
    strand: &'static str,
    concurrency: usize,
    cores: usize,
    reasons: &'a [String],
}

pub(crate) fn run(args: &Args) -> Result<ExitCode, String> {
    let cores = args.cores.map_or_else(
        || std::thread::available_parallelism().map_or(1, |n| n.get()),
        |cores| cores as usize,
    );
    if args.list_tasks {
        for name in plait::process::registered_tasks() {
            outln!("{name}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(task) = &args.task {
        return advise_task(task, &args.args, cores, args.json);
    }
    let (program, rest) = args.command.split_first().ok_or(
        "nothing to advise on: put a command after --, as in `plait advise -- make -j1`, or name a task with --task",
    )?;
    let mut command = std::process::Command::new(program);
    command.args(rest);
    if args.json {
        // Keep standard output for the JSON.
        command.stdout(Stdio::from(std::io::stderr()));
    }
    let (status, measured) = profile_command(&mut command).map_err(|e| e.to_string())?;
    let advice = measured.advice(cores);
    if args.json {
        use std::os::unix::process::ExitStatusExt;
        let report = Report {
            command: &args.command,
            exit_code: status.code(),
            signal: status.signal(),
            wall_s: measured.wall.as_secs_f64(),
            user_s: measured.user.as_secs_f64(),
            system_s: measured.system.as_secs_f64(),
            cpu_share: measured.cpu_share(),
            voluntary_switches: measured.voluntary_switches,
            involuntary_switches: measured.involuntary_switches,
            peak_rss_bytes: measured.peak_rss,
            read_bytes: measured.read_bytes,
            written_bytes: measured.written_bytes,
            bound: advice.bound.as_str(),
            strand: advice.strand.as_str(),
            concurrency: advice.concurrency,
            cores: advice.cores,
            reasons: &advice.reasons,
        };
        outln!(
            "{}",
            serde_json::to_string(&report).map_err(|e| e.to_string())?
        );
    } else {
        print_report(&args.command, status, &measured, &advice);
    }
    if status.success() {
        return Ok(ExitCode::SUCCESS);
    }
    // Advice on a run that failed may be advice on the wrong work: say so, and fail as
    // the command did.
    eprintln!(
        "plait: `{}` ended with {status}: the numbers above are of a run that failed",
        args.command.join(" ")
    );
    // Killed by a signal: 128 + its number, as a shell reports it.
    let code = status
        .code()
        .or_else(|| std::os::unix::process::ExitStatusExt::signal(&status).map(|s| 128 + s));
    Ok(ExitCode::from(
        code.and_then(|code| u8::try_from(code).ok())
            .filter(|&code| code != 0)
            .unwrap_or(1),
    ))
}

/// Measures the registered task `name` with the sample `args` (JSON), here.
fn advise_task(name: &str, args: &str, cores: usize, json: bool) -> Result<ExitCode, String> {
    let (output, measured) =
        plait::advise::profile_task_by_name(name, args).map_err(|error| match error {
            plait::Error::UnknownTask { .. } => {
                format!("{error} (`plait advise --list-tasks` names the tasks of this program)")
            }
            plait::Error::Codec { .. } => format!(
                "{error} (give --args as JSON of that type; a task of several arguments takes a JSON array, as in --args '[1, \"a\"]')"
            ),
            error => error.to_string(),
        })?;
    let advice = measured.advice(cores);
    if json {
        let report = serde_json::json!({
            "task": name,
            "args": args,
            "output": output,
            "wall_s": measured.wall.as_secs_f64(),
            "cpu_s": measured.cpu().as_secs_f64(),
            "waited_for_cpu_s": measured.run_queue.as_secs_f64(),
            "cpu_share": measured.cpu_share(),
            "voluntary_switches": measured.voluntary_switches,
            "involuntary_switches": measured.involuntary_switches,
            "bound": advice.bound.as_str(),
            "strand": advice.strand.as_str(),
            "concurrency": advice.concurrency,
            "cores": advice.cores,
            "reasons": advice.reasons,
        });
        outln!("{report}");
    } else {
        outln!();
        outln!("measured: {name}({args}) = {output}, here, on one thread");
        outln!("  {:<18}{:.3} s", "wall", measured.wall.as_secs_f64());
        outln!(
            "  {:<18}{:.3} s, {:.3} s waiting for a core: {:.2} of the wall time",
            "cpu",
            measured.cpu().as_secs_f64(),
            measured.run_queue.as_secs_f64(),
            measured.cpu_share()
        );
        print_switches(&measured);
        outln!();
        out!("advice: {advice}");
    }
    Ok(ExitCode::SUCCESS)
}

fn print_switches(measured: &Profile) {
    outln!(
        "  {:<18}{} voluntary (waits), {} involuntary (preempted)",
        "context switches",
        measured.voluntary_switches,
        measured.involuntary_switches
    );
}

fn print_report(
    command: &[String],
    status: std::process::ExitStatus,
    measured: &Profile,
    advice: &Advice,
) {
    outln!();
    outln!("measured: {}", command.join(" "));
    outln!("  {:<18}{status}", "ended");
    outln!("  {:<18}{:.3} s", "wall", measured.wall.as_secs_f64());
    outln!(
        "  {:<18}{:.3} s (user {:.3} s, kernel {:.3} s): {:.2} of the wall time",
        "cpu",
        measured.cpu().as_secs_f64(),
        measured.user.as_secs_f64(),
        measured.system.as_secs_f64(),
        measured.cpu_share()
    );
    print_switches(measured);
    if let Some(peak) = measured.peak_rss {
        outln!("  {:<18}{}", "peak memory", bytes(peak));
    }
    if let (Some(read), Some(written)) = (measured.read_bytes, measured.written_bytes) {
        outln!(
            "  {:<18}{} read, {} written",
            "i/o",
            bytes(read),
            bytes(written)
        );
    }
    outln!();
    out!("advice: {advice}");
    outln!(
        "  as a command in a job file: run {} at once (`plait run --jobs {}`{})",
        advice.concurrency,
        advice.concurrency.max(advice.cores),
        // Whole cores, rounded as the advice rounds them.
        match advice.bound {
            plait::advise::Bound::Cpu if measured.cpu_share().round() >= 2.0 => {
                format!(", `cpus = {:.0}` on the task", measured.cpu_share().round())
            }
            _ => String::new(),
        }
    );
}

fn bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1} GiB", n as f64 / f64::from(1u32 << 30)),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / f64::from(1u32 << 20)),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}
