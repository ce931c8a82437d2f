//! The dashboard's HTTP API on a real SQLite queue, served on the coroutine strand and
//! asked over real sockets: what `plait serve` answers, bad input included.

use std::sync::Arc;
use std::time::{Duration, Instant};

use plait::Runtime;
use plait_queue::{Outcome, SqliteStore, Store, TaskId, WorkerInfo};
use plait_web::dashboard::{Dashboard, DashboardBuilder, NodeState, RunBoard};
use serde_json::{Value, json};

struct Served {
    rt: Runtime,
    store: Arc<dyn Store>,
    base: String,
    client: reqwest::Client,
    server: Option<plait_web::Serving>,
    folder: std::path::PathBuf,
}

impl Served {
    fn new(name: &str) -> Served {
        Served::with(name, |dashboard| dashboard)
    }

    fn with(name: &str, more: impl FnOnce(DashboardBuilder) -> DashboardBuilder) -> Served {
        let folder =
            std::env::temp_dir().join(format!("plait-dashboard-api-{name}-{}", std::process::id()));
        std::fs::remove_dir_all(&folder).ok();
        let rt = Runtime::builder().threads(2).build().unwrap();
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(folder.join("queue.db")).unwrap());
        let app = more(
            Dashboard::builder()
                .queue(store.clone())
                .runtime(rt.clone())
                .poll_every(Duration::from_millis(50)),
        )
        .build();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let server = plait_web::serve(&rt, listener, app).unwrap();
        Served {
            base: format!("http://{}", server.local_addr()),
            rt,
            store,
            client: reqwest::Client::new(),
            server: Some(server),
            folder,
        }
    }

    /// Sends `request` (built on the client); its status and its body as JSON (or text).
    fn send(
        &self,
        request: impl FnOnce(&reqwest::Client, &str) -> reqwest::RequestBuilder,
    ) -> (u16, Value) {
        let request = request(&self.client, &self.base);
        self.rt.block_on(async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let text = response.text().await.unwrap();
            (
                status,
                serde_json::from_str(&text).unwrap_or(Value::String(text)),
            )
        })
    }

    fn get(&self, path: &str) -> (u16, Value) {
        let path = path.to_owned();
        self.send(move |c, base| c.get(format!("{base}{path}")))
    }

    fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let path = path.to_owned();
        self.send(move |c, base| c.post(format!("{base}{path}")).json(&body))
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            let _ = server.stop();
        }
        std::fs::remove_dir_all(&self.folder).ok();
    }
}

fn id_of(answer: &Value) -> TaskId {
    TaskId::new(answer["id"].as_u64().expect("an id"))
}

#[test]
fn a_command_is_submitted_looked_at_and_its_result_long_polled() {
    let s = Served::new("submit");
    let (status, answer) = s.post(
        "/api/tasks",
        json!({ "command": ["echo", "hi"], "queue": "mail", "priority": 3, "key": "k1" }),
    );
    assert_eq!(status, 201, "{answer}");
    let id = id_of(&answer);
    let (status, again) = s.post(
        "/api/tasks",
        json!({ "command": ["echo", "hi"], "queue": "mail", "key": "k1" }),
    );
    assert_eq!(
        (status, id_of(&again), &again["created"]),
        (200, id, &json!(false))
    );

    let (status, task) = s.get(&format!("/api/tasks/{id}"));
    assert_eq!(status, 200);
    assert_eq!(
        (task["state"].as_str(), task["priority"].as_i64()),
        (Some("queued"), Some(3))
    );
    assert_eq!(task["payload"]["argv"], json!(["echo", "hi"]));

    // Not finished: 202 with the task as it stands, at once without `wait`.
    let (status, task) = s.get(&format!("/api/tasks/{id}/result"));
    assert_eq!((status, task["state"].as_str()), (202, Some("queued")));

    // A worker elsewhere finishes it while the request waits.
    let store = s.store.clone();
    let worker = std::thread::spawn(move || {
        let lease = loop {
            if let Some(lease) = store
                .reserve("w", &["mail"], 1, Duration::from_secs(30))
                .unwrap()
                .pop()
            {
                break lease;
            }
        };
        std::thread::sleep(Duration::from_millis(100));
        store
            .complete(&[(
                lease.id,
                lease.attempt,
                Outcome::Succeeded(br#"{"stdout":"hi\n"}"#.to_vec()),
            )])
            .unwrap();
    });
    let asked = Instant::now();
    let (status, task) = s.get(&format!("/api/tasks/{id}/result?wait=20s"));
    worker.join().unwrap();
    assert_eq!(
        (status, task["state"].as_str()),
        (200, Some("succeeded")),
        "{task}"
    );
    assert_eq!(task["result"]["stdout"], "hi\n");
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "woken, not timed out"
    );
}

