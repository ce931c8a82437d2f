//! `plait run JOB --queue`: a job file's tasks sent to the durable queue and run by a
//! `plait worker`, as a user runs them; a driver killed with SIGKILL and started again
//! takes up the run without running a task twice.

mod common;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{job_folder, summary, text};

fn plait(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_plait"));
    command
        .current_dir(dir)
        .env_remove("PLAIT_QUEUE")
        .env_remove("PLAIT_QUEUE_PATH");
    command
}

fn run(dir: &Path, args: &[&str]) -> Output {
    plait(dir)
        .args(["run", "job.toml", "--queue"])
        .args(args)
        .output()
        .unwrap()
}

/// A `plait worker` on the folder's queue, stopped (SIGKILL) and reaped on drop.
struct Worker(Child);

impl Worker {
    fn start(dir: &Path) -> Worker {
        Worker(
            plait(dir)
                .args(["worker", "--concurrency", "2"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        )
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn lines(path: &Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |text| text.lines().count())
}

/// Every queue's counts, from `plait queues --json`.
fn succeeded(dir: &Path) -> u64 {
    let output = plait(dir).args(["queues", "--json"]).output().unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    let queues: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    queues
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["succeeded"].as_u64().unwrap())
        .sum()
}

#[test]
fn a_job_runs_on_a_queue_worker_in_order_and_a_second_run_finds_it_up_to_date() {
    let dir = job_folder(
        "order",
        r#"
[tasks.fetch]
cmd = "echo fetching; echo fetch >> log.txt"
[tasks.count]
cmd = "wc -l < log.txt; echo count >> log.txt"
needs = ["fetch"]
"#,
    );
    let _worker = Worker::start(&dir);
    let output = run(&dir, &[]);
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", text(&output.stderr));
    assert!(stdout.contains("[fetch] fetching"), "{stdout}");
    // `count` ran after `fetch`, in the job's folder, on the worker.
    assert!(stdout.contains("[count] 1"), "{stdout}");
    assert!(summary(&stdout, "count").contains("queue"), "{stdout}");
    assert_eq!(succeeded(&dir), 2);

    let again = run(&dir, &[]);
    let stdout = text(&again.stdout);
    assert!(again.status.success(), "{stdout}");
    for task in ["fetch", "count"] {
        assert!(summary(&stdout, task).contains("up to date"), "{stdout}");
    }
    assert_eq!(succeeded(&dir), 2, "nothing was sent again");
    assert_eq!(lines(&dir.join("log.txt")), 2);
}

#[test]
fn a_task_that_fails_is_retried_by_the_queue_alone() {
    let dir = job_folder(
        "retries",
        r#"
[tasks.flaky]
cmd = "n=$(cat count 2>/dev/null || echo 0); n=$((n+1)); echo $n > count; [ $n -ge 3 ]"
retries = 2
[tasks.never]
cmd = "echo attempt >> never.log; echo it broke >&2; exit 4"
retries = 1
"#,
    );
    let _worker = Worker::start(&dir);
    let output = run(&dir, &["--keep-going"]);
    let stdout = text(&output.stdout);
    assert!(!output.status.success(), "{stdout}");
    assert_eq!(
        std::fs::read_to_string(dir.join("count")).unwrap().trim(),
        "3",
        "two retries, then success: {stdout}"
    );
    // One retry on the queue, none on the graph: two runs in all.
    assert_eq!(lines(&dir.join("never.log")), 2, "{stdout}");
    let never = summary(&stdout, "never");
    assert!(
        never.contains("dead") && never.contains("it broke"),
        "{never}"
    );
}

#[test]
fn a_driver_killed_and_started_again_takes_up_its_tasks_without_running_them_twice() {
    let dir = job_folder(
        "resume",
        r#"
[tasks.slow]
cmd = "echo run >> slow.log; sleep 2"
[tasks.after]
cmd = "echo run >> after.log"
needs = ["slow"]
"#,
    );
    let _worker = Worker::start(&dir);
    let mut driver = plait(&dir)
        .args(["run", "job.toml", "--queue"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while lines(&dir.join("slow.log")) == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "slow never ran"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    driver.kill().unwrap();
    driver.wait().unwrap();

    let output = run(&dir, &[]);
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", text(&output.stderr));
    assert_eq!(lines(&dir.join("slow.log")), 1, "slow ran once: {stdout}");
    assert_eq!(lines(&dir.join("after.log")), 1, "{stdout}");
    assert_eq!(succeeded(&dir), 2);
}

#[test]
fn a_bad_queue_name_is_refused_by_name() {
    let dir = job_folder(
        "bad-queue",
        r#"
[tasks.one]
cmd = "true"
"#,
    );
    let output = run(&dir, &["no spaces"]);
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("\"no spaces\" is not a queue name"),
        "{stderr}"
    );
}
