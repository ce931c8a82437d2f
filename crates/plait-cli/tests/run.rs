//! `plait run`, as a user runs it, on job files in temporary folders.

mod common;

use std::path::{Path, PathBuf};

use common::{job_folder, run_job as run, summary, text};
use std::process::Command;

#[test]
fn tasks_run_after_what_they_need_with_their_output_under_their_names() {
    let dir = job_folder(
        "order",
        r#"
[tasks.fetch]
cmd = "echo fetching; echo fetch >> log.txt"
[tasks.clean]
cmd = "echo clean >> log.txt"
needs = ["fetch"]
[tasks.stats]
argv = ["sh", "-c", "echo stats >> log.txt"]
needs = ["fetch"]
[tasks.report]
cmd = "echo report >> log.txt"
needs = ["clean", "stats"]
"#,
    );
    let output = run(&dir, &["--jobs", "2"]);
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", text(&output.stderr));
    assert!(stdout.contains("[fetch] fetching"), "{stdout}");
    // Not a terminal: progress comes as plain lines, no bars or escape codes.
    assert!(stdout.contains("[fetch] started"), "{stdout}");
    assert!(stdout.contains("[report] ok in "), "{stdout}");
    assert!(
        !stdout.contains('\u{1b}'),
        "escape codes in piped output: {stdout}"
    );
    let log = std::fs::read_to_string(dir.join("log.txt")).unwrap();
    let at = |name: &str| log.lines().position(|l| l == name).expect(&log);
    assert!(
        at("fetch") < at("clean") && at("fetch") < at("stats"),
        "{log}"
    );
    assert!(
        at("clean") < at("report") && at("stats") < at("report"),
        "{log}"
    );
    for task in ["fetch", "clean", "stats", "report"] {
        assert!(summary(&stdout, task).contains(" ok "), "{stdout}");
    }
    // Each task's output is also kept under .plait/.
    let kept = std::fs::read_to_string(dir.join(".plait/job.logs/fetch.stdout")).unwrap();
    assert_eq!(kept, "fetching\n");
}

#[test]
fn a_failure_stops_the_run_and_skips_what_needs_it() {
    let dir = job_folder(
        "fail-fast",
        r#"
[tasks.bad]
cmd = "exit 3"
[tasks.after]
cmd = "touch after"
needs = ["bad"]
[tasks.slow]
cmd = "sleep 2; touch slow"
[tasks.after_slow]
cmd = "touch after_slow"
needs = ["slow"]
"#,
    );
    let output = run(&dir, &["--jobs", "2"]);
    let stdout = text(&output.stdout);
    assert!(!output.status.success(), "{stdout}");
    assert!(
        summary(&stdout, "bad").contains("exit status 3"),
        "{stdout}"
    );
    assert!(summary(&stdout, "after").contains("skipped"), "{stdout}");
    assert!(
        stdout.contains("[after] skipped: needs bad, which failed"),
        "{stdout}"
    );
    // Fail fast: the independent branch was stopped too, and nothing after it started.
    assert!(summary(&stdout, "slow").contains("cancelled"), "{stdout}");
    assert!(!dir.join("after").exists() && !dir.join("after_slow").exists());
    assert!(!dir.join("slow").exists(), "the cancelled command went on");
}

#[test]
fn keep_going_runs_everything_not_downstream_of_a_failure() {
    let dir = job_folder(
        "keep-going",
        r#"
[tasks.bad]
cmd = "exit 1"
[tasks.after]
cmd = "touch after"
needs = ["bad"]
[tasks.slow]
cmd = "sleep 0.2; touch slow"
[tasks.after_slow]
cmd = "touch after_slow"
needs = ["slow"]
"#,
    );
    let output = run(&dir, &["--jobs", "2", "--keep-going"]);
    let stdout = text(&output.stdout);
    assert!(!output.status.success(), "a failure still fails the run");
    assert!(
        dir.join("slow").exists() && dir.join("after_slow").exists(),
        "{stdout}"
    );
    assert!(!dir.join("after").exists());
    assert!(
        summary(&stdout, "after").contains("needs bad, which failed"),
        "{stdout}"
    );
}

/// A job of four tasks that each hold a lock folder for a while and fail if another task
/// holds it: they succeed only if no two run at once.
fn exclusive_job(name: &str, cpus: u32) -> PathBuf {
    let mut text = String::new();
    for i in 0..4 {
        text.push_str(&format!(
            "[tasks.t{i}]\ncmd = \"mkdir held || exit 9; sleep 0.3; rmdir held\"\ncpus = {cpus}\n"
        ));
    }
    job_folder(name, &text)
}

