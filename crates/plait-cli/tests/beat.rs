//! `plait beat`: several beat processes on one queue (the embedded file, or Redis) enqueue
//! each tick exactly once; a beat paused past some ticks skips them and runs the latest,
//! once; a bad schedule is named.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{folder, forget_redis_namespace, plait_in, redis_url, signal, stop_in_order, text};

const EVERY_SECOND: &str = r#"
[schedules.tick]
cron = "* * * * * *"
cmd = "echo tick"
"#;

fn beat(dir: &Path, redis: Option<&str>) -> Child {
    let url = redis_url();
    plait_in(dir, redis.map(|namespace| (url.as_str(), namespace)))
        .args(["beat", "beat.toml"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Ticks said enqueued (by this beat) and found enqueued (by another), by tick.
fn ticks(said: &str) -> (Vec<String>, Vec<String>) {
    let tick = |line: &str| {
        line.split("tick ")
            .nth(1)?
            .split(' ')
            .next()
            .map(str::to_owned)
    };
    let enqueued = said
        .lines()
        .filter(|l| l.contains(" enqueued as task "))
        .filter_map(tick)
        .collect();
    let found = said
        .lines()
        .filter(|l| l.contains(" already enqueued "))
        .filter_map(tick)
        .collect();
    (enqueued, found)
}

fn three_beats_enqueue_each_tick_once(dir: &Path, redis: Option<&str>) {
    std::fs::write(dir.join("beat.toml"), EVERY_SECOND).unwrap();
    let beats: Vec<Child> = (0..3).map(|_| beat(dir, redis)).collect();
    // Three ticks or so, with three beats at each.
    std::thread::sleep(Duration::from_millis(3500));
    let said: Vec<String> = beats.into_iter().map(stop_in_order).collect();
    let mut by_tick: HashMap<String, (usize, usize)> = HashMap::new();
    for one in &said {
        let (enqueued, found) = ticks(one);
        for tick in enqueued {
            by_tick.entry(tick).or_default().0 += 1;
        }
        for tick in found {
            by_tick.entry(tick).or_default().1 += 1;
        }
    }
    assert!(by_tick.len() >= 2, "too few ticks: {said:#?}");
    for (tick, (enqueued, _)) in &by_tick {
        assert_eq!(
            *enqueued, 1,
            "tick {tick} enqueued {enqueued} times: {said:#?}"
        );
    }
    assert!(
        by_tick.values().any(|(_, found)| *found > 0),
        "the other beats found the ticks enqueued: {said:#?}"
    );
    // And the queue holds one task per tick.
    let mut status = Command::new(env!("CARGO_BIN_EXE_plait"));
    status.current_dir(dir).args(["queues", "--json"]);
    if let Some(namespace) = redis {
        status
            .env("PLAIT_BROKER", redis_url())
            .env("PLAIT_NAMESPACE", namespace);
    }
    let output = status.output().unwrap();
    let queues: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let ready: u64 = queues
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["ready"].as_u64().unwrap())
        .sum();
    assert_eq!(ready, by_tick.len() as u64, "{queues}");
}

#[test]
fn beats_on_one_file_enqueue_each_tick_once() {
    three_beats_enqueue_each_tick_once(&folder("beat-sqlite"), None);
}

#[test]
fn beats_on_one_redis_enqueue_each_tick_once() {
    if !common::redis_answers() {
        return;
    }
    let namespace = format!("plait-test-beat-{}", std::process::id());
    three_beats_enqueue_each_tick_once(&folder("beat-redis"), Some(&namespace));
    forget_redis_namespace(&namespace);
}

#[test]
fn a_beat_paused_past_ticks_skips_them_and_runs_the_latest_once() {
    let dir = folder("beat-paused");
    std::fs::write(
        dir.join("beat.toml"),
        format!("{EVERY_SECOND}grace = \"10s\"\n"),
    )
    .unwrap();
    let mut child = beat(&dir, None);
    let (lines, said) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { return };
            if lines.send(line).is_err() {
                return;
            }
        }
    });
    let wait_for = |what: &str| -> Vec<String> {
        let mut seen = Vec::new();
        let started = Instant::now();
        loop {
            let left = Duration::from_secs(30).saturating_sub(started.elapsed());
            let line = said
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no line with {what:?}: {seen:#?}"));
            let found = line.contains(what);
            seen.push(line);
            if found {
                return seen;
            }
        }
    };
    wait_for(" enqueued as task ");
    // Paused for over three ticks: the fault, not a wait for a signal.
    signal(&child, libc::SIGSTOP);
    std::thread::sleep(Duration::from_millis(3300));
    signal(&child, libc::SIGCONT);
    let seen = wait_for(" missed tick");
    let skipped = seen.last().unwrap();
    let count: u64 = skipped
        .split(": ")
        .nth(3)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{skipped}"));
    assert!(count >= 2, "{skipped}");
    // Then the latest tick, once, at once.
    let after = wait_for(" enqueued as task ");
    assert_eq!(
        after
            .iter()
            .filter(|l| l.contains(" enqueued as task "))
            .count(),
        1,
        "{after:#?}"
    );
    signal(&child, libc::SIGTERM);
    assert!(child.wait().unwrap().success());
}

#[test]
fn a_bad_schedule_is_named_with_its_file_and_pattern() {
    let dir = folder("beat-bad");
    std::fs::write(
        dir.join("beat.toml"),
        "[schedules.nightly]\ncron = \"0 25 * * *\"\ncmd = \"true\"\n",
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_plait"))
        .current_dir(&dir)
        .args(["beat", "beat.toml"])
        .env_remove("PLAIT_BROKER")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let said = text(&output.stderr);
    assert!(
        said.contains("beat.toml") && said.contains("\"nightly\"") && said.contains("0 25 * * *"),
        "{said}"
    );
}
