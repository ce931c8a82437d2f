//! The queue from the shell, as a user runs it: `plait submit`, a `plait worker` in the
//! background, `plait result --wait`, the signals that stop a worker, and settings that
//! are refused by name.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{folder, text};

fn plait(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_plait"))
        .current_dir(dir)
        .args(args)
        .env_remove("PLAIT_QUEUE")
        .env_remove("PLAIT_QUEUE_PATH")
        .output()
        .unwrap()
}

fn submit(dir: &Path, args: &[&str]) -> String {
    let output = plait(dir, &[&["submit"], args].concat());
    assert!(output.status.success(), "{}", text(&output.stderr));
    text(&output.stdout).trim().to_owned()
}

fn worker(dir: &Path, args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_plait"))
        .current_dir(dir)
        .arg("worker")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn signal(child: &Child, signal: i32) {
    let pid = i32::try_from(child.id()).unwrap();
    // SAFETY: kill(2) on a child we spawned and have not reaped.
    assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
}

/// The task's state, as `plait status --json` says it.
fn state(dir: &Path, id: &str) -> serde_json::Value {
    let output = plait(dir, &["status", id, "--json"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn a_submitted_command_runs_on_a_worker_and_its_output_is_the_result() {
    let dir = folder("roundtrip");
    let id = submit(
        &dir,
        &["--", "sh", "-c", "echo made by task $PLAIT_TASK_ID"],
    );
    let waiting = plait(&dir, &["result", &id]);
    assert_eq!(waiting.status.code(), Some(3), "not finished yet");
    assert!(
        text(&waiting.stderr).contains("--wait"),
        "{}",
        text(&waiting.stderr)
    );
    let mut running = worker(&dir, &["--concurrency", "2"]);
    let result = plait(&dir, &["result", &id, "--wait", "--timeout", "60s"]);
    assert!(result.status.success(), "{}", text(&result.stderr));
    assert_eq!(text(&result.stdout), format!("made by task {id}\n"));
    let queues = plait(&dir, &["queues", "--json"]);
    let queues: serde_json::Value = serde_json::from_slice(&queues.stdout).unwrap();
    assert_eq!(queues[0]["succeeded"], 1);
    signal(&running, libc::SIGTERM);
    let status = running.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

#[test]
fn a_key_submitted_twice_adds_one_task_and_a_failing_command_ends_dead_with_why() {
    let dir = folder("dead");
    let first = submit(
        &dir,
        &[
            "--key",
            "nightly",
            "--retries",
            "0",
            "--",
            "sh",
            "-c",
            "echo no disk >&2; exit 7",
        ],
    );
    let again = plait(&dir, &["submit", "--key", "nightly", "--", "true"]);
    assert_eq!(text(&again.stdout).trim(), first);
    assert!(text(&again.stderr).contains("nothing was added"));
    let mut running = worker(&dir, &[]);
    let result = plait(&dir, &["result", &first, "--wait", "--timeout", "60s"]);
    assert_eq!(result.status.code(), Some(1));
    let said = text(&result.stderr);
    assert!(
        said.contains("dead") && said.contains("status 7") && said.contains("no disk"),
        "{said}"
    );
    let dead = text(&plait(&dir, &["dead"]).stdout);
    assert!(dead.contains(&first) && dead.contains("no disk"), "{dead}");
    let requeued = text(&plait(&dir, &["dead", "--requeue", &first]).stdout);
    assert!(
        requeued.starts_with("1 dead task(s) requeued"),
        "{requeued}"
    );
    signal(&running, libc::SIGTERM);
    running.wait().unwrap();
}

#[test]
fn sigterm_hands_back_a_task_still_running_after_the_grace_and_it_runs_again_elsewhere() {
    let dir = folder("drain");
    let id = submit(
        &dir,
        &["--", "sh", "-c", "sleep 2; echo attempt $PLAIT_ATTEMPT"],
    );
    let mut first = worker(&dir, &["--grace", "200ms"]);
    let started = Instant::now();
    while state(&dir, &id)["state"] != "running" {
        assert!(started.elapsed() < Duration::from_secs(60), "never ran");
        std::thread::sleep(Duration::from_millis(10));
    }
    signal(&first, libc::SIGTERM);
    assert!(first.wait().unwrap().success());
    let task = state(&dir, &id);
    assert_eq!(task["state"], "queued", "{task}");
    assert_eq!(
        (task["failures"].as_u64(), task["crashes"].as_u64()),
        (Some(0), Some(0))
    );
    let mut second = worker(&dir, &["--grace", "60s"]);
    let result = plait(&dir, &["result", &id, "--wait", "--timeout", "60s"]);
    assert_eq!(
        text(&result.stdout),
        "attempt 2\n",
        "{}",
        text(&result.stderr)
    );

    // A second signal stops at once, handing back what runs despite the long grace.
    let long = submit(&dir, &["--", "sleep", "30"]);
    let started = Instant::now();
    while state(&dir, &long)["state"] != "running" {
        assert!(started.elapsed() < Duration::from_secs(60), "never ran");
        std::thread::sleep(Duration::from_millis(10));
    }
    signal(&second, libc::SIGINT);
    let mut said = BufReader::new(second.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("no new tasks") {
        line.clear();
        assert_ne!(
            said.read_line(&mut line).unwrap(),
            0,
            "the worker ended without a word"
        );
    }
    let asked = Instant::now();
    signal(&second, libc::SIGINT);
    assert!(second.wait().unwrap().success());
    assert!(
        asked.elapsed() < Duration::from_secs(20),
        "{:?}",
        asked.elapsed()
    );
    assert_eq!(state(&dir, &long)["state"], "queued");
}

/// `plait workers --json`, by worker name.
fn workers(dir: &Path) -> Vec<serde_json::Value> {
    let output = plait(dir, &["workers", "--json"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn plait_workers_shows_workers_active_then_stopped_or_lost() {
    let dir = folder("workers");
    assert!(workers(&dir).is_empty());
    let id = submit(&dir, &["--", "echo", "hi"]);
    let mut stays = worker(&dir, &["--queue", "default", "--concurrency", "3"]);
    let mut dies = worker(&dir, &["--queue", "other", "--lease", "300ms"]);
    let result = plait(&dir, &["result", &id, "--wait", "--timeout", "60s"]);
    assert!(result.status.success(), "{}", text(&result.stderr));
    // Both registered (each does so before it first reserves).
    let started = Instant::now();
    while workers(&dir).len() < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "never registered"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let pid = |w: &serde_json::Value| w["pid"].as_u64().unwrap();
    let find = |all: &[serde_json::Value], child: &Child| {
        all.iter()
            .find(|w| pid(w) == u64::from(child.id()))
            .cloned()
            .unwrap()
    };
    let all = workers(&dir);
    let stays_now = find(&all, &stays);
    assert_eq!(stays_now["state"], "active", "{stays_now}");
    assert_eq!(stays_now["queues"], serde_json::json!(["default"]));
    assert_eq!(stays_now["concurrency"], 3);
    assert_eq!(find(&all, &dies)["state"], "active");

    // Killed outright, a worker says nothing: its silence past its lease says lost.
    signal(&dies, libc::SIGKILL);
    dies.wait().unwrap();
    let killed = Instant::now();
    while find(&workers(&dir), &dies)["state"] != "lost" {
        assert!(killed.elapsed() < Duration::from_secs(60), "never lost");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Stopped in order, it says so.
    signal(&stays, libc::SIGTERM);
    assert!(stays.wait().unwrap().success());
    let stopped = find(&workers(&dir), &stays);
    assert_eq!(stopped["state"], "stopped", "{stopped}");
    assert_eq!(stopped["succeeded"], 1, "{stopped}");

    let table = plait(&dir, &["workers"]);
    let table = text(&table.stdout);
    assert!(
        table.contains("stopped") && table.contains("lost"),
        "{table}"
    );
}

#[test]
fn bad_settings_are_refused_with_the_key_that_holds_them() {
    let dir = folder("settings");
    std::fs::write(dir.join("plait.toml"), "[queue]\ndurability = \"often\"\n").unwrap();
    let output = plait(&dir, &["queues"]);
    assert_eq!(output.status.code(), Some(1));
    let said = text(&output.stderr);
    assert!(
        said.contains("plait.toml [queue] durability = \"often\""),
        "{said}"
    );
    std::fs::write(dir.join("plait.toml"), "[queue]\npath = \"jobs.db\"\n").unwrap();
    let output = plait(&dir, &["submit", "--countdown", "soon", "--", "true"]);
    assert!(text(&output.stderr).contains("--countdown: \"soon\" is not a duration"));
    let output = plait(&dir, &["submit", "--queue", "has space", "--", "true"]);
    assert!(text(&output.stderr).contains("\"has space\" is not a queue name"));
    let id = submit(&dir, &["--", "true"]);
    assert_eq!(id, "1");
    assert!(dir.join("jobs.db").exists(), "plait.toml's path is used");
}

#[test]
fn a_sigterm_right_after_the_worker_says_it_serves_drains_it() {
    for round in 0..5 {
        let dir = folder(&format!("early-sigterm-{round}"));
        let mut running = worker(&dir, &[]);
        let mut said = BufReader::new(running.stderr.take().unwrap());
        let mut line = String::new();
        said.read_line(&mut line).unwrap();
        assert!(line.contains("serving"), "{line}");
        signal(&running, libc::SIGTERM);
        let status = running.wait().unwrap();
        assert!(
            status.success(),
            "round {round}: {status:?}, killed rather than drained"
        );
    }
}