#[test]
fn a_task_claims_its_cpus_against_jobs() {
    // Two CPUs each, two in all: one at a time.
    let dir = exclusive_job("cpus-2", 2);
    let output = run(&dir, &["--jobs", "2", "--keep-going"]);
    assert!(output.status.success(), "{}", text(&output.stdout));
    // One CPU each: two at once, and the lock says so.
    let dir = exclusive_job("cpus-1", 1);
    let output = run(&dir, &["--jobs", "2", "--keep-going"]);
    assert!(!output.status.success(), "{}", text(&output.stdout));
    assert!(text(&output.stdout).contains("exit status 9"));
}

#[test]
fn retries_timeouts_and_missing_programs() {
    let dir = job_folder(
        "retries",
        r#"
[tasks.flaky]
cmd = "if [ -f tried ]; then echo second; else touch tried; exit 1; fi"
retries = 1
[tasks.stuck]
cmd = "sleep 30"
timeout = "200ms"
[tasks.missing]
argv = ["plait-no-such-program", "--flag"]
"#,
    );
    let started = std::time::Instant::now();
    let output = run(&dir, &["--jobs", "3", "--keep-going"]);
    let stdout = text(&output.stdout);
    let stderr = text(&output.stderr);
    assert!(!output.status.success());
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    let flaky = summary(&stdout, "flaky");
    assert!(flaky.contains(" ok ") && flaky.contains(" 2 "), "{stdout}");
    assert!(summary(&stdout, "stuck").contains("timed out"), "{stdout}");
    let missing = summary(&stdout, "missing");
    assert!(
        missing.contains("cannot run `plait-no-such-program`"),
        "{stdout}"
    );
    assert!(stderr.contains("[flaky] attempt 1 of 2 failed"), "{stderr}");
}

#[test]
fn dry_run_prints_the_plan_and_runs_nothing() {
    let dir = job_folder(
        "dry-run",
        "[tasks.a]\ncmd='touch a'\n[tasks.b]\ncmd='touch b'\nneeds=['a']\n",
    );
    let output = run(&dir, &["--dry-run"]);
    let stdout = text(&output.stdout);
    assert!(output.status.success());
    assert!(
        stdout.contains("level 0:") && stdout.contains("level 1:"),
        "{stdout}"
    );
    assert!(!dir.join("a").exists() && !dir.join("b").exists());
}

fn log(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("log.txt"))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn running_again_after_a_failure_skips_what_succeeded() {
    let dir = job_folder(
        "resume",
        r#"
[tasks.a]
cmd = "echo a >> log.txt"
[tasks.b]
cmd = "test -f fixed || exit 1; echo b >> log.txt"
needs = ["a"]
"#,
    );
    assert!(!run(&dir, &[]).status.success());
    assert_eq!(log(&dir), ["a"]);
    std::fs::write(dir.join("fixed"), "").unwrap();
    let output = run(&dir, &[]);
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(summary(&stdout, "a").contains("up to date"), "{stdout}");
    assert!(stdout.contains("[a] up to date"), "{stdout}");
    assert_eq!(log(&dir), ["a", "b"], "a ran again");
    // Everything succeeded: a third run runs nothing.
    let output = run(&dir, &[]);
    assert!(output.status.success());
    assert_eq!(log(&dir), ["a", "b"]);
}

#[test]
fn a_changed_command_or_input_or_a_missing_output_runs_again() {
    let job = |cmd: &str| {
        format!("[tasks.build]\ncmd = \"{cmd}\"\ninputs = [\"src.txt\"]\noutputs = [\"out.txt\"]\n")
    };
    let dir = job_folder("inputs", &job("echo build >> log.txt; cp src.txt out.txt"));
    std::fs::write(dir.join("src.txt"), "one").unwrap();
    let runs = |dir: &Path| log(dir).len();
    assert!(run(&dir, &[]).status.success());
    assert!(run(&dir, &[]).status.success());
    assert_eq!(runs(&dir), 1, "same command and inputs: up to date");

    std::fs::write(dir.join("src.txt"), "two").unwrap();
    assert!(run(&dir, &[]).status.success());
    assert_eq!(runs(&dir), 2, "a changed input runs it again");

    std::fs::remove_file(dir.join("out.txt")).unwrap();
    assert!(run(&dir, &[]).status.success());
    assert_eq!(runs(&dir), 3, "a missing output runs it again");

    std::fs::write(
        dir.join("job.toml"),
        job("echo build >> log.txt; cp src.txt out.txt; true"),
    )
    .unwrap();
    assert!(run(&dir, &[]).status.success());
    assert_eq!(runs(&dir), 4, "a changed command runs it again");
}

