//! Helpers shared by the black-box tests (each test file uses some of them).
#![allow(dead_code)]

use std::sync::{Arc, mpsc};

use plait::sync::Event;
use plait::{Handle, Runtime};

/// Runs `f` on a thread of its own and returns its result, or fails the test naming `what`
/// if a minute passes first: a test of something that used to hang fails instead.
pub(crate) fn within_a_minute<T: Send + 'static>(
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (sent, received) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = sent.send(f());
    });
    received
        .recv_timeout(std::time::Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("{what} within a minute"))
}

/// A runtime with `threads` pool threads and as many coroutine workers.
pub(crate) fn runtime(threads: usize) -> Runtime {
    Runtime::builder()
        .threads(threads)
        .coroutine_workers(threads)
        .build()
        .unwrap()
}

/// A runtime with two threads, two coroutine workers, and the process strand as `options`
/// say.
pub(crate) fn process_runtime(options: plait::process::ProcessOptions) -> Runtime {
    Runtime::builder()
        .threads(2)
        .coroutine_workers(2)
        .processes(options)
        .build()
        .unwrap()
}

/// Occupies one pool thread until the returned sender is used (or dropped); returns once
/// the blocking task has started.
pub(crate) fn block_a_thread(rt: &Runtime) -> (mpsc::Sender<()>, Handle<()>) {
    let (release, gate) = mpsc::channel::<()>();
    let (started_tx, started) = mpsc::channel::<()>();
    let blocker = rt.spawn(move || {
        started_tx.send(()).unwrap();
        let _ = gate.recv();
    });
    started.recv().unwrap();
    (release, blocker)
}

/// Starts a thread task that spins until it is cancelled; returns once it runs.
pub(crate) fn spawn_until_cancelled(rt: &Runtime) -> Handle<()> {
    let started = Arc::new(Event::new());
    let task = {
        let started = started.clone();
        rt.spawn(move || {
            started.set();
            while !plait::task::is_cancelled() {
                std::hint::spin_loop();
            }
        })
    };
    started.wait();
    task
}

/// The processes whose parent is `parent`, with their state letter (`Z` for a zombie), read
/// from `/proc`; but for plait's keeper, which lives as long as its program (see the
/// process module's docs).
pub(crate) fn children_of(parent: u32) -> Vec<(u32, char)> {
    let mut children = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        // Gone between the listing and the read: not a child any more.
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // "pid (comm) state ppid …": comm may hold spaces and parentheses.
        let Some((name, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        if name.ends_with("(plait-keeper") {
            continue;
        }
        let mut fields = rest.split_whitespace();
        let state = fields.next().and_then(|s| s.chars().next()).unwrap_or('?');
        let ppid: u32 = fields.next().and_then(|s| s.parse().ok()).unwrap_or(0);
        if ppid == parent {
            children.push((pid, state));
        }
    }
    children
}

/// Whether process `pid` is alive (exists and is not a zombie).
pub(crate) fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// Whether process `pid` has ended: gone, or a zombie waiting to be reaped by its parent.
pub(crate) fn ended(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| {
        // The state follows the command's name in parentheses.
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X']))
    })
}

/// How long `pids` take to end, up to `limit`; kills (with SIGKILL) any still alive then,
/// so that a failing test leaves nothing behind, and names them.
pub(crate) fn time_to_end(
    pids: &[u32],
    limit: std::time::Duration,
) -> Result<std::time::Duration, Vec<u32>> {
    let start = std::time::Instant::now();
    // Nothing tells us when another program's process ends: look, often.
    while pids.iter().any(|&pid| !ended(pid)) {
        if start.elapsed() > limit {
            let alive: Vec<u32> = pids.iter().copied().filter(|&pid| !ended(pid)).collect();
            for &pid in &alive {
                if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                }
            }
            return Err(alive);
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    Ok(start.elapsed())
}

/// The keeper plait forked from process `parent`, if there is one.
pub(crate) fn keeper_of(parent: u32) -> Option<u32> {
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: u32 = entry.file_name().to_string_lossy().parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let (name, rest) = stat.rsplit_once(')')?;
            let ppid: u32 = rest.split_whitespace().nth(1)?.parse().ok()?;
            (ppid == parent && name.ends_with("(plait-keeper")).then_some(pid)
        })
}

/// Busy loops in processes of their own, to load the machine while a timing-sensitive test
/// runs: races that show only under load show in CI, not on a user's machine. They are not
/// this process's children (nothing counts them as plait's), end when dropped, and end by
/// themselves once this process is gone.
pub(crate) struct BusyLoops(Vec<u32>);

impl BusyLoops {
    pub(crate) fn start(n: usize) -> BusyLoops {
        let me = std::process::id();
        let pids = (0..n)
            .map(|_| {
                // Started by a shell that exits at once: the loop is init's child, not ours.
                let looped = format!(
                    "i=0; while :; do i=$((i+1)); if [ $i -ge 200000 ]; then i=0; \
                     kill -0 {me} 2>/dev/null || exit 0; fi; done"
                );
                let out = std::process::Command::new("sh")
                    .args([
                        "-c",
                        &format!("sh -c '{looped}' </dev/null >/dev/null 2>&1 & echo $!"),
                    ])
                    .output()
                    .expect("sh runs");
                String::from_utf8_lossy(&out.stdout)
                    .trim()
                    .parse()
                    .expect("the shell printed the loop's pid")
            })
            .collect();
        BusyLoops(pids)
    }
}

impl Drop for BusyLoops {
    fn drop(&mut self) {
        for &pid in &self.0 {
            if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
    }
}

/// Whether the tests run under valgrind (`.ci/memcheck` says so): stress tests then run a
/// few rounds, enough to exercise the code memcheck looks at.
pub(crate) fn under_memcheck() -> bool {
    std::env::var_os("PLAIT_UNDER_MEMCHECK").is_some()
}
