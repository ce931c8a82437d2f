//! `plait advise`, as a user runs it: a tight loop is CPU-bound, a sleep and a blocking read
//! from a pipe are I/O-bound, a command that computes then waits is mixed; the JSON has every
//! number; a missing program is named.
//!
//! The cases run one after another in one test: each measures CPU time against wall time,
//! which other tests running at once would distort.

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

fn advise(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_plait"))
        .arg("advise")
        .args(args)
        .output()
        .unwrap()
}

fn json(output: &Output) -> serde_json::Value {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|error| panic!("{error}: {}", String::from_utf8_lossy(&output.stdout)))
}

/// A shell loop that computes for about `seconds` (it checks the clock every 20,000 rounds).
fn busy(seconds: f64) -> String {
    format!(
        "end=$(( $(date +%s%N) + {} )); while [ $(date +%s%N) -lt $end ]; do i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; done",
        (seconds * 1e9) as u64
    )
}

#[test]
fn work_is_classified_by_what_bounds_it() {
    let cpu = json(&advise(&[
        "--json",
        "--cores",
        "4",
        "--",
        "sh",
        "-c",
        &busy(0.6),
    ]));
    assert_eq!(cpu["bound"], "cpu-bound", "{cpu}");
    assert_eq!(cpu["strand"], "thread", "{cpu}");
    assert_eq!(cpu["concurrency"], 4, "{cpu}");
    assert!(cpu["cpu_share"].as_f64().unwrap() >= 0.7, "{cpu}");

    let sleep = json(&advise(&["--json", "--", "sleep", "0.4"]));
    assert_eq!(sleep["bound"], "io-bound", "{sleep}");
    assert_eq!(sleep["strand"], "coroutine", "{sleep}");
    assert!(sleep["wall_s"].as_f64().unwrap() >= 0.4, "{sleep}");

    // `cat` blocks reading a pipe that is written to only later.
    let mut reader = Command::new(env!("CARGO_BIN_EXE_plait"))
        .args(["advise", "--json", "--", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = reader.stdin.take().unwrap();
    // The workload: data that arrives after a while.
    std::thread::sleep(Duration::from_millis(400));
    pipe.write_all(&[b'x'; 100_000]).unwrap();
    drop(pipe);
    let piped = json(&reader.wait_with_output().unwrap());
    assert_eq!(piped["bound"], "io-bound", "{piped}");
    assert!(piped["read_bytes"].as_u64().unwrap() >= 100_000, "{piped}");
    assert!(
        piped["voluntary_switches"].as_u64().unwrap() >= 1,
        "{piped}"
    );

    // A registered task with a sample argument, measured here.
    let kernel = json(&advise(&[
        "--json",
        "--task",
        "plait::matrix::tasks::kernel",
        "--args",
        "40000000",
    ]));
    assert_eq!(kernel["bound"], "cpu-bound", "{kernel}");
    assert_eq!(kernel["strand"], "thread", "{kernel}");
    let nap = json(&advise(&[
        "--json",
        "--task",
        "plait::matrix::tasks::sleep_ms",
        "--args",
        "300",
    ]));
    assert_eq!(nap["bound"], "io-bound", "{nap}");
    assert_eq!(nap["output"], "null", "{nap}");

    let script = format!("{}; sleep 0.5", busy(0.75));
    let mixed = json(&advise(&["--json", "--", "sh", "-c", &script]));
    assert_eq!(mixed["bound"], "mixed", "{mixed}");

    // A shell variable of 100 MB: the peak resident memory shows it.
    let big = json(&advise(&[
        "--json",
        "--",
        "sh",
        "-c",
        "x=$(head -c 100000000 /dev/zero | tr '\\0' a); echo ${#x} >&2",
    ]));
    assert!(
        big["peak_rss_bytes"].as_u64().unwrap() >= 100_000_000,
        "{big}"
    );
}

#[test]
fn a_command_that_fails_fails_advise_too_after_the_numbers() {
    let output = advise(&["--json", "--", "sh", "-c", "exit 3"]);
    assert_eq!(output.status.code(), Some(3));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["exit_code"], 3);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("a run that failed"), "{stderr}");
}

#[test]
fn a_command_killed_by_a_signal_exits_as_a_shell_reports_it() {
    let output = advise(&["--json", "--", "sh", "-c", "kill -9 $$"]);
    assert_eq!(output.status.code(), Some(128 + 9));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["signal"], 9, "{report}");
}

#[test]
fn zero_cores_is_refused_by_name() {
    let output = advise(&["--cores", "0", "--", "true"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--cores"), "{stderr}");
}

#[test]
fn the_report_shows_the_numbers_and_the_advice() {
    let output = advise(&["--cores", "2", "--", "sh", "-c", "echo hello; sleep 0.1"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success());
    assert!(
        stdout.starts_with("hello\n"),
        "the command's own output first: {stdout}"
    );
    for needle in [
        "wall",
        "cpu",
        "context switches",
        "peak memory",
        "advice: io-bound: the coroutine strand",
    ] {
        assert!(stdout.contains(needle), "{needle}: {stdout}");
    }
}

#[test]
fn a_registered_task_is_named_and_its_argument_checked() {
    let typo = advise(&["--task", "plait::matrix::tasks::kernal", "--args", "1"]);
    assert!(!typo.status.success());
    let stderr = String::from_utf8_lossy(&typo.stderr);
    assert!(
        stderr.contains("did you mean plait::matrix::tasks::kernel"),
        "{stderr}"
    );
    let wrong = advise(&["--task", "plait::matrix::tasks::kernel", "--args", "\"x\""]);
    assert!(!wrong.status.success());
    let stderr = String::from_utf8_lossy(&wrong.stderr);
    assert!(stderr.contains("expected u64"), "{stderr}");
    assert!(
        stderr.contains("argument type, `u64`"),
        "the type is named: {stderr}"
    );
    assert!(stderr.contains("--args as JSON"), "the way out: {stderr}");
    assert!(
        !stderr.contains("--list-tasks"),
        "the name was right: {stderr}"
    );
    let listed = advise(&["--list-tasks"]);
    assert!(String::from_utf8_lossy(&listed.stdout).contains("plait::matrix::tasks::kernel"));
}

#[test]
fn a_missing_program_is_named() {
    let output = advise(&["--", "plait-no-such-program"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot run `plait-no-such-program`"),
        "{stderr}"
    );
}