#[test]
fn after_plait_is_killed_running_again_skips_what_finished() {
    let dir = job_folder(
        "killed",
        r#"
[tasks.a]
cmd = "echo a >> log.txt"
[tasks.b]
cmd = "[ -f fast ] || sleep 3; echo b >> log.txt"
needs = ["a"]
"#,
    );
    let mut plait = Command::new(env!("CARGO_BIN_EXE_plait"))
        .arg("run")
        .arg(dir.join("job.toml"))
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait until `a` is in the journal (b is then sleeping), then kill plait outright.
    let journal = dir.join(".plait/job.journal");
    let started = std::time::Instant::now();
    while !std::fs::read_to_string(&journal).is_ok_and(|j| j.contains("\"a\"")) {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "a never finished"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    plait.kill().unwrap();
    plait.wait().unwrap();

    std::fs::write(dir.join("fast"), "").unwrap();
    let output = run(&dir, &[]);
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(summary(&stdout, "a").contains("up to date"), "{stdout}");
    assert_eq!(
        log(&dir)[..2],
        ["a", "b"],
        "a ran once, b once after the restart"
    );
}

#[test]
fn the_example_pipeline_runs_and_checks_itself() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/pipeline.toml");
    let dir = job_folder("example", &std::fs::read_to_string(example).unwrap());
    let output = run(&dir, &[]);
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", text(&output.stderr));
    assert!(
        stdout.contains("[check] all 400000 events counted"),
        "{stdout}"
    );
    assert_eq!(
        stdout.matches(" events, mean value ").count(),
        10,
        "{stdout}"
    );
}

#[test]
fn what_needs_a_task_that_ran_again_runs_again() {
    let dir = job_folder(
        "rerun-downstream",
        r#"
[tasks.gen]
cmd = "echo gen >> log.txt; echo data > g.txt"
outputs = ["g.txt"]
[tasks.use]
cmd = "echo use >> log.txt; cp g.txt u.txt"
needs = ["gen"]
outputs = ["u.txt"]
"#,
    );
    assert!(run(&dir, &[]).status.success());
    assert!(run(&dir, &[]).status.success());
    assert_eq!(
        log(&dir),
        ["gen", "use"],
        "the second run was all up to date"
    );
    std::fs::remove_file(dir.join("g.txt")).unwrap();
    assert!(run(&dir, &[]).status.success());
    assert_eq!(
        log(&dir),
        ["gen", "use", "gen", "use"],
        "use ran after gen did"
    );
}

