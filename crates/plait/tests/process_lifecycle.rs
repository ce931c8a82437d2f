//! Nothing outlives plait: every process it starts (workers, what their tasks start,
//! commands) is gone after a shutdown, after a drop, and within a second after the program
//! is killed with SIGKILL. Each test runs beside two busy loops, so that races that need
//! load show here rather than on a user's machine.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{BusyLoops, ended, keeper_of, time_to_end};
use plait::process::{self, ProcessOptions};

plait::test_worker!();

/// Starts `sleep 600` and returns its pid, leaving it running after the task returns.
#[plait::task]
// Left unwaited on purpose: the worker's end is what must end it.
#[allow(clippy::zombie_processes)]
fn leave_a_sleeper() -> u32 {
    std::process::Command::new("sleep")
        .arg("600")
        .spawn()
        .unwrap()
        .id()
}

/// Starts `sleep 600`, writes its pid to `pid_file`, and waits (as a running task).
#[plait::task]
#[allow(clippy::zombie_processes)]
fn start_a_sleeper_and_wait(pid_file: String) {
    let sleeper = std::process::Command::new("sleep")
        .arg("600")
        .spawn()
        .unwrap();
    std::fs::write(&pid_file, sleeper.id().to_string()).unwrap();
    std::thread::sleep(Duration::from_secs(600));
}