#[test]
fn cancel_dead_letters_requeue_and_purge() {
    let s = Served::new("admin");
    let waiting = id_of(&s.post("/api/tasks", json!({ "command": ["true"] })).1);
    let (status, answer) = s.post(&format!("/api/tasks/{waiting}/cancel"), json!({}));
    assert_eq!(
        (status, answer["outcome"].as_str()),
        (200, Some("cancelled"))
    );
    let (_, answer) = s.post(&format!("/api/tasks/{waiting}/cancel"), json!({}));
    assert_eq!(answer["outcome"], "already_finished");
    assert_eq!(answer["state"], "cancelled");

    let poison = id_of(
        &s.post("/api/tasks", json!({ "command": ["false"], "retries": 0 }))
            .1,
    );
    let lease = s
        .store
        .reserve("w", &["default"], 1, Duration::from_secs(30))
        .unwrap()
        .remove(0);
    s.store
        .complete(&[(
            poison,
            lease.attempt,
            Outcome::Failed {
                failure: plait_queue::Failure::new(plait_queue::FailureKind::Failed, "exit 1"),
                retry: true,
            },
        )])
        .unwrap();
    let (status, dead) = s.get("/api/dead");
    assert_eq!(status, 200);
    assert_eq!(dead.as_array().unwrap().len(), 1);
    assert_eq!(id_of(&dead[0]), poison);
    assert!(
        dead[0]["reason"].as_str().unwrap().contains("exit 1"),
        "{dead}"
    );

    let (status, answer) = s.post("/api/dead/requeue", json!({ "ids": [poison.get()] }));
    assert_eq!((status, &answer["requeued"]), (200, &json!(1)));
    assert_eq!(s.get(&format!("/api/tasks/{poison}")).1["state"], "queued");

    let (status, answer) = s.post("/api/purge", json!({ "queue": "default" }));
    assert_eq!((status, &answer["purged"]), (200, &json!(1)));
    let (_, queues) = s.get("/api/queues");
    assert_eq!(queues[0]["ready"], 0, "{queues}");
}

#[test]
fn workers_show_their_heartbeat_and_current_task_and_failures_their_error() {
    let s = Served::new("workers");
    let id = id_of(&s.post("/api/tasks", json!({ "command": ["sleep", "1"] })).1);
    let flaky = id_of(
        &s.post(
            "/api/tasks",
            json!({ "command": ["flaky"], "queue": "other" }),
        )
        .1,
    );
    s.store
        .worker_seen(&WorkerInfo::new(
            "w1",
            vec!["default".into()],
            4,
            Duration::from_secs(30),
        ))
        .unwrap();
    s.store
        .reserve("w1", &["default"], 1, Duration::from_secs(30))
        .unwrap();
    let lease = s
        .store
        .reserve("w1", &["other"], 1, Duration::from_secs(30))
        .unwrap()
        .remove(0);
    s.store
        .complete(&[(
            flaky,
            lease.attempt,
            Outcome::Failed {
                failure: plait_queue::Failure::new(plait_queue::FailureKind::Failed, "boom"),
                retry: true,
            },
        )])
        .unwrap();

    let (status, workers) = s.get("/api/workers");
    assert_eq!(status, 200);
    let w1 = &workers[0];
    assert_eq!(
        (w1["name"].as_str(), w1["state"].as_str()),
        (Some("w1"), Some("active"))
    );
    assert!(w1["heartbeat_age_ms"].as_u64().unwrap() < 30_000);
    assert_eq!(id_of(&w1["current"][0]), id);
    assert_eq!(w1["current"][0]["runs"], "sleep 1");

    let (_, running) = s.get("/api/running");
    assert_eq!(id_of(&running[0]), id);
    let (_, retrying) = s.get("/api/retrying");
    assert_eq!(id_of(&retrying[0]), flaky);
    assert!(
        retrying[0]["error"].to_string().contains("boom"),
        "{retrying}"
    );
}

