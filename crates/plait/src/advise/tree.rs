//! The time a command's whole process tree waited for a core. The kernel keeps it per
//! thread (`/proc/PID/task/TID/schedstat`, its second field) and forgets it when the
//! thread is reaped, which for a grandchild is its parent's doing, not ours. So a sampler
//! walks the tree from the command's process every few milliseconds and keeps the last
//! figure seen for each thread; a thread's waits after its last sample (at most one
//! interval's worth) are missed.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// How often the tree is walked.
const INTERVAL: Duration = Duration::from_millis(5);

/// Samples the run-queue time of a process tree until [`stop`](TreeWaits::stop).
pub(super) struct TreeWaits {
    done: Arc<AtomicBool>,
    sampler: Option<JoinHandle<HashMap<(u32, u32), u64>>>,
    root: u32,
}

impl TreeWaits {
    /// Starts sampling the tree under `root` (a child of this process, running).
    pub(super) fn start(root: u32) -> TreeWaits {
        let done = Arc::new(AtomicBool::new(false));
        let stop = Arc::clone(&done);
        let sampler = std::thread::Builder::new()
            .name("plait-advise-tree".into())
            .spawn(move || {
                let mut seen = HashMap::new();
                while !stop.load(Ordering::Acquire) {
                    sample(root, &mut seen);
                    std::thread::sleep(INTERVAL);
                }
                seen
            })
            .ok();
        TreeWaits {
            done,
            sampler,
            root,
        }
    }

    /// Stops sampling, takes a last sample (the root has exited but is not yet reaped, so
    /// its threads' final figures are still there), and returns the tree's total wait.
    pub(super) fn stop(mut self) -> Duration {
        self.done.store(true, Ordering::Release);
        let mut seen = self
            .sampler
            .take()
            .and_then(|sampler| sampler.join().ok())
            .unwrap_or_default();
        sample(self.root, &mut seen);
        Duration::from_nanos(seen.values().sum())
    }
}

/// Reads the run-queue time of every thread of `pid` and of its descendants into `seen`,
/// keyed by (process, thread).
fn sample(pid: u32, seen: &mut HashMap<(u32, u32), u64>) {
    let mut todo = vec![pid];
    while let Some(pid) = todo.pop() {
        let Ok(threads) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        for thread in threads.flatten() {
            let Some(tid) = thread.file_name().to_str().and_then(|t| t.parse().ok()) else {
                continue;
            };
            let path = thread.path();
            if let Some(waited) = std::fs::read_to_string(path.join("schedstat"))
                .ok()
                .and_then(|stat| stat.split_whitespace().nth(1)?.parse::<u64>().ok())
            {
                let entry = seen.entry((pid, tid)).or_default();
                *entry = (*entry).max(waited);
            }
            if let Ok(children) = std::fs::read_to_string(path.join("children")) {
                todo.extend(
                    children
                        .split_whitespace()
                        .filter_map(|c| c.parse::<u32>().ok()),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grandchild_is_found_and_sampled() {
        // A shell whose child computes: the grandchild's threads are in the tree.
        let mut shell = std::process::Command::new("sh")
            .args([
                "-c",
                "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done & wait",
            ])
            .spawn()
            .unwrap();
        let mut seen = HashMap::new();
        let pid = shell.id();
        let mut found = 0;
        for _ in 0..200 {
            sample(pid, &mut seen);
            found = found.max(seen.keys().map(|(p, _)| *p).filter(|&p| p != pid).count());
            if found > 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        shell.wait().unwrap();
        assert!(found > 0, "the backgrounded child was never seen: {seen:?}");
    }
}