/// The pid another process writes to `file`, once it has (there is no signal to wait on
/// across processes but the file itself).
fn pid_in(file: &Path) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(pid) = std::fs::read_to_string(file)
            .ok()
            .and_then(|text| text.trim().parse().ok())
        {
            return pid;
        }
        assert!(Instant::now() < deadline, "no pid in {}", file.display());
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("plait-lifecycle-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Set for the copy of this test binary that plays the program to be killed, to a folder
/// for its files.
const ROLE: &str = "PLAIT_TEST_DOOMED_OWNER";
/// Set too when that program is to kill its own keeper first, as a careless `pkill` might.
const KILL_KEEPER: &str = "PLAIT_TEST_KILL_KEEPER";
/// Set for the owner that kills its keeper once everything runs, then ends one command.
const KILL_KEEPER_LATE: &str = "PLAIT_TEST_KILL_KEEPER_LATE";

/// In the doomed program: workers, a task's leftover, a running task's child, a running
/// command; prints every pid, then waits to be killed. A no-op in a normal test run.
#[test]
fn doomed_owner() {
    let Some(dir) = std::env::var_os(ROLE) else {
        return;
    };
    let dir = Path::new(&dir);
    let rt = common::process_runtime(ProcessOptions::new().workers(2));
    rt.start_processes().unwrap();
    let workers: Vec<u32> = common::children_of(std::process::id())
        .iter()
        .map(|(pid, _)| *pid)
        .collect();
    if std::env::var_os(KILL_KEEPER).is_some() {
        // The next process started finds it gone, starts another and tells it every group.
        kill_own_keeper();
    }
    let left = rt
        .spawn_process(leave_a_sleeper::task(), ())
        .join()
        .unwrap();
    let task_file = dir.join("task");
    let _running = rt.spawn_process(
        start_a_sleeper_and_wait::task(),
        task_file.to_string_lossy().into_owned(),
    );
    let command_file = dir.join("command");
    let _command = rt.spawn_command(process::Command::shell(format!(
        "echo $$ > {}; exec sleep 600",
        command_file.display()
    )));
    let mut pids = workers;
    pids.extend([left, pid_in(&task_file), pid_in(&command_file)]);
    if std::env::var_os(KILL_KEEPER_LATE).is_some() {
        // Nothing starts after this: the end of a group is what finds the keeper gone, and
        // the new one must learn of every group still running.
        let ending = rt.spawn_command(process::Command::new("sleep").arg("600"));
        kill_own_keeper();
        ending.cancel();
        assert!(ending.join().is_err(), "the command was cancelled");
    }
    // 0 if none runs: said, not panicked, so that the test fails at once instead of waiting
    // on a pipe the workers still hold.
    pids.push(keeper_of(std::process::id()).unwrap_or(0));
    let pids: Vec<String> = pids.iter().map(u32::to_string).collect();
    println!("pids {}", pids.join(" "));
    std::thread::sleep(Duration::from_secs(600));
}

/// Kills this program's keeper (SIGKILL) and waits until it is gone.
fn kill_own_keeper() {
    let keeper = keeper_of(std::process::id()).expect("a keeper runs");
    Command::new("kill")
        .args(["-9", &keeper.to_string()])
        .status()
        .unwrap();
    while !ended(keeper) {
        std::thread::yield_now();
    }
}

#[test]
fn sigkill_of_the_program_ends_everything_it_started_within_a_second() {
    sigkill_ends_everything("sigkill", None);
}

#[test]
fn a_keeper_killed_before_the_program_is_replaced_and_told_every_group() {
    sigkill_ends_everything("keeper-killed", Some(KILL_KEEPER));
}

#[test]
fn a_keeper_killed_while_groups_run_is_replaced_when_one_ends() {
    sigkill_ends_everything("keeper-killed-late", Some(KILL_KEEPER_LATE));
}

fn sigkill_ends_everything(name: &str, kill_keeper: Option<&str>) {
    let _busy = BusyLoops::start(2);
    let dir = scratch(name);
    let mut owner = Command::new(std::env::current_exe().unwrap());
    owner
        .args(["doomed_owner", "--exact", "--nocapture", "--test-threads=1"])
        .env(ROLE, &dir)
        .stdout(Stdio::piped());
    if let Some(variable) = kill_keeper {
        owner.env(variable, "1");
    }
    let mut owner = owner.spawn().unwrap();
    let mut lines = BufReader::new(owner.stdout.take().unwrap()).lines();
    let pids: Vec<u32> = loop {
        let line = lines.next().expect("the owner printed its pids").unwrap();
        // The harness may have begun the line ("test doomed_owner ... ").
        if let Some((_, pids)) = line.split_once("pids ") {
            break pids.split(' ').map(|pid| pid.parse().unwrap()).collect();
        }
    };
    // Two workers, a task's leftover, a running task's child, a command, the keeper.
    if pids.len() != 6 || pids.iter().any(|&pid| pid == 0 || ended(pid)) {
        owner.kill().unwrap();
        owner.wait().unwrap();
        panic!("not everything runs (0: no keeper), or not six of them: {pids:?}");
    }

    owner.kill().unwrap(); // SIGKILL: no destructor runs
    owner.wait().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    match time_to_end(&pids, Duration::from_secs(1)) {
        Ok(took) => eprintln!("everything the program started ended {took:?} after it died"),
        Err(alive) => panic!("still alive a second after the program died: {alive:?} of {pids:?}"),
    }
}

#[test]
fn shutdown_leaves_nothing_running_twenty_times_over() {
    let _busy = BusyLoops::start(2);
    for round in 0..20 {
        let rt = common::process_runtime(ProcessOptions::new().workers(2));
        let left: Vec<u32> = (0..2)
            .map(|_| {
                rt.spawn_process(leave_a_sleeper::task(), ())
                    .join()
                    .unwrap()
            })
            .collect();
        assert!(left.iter().all(|&pid| !ended(pid)), "round {round}");
        let report = rt.shutdown(Duration::from_secs(5));
        assert!(report.is_clean(), "round {round}: {report}");
        // Killed with their workers' groups before shutdown returned: no wait to speak of.
        if let Err(alive) = time_to_end(&left, Duration::from_secs(1)) {
            panic!("round {round}: {alive:?} outlived the shutdown");
        }
    }
}

#[test]
fn what_a_command_leaves_running_ends_with_it() {
    let _busy = BusyLoops::start(2);
    let rt = common::runtime(2);
    let out = rt
        .spawn_command(process::Command::shell("sleep 600 & echo $!"))
        .join()
        .unwrap();
    assert!(out.success(), "{out:?}");
    let left: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    if let Err(alive) = time_to_end(&[left], Duration::from_secs(1)) {
        panic!("{alive:?}, started in the background by a command, outlived it");
    }
}

/// Double-forks a `sleep 600` that calls `setsid`, and returns its pid: a daemon that leaves
/// its worker's process group and session.
#[plait::task]
fn daemonize_a_sleeper() -> u32 {
    let out = std::process::Command::new("sh")
        .args([
            "-c",
            "setsid sleep 600 </dev/null >/dev/null 2>&1 & echo $!",
        ])
        .output()
        .unwrap();
    let daemon: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    // Returns once the daemon leads a session of its own (`setsid` may not have run yet).
    // Read from /proc: `getsid` says 0 where the session's leader is outside this pid
    // namespace, as in many containers.
    while matches!(session_of(daemon), Some(session) if session != daemon) {
        std::thread::yield_now();
    }
    daemon
}

/// The session id of process `pid`, from `/proc/<pid>/stat`; `None` once it is gone.
fn session_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command's name, in parentheses: state, ppid, pgrp, session.
    let (_, fields) = stat.rsplit_once(')')?;
    fields.split_whitespace().nth(3)?.parse().ok()
}

/// What escapes, said in the process module's docs: a process that leaves its group with
/// `setsid` is out of reach of every group kill. This test shows it, and cleans up.
#[test]
fn a_daemon_that_calls_setsid_escapes_the_group_kill() {
    let rt = common::process_runtime(ProcessOptions::new().workers(1));
    let daemon = rt
        .spawn_process(daemonize_a_sleeper::task(), ())
        .join()
        .unwrap();
    drop(rt);
    let escaped = time_to_end(&[daemon], Duration::from_millis(300));
    // `time_to_end` killed it if it outlived the wait.
    assert!(
        escaped.is_err(),
        "a setsid daemon was caught; update the docs that say it escapes"
    );
}
