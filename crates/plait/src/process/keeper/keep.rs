//! The keeper's own life, in the copy of the program started as one: say hello, note the
//! groups the program reports, and at the program's end kill them, then look for the
//! processes it died starting (`hunt`).

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;

use rustix::net::SendFlags;
use rustix::process::{Pid, Signal};

use super::{HELLO, hunt};

/// The keeper's life: say hello, note the groups the program reports until its end of the
/// socket (this process's standard input) closes, then kill every group still listed, and
/// find the processes the program died starting (`token` is the program's).
pub(super) fn keep(token: &[u8]) -> ! {
    // Deaf to the terminal and to a `kill` meant for the program.
    for signal in [
        libc::SIGHUP,
        libc::SIGINT,
        libc::SIGQUIT,
        libc::SIGTERM,
        libc::SIGPIPE,
        libc::SIGTSTP,
        libc::SIGTTIN,
        libc::SIGTTOU,
        libc::SIGUSR1,
        libc::SIGUSR2,
    ] {
        // SAFETY: setting a signal to be ignored installs no handler; nothing else in this
        // process has started.
        unsafe { libc::signal(signal, libc::SIG_IGN) };
    }
    // What `ps` and `/proc/PID/comm` show.
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes.
    unsafe { libc::prctl(libc::PR_SET_NAME, c"plait-keeper".as_ptr()) };
    let stdin = io::stdin();
    let _ = rustix::net::send(stdin.as_fd(), &[HELLO], SendFlags::NOSIGNAL);
    let mut input = stdin.lock();
    let mut groups: HashSet<i32> = HashSet::new();
    let mut record = [0_u8; 4];
    // Ends at the end of the stream (the program is gone) or on any error reading it.
    while input.read_exact(&mut record).is_ok() {
        match i32::from_le_bytes(record) {
            group @ 1.. => {
                groups.insert(group);
            }
            ended @ ..0 => {
                groups.remove(&ended.wrapping_neg());
            }
            0 => {}
        }
    }
    // The table, if the program gave one (standard output is /dev/null otherwise).
    let mut table = Vec::new();
    if let Ok(file) = io::stdout().as_fd().try_clone_to_owned().map(File::from) {
        let mut at = 0;
        let mut chunk = [0_u8; 4096];
        while let Ok(n @ 1..) = file.read_at(&mut chunk, at) {
            table.extend_from_slice(&chunk[..n]);
            at += n as u64;
        }
    }
    let rows: Vec<i32> = table
        .chunks_exact(4)
        .map(|row| i32::from_le_bytes([row[0], row[1], row[2], row[3]]))
        .collect();
    let listed = rows.iter().copied().filter(|&group| group > 0);
    for group in groups.into_iter().chain(listed) {
        if let Some(group) = Pid::from_raw(group) {
            let _ = rustix::process::kill_process_group(group, Signal::KILL);
        }
    }
    // Rows still holding a launch's number: processes started without their group known.
    let launches: HashSet<i32> = rows
        .iter()
        .filter(|&&row| row < 0)
        .map(|row| row.wrapping_neg())
        .collect();
    hunt::hunt(token, launches);
    std::process::exit(0)
}