#[test]
fn bad_input_gets_a_clear_error_and_disturbs_nothing() {
    let s = Served::new("bad");
    let cases: Vec<(&str, u16, &str)> = vec![
        ("not json", 400, "the body"),
        (r#"{"command": []}"#, 400, "command"),
        (r#"{"command": ["x"], "colour": "red"}"#, 422, "colour"),
        (
            r#"{"command": ["x"], "countdown": "soon"}"#,
            400,
            "countdown",
        ),
        (r#"{"command": ["x"], "queue": "no spaces"}"#, 400, "queue"),
    ];
    for (body, status, mentions) in cases {
        let (got, answer) = s.send(|c, base| {
            c.post(format!("{base}/api/tasks"))
                .header("content-type", "application/json")
                .body(body)
        });
        assert_eq!(got, status, "{body}: {answer}");
        let error = answer["error"].as_str().unwrap_or_default();
        assert!(error.contains(mentions), "{body}: {error}");
    }
    let huge = json!({ "command": ["echo", "x".repeat(plait_web::dashboard::BODY_LIMIT)] });
    let (status, answer) = s.post("/api/tasks", huge);
    assert_eq!(status, 413, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("limit"),
        "{answer}"
    );
    let (status, answer) = s.send(|c, base| c.post(format!("{base}/api/tasks")).body("{}"));
    assert_eq!(status, 415, "{answer}");

    assert_eq!(s.get("/api/tasks/12345").0, 404);
    let (status, answer) = s.get("/api/tasks/twelve");
    assert_eq!(status, 400);
    assert!(answer["error"].as_str().unwrap().contains("twelve"));
    assert_eq!(s.get("/api/nope").0, 404);
    let (status, _) = s.post("/api/dead/requeue", json!({}));
    assert_eq!(status, 400);
    assert_eq!(s.post("/api/tasks/777/cancel", json!({})).0, 404);

    // Nothing was stored, and the server goes on answering.
    assert_eq!(s.get("/api/queues").1, json!([]));
}

#[test]
fn a_token_guards_every_request_but_the_pages_shell() {
    let s = Served::with("token", |d| d.token("s3cret"));
    let (status, answer) = s.get("/api/queues");
    assert_eq!(status, 401, "{answer}");
    assert_eq!(s.get("/metrics").0, 401);
    assert_eq!(s.get("/api/events").0, 401);
    let bearer = |token: &'static str| {
        s.send(move |c, base| c.get(format!("{base}/api/queues")).bearer_auth(token))
    };
    assert_eq!(bearer("wrong").0, 401);
    assert_eq!(bearer("s3cret").0, 200);
    let (status, page) = s.get("/");
    assert_eq!(status, 200);
    let page = page.as_str().unwrap();
    assert!(page.contains(r#"name="plait-token-needed" content="yes""#));
    assert!(!page.contains("s3cret"), "the token is never in the page");
    let (status, _) = s.send(|c, base| {
        c.post(format!("{base}/api/tasks"))
            .json(&json!({ "command": ["true"] }))
    });
    assert_eq!(status, 401, "no submit without the token");
    assert_eq!(s.get("/api/queues").0, 401);
}

#[test]
fn another_host_or_another_sites_page_is_refused() {
    let s = Served::new("origin");
    // DNS rebinding: a name that points here, from a page of that name.
    let (status, answer) = s.send(|c, base| {
        c.get(format!("{base}/api/queues"))
            .header("host", "evil.example")
    });
    assert_eq!(status, 403, "{answer}");
    assert_eq!(
        s.send(|c, base| c.get(format!("{base}/")).header("host", "evil.example"))
            .0,
        403
    );

    let submit = |origin: Option<&'static str>, csrf: Option<String>| {
        s.send(move |c, base| {
            let mut request = c
                .post(format!("{base}/api/tasks"))
                .json(&json!({ "command": ["true"] }));
            if let Some(origin) = origin {
                request = request.header("origin", origin);
            }
            if let Some(csrf) = csrf {
                request = request.header("x-plait-csrf", csrf);
            }
            request
        })
    };
    assert_eq!(submit(Some("http://evil.example"), None).0, 403);
    let own = Box::leak(s.base.clone().into_boxed_str());
    let (status, answer) = submit(Some(own), None);
    assert_eq!(
        status, 403,
        "a browser's request without the page's token: {answer}"
    );
    let page = s.get("/").1;
    let page = page.as_str().unwrap();
    let csrf = page
        .split(r#"name="plait-csrf" content=""#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_owned();
    assert_eq!(submit(Some(own), Some("0".repeat(32))).0, 403);
    assert_eq!(submit(Some(own), Some(csrf)).0, 201);
    assert_eq!(
        submit(None, None).0,
        201,
        "a program (curl) sends JSON, no origin"
    );
}

#[test]
fn the_live_view_sends_a_snapshot_then_each_change() {
    let s = Served::new("live");
    let url = format!("{}/api/events", s.base);
    let store = s.store.clone();
    let seen = s.rt.block_on(async move {
        use futures_util::StreamExt;
        let response = reqwest::get(url).await.unwrap();
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        let mut body = response.bytes_stream();
        let mut text = String::new();
        let mut snapshots = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while snapshots.len() < 2 {
            let chunk = tokio::time::timeout_at(deadline, body.next())
                .await
                .expect("a snapshot in time");
            text.push_str(std::str::from_utf8(&chunk.unwrap().unwrap()).unwrap());
            while let Some(end) = text.find("\n\n") {
                let block: String = text.drain(..end + 2).collect();
                if let Some(data) = block.lines().find_map(|l| l.strip_prefix("data: ")) {
                    snapshots.push(serde_json::from_str::<Value>(data).unwrap());
                    if snapshots.len() == 1 {
                        // A change after the first snapshot: the next one shows it.
                        let store = store.clone();
                        tokio::task::spawn_blocking(move || {
                            store.enqueue(&plait_queue::NewTask::new(
                                plait_queue::Payload::command(["true"]).encode(),
                            ))
                        })
                        .await
                        .unwrap()
                        .unwrap();
                    }
                }
            }
        }
        snapshots
    });
    assert_eq!(seen[0]["queue"]["queues"], json!([]));
    assert_eq!(seen[1]["queue"]["queues"][0]["ready"], 1, "{}", seen[1]);
}

#[test]
fn metrics_count_tasks_workers_durations_and_the_runtimes_strands() {
    let s = Served::new("metrics");
    s.post(
        "/api/tasks",
        json!({ "command": ["true"], "queue": "mail" }),
    );
    let mut worker = WorkerInfo::new("w1", vec!["mail".into()], 2, Duration::from_secs(30));
    worker.succeeded = 3;
    worker.durations.record(Duration::from_millis(20));
    worker.durations.record(Duration::from_millis(20));
    worker.durations.record(Duration::from_secs(2));
    s.store.worker_seen(&worker).unwrap();
    let (status, text) = s.get("/metrics");
    assert_eq!(status, 200);
    let text = text.as_str().unwrap().to_owned();
    for line in [
        r#"plait_queue_tasks{queue="mail",state="ready"} 1"#,
        r#"plait_workers{state="active"} 1"#,
        "plait_worker_slots 2",
        r#"plait_worker_attempts_total{outcome="succeeded"} 3"#,
        "plait_task_duration_seconds_count 3",
        "plait_task_duration_seconds_sum 2.04",
        r#"plait_task_duration_seconds_bucket{le="0.025"} 2"#,
        r#"plait_task_duration_seconds_bucket{le="2.5"} 3"#,
        r#"plait_runtime_workers{strand="thread"} 2"#,
        "# EOF",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} in:\n{text}");
    }
}

#[test]
fn a_run_is_shown_with_its_graph_and_its_tasks_states() {
    let board = RunBoard::new("build");
    board.add_task("fetch", "process", &[]);
    board.add_task("sum", "process", &["fetch".to_owned()]);
    let s = Served::with("run", |d| d.run(board.clone()));
    board.started("fetch");
    let (status, run) = s.get("/api/run");
    assert_eq!(status, 200);
    assert_eq!(run["job"], "build");
    assert_eq!(run["tasks"][0]["state"], "running");
    assert_eq!(run["tasks"][1]["needs"], json!(["fetch"]));
    board.finished("fetch", NodeState::Failed);
    board.finished("sum", NodeState::Skipped);
    let (_, metrics) = s.get("/metrics");
    let metrics = metrics.as_str().unwrap();
    assert!(
        metrics.contains(r#"plait_run_tasks{state="failed"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"plait_run_tasks{state="skipped"} 1"#),
        "{metrics}"
    );
    assert_eq!(Served::new("no-run").get("/api/run").0, 404);
}
