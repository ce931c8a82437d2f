//! The keeper's search for processes the program died starting.
//!
//! A launch's row holds its number (negated) until the started process's group id is
//! written over it; a program killed in between leaves the number, and a process that may
//! be running with no row naming its group. Every launched process carries
//! `PLAIT_LAUNCH=TOKEN-NUMBER` in its environment from its first instruction (the variable
//! is in what `exec` is given), and leads a group of its own from before that: so the
//! keeper reads the environment of each process it may see, and kills the group of each
//! one that holds this program's token and a number still in a row.
//!
//! A process found before its `exec` still shows the program's own environment, so the
//! search goes on, a few times a second, until every such number is found or
//! [`HUNT_FOR`] has passed (a launch killed before its process existed is never found).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};

use super::LAUNCH_ENV;

/// How long the keeper looks for a process not found yet.
const HUNT_FOR: Duration = Duration::from_secs(2);

/// How long between two looks.
const HUNT_EVERY: Duration = Duration::from_millis(20);

/// Kills the group of each process launched (by the program of `token`) with one of
/// `launches`, looking until each is found or [`HUNT_FOR`] has passed.
pub(super) fn hunt(token: &[u8], mut launches: HashSet<i32>) {
    let until = Instant::now() + HUNT_FOR;
    while !launches.is_empty() {
        for (pid, number) in launched(token) {
            if launches.remove(&number) {
                let _ = rustix::process::kill_process_group(pid, Signal::KILL);
            }
        }
        if launches.is_empty() || Instant::now() >= until {
            return;
        }
        std::thread::sleep(HUNT_EVERY);
    }
}

/// Each process on the machine (that this one may read) launched by the program of
/// `token`, with its launch's number.
fn launched(token: &[u8]) -> Vec<(Pid, i32)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| {
            let pid: i32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
            let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
            Some((Pid::from_raw(pid)?, launch_in(&environ, token)?))
        })
        .collect()
}

/// The launch number in an environment block (`NAME=value`, each ended by a NUL) that
/// holds this program's `token`.
fn launch_in(environ: &[u8], token: &[u8]) -> Option<i32> {
    environ.split(|&byte| byte == 0).find_map(|variable| {
        let value = variable
            .strip_prefix(LAUNCH_ENV.as_bytes())?
            .strip_prefix(b"=")?;
        let (theirs, number) = value.split_at(value.iter().rposition(|&byte| byte == b'-')?);
        if theirs != token {
            return None;
        }
        std::str::from_utf8(&number[1..]).ok()?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_launch_is_known_by_its_token_and_number_only() {
        let environ = b"HOME=/root\0PLAIT_LAUNCH=1f.2a-17\0PATH=/bin\0";
        assert_eq!(launch_in(environ, b"1f.2a"), Some(17));
        assert_eq!(launch_in(environ, b"1f.2b"), None, "another program's");
        assert_eq!(launch_in(b"PLAIT_LAUNCHED=1f.2a-17\0", b"1f.2a"), None);
        assert_eq!(launch_in(b"PLAIT_LAUNCH=1f.2a-x\0", b"1f.2a"), None);
        assert_eq!(launch_in(b"PLAIT_LAUNCH=1f.2a\0", b"1f.2a"), None);
        assert_eq!(launch_in(b"", b"1f.2a"), None);
    }

    #[test]
    fn a_started_process_is_found_by_its_launch_and_its_group_killed() {
        use std::os::unix::process::CommandExt;
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .env(LAUNCH_ENV, "test.token-4242")
            .process_group(0)
            .spawn()
            .unwrap();
        let started = Instant::now();
        hunt(b"test.token", HashSet::from([4242]));
        let status = child.wait().unwrap();
        assert!(
            started.elapsed() < HUNT_FOR,
            "found on a look, not given up"
        );
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGKILL));
    }
}
