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

    // Memory: as many at once as fit, never more, however many cores.
    let waits_big = json(&advise(&[
        "--json",
        "--cores",
        "4096",
        "--",
        "sh",
        "-c",
        "x=$(head -c 100000000 /dev/zero | tr '\\0' a); sleep 0.3",
    ]));
    let at_once = waits_big["concurrency"].as_u64().unwrap();
    let peak = waits_big["peak_rss_bytes"].as_u64().unwrap();
    let available = waits_big["available_memory_bytes"].as_u64().unwrap();
    assert!(at_once * peak <= available.max(peak), "{waits_big}");
    if at_once < 1024 {
        assert_eq!(waits_big["memory_binds"], true, "{waits_big}");
    }

    // Two busy loops beside a computing shell: its waits for a core are its whole tree's,
    // set aside, so it computes; or the machine is said to be too busy to tell. Never
    // "mixed".
    let hogs: Vec<_> = (0..2)
        .map(|_| {
            Command::new("sh")
                .args(["-c", "while :; do :; done"])
                .spawn()
                .unwrap()
        })
        .collect();
    let crowded = advise(&[
        "--json",
        "--",
        "sh",
        "-c",
        &format!("sh -c '{}'", busy(0.6)),
    ]);
    for mut hog in hogs {
        hog.kill().unwrap();
        hog.wait().unwrap();
    }
    let crowded = json(&crowded);
    assert!(
        crowded["bound"] == "cpu-bound" || crowded["verdict"] == false,
        "{crowded}"
    );
    assert!(
        crowded["waited_for_cpu_s"].as_f64().unwrap() > 0.0,
        "{crowded}"
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
    // Over in a moment: no verdict, in the JSON as in the text.
    assert_eq!(report["verdict"], false, "{report}");
    assert_eq!(report["bound"], serde_json::Value::Null, "{report}");
    let text = advise(&["--", "sh", "-c", "kill -9 $$"]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("no verdict"));
}

#[test]
fn a_run_too_short_to_judge_gets_no_verdict_with_the_threshold() {
    let report = json(&advise(&["--json", "--", "true"]));
    assert_eq!(report["verdict"], false, "{report}");
    assert!(
        report["no_verdict"].as_str().unwrap().contains("20 ms"),
        "{report}"
    );
}

#[test]
fn repeated_runs_are_judged_by_their_medians_with_the_spread() {
    let report = json(&advise(&["--json", "--repeat", "3", "--", "sleep", "0.05"]));
    assert_eq!(report["runs"], 3, "{report}");
    let spread = &report["spread"]["wall_s"];
    assert!(spread["min"].as_f64().unwrap() <= report["wall_s"].as_f64().unwrap());
    assert!(spread["max"].as_f64().unwrap() >= report["wall_s"].as_f64().unwrap());
    let text = advise(&["--repeat", "2", "--", "sleep", "0.05"]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("2 runs: the medians"));
}

#[test]
fn a_cap_is_not_offered_as_a_job_count() {
    // On 64 cores a sleep's sliver of CPU would allow thousands at once: the cap binds.
    let text = advise(&["--cores", "64", "--", "sleep", "0.3"]);
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert!(stdout.contains("up to 1024 at once"), "{stdout}");
    assert!(stdout.contains("plait's cap"), "{stdout}");
    assert!(!stdout.contains("--jobs 1024"), "{stdout}");
}

#[test]
fn the_commands_output_can_be_discarded() {
    let output = advise(&[
        "--quiet-command",
        "--",
        "sh",
        "-c",
        "echo hello; echo oops >&2; sleep 0.05",
    ]);
    assert!(output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!stdout.lines().any(|line| line == "hello"), "{stdout}");
    assert!(!String::from_utf8_lossy(&output.stderr).contains("oops"));
}

#[test]
fn python_work_gets_the_python_advice_beside_plaits() {
    let here = Command::new("python3").arg("--version").output().is_ok();
    if !here {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI needs python3 for this test"
        );
        eprintln!("skipped: no python3 here");
        return;
    }
    let output = advise(&[
        "--cores",
        "2",
        "--",
        "python3",
        "-c",
        "import time\nend = time.time() + 0.4\nwhile time.time() < end: sum(range(1000))",
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("advice for this Python program"),
        "{stdout}"
    );
    assert!(stdout.contains("use processes"), "{stdout}");
    assert!(stdout.contains("free-threaded"), "{stdout}");
    assert!(
        stdout.contains("advice for the work in Rust, on plait: cpu-bound: the thread strand"),
        "{stdout}"
    );
    // Said of other work when asked.
    let asked = json(&advise(&[
        "--json", "--lang", "python", "--", "sleep", "0.1",
    ]));
    assert!(
        asked["python"][0].as_str().unwrap().contains("asyncio"),
        "{asked}"
    );
    let not_python = json(&advise(&["--json", "--", "sleep", "0.1"]));
    assert_eq!(not_python["python"], serde_json::Value::Null);
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
fn a_program_that_cannot_run_exits_as_a_shell_says() {
    let output = advise(&["--", "plait-no-such-program"]);
    assert_eq!(output.status.code(), Some(127));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("plait-no-such-program: command not found"),
        "{stderr}"
    );
    let dir = std::env::temp_dir().join(format!("plait-advise-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let script = dir.join("not-executable.sh");
    std::fs::write(&script, "#!/bin/sh\necho hi\n").unwrap();
    let output = advise(&["--", script.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(126));
    assert!(String::from_utf8_lossy(&output.stderr).contains("Permission denied"));
    let output = advise(&["--", "/no/such/dir/prog"]);
    assert_eq!(output.status.code(), Some(127));
    std::fs::remove_dir_all(dir).ok();
}
