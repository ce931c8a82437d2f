//! Helpers shared by the command's black-box tests.
#![allow(dead_code)]

use std::path::PathBuf;

/// A fresh folder of its own for one test (what an earlier run left there is removed).
pub(crate) fn folder(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("plait-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A fresh folder holding `job.toml` with `job`.
pub(crate) fn job_folder(name: &str, job: &str) -> PathBuf {
    let dir = folder(name);
    std::fs::write(dir.join("job.toml"), job).unwrap();
    dir
}

/// Output as text, invalid UTF-8 replaced.
pub(crate) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The line of `plait run`'s summary table for `task`.
pub(crate) fn summary<'a>(stdout: &'a str, task: &str) -> &'a str {
    stdout
        .lines()
        .find(|line| line.split_whitespace().next() == Some(task) && !line.starts_with('['))
        .unwrap_or_else(|| panic!("no summary line for {task}:\n{stdout}"))
}

/// The Redis server the tests use: `PLAIT_TEST_REDIS`, or the local one. A test that
/// needs it fails (never skips) when it cannot be reached.
pub(crate) fn redis_url() -> String {
    std::env::var("PLAIT_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// Deletes a test's namespace from the test Redis server.
pub(crate) fn forget_redis_namespace(namespace: &str) {
    let Ok(client) = redis::Client::open(redis_url()) else {
        return;
    };
    let Ok(mut conn) = client.get_connection() else {
        return;
    };
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{namespace}:*"))
        .query(&mut conn)
        .unwrap_or_default();
    if !keys.is_empty() {
        let _: redis::RedisResult<()> = redis::cmd("DEL").arg(keys).query(&mut conn);
    }
}

/// Whether a test that needs `what` may run. Without it, the test fails under CI (`CI`
/// set: CI installs and starts what the tests need) and elsewhere (a fresh machine with
/// Rust alone) is skipped, saying so.
pub(crate) fn needs(what: &str, available: bool) -> bool {
    if available {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "this test needs {what}, which is not here (CI is set, so it fails rather than skip)"
    );
    eprintln!("skipped: this test needs {what}, which is not here (with CI set, it fails)");
    false
}

/// Whether the test Redis server answers (see [`needs`]).
pub(crate) fn redis_answers() -> bool {
    let answers = redis::Client::open(redis_url())
        .and_then(|client| client.get_connection_with_timeout(std::time::Duration::from_secs(2)))
        .and_then(|mut conn| redis::cmd("PING").query::<String>(&mut conn))
        .is_ok();
    needs(&format!("a Redis server at {}", redis_url()), answers)
}

/// Whether `program` can be started (see [`needs`]).
pub(crate) fn program_here(program: &str) -> bool {
    let here = std::process::Command::new(program)
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok();
    needs(&format!("the `{program}` command"), here)
}

/// `plait` run in `dir`, with the queue settings of the caller's environment cleared: on
/// the folder's embedded file, or with `redis` (a broker URL and a namespace) on that.
pub(crate) fn plait_in(
    dir: &std::path::Path,
    redis: Option<(&str, &str)>,
) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_plait"));
    command
        .current_dir(dir)
        .env_remove("PLAIT_QUEUE")
        .env_remove("PLAIT_QUEUE_PATH")
        .env_remove("PLAIT_BROKER")
        .env_remove("PLAIT_NAMESPACE");
    if let Some((broker, namespace)) = redis {
        command
            .env("PLAIT_BROKER", broker)
            .env("PLAIT_NAMESPACE", namespace);
    }
    command
}

/// `plait run DIR/job.toml ARGS...`, to its end.
pub(crate) fn run_job(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_plait"))
        .arg("run")
        .arg(dir.join("job.toml"))
        .args(args)
        .output()
        .unwrap()
}

/// Sends `signal` to a child.
pub(crate) fn signal(child: &std::process::Child, signal: i32) {
    let pid = i32::try_from(child.id()).unwrap();
    // SAFETY: kill(2) on a child we spawned and have not reaped.
    assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
}

/// Stops a long-running `plait` (worker, beat) with SIGTERM; checks it ended in order and
/// returns what it said on standard error.
pub(crate) fn stop_in_order(child: std::process::Child) -> String {
    signal(&child, libc::SIGTERM);
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{output:?}");
    text(&output.stderr)
}
