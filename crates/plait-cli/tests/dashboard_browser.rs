//! The dashboard in a real browser (headless Chromium through chromedriver): it loads,
//! shows a task go from queued to done without a reload, and requeues a dead letter with
//! a click, which then runs. `PLAIT_SCREENSHOT=PATH` keeps a screenshot of the page (how
//! docs/dashboard.png is made).

mod common;
#[path = "common/webdriver.rs"]
mod webdriver;

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStderr, Stdio};

use common::{folder, needs, plait_in, program_here, stop_in_order};
use serde_json::{Value, json};
use webdriver::Browser;

/// The text of the queues table's `field` cell for `queue`, as a script's condition.
fn cell_is(queue: &str, field: &str, value: &str) -> String {
    format!(
        r#"const cell = document.querySelector('#queues tr[data-queue="{queue}"] td[data-field="{field}"]');
           return cell !== null && cell.textContent === "{value}";"#
    )
}

/// Starts `command` (a `plait serve` or `plait run --serve`); reads its standard error up
/// to the line that says where the dashboard is: the child, the rest of its standard
/// error, and the dashboard's address.
#[expect(
    clippy::zombie_processes,
    reason = "the child is handed back, and each test waits for it"
)]
fn started(command: &mut std::process::Command) -> (Child, BufReader<ChildStderr>, String) {
    let mut child = command.stderr(Stdio::piped()).spawn().unwrap();
    let mut said = BufReader::new(child.stderr.take().unwrap());
    loop {
        let mut line = String::new();
        assert!(
            said.read_line(&mut line).unwrap() > 0,
            "it ended before it served"
        );
        if let Some(url) = line.trim().strip_prefix("plait: the dashboard is on ") {
            let base = url.trim_end_matches('/').to_owned();
            return (child, said, base);
        }
    }
}

