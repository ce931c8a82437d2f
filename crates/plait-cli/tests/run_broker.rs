//! `plait run JOB --broker redis://...`: a job file's tasks run by `plait worker`s on
//! other hosts (here, processes in folders of their own) through Redis; a driver killed
//! with SIGKILL and started again takes up its tasks without running one twice.

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{folder, forget_redis_namespace, job_folder, plait_in, redis_url, text};

/// The test's namespace on the test server, forgotten on drop.
struct Namespace(String);

impl Namespace {
    fn new(name: &str) -> Namespace {
        Namespace(format!("plait-test-{name}-{}", std::process::id()))
    }

    /// `plait` in `dir` on the test server, in this namespace.
    fn plait(&self, dir: &Path) -> Command {
        plait_in(dir, Some((&redis_url(), &self.0)))
    }

    /// A worker in a folder of its own, as on another host; killed on drop.
    fn worker(&self, name: &str) -> Worker {
        let host = folder(&format!("{}-{name}", self.0));
        Worker(
            self.plait(&host)
                .args(["--broker", &redis_url(), "worker", "--concurrency", "1"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        )
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        forget_redis_namespace(&self.0);
    }
}

struct Worker(Child);

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .map(|text| text.lines().map(str::to_owned).collect())
        .unwrap_or_default()
}

#[test]
fn a_jobs_tasks_run_on_workers_elsewhere_and_a_second_run_finds_them_up_to_date() {
    if !common::redis_answers() {
        return;
    }
    let namespace = Namespace::new("run-broker");
    let dir = job_folder(
        "run-broker",
        r#"
[tasks.part]
each = { n = "0..6" }
cmd = "sleep 0.2; echo $PLAIT_WORKER >> ran.log"
[tasks.total]
cmd = "wc -l < ran.log"
needs = ["part"]
"#,
    );
    let _a = namespace.worker("a");
    let _b = namespace.worker("b");
    let output = namespace
        .plait(&dir)
        .args(["run", "job.toml", "--broker", &redis_url()])
        .output()
        .unwrap();
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", text(&output.stderr));
    assert!(stdout.contains("[total] 6"), "{stdout}");
    let workers: HashSet<String> = lines(&dir.join("ran.log")).into_iter().collect();
    assert_eq!(workers.len(), 2, "both workers took tasks: {workers:?}");
    assert!(
        stdout.contains("queue"),
        "the summary says where they ran: {stdout}"
    );

    let again = namespace
        .plait(&dir)
        .args(["run", "job.toml", "--broker", &redis_url()])
        .output()
        .unwrap();
    assert!(again.status.success());
    assert!(
        text(&again.stdout).contains("7 up to date"),
        "{}",
        text(&again.stdout)
    );
    assert_eq!(lines(&dir.join("ran.log")).len(), 6);
}

#[test]
fn a_driver_killed_and_started_again_takes_up_its_tasks_on_the_broker() {
    if !common::redis_answers() {
        return;
    }
    let namespace = Namespace::new("run-broker-resume");
    let dir = job_folder(
        "run-broker-resume",
        r#"
[tasks.slow]
cmd = "echo run >> slow.log; sleep 2"
[tasks.after]
cmd = "echo run >> after.log"
needs = ["slow"]
"#,
    );
    let _worker = namespace.worker("only");
    let mut driver = namespace
        .plait(&dir)
        .args(["run", "job.toml", "--broker", &redis_url()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while lines(&dir.join("slow.log")).is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "slow never ran"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    driver.kill().unwrap();
    driver.wait().unwrap();

    let output = namespace
        .plait(&dir)
        .args(["run", "job.toml", "--broker", &redis_url()])
        .output()
        .unwrap();
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", text(&output.stderr));
    assert_eq!(
        lines(&dir.join("slow.log")).len(),
        1,
        "slow ran once: {stdout}"
    );
    assert_eq!(lines(&dir.join("after.log")).len(), 1, "{stdout}");
}
