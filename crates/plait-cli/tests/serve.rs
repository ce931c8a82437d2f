//! `plait serve` and `plait run --serve` as an operator starts them: where they listen,
//! who they answer, and that they stop in order.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStderr, Stdio};
use std::time::{Duration, Instant};

use common::{folder, job_folder, plait_in, signal, text};
use serde_json::{Value, json};

/// A `plait` that serves, with the address it said it listens on.
struct Serving {
    child: Child,
    stderr: BufReader<ChildStderr>,
    base: String,
}

impl Serving {
    /// Starts `command` (stderr piped) and reads its stderr up to the line that says where
    /// the dashboard is.
    #[expect(
        clippy::zombie_processes,
        reason = "the child is handed back in the Serving, whose stop waits for it"
    )]
    fn start(mut command: std::process::Command) -> Serving {
        let mut child = command
            .stderr(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        loop {
            line.clear();
            assert!(
                stderr.read_line(&mut line).unwrap() > 0,
                "it ended before serving"
            );
            if let Some(url) = line.trim().strip_prefix("plait: the dashboard is on ") {
                let base = url.trim_end_matches('/').to_owned();
                return Serving {
                    child,
                    stderr,
                    base,
                };
            }
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `GET /metrics`, as text.
    fn metrics(&self) -> String {
        reqwest::blocking::get(self.url("/metrics"))
            .unwrap()
            .text()
            .unwrap()
    }

    /// SIGTERM; checks that it ended in order; what it said after the address.
    fn stop(mut self) -> String {
        signal(&self.child, libc::SIGTERM);
        let status = self.child.wait().unwrap();
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut self.stderr, &mut rest).unwrap();
        assert!(status.success(), "{status:?}: {rest}");
        rest
    }
}

fn serve_in(dir: &std::path::Path, args: &[&str]) -> std::process::Command {
    let mut command = plait_in(dir, None);
    command.env_remove("PLAIT_TOKEN").arg("serve").args(args);
    command
}

#[test]
fn serve_answers_the_api_on_the_folders_queue_and_stops_in_order() {
    let dir = folder("serve-api");
    let served = Serving::start(serve_in(&dir, &["--bind", "127.0.0.1:0"]));
    let client = reqwest::blocking::Client::new();
    let answer: Value = client
        .post(served.url("/api/tasks"))
        .json(&json!({ "command": ["echo", "from the web"] }))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let id = answer["id"].as_u64().unwrap();
    // The same queue the shell's commands use.
    let status = plait_in(&dir, None)
        .args(["status", &id.to_string()])
        .output()
        .unwrap();
    assert!(
        text(&status.stdout).contains("echo from the web"),
        "{status:?}"
    );
    let queues: Value = client
        .get(served.url("/api/queues"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(queues[0]["ready"], 1, "{queues}");
    let page = client.get(served.url("/")).send().unwrap().text().unwrap();
    assert!(page.contains("/assets/dashboard.js"));
    let said = served.stop();
    assert!(said.contains("SIGTERM"), "{said}");
}

#[test]
fn beyond_loopback_it_refuses_to_start_without_a_token() {
    let dir = folder("serve-token");
    let refused = serve_in(&dir, &["--bind", "0.0.0.0:0"]).output().unwrap();
    assert_eq!(refused.status.code(), Some(1));
    let said = text(&refused.stderr);
    assert!(
        said.contains("0.0.0.0:0") && said.contains("PLAIT_TOKEN"),
        "{said}"
    );

    let empty = serve_in(&dir, &["--bind", "0.0.0.0:0"])
        .env("PLAIT_TOKEN", " ")
        .output()
        .unwrap();
    assert!(text(&empty.stderr).contains("empty"), "{empty:?}");

    let mut command = serve_in(&dir, &["--bind", "0.0.0.0:0"]);
    command.env("PLAIT_TOKEN", "hunter2");
    let served = Serving::start(command);
    let port = served.base.rsplit(':').next().unwrap().to_owned();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::blocking::Client::new();
    let bare = client.get(format!("{base}/api/queues")).send().unwrap();
    assert_eq!(bare.status().as_u16(), 401);
    let with = client
        .get(format!("{base}/api/queues"))
        .bearer_auth("hunter2")
        .send()
        .unwrap();
    assert_eq!(with.status().as_u16(), 200);
    let said = served.stop();
    assert!(!said.contains("hunter2"), "the token never shows: {said}");
}

#[test]
fn an_address_in_use_is_named_with_the_way_out() {
    let dir = folder("serve-in-use");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let output = serve_in(&dir, &["--bind", &addr]).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let said = text(&output.stderr);
    assert!(said.contains(&addr) && said.contains("--bind"), "{said}");
    let output = serve_in(&dir, &["--bind", "nowhere"]).output().unwrap();
    assert!(text(&output.stderr).contains("\"nowhere\""), "{output:?}");
}

#[test]
fn a_run_with_serve_shows_its_graph_and_each_tasks_state_as_it_goes() {
    let dir = job_folder(
        "run-serve",
        r#"
[tasks.gate]
cmd = "while [ ! -e go ]; do sleep 0.02; done"

[tasks.after]
cmd = "echo after"
needs = ["gate"]
"#,
    );
    let mut command = plait_in(&dir, None);
    command
        .env_remove("PLAIT_TOKEN")
        .args(["run", "job.toml", "--serve=127.0.0.1:0"]);
    let served = Serving::start(command);
    let client = reqwest::blocking::Client::new();
    let run = |client: &reqwest::blocking::Client| -> Value {
        client
            .get(served.url("/api/run"))
            .send()
            .unwrap()
            .json()
            .unwrap()
    };
    let state = |run: &Value, name: &str| -> String {
        run["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == name)
            .map(|t| t["state"].as_str().unwrap().to_owned())
            .unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = run(&client);
    while state(&seen, "gate") != "running" {
        assert!(Instant::now() < deadline, "gate never ran: {seen}");
        std::thread::sleep(Duration::from_millis(20));
        seen = run(&client);
    }
    assert_eq!(seen["job"], "job");
    assert_eq!(state(&seen, "after"), "waiting");
    let after = seen["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "after")
        .unwrap();
    assert_eq!(after["needs"], json!(["gate"]));
    let metrics = served.metrics();
    assert!(
        metrics.contains(r#"plait_run_tasks{state="running"} 1"#),
        "{metrics}"
    );

    std::fs::write(dir.join("go"), "").unwrap();
    let Serving { mut child, .. } = served;
    let status = child.wait().unwrap();
    assert!(status.success());
    let mut stdout = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut stdout).unwrap();
    assert!(stdout.contains("after"), "{stdout}");
}

#[test]
fn serve_on_a_broker_answers_from_redis() {
    if !common::redis_answers() {
        return;
    }
    let dir = folder("serve-redis");
    let namespace = format!("plait-test-serve-{}", std::process::id());
    let broker = common::redis_url();
    let mut command = plait_in(&dir, Some((&broker, &namespace)));
    command
        .env_remove("PLAIT_TOKEN")
        .args(["serve", "--bind", "127.0.0.1:0"]);
    let served = Serving::start(command);
    let client = reqwest::blocking::Client::new();
    let answer: Value = client
        .post(served.url("/api/tasks"))
        .json(&json!({ "command": ["true"], "queue": "web" }))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let id = answer["id"].as_u64().unwrap();
    // Another process on the same broker sees it.
    let status = plait_in(&dir, Some((&broker, &namespace)))
        .args(["status", &id.to_string(), "--json"])
        .output()
        .unwrap();
    let task: Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(
        (task["queue"].as_str(), task["state"].as_str()),
        (Some("web"), Some("queued"))
    );
    let metrics = served.metrics();
    assert!(
        metrics.contains(r#"plait_queue_tasks{queue="web",state="ready"} 1"#),
        "{metrics}"
    );
    served.stop();
    common::forget_redis_namespace(&namespace);
}

#[test]
fn a_task_submitted_without_a_queue_goes_to_plait_tomls_default() {
    let dir = folder("serve-default-queue");
    std::fs::write(
        dir.join("plait.toml"),
        "[queue]\ndefault_queue = \"mail\"\n",
    )
    .unwrap();
    let served = Serving::start(serve_in(&dir, &["--bind", "127.0.0.1:0"]));
    let answer: Value = reqwest::blocking::Client::new()
        .post(served.url("/api/tasks"))
        .json(&json!({ "command": ["true"] }))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let task: Value = reqwest::blocking::get(served.url(&format!("/api/tasks/{}", answer["id"])))
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(task["queue"], "mail", "{task}");
    served.stop();
}