#[test]
fn the_dashboard_shows_tasks_move_live_and_requeues_a_dead_letter() {
    if !program_here("chromedriver") || !needs("chromium", program_here("chromium")) {
        return;
    }
    let dir = folder("dashboard-browser");
    let (mut serve, _said, base) = started(plait_in(&dir, None).env_remove("PLAIT_TOKEN").args([
        "serve",
        "--bind",
        "127.0.0.1:0",
    ]));
    let api = reqwest::blocking::Client::new();
    let submit = |body: Value| -> u64 {
        let answer: Value = api
            .post(format!("{base}/api/tasks"))
            .json(&body)
            .send()
            .unwrap()
            .json()
            .unwrap();
        answer["id"].as_u64().unwrap_or_else(|| panic!("{answer}"))
    };

    let browser = Browser::start();
    browser.open(&format!("{base}/"));
    browser.wait_until(
        "the live link",
        r#"return document.getElementById("link").textContent === "live";"#,
    );
    // Anything that reloaded the page would lose this.
    browser.run("window.plaitTestMarker = 42;", json!([]));

    submit(json!({ "command": ["echo", "hello"] }));
    browser.wait_until("a queued task", &cell_is("default", "ready", "1"));

    let worker = plait_in(&dir, None).arg("worker").spawn().unwrap();
    browser.wait_until("the task done", &cell_is("default", "succeeded", "1"));
    browser.wait_until("no task waiting", &cell_is("default", "ready", "0"));
    browser.wait_until(
        "the worker",
        r##"return document.querySelector("#workers tbody td.state-active") !== null;"##,
    );

    // Fails once (leaving a mark), then succeeds: dead at first, for want of retries.
    let flaky = submit(json!({
        "command": ["sh", "-c", "test -e mark || { touch mark; echo first time >&2; exit 1; }"],
        "retries": 0,
    }));
    let dead_row = format!(r#"#dead tbody tr[data-id="{flaky}"]"#);
    browser.wait_until(
        "the dead letter",
        &format!(r#"return document.querySelector('{dead_row}') !== null;"#),
    );
    browser.click(&format!("{dead_row} button.requeue"));
    browser.wait_until(
        "the requeued task gone from the dead letters",
        &format!(r#"return document.querySelector('{dead_row}') === null;"#),
    );
    browser.wait_until(
        "the requeued task done",
        &cell_is("default", "succeeded", "2"),
    );
    assert_eq!(
        browser.run("return window.plaitTestMarker;", json!([])),
        json!(42),
        "the page was never reloaded"
    );
    let state: Value = api
        .get(format!("{base}/api/tasks/{flaky}"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(state["state"], "succeeded", "{state}");

    let png = browser.screenshot();
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    if let Some(path) = std::env::var_os("PLAIT_SCREENSHOT") {
        std::fs::write(path, &png).unwrap();
    }
    drop(browser);
    stop_in_order(worker);
    common::signal(&serve, libc::SIGTERM);
    assert!(serve.wait().unwrap().success());
}

#[test]
fn a_served_run_draws_its_graph_and_task_stream_to_the_end() {
    if !program_here("chromedriver") || !needs("chromium", program_here("chromium")) {
        return;
    }
    let dir = common::job_folder(
        "dashboard-run",
        r#"
[tasks.fetch]
cmd = "echo fetched"

[tasks.parse]
cmd = "echo parsed"
needs = ["fetch"]

[tasks.gate]
cmd = "while [ ! -e go ]; do sleep 0.02; done"
needs = ["fetch"]

[tasks.report]
cmd = "echo done"
needs = ["parse", "gate"]
"#,
    );
    let mut run = plait_in(&dir, None)
        .env_remove("PLAIT_TOKEN")
        .args(["run", "job.toml", "--serve=127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut said = BufReader::new(run.stderr.take().unwrap());
    let base = loop {
        let mut line = String::new();
        assert!(
            said.read_line(&mut line).unwrap() > 0,
            "the run ended first"
        );
        if let Some(url) = line.trim().strip_prefix("plait: the dashboard is on ") {
            break url.to_owned();
        }
    };
    let browser = Browser::start();
    browser.open(&base);
    let node = |name: &str, state: &str| {
        format!(
            r#"return document.querySelector('#graph g.node[data-name="{name}"][data-state="{state}"]') !== null;"#
        )
    };
    browser.wait_until("gate running", &node("gate", "running"));
    browser.wait_until("fetch done", &node("fetch", "succeeded"));
    browser.wait_until("report waiting", &node("report", "waiting"));
    browser.wait_until(
        "bars in the task stream",
        r##"return document.querySelectorAll("#stream g.bar").length >= 3;"##,
    );
    if let Some(path) = std::env::var_os("PLAIT_RUN_SCREENSHOT") {
        std::fs::write(path, browser.screenshot()).unwrap();
    }
    std::fs::write(dir.join("go"), "").unwrap();
    // The page keeps the run's last state after the run (and its server) ended.
    browser.wait_until("report done", &node("report", "succeeded"));
    browser.wait_until(
        "the run finished",
        r#"return document.getElementById("run-summary").textContent.includes("finished");"#,
    );
    assert!(run.wait().unwrap().success());
}

#[test]
fn with_a_token_the_page_asks_for_it_and_then_goes_live() {
    if !program_here("chromedriver") || !needs("chromium", program_here("chromium")) {
        return;
    }
    let dir = folder("dashboard-token");
    let (mut serve, mut said, base) = started(
        plait_in(&dir, None)
            .env("PLAIT_TOKEN", "open sesame")
            .args(["serve", "--bind", "127.0.0.1:0"]),
    );
    let browser = Browser::start();
    browser.open(&base);
    browser.wait_until(
        "the token's form",
        r#"return !document.getElementById("login").hidden;"#,
    );
    browser.run(
        r#"document.getElementById("token").value = arguments[0];
           document.getElementById("login").requestSubmit();"#,
        json!(["open sesame"]),
    );
    browser.wait_until(
        "the live link",
        r#"return document.getElementById("link").textContent === "live";"#,
    );
    browser.wait_until(
        "the queue's section",
        r#"return !document.getElementById("queue").hidden;"#,
    );
    drop(browser);
    common::signal(&serve, libc::SIGTERM);
    assert!(serve.wait().unwrap().success());
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut said, &mut rest).unwrap();
    assert!(
        !rest.contains("sesame"),
        "the token is never logged: {rest}"
    );
}
