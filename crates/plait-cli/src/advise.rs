//! `plait advise -- CMD ARGS...`: run a command, measure what bounds it, and say which
//! strand and how many at once fit it, with the numbers behind the advice. `plait advise
//! --task NAME --args JSON` does the same for a task registered in this program, run here
//! with a sample argument.

use std::process::{ExitCode, Stdio};

use plait::advise::{Advice, Bound, Machine, Profile, human_bytes, profile_command};

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
    /// Run it N times and judge the medians, showing the spread (default 1).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100))]
    repeat: u32,
    /// Discard the command's own output (standard output and error), rather than show it.
    #[arg(long)]
    quiet_command: bool,
    /// The language the work is written in, for advice in its terms: python, or rust
    /// (plait's alone). Default: python when the command is a Python interpreter or a
    /// script that names one in its `#!` line.
    #[arg(long, value_enum, value_name = "LANG")]
    lang: Option<Lang>,
    /// The command and its arguments, after `--`.
    #[arg(last = true, value_name = "CMD")]
    command: Vec<String>,
}

/// The language of the work, for advice in its terms.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Lang {
    /// Python: the GIL decides between threads and processes.
    Python,
    /// Rust, or anything else: plait's advice alone.
    Rust,
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
    if let Err((code, why)) = runnable(program) {
        // As a shell says it, with its exit status: 127 not found, 126 not executable.
        eprintln!("plait: {program}: {why}");
        return Ok(ExitCode::from(code));
    }
    let mut runs = Vec::new();
    let mut status = None;
    for _ in 0..args.repeat {
        let mut command = std::process::Command::new(program);
        command.args(rest);
        if args.quiet_command {
            command.stdout(Stdio::null()).stderr(Stdio::null());
        } else if args.json {
            // Keep standard output for the JSON.
            command.stdout(Stdio::from(std::io::stderr()));
        }
        let (ended, measured) = profile_command(&mut command).map_err(|e| e.to_string())?;
        runs.push(measured);
        // A failed run ends the series: advice on it may be advice on the wrong work.
        let failed = !ended.success();
        status = Some(ended);
        if failed {
            break;
        }
    }
    let status = status.ok_or("no run was made")?;
    let measured = Profile::median(&runs).ok_or("no run was measured")?;
    let machine = Machine::here().cores(cores);
    let advice = measured.advice_for(&machine);
    let python = match args.lang {
        Some(lang) => lang == Lang::Python,
        None => is_python(program),
    };
    if args.json {
        outln!(
            "{}",
            report(
                &args.command,
                status,
                &measured,
                &runs,
                &machine,
                &advice,
                python
            )
        );
    } else {
        print_report(&args.command, status, &measured, &runs, &advice, python);
        if python {
            print_python(&advice);
        }
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

/// Whether `program` can be run, as a shell finds it: a path, or a name on `PATH`. If
/// not, the status a shell exits with (127 not found, 126 found but not executable) and
/// its words.
fn runnable(program: &str) -> Result<(), (u8, String)> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |path: &std::path::Path| {
        std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        let path = std::path::Path::new(program);
        return match std::fs::metadata(path) {
            Err(_) => Err((127, "No such file or directory".to_owned())),
            Ok(meta) if meta.is_dir() => Err((126, "Is a directory".to_owned())),
            Ok(_) if !executable(path) => Err((126, "Permission denied".to_owned())),
            Ok(_) => Ok(()),
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut found_unexecutable = false;
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join(program);
        if executable(&candidate) {
            return Ok(());
        }
        found_unexecutable |= candidate.is_file();
    }
    if found_unexecutable {
        Err((126, "Permission denied".to_owned()))
    } else {
        Err((127, "command not found".to_owned()))
    }
}

/// Whether `program` is a Python interpreter (`python`, `python3.12`, `python3.13t`,
/// `pypy3`), or a script whose `#!` line names one.
fn is_python(program: &str) -> bool {
    let interpreter = |name: &str| {
        let name = name.rsplit('/').next().unwrap_or(name);
        name.strip_prefix("python")
            .or_else(|| name.strip_prefix("pypy"))
            .is_some_and(|rest| {
                rest.chars()
                    .all(|c| c.is_ascii_digit() || c == '.' || c == 't')
            })
    };
    if interpreter(program) {
        return true;
    }
    let path = if program.contains('/') {
        Some(std::path::PathBuf::from(program))
    } else {
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .map(|dir| dir.join(program))
            .find(|candidate| candidate.is_file())
    };
    let Some(first_line) = path.and_then(|path| {
        use std::io::{BufRead, Read};
        let file = std::fs::File::open(path).ok()?;
        let mut line = String::new();
        std::io::BufReader::new(file.take(256))
            .read_line(&mut line)
            .ok()?;
        Some(line)
    }) else {
        return false;
    };
    first_line
        .strip_prefix("#!")
        .is_some_and(|line| line.split_whitespace().take(3).any(interpreter))
}

/// The advice for the same work kept in Python: the GIL decides.
fn python_advice(advice: &Advice) -> Vec<String> {
    let n = advice.concurrency;
    match advice.bound {
        Bound::Cpu => vec![
            format!("pure-Python computing holds the GIL, so threads do not run it in parallel: use processes, {n} at once (multiprocessing.Pool, concurrent.futures.ProcessPoolExecutor)"),
            "threads do help where the computing is in C extensions that release the GIL (numpy, hashlib, zlib, most I/O), or on a free-threaded build (python3.13t and later)".to_owned(),
        ],
        Bound::Io => vec![
            format!("it waits, and the GIL is released while it waits: asyncio for many waits at once (asyncio.gather, a TaskGroup), or a ThreadPoolExecutor for blocking libraries; {}", if advice.capped { "the cores set no limit".to_owned() } else { format!("{n} at once") }),
        ],
        _ => vec![
            format!("it computes and waits: processes, {n} at once, so that one's waits are another's computing; or asyncio for the waits with loop.run_in_executor(ProcessPoolExecutor(), ...) for the computing"),
        ],
    }
}

fn print_python(advice: &Advice) {
    if advice.no_verdict.is_some() {
        return;
    }
    outln!();
    outln!("advice for this Python program as it is (the GIL decides):");
    for line in python_advice(advice) {
        outln!("  - {line}");
    }
}

/// The report `--json` prints.
fn report(
    command: &[String],
    status: std::process::ExitStatus,
    measured: &Profile,
    runs: &[Profile],
    machine: &Machine,
    advice: &Advice,
    python: bool,
) -> serde_json::Value {
    use std::os::unix::process::ExitStatusExt;
    let shares: Vec<f64> = runs.iter().map(Profile::cpu_share).collect();
    let walls: Vec<f64> = runs.iter().map(|r| r.wall.as_secs_f64()).collect();
    let spread = |values: &[f64]| {
        serde_json::json!({
            "min": values.iter().copied().fold(f64::INFINITY, f64::min),
            "max": values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        })
    };
    let verdict = advice.no_verdict.is_none();
    serde_json::json!({
        "command": command,
        "exit_code": status.code(),
        "signal": status.signal(),
        "runs": runs.len(),
        "wall_s": measured.wall.as_secs_f64(),
        "user_s": measured.user.as_secs_f64(),
        "system_s": measured.system.as_secs_f64(),
        "waited_for_cpu_s": measured.run_queue.as_secs_f64(),
        "cpu_share": measured.cpu_share(),
        "spread": { "wall_s": spread(&walls), "cpu_share": spread(&shares) },
        "voluntary_switches": measured.voluntary_switches,
        "involuntary_switches": measured.involuntary_switches,
        "peak_rss_bytes": measured.peak_rss,
        "read_bytes": measured.read_bytes,
        "written_bytes": measured.written_bytes,
        "verdict": verdict,
        "no_verdict": advice.no_verdict,
        "bound": verdict.then(|| advice.bound.as_str()),
        "strand": verdict.then(|| advice.strand.as_str()),
        "concurrency": verdict.then_some(advice.concurrency),
        "concurrency_is_cap": advice.capped,
        "memory_binds": advice.memory_bound,
        "cores": advice.cores,
        "available_memory_bytes": machine.available_memory,
        "load": machine.load,
        "warnings": advice.warnings,
        "reasons": advice.reasons,
        "python": (python && verdict).then(|| python_advice(advice)),
    })
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
            "no_verdict": advice.no_verdict,
            "warnings": advice.warnings,
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
    runs: &[Profile],
    advice: &Advice,
    python: bool,
) {
    outln!();
    if runs.len() > 1 {
        let shares: Vec<f64> = runs.iter().map(Profile::cpu_share).collect();
        let walls: Vec<f64> = runs.iter().map(|r| r.wall.as_secs_f64()).collect();
        let low = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
        let high = |v: &[f64]| v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        outln!(
            "measured: {}, {} runs: the medians (wall {:.3}-{:.3} s, CPU share {:.2}-{:.2})",
            command.join(" "),
            runs.len(),
            low(&walls),
            high(&walls),
            low(&shares),
            high(&shares)
        );
    } else {
        outln!("measured: {}", command.join(" "));
    }
    outln!("  {:<18}{status}", "ended");
    outln!("  {:<18}{:.3} s", "wall", measured.wall.as_secs_f64());
    outln!(
        "  {:<18}{:.3} s (user {:.3} s, kernel {:.3} s), {:.3} s waiting for a core: {:.2} of the wall time",
        "cpu",
        measured.cpu().as_secs_f64(),
        measured.user.as_secs_f64(),
        measured.system.as_secs_f64(),
        measured.run_queue.as_secs_f64(),
        measured.cpu_share()
    );
    print_switches(measured);
    if let Some(peak) = measured.peak_rss {
        outln!("  {:<18}{}", "peak memory", human_bytes(peak));
    }
    if let (Some(read), Some(written)) = (measured.read_bytes, measured.written_bytes) {
        outln!(
            "  {:<18}{} read, {} written",
            "i/o",
            human_bytes(read),
            human_bytes(written)
        );
    }
    outln!();
    if python {
        out!("advice for the work in Rust, on plait: {advice}");
    } else {
        out!("advice: {advice}");
    }
    if advice.no_verdict.is_some() {
        return;
    }
    if advice.capped {
        outln!(
            "  as a command in a job file: as many at once as what it waits on allows (`plait run --jobs N`; the cores are no limit)"
        );
        return;
    }
    outln!(
        "  as a command in a job file: run {} at once (`plait run --jobs {}`{})",
        advice.concurrency,
        advice.concurrency.max(advice.cores),
        // Whole cores, rounded as the advice rounds them.
        match advice.bound {
            Bound::Cpu if measured.cpu_share().round() >= 2.0 => {
                format!(", `cpus = {:.0}` on the task", measured.cpu_share().round())
            }
            _ => String::new(),
        }
    );
}