#[test]
fn an_interrupted_run_stops_its_commands_and_says_so() {
    let dir = job_folder(
        "interrupted",
        r#"
[tasks.long]
cmd = "sleep 30 & echo $! > sleeper.pid; wait"
[tasks.after]
cmd = "touch after"
needs = ["long"]
"#,
    );
    let plait = Command::new(env!("CARGO_BIN_EXE_plait"))
        .arg("run")
        .arg(dir.join("job.toml"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pidfile = dir.join("sleeper.pid");
    let started = std::time::Instant::now();
    let sleeper: u32 = loop {
        if let Ok(Ok(pid)) = std::fs::read_to_string(&pidfile).map(|p| p.trim().parse()) {
            break pid;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "long never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    // The command is in its own process group: Ctrl-C at a terminal would reach only plait.
    let status = Command::new("kill")
        .args(["-INT", &plait.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let output = plait.wait_with_output().unwrap();
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(130), "{stdout}");
    assert!(summary(&stdout, "long").contains("interrupted"), "{stdout}");
    assert!(summary(&stdout, "after").contains("skipped"), "{stdout}");
    let gone = std::time::Instant::now();
    while std::path::Path::new(&format!("/proc/{sleeper}")).exists()
        && !std::fs::read_to_string(format!("/proc/{sleeper}/stat"))
            .is_ok_and(|stat| stat.contains(") Z "))
    {
        assert!(
            gone.elapsed() < std::time::Duration::from_secs(5),
            "the interrupted command's child {sleeper} is still running"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(!dir.join("after").exists());
}

/// Whether process `pid` has ended (gone, or a zombie waiting for its new parent).
fn ended(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| {
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X']))
    })
}

/// The pid in `file`, once the command that writes it has run.
fn pid_in(file: &Path) -> u32 {
    let started = std::time::Instant::now();
    loop {
        if let Ok(Ok(pid)) = std::fs::read_to_string(file).map(|p| p.trim().parse()) {
            return pid;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "nothing wrote {}",
            file.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// Threads that keep the machine's cores busy until dropped.
struct Spinners(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Spinners {
    fn start(n: usize) -> Spinners {
        let spinning = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        for _ in 0..n {
            let spinning = std::sync::Arc::clone(&spinning);
            std::thread::spawn(move || {
                while spinning.load(std::sync::atomic::Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
            });
        }
        Spinners(spinning)
    }
}

impl Drop for Spinners {
    fn drop(&mut self) {
        self.0.store(false, std::sync::atomic::Ordering::Relaxed);
    }
}

#[test]
fn killing_plait_with_sigkill_ends_its_running_commands_within_a_second() {
    // The kill must hold on a busy machine too.
    let _busy = Spinners::start(2);
    sigkill_ends_the_command("sigkill", None);
}

/// The moment between a command's start and plait's knowing its process group (when
/// plait's record of it has only the launch), held open for the test by a debug build.
#[test]
fn killing_plait_as_it_starts_a_command_ends_the_command_within_a_second() {
    sigkill_ends_the_command("sigkill-starting", Some(5_000));
}

/// Kills `plait run` (with `pause` milliseconds between each command's start and its
/// watching, if given) once its command runs, and checks that the command and what it
/// started end within a second.
fn sigkill_ends_the_command(name: &str, pause: Option<u64>) {
    let dir = job_folder(
        name,
        r#"
[tasks.long]
cmd = "sleep 30 & echo $! > sleeper.pid; echo $$ > shell.pid; wait"
"#,
    );
    let mut command = Command::new(env!("CARGO_BIN_EXE_plait"));
    command
        .arg("run")
        .arg(dir.join("job.toml"))
        .stdout(std::process::Stdio::null());
    if let Some(pause) = pause {
        command.env("PLAIT_DEBUG_PAUSE_BEFORE_WATCH_MS", pause.to_string());
    }
    let mut plait = command.spawn().unwrap();
    let pids = [
        pid_in(&dir.join("sleeper.pid")),
        pid_in(&dir.join("shell.pid")),
    ];
    let before_kill = std::time::Instant::now();
    plait.kill().unwrap(); // SIGKILL: plait runs no code of its own after it
    plait.wait().unwrap();
    if let Some(pause) = pause {
        assert!(
            before_kill.elapsed() < std::time::Duration::from_millis(pause),
            "killed after the pause: the moment was not tested"
        );
    }
    let killed = std::time::Instant::now();
    while !pids.iter().all(|&pid| ended(pid)) {
        if killed.elapsed() > std::time::Duration::from_secs(1) {
            for pid in pids {
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            }
            panic!("the command {pids:?} outlived plait by a second");
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

const THREE: &str = r#"
[tasks.a]
cmd = "echo a >> log.txt"
[tasks.b]
cmd = "echo b >> log.txt"
needs = ["a"]
[tasks.c]
cmd = "echo c >> log.txt"
"#;

fn log_of(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("log.txt")).unwrap_or_default()
}

#[test]
fn a_target_runs_with_what_it_needs_and_nothing_else() {
    let dir = job_folder("targets", THREE);
    let output = run(&dir, &["b"]);
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", text(&output.stderr));
    assert_eq!(log_of(&dir), "a\nb\n");
    assert!(
        !stdout.lines().any(|line| line.starts_with("c ")),
        "{stdout}"
    );

    let wrong = run(&dir, &["bb"]);
    assert!(!wrong.status.success());
    let stderr = text(&wrong.stderr);
    assert!(
        stderr.contains("`bb` is not a task in this file"),
        "{stderr}"
    );
}

#[test]
fn force_reruns_the_tasks_named_and_what_needs_them_and_clean_forgets_all() {
    let dir = job_folder("force", THREE);
    assert!(run(&dir, &[]).status.success());
    std::fs::remove_file(dir.join("log.txt")).unwrap();
    // The parsed file is kept; a damaged copy is parsed over, not trusted.
    let parsed = dir.join(".plait/job.tasks");
    assert!(parsed.exists());
    std::fs::write(&parsed, "plait-tasks 1 0000\n[{\"name\":").unwrap();
    // Up to date: nothing runs.
    assert!(run(&dir, &[]).status.success());
    assert_eq!(log_of(&dir), "");
    let kept = std::fs::read_to_string(&parsed).unwrap();
    assert!(kept.contains("\"name\":\"c\""), "written anew: {kept}");
    // `a` forced: `b`, which needs it, runs again too; `c` does not.
    assert!(run(&dir, &["--force=a"]).status.success());
    assert_eq!(log_of(&dir), "a\nb\n");
    let unknown = run(&dir, &["--force=zz"]);
    assert!(text(&unknown.stderr).contains("--force names `zz`"));

    let clean = Command::new(env!("CARGO_BIN_EXE_plait"))
        .arg("clean")
        .arg(dir.join("job.toml"))
        .output()
        .unwrap();
    assert!(clean.status.success(), "{}", text(&clean.stderr));
    assert!(
        text(&clean.stdout).contains("forgot"),
        "{}",
        text(&clean.stdout)
    );
    assert!(!parsed.exists(), "clean removes the parsed file too");
    std::fs::remove_file(dir.join("log.txt")).unwrap();
    assert!(run(&dir, &[]).status.success());
    let mut ran: Vec<_> = log_of(&dir).lines().map(str::to_owned).collect();
    ran.sort();
    assert_eq!(ran, ["a", "b", "c"], "everything runs after a clean");
}

#[test]
fn a_second_run_of_a_job_refuses_or_waits_and_nothing_runs_twice() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    use std::time::{Duration, Instant};

    // The task holds the run (and its lock) until the test lets it go: no race with time.
    let dir = job_folder(
        "lock",
        r#"
[tasks.slow]
cmd = "echo run >> runs.txt; while [ ! -e gate ]; do sleep 0.01; done"
"#,
    );
    let plait = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_plait"))
            .arg("run")
            .arg(dir.join("job.toml"))
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut first = plait(&[]);
    let started = Instant::now();
    while !dir.join("runs.txt").exists() {
        assert!(started.elapsed() < Duration::from_secs(60));
        std::thread::sleep(Duration::from_millis(10));
    }
    let refused = run(&dir, &[]);
    assert!(!refused.status.success());
    let stderr = text(&refused.stderr);
    assert!(
        stderr.contains("another plait run") && stderr.contains("--wait"),
        "{stderr}"
    );
    // A job file with a mistake says so, not that the lock is held (the file is checked
    // while the lock is tried, and its errors come first), even with --wait.
    let job = std::fs::read_to_string(dir.join("job.toml")).unwrap();
    std::fs::write(dir.join("job.toml"), "[tasks.slow\n").unwrap();
    for args in [&[][..], &["--wait"][..]] {
        let broken = run(&dir, args);
        let stderr = text(&broken.stderr);
        assert!(!broken.status.success());
        assert!(
            stderr.contains("job.toml") && !stderr.contains("another plait run"),
            "{args:?}: {stderr}"
        );
    }
    std::fs::write(dir.join("job.toml"), job).unwrap();
    // A run with --wait says it waits, and does, while the first holds the lock.
    let mut waiting = plait(&["--wait"]);
    let mut said = BufReader::new(waiting.stderr.take().unwrap());
    let mut line = String::new();
    said.read_line(&mut line).unwrap();
    assert!(line.contains("waiting for another run"), "{line}");
    assert!(waiting.try_wait().unwrap().is_none(), "it waits");
    std::fs::write(dir.join("gate"), b"").unwrap();
    assert!(first.wait().unwrap().success());
    assert!(waiting.wait().unwrap().success());
    assert_eq!(
        std::fs::read_to_string(dir.join("runs.txt")).unwrap(),
        "run\n",
        "the waiting run found it up to date"
    );
}

#[test]
fn jobs_zero_is_refused() {
    let dir = job_folder("jobs-zero", THREE);
    let output = run(&dir, &["--jobs", "0"]);
    assert!(!output.status.success());
    assert!(
        text(&output.stderr).contains("--jobs"),
        "{}",
        text(&output.stderr)
    );
}

#[test]
fn the_summary_counts_by_status_fits_long_names_and_points_at_a_failed_tasks_log() {
    let dir = job_folder(
        "summary",
        r#"
[tasks.a_task_with_a_name_longer_than_twenty]
cmd = "true"
[tasks.bad]
cmd = "echo why >&2; exit 2"
[tasks.after_bad]
cmd = "true"
needs = ["bad"]
"#,
    );
    let output = run(&dir, &["--keep-going"]);
    let stdout = text(&output.stdout);
    assert!(!output.status.success());
    // Counted in the table's order (by name).
    let last = stdout.lines().last().unwrap();
    assert!(
        last.starts_with("3 tasks in ") && last.ends_with(": 1 ok, 1 skipped, 1 failed"),
        "{stdout}"
    );
    let bad = summary(&stdout, "bad");
    assert!(bad.contains("bad.stderr"), "{bad}");
    let log = bad
        .rsplit("output in ")
        .next()
        .unwrap()
        .trim_end_matches(')');
    assert_eq!(std::fs::read_to_string(log).unwrap(), "why\n");
    assert!(
        stdout.lines().all(|line| line == line.trim_end()),
        "trailing spaces:\n{stdout}"
    );
    // The columns line up after the longest name.
    let long = summary(&stdout, "a_task_with_a_name_longer_than_twenty");
    assert_eq!(long.find(" ok"), bad.find(" failed"), "{stdout}");

    let single = job_folder("summary-one", "[tasks.one]\ncmd = \"true\"\n");
    let one = text(&run(&single, &[]).stdout);
    assert!(one.contains("\n1 task in "), "{one}");
}

#[test]
fn a_job_file_with_a_mistake_makes_nothing_beside_it() {
    let dir = job_folder("mistake", "[tasks.a]\ncmd = \"true\"\nneeds = [\"nope\"]\n");
    let output = run(&dir, &[]);
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(stderr.contains("nope"), "{stderr}");
    assert!(
        !dir.join(".plait").exists(),
        "a job never run makes no state"
    );
}

#[test]
fn many_up_to_date_tasks_are_counted_not_listed() {
    let job: String = (0..60)
        .map(|i| format!("[tasks.t{i}]\ncmd = \"true\"\n"))
        .collect();
    let dir = job_folder("many-up-to-date", &job);
    assert!(run(&dir, &[]).status.success());
    let output = run(&dir, &["--force=t7"]);
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    // The one that ran is listed; the 59 that did not are counted.
    assert!(summary(&stdout, "t7").contains("ok"), "{stdout}");
    assert!(
        !stdout
            .lines()
            .any(|line| line.starts_with("t1 ") || line.starts_with("t59 ")),
        "{stdout}"
    );
    assert!(
        stdout.contains("(59 tasks up to date are not listed"),
        "{stdout}"
    );
    assert!(
        stdout
            .lines()
            .last()
            .unwrap()
            .ends_with(": 1 ok, 59 up to date")
            || stdout
                .lines()
                .last()
                .unwrap()
                .ends_with(": 59 up to date, 1 ok"),
        "{stdout}"
    );
    // All up to date: no table at all, the count says it.
    let stdout = text(&run(&dir, &[]).stdout);
    assert!(!stdout.contains("attempts"), "{stdout}");
    assert!(
        stdout.contains("(60 tasks up to date are not listed"),
        "{stdout}"
    );
}

#[test]
fn a_tasks_lines_show_while_it_runs_and_its_log_keeps_them_all() {
    let dir = job_folder(
        "live",
        r#"
[tasks.talk]
cmd = "echo first; while [ ! -e gate ]; do sleep 0.01; done; seq 1 300000"
"#,
    );
    let mut plait = Command::new(env!("CARGO_BIN_EXE_plait"))
        .arg("run")
        .arg(dir.join("job.toml"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(plait.stdout.take().unwrap()));
    let first = lines
        .by_ref()
        .map(Result::unwrap)
        .find(|line| line.starts_with("[talk] ") && !line.contains("started"))
        .unwrap();
    assert_eq!(first, "[talk] first");
    assert!(plait.try_wait().unwrap().is_none(), "shown while it runs");
    std::fs::write(dir.join("gate"), b"").unwrap();
    let rest: Vec<String> = lines.map(Result::unwrap).collect();
    assert!(plait.wait().unwrap().success());
    assert!(
        rest.iter().any(|line| line == "[talk] 300000"),
        "every line is shown"
    );
    // 2 MB of output, past the 1 MiB a command keeps in memory: the log has it all.
    let log = std::fs::read_to_string(dir.join(".plait/job.logs/talk.stdout")).unwrap();
    assert_eq!(log.lines().count(), 300_001);
    assert!(log.ends_with("299999\n300000\n"));
}

#[test]
fn retry_delay_waits_between_attempts_and_a_bad_one_is_named() {
    let dir = job_folder(
        "retry-delay",
        r#"
[tasks.flaky]
cmd = "n=$(cat count 2>/dev/null || echo 0); n=$((n+1)); echo $n > count; [ $n -ge 3 ]"
retries = 2
retry_delay = "200ms"
"#,
    );
    let started = std::time::Instant::now();
    let output = run(&dir, &[]);
    assert!(output.status.success(), "{}", text(&output.stdout));
    // At least half of 200 ms, then half of 400 ms (the jitter takes up to half off).
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
    let bad = job_folder(
        "retry-delay-bad",
        "[tasks.a]\ncmd = \"true\"\nretry_delay = \"soon\"\n",
    );
    let output = run(&bad, &[]);
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("retry_delay") && stderr.contains("line 3"),
        "{stderr}"
    );
}

#[test]
fn globs_folders_and_needs_outputs_are_inputs_and_a_missing_input_is_named() {
    let dir = job_folder(
        "inputs",
        r#"
[tasks.gen]
cmd = "cat parts/*.txt > made.txt; echo gen >> runs.txt"
inputs = ["parts/*.txt"]
outputs = ["made.txt"]
[tasks.use]
cmd = "wc -l < made.txt; echo use >> runs.txt"
needs = ["gen"]
"#,
    );
    std::fs::create_dir_all(dir.join("parts")).unwrap();
    std::fs::write(dir.join("parts/a.txt"), "a\n").unwrap();
    let runs = || std::fs::read_to_string(dir.join("runs.txt")).unwrap_or_default();
    assert!(run(&dir, &[]).status.success());
    assert_eq!(runs(), "gen\nuse\n");
    // A new file the glob matches: both run again.
    std::fs::write(dir.join("parts/b.txt"), "b\n").unwrap();
    assert!(run(&dir, &[]).status.success());
    assert_eq!(runs(), "gen\nuse\ngen\nuse\n");
    // An edit to what `gen` made: `gen` is up to date, `use` is not.
    std::fs::write(dir.join("made.txt"), "edited\n").unwrap();
    assert!(run(&dir, &[]).status.success());
    assert_eq!(runs(), "gen\nuse\ngen\nuse\nuse\n");

    let missing = job_folder(
        "inputs-missing",
        "[tasks.t]\ncmd = \"true\"\ninputs = [\"no/such.csv\"]\n",
    );
    let output = run(&missing, &[]);
    assert!(!output.status.success());
    let stdout = text(&output.stdout);
    let line = summary(&stdout, "t");
    assert!(
        line.contains("failed") && line.contains("`no/such.csv` that does not exist"),
        "{stdout}"
    );
}

#[test]
fn dry_run_says_what_would_run_and_why() {
    let dir = job_folder(
        "dry-run-why",
        r#"
[tasks.a]
cmd = "cat in.txt > a.out"
inputs = ["in.txt"]
outputs = ["a.out"]
[tasks.b]
cmd = "true"
needs = ["a"]
"#,
    );
    std::fs::write(dir.join("in.txt"), "1").unwrap();
    let said = |args: &[&str]| {
        let output = run(&dir, &[&["--dry-run"], args].concat());
        assert!(output.status.success(), "{}", text(&output.stderr));
        text(&output.stdout)
    };
    let line = |out: &str, task: &str| {
        out.lines()
            .find(|l| l.trim_start().starts_with(&format!("{task} ")))
            .unwrap_or_else(|| panic!("{out}"))
            .to_owned()
    };
    let first = said(&[]);
    assert!(
        line(&first, "a").contains("would run: it has not succeeded before"),
        "{first}"
    );
    assert!(
        line(&first, "b").contains("`a`, which it needs, runs first"),
        "{first}"
    );
    assert!(!dir.join("a.out").exists(), "nothing ran");

    assert!(run(&dir, &[]).status.success());
    let done = said(&[]);
    assert!(
        line(&done, "a").contains("up to date") && line(&done, "b").contains("up to date"),
        "{done}"
    );
    assert!(done.contains("0 would run, 2 up to date"), "{done}");

    std::fs::write(dir.join("in.txt"), "2").unwrap();
    assert!(line(&said(&[]), "a").contains("would run: an input changed"));
    std::fs::write(dir.join("in.txt"), "1").unwrap();
    std::fs::remove_file(dir.join("a.out")).unwrap();
    assert!(line(&said(&[]), "a").contains("its output `a.out` is missing"));
    assert!(run(&dir, &[]).status.success());
    let forced = said(&["--force=b"]);
    assert!(line(&forced, "a").contains("up to date"), "{forced}");
    assert!(
        line(&forced, "b").contains("would run: --force"),
        "{forced}"
    );
}

#[test]
fn a_task_array_of_a_hundred_fans_in_and_pairs_with_another() {
    let dir = job_folder(
        "arrays",
        r#"
[tasks.make]
each = { i = "0..100" }
cmd = "echo {i} > part-{i}.txt"
outputs = ["part-{i}.txt"]

[tasks.double]
each = { i = "0..100" }
cmd = "echo $(( $(cat part-{i}.txt) * 2 )) > double-{i}.txt"
needs = ["make[i={i}]"]

[tasks.sum]
cmd = "s=0; for f in double-*.txt; do s=$((s + $(cat $f))); done; echo $s"
needs = ["double"]
"#,
    );
    let output = run(&dir, &["--jobs", "4"]);
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", text(&output.stderr));
    // 2 * (0 + 1 + ... + 99)
    assert!(stdout.contains("[sum] 9900"), "{stdout}");
    assert!(
        summary(&stdout, "double[i=42]").contains(" ok "),
        "{stdout}"
    );
    assert!(stdout.contains("201 tasks in "), "{stdout}");
}

#[test]
fn arrays_that_collide_or_have_no_values_are_named() {
    let collide = job_folder(
        "arrays-collide",
        "[tasks.t]\neach = { x = [1, \"1\"] }\ncmd = \"true\"\n",
    );
    let stderr = text(&run(&collide, &[]).stderr);
    assert!(stderr.contains("two tasks are named `t[x=1]`"), "{stderr}");
    let empty = job_folder(
        "arrays-empty",
        "[tasks.t]\neach = { x = [] }\ncmd = \"true\"\n",
    );
    let stderr = text(&run(&empty, &[]).stderr);
    assert!(
        stderr.contains("each.x has no values") && stderr.contains("line 2"),
        "{stderr}"
    );
    let range = job_folder(
        "arrays-range",
        "[tasks.t]\neach = { x = \"a..b\" }\ncmd = \"true\"\n",
    );
    let stderr = text(&run(&range, &[]).stderr);
    assert!(stderr.contains("is not a range"), "{stderr}");
}

#[test]
fn names_and_statuses_are_coloured_when_asked_and_plain_otherwise() {
    let dir = job_folder(
        "color",
        "[tasks.good]\ncmd = \"echo hi\"\n[tasks.bad]\ncmd = \"exit 1\"\n",
    );
    let always = text(&run(&dir, &["--keep-going", "--color", "always"]).stdout);
    // The summary's statuses.
    assert!(always.contains("\x1b[1;31mfailed\x1b[0m  "), "{always:?}");
    assert!(always.contains("\x1b[32mok\x1b[0m  "), "{always:?}");
    // Painted statuses do not push the columns apart: without the escape codes, each
    // status starts under the header's.
    let header = always.lines().find(|l| l.starts_with("task")).unwrap();
    let column = header.find("status").unwrap();
    for (task, status) in [("good", "ok"), ("bad", "failed")] {
        let row = always
            .lines()
            .map(|line| {
                line.replace("\x1b[1;31m", "")
                    .replace("\x1b[32m", "")
                    .replace("\x1b[0m", "")
            })
            .find(|line| line.starts_with(&format!("{task} ")))
            .unwrap_or_else(|| panic!("no summary row for {task}: {always:?}"));
        assert_eq!(
            row.get(column..column + status.len()),
            Some(status),
            "{always:?}"
        );
    }
    // Each task's name in a colour of its own on its lines, and its status when it ends.
    let prefix = |task: &str| {
        let line = always
            .lines()
            .find(|line| line.contains(&format!("[{task}]\x1b[0m started")))
            .unwrap_or_else(|| panic!("no start line for {task}: {always:?}"));
        line.split(&format!("[{task}]")).next().unwrap().to_owned()
    };
    let (good, bad) = (prefix("good"), prefix("bad"));
    assert!(
        good.starts_with("\x1b[") && bad.starts_with("\x1b["),
        "{always:?}"
    );
    assert_ne!(good, bad, "two tasks, one colour: {always:?}");
    assert!(
        always.contains(&format!("{good}[good]\x1b[0m hi")),
        "{always:?}"
    );
    assert!(
        always.contains(&format!("{bad}[bad]\x1b[0m \x1b[1;31mfailed\x1b[0m: ")),
        "{always:?}"
    );
    // Not a terminal (a pipe here), or told never: no escape codes.
    for args in [&["--keep-going"][..], &["--keep-going", "--color", "never"]] {
        let plain = text(&run(&dir, args).stdout);
        assert!(!plain.contains('\x1b'), "{args:?}: {plain:?}");
    }
}
