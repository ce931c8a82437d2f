//! `plait run --json` and `--dry-run --json`: what a program reading plait's output gets,
//! checked against what the run did.

mod common;

use std::process::Output;

use common::{job_folder, run_job as run, text};
use serde_json::Value;

/// Each line of standard output as JSON; a line that is not JSON fails the test.
fn events(output: &Output) -> Vec<Value> {
    let stdout = text(&output.stdout);
    stdout
        .lines()
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}\nstdout:\n{stdout}"))
        })
        .collect()
}

/// The events about `task`, as `(event, the whole object)`.
fn of<'a>(events: &'a [Value], task: &str) -> Vec<(&'a str, &'a Value)> {
    events
        .iter()
        .filter(|event| event["task"] == task)
        .map(|event| (event["event"].as_str().unwrap(), event))
        .collect()
}

const JOB: &str = r#"
[tasks.make]
cmd = "echo one; echo two >&2"
[tasks.flaky]
cmd = "echo broken >&2; exit 3"
retries = 1
needs = ["make"]
[tasks.after]
cmd = "true"
needs = ["flaky"]
[tasks.alone]
cmd = "true"
"#;

#[test]
fn each_task_says_what_happened_to_it_in_order_then_a_summary() {
    let dir = job_folder("json-events", JOB);
    let output = run(&dir, &["--json", "--keep-going"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    let events = events(&output);
    let mut last_at = 0.0;
    for event in &events {
        let at = event["at"].as_f64().unwrap();
        assert!(at >= last_at, "time went back: {event}");
        last_at = at;
    }

    let make = of(&events, "make");
    let kinds: Vec<&str> = make.iter().map(|(kind, _)| *kind).collect();
    assert_eq!(kinds.first(), Some(&"queued"), "{kinds:?}");
    assert_eq!(kinds.get(1), Some(&"started"), "{kinds:?}");
    assert_eq!(kinds.last(), Some(&"finished"), "{kinds:?}");
    let lines: Vec<(&str, &str)> = make
        .iter()
        .filter(|(kind, _)| *kind == "output")
        .map(|(_, e)| (e["stream"].as_str().unwrap(), e["line"].as_str().unwrap()))
        .collect();
    assert!(lines.contains(&("stdout", "one")), "{lines:?}");
    assert!(lines.contains(&("stderr", "two")), "{lines:?}");
    assert_eq!(make.last().unwrap().1["status"], "ok");

    // Two attempts, the first says it will be retried.
    let failed: Vec<&Value> = of(&events, "flaky")
        .into_iter()
        .filter(|(kind, _)| *kind == "failed")
        .map(|(_, e)| e)
        .collect();
    assert_eq!(failed.len(), 2, "{failed:?}");
    assert_eq!(failed[0]["retrying"], true);
    assert_eq!(failed[1]["retrying"], false);
    assert_eq!(failed[1]["attempt"], 2);
    assert_eq!(failed[1]["error"], "exited with exit status 3");

    let after = of(&events, "after");
    assert_eq!(after.len(), 1, "{after:?}");
    assert_eq!(after[0].0, "skipped");
    assert_eq!(after[0].1["reason"], "needs flaky, which failed");

    let summary = events.last().unwrap();
    assert_eq!(summary["event"], "summary", "{summary}");
    assert_eq!(summary["ok"], false);
    assert_eq!(summary["job_file_changed"], false);
    assert_eq!(
        summary["counts"],
        serde_json::json!({ "failed": 1, "ok": 2, "skipped": 1 })
    );
    let row = |task: &str| {
        summary["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|row| row["task"] == task)
            .unwrap_or_else(|| panic!("no row for {task}: {summary}"))
            .clone()
    };
    assert_eq!(row("flaky")["attempts"], 2);
    assert_eq!(row("flaky")["strand"], "process");
    assert!(
        row("flaky")["log"]
            .as_str()
            .unwrap()
            .ends_with("flaky.stderr")
    );
    assert_eq!(row("after")["strand"], Value::Null);
    assert_eq!(row("alone")["status"], "ok");
    // Nothing for people on standard output.
    assert_eq!(events.iter().filter(|e| e["event"] == "summary").count(), 1);

    // Again: what succeeded is up to date, said as such, and not started.
    let again = run(&dir, &["--json", "--keep-going"]);
    let events = self::events(&again);
    let alone = of(&events, "alone");
    assert!(
        alone.iter().all(|(kind, _)| *kind != "started"),
        "{alone:?}"
    );
    assert_eq!(alone.last().unwrap().1["status"], "up to date");
}

#[test]
fn a_dry_run_says_its_plan_as_one_json_object() {
    let dir = job_folder("json-dry-run", JOB);
    assert!(run(&dir, &["alone"]).status.success());
    let output = run(&dir, &["--dry-run", "--json"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let plan: Value = serde_json::from_slice(&output.stdout).unwrap();
    let task = |name: &str| {
        plan["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|task| task["name"] == name)
            .unwrap_or_else(|| panic!("no {name}: {plan}"))
            .clone()
    };
    assert_eq!(task("alone")["would"], "skip");
    assert_eq!(task("make")["would"], "run");
    assert_eq!(task("make")["level"], 0);
    assert_eq!(task("after")["level"], 2);
    assert_eq!(task("after")["why"], "`flaky`, which it needs, runs first");
    assert_eq!(task("flaky")["cmd"], "echo broken >&2; exit 3");
    assert_eq!(plan["would_run"], 3);
    assert_eq!(plan["up_to_date"], 1);
    // Nothing ran.
    assert!(!dir.join(".plait/job.logs/make.stdout").exists());
}

#[test]
fn a_job_file_changed_while_it_runs_is_used_as_read_and_said() {
    // The first task adds a task to the job file; the run goes on with the file it read.
    let dir = job_folder(
        "json-changed",
        r#"
[tasks.edit]
cmd = "printf '[tasks.added]\ncmd = \"touch added\"\n' >> job.toml"
[tasks.next]
cmd = "touch next"
needs = ["edit"]
"#,
    );
    let output = run(&dir, &["--json"]);
    let stderr = text(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("job.toml changed while this run ran; the run used it as it was"),
        "{stderr}"
    );
    assert_eq!(events(&output).last().unwrap()["job_file_changed"], true);
    assert!(dir.join("next").exists());
    assert!(!dir.join("added").exists(), "the run read the file again");

    // Unchanged: no word.
    let again = run(&dir, &[]);
    assert!(again.status.success());
    assert!(
        !text(&again.stderr).contains("changed"),
        "{}",
        text(&again.stderr)
    );
    assert!(dir.join("added").exists());
}
