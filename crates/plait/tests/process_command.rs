//! Commands as tasks: output, status, environment, directory, input, bounds, and a time
//! limit or cancellation that takes the whole process group down.

mod common;

use std::time::{Duration, Instant};

use common::alive;
use plait::process::{Command, run_command};
use plait::{Error, Runtime};

plait::test_worker!();

fn runtime() -> Runtime {
    common::runtime(2)
}

/// plait finds a program on `PATH` itself (cheaper than the C library's search in the
/// child); the program still sees the name it was given, and a `PATH` the command sets
/// is the one searched.
#[test]
fn a_program_found_on_path_keeps_its_name_and_the_commands_own_path_decides() {
    let rt = runtime();
    let out = rt
        .spawn_command(Command::new("cat").arg("/proc/self/cmdline"))
        .join()
        .unwrap();
    assert_eq!(out.stdout, b"cat\0/proc/self/cmdline\0");

    let dir = std::env::temp_dir().join(format!("plait-path-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // A link, not a script written here: a file just written can be "busy" to exec
    // while another test's child, started mid-write, still holds it.
    std::os::unix::fs::symlink("/bin/echo", dir.join("plait-says-hi")).unwrap();
    let out = rt
        .spawn_command(
            Command::new("plait-says-hi")
                .arg("hi")
                .env("PATH", dir.display().to_string()),
        )
        .join()
        .unwrap();
    assert_eq!(out.stdout, b"hi\n", "{out:?}");
    let missing = rt.spawn_command(Command::new("plait-says-hi")).join();
    assert!(
        missing.is_err(),
        "found without the PATH that names it: {missing:?}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn output_status_environment_directory_and_input() {
    let rt = runtime();
    let dir = std::env::temp_dir();
    let out = rt
        .spawn_command(
            Command::shell("echo \"$GREETING from $(pwd)\"; cat; echo err >&2; exit 4")
                .env("GREETING", "hello")
                .cwd(&dir)
                .stdin("piped in\n"),
        )
        .join()
        .unwrap();
    let expected = format!(
        "hello from {}\npiped in\n",
        dir.canonicalize().unwrap().display()
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), expected);
    assert_eq!(out.stderr, b"err\n");
    assert_eq!(
        (out.code, out.signal, out.timed_out),
        (Some(4), None, false)
    );
    assert!(!out.success());
    assert!(
        rt.spawn_command(Command::new("true"))
            .join()
            .unwrap()
            .success()
    );
}

#[test]
fn output_read_before_a_leftover_process_holds_the_pipe_is_kept() {
    // `setsid` takes the sleeper out of the command's group, so it outlives the command
    // with its standard output open: the capture gives up after a grace, keeping what it
    // read.
    let rt = runtime();
    let left = std::env::temp_dir().join(format!("plait-leftover-{}", std::process::id()));
    let _ = std::fs::remove_file(&left);
    // The command ends only once the sleeper has left its group (it made the file then).
    let line = format!(
        "echo before; setsid sh -c 'touch {0}; exec sleep 3' & while [ ! -e {0} ]; do sleep 0.01; done",
        left.display()
    );
    let started = Instant::now();
    let out = rt.spawn_command(Command::shell(line)).join().unwrap();
    let _ = std::fs::remove_file(&left);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "before\n");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "did not wait for the leftover: {:?}",
        started.elapsed()
    );
}

#[test]
fn a_missing_program_fails_the_task_with_its_name() {
    let rt = runtime();
    let err = rt
        .spawn_command(Command::new("plait-no-such-program").arg("x"))
        .join()
        .unwrap_err();
    assert!(matches!(err, Error::Failed(_)), "{err}");
    assert!(
        err.to_string()
            .contains("cannot run `plait-no-such-program`"),
        "{err}"
    );
    let err = rt
        .spawn_command(Command::new("true").cwd("/no/such/dir"))
        .join()
        .unwrap_err();
    assert!(err.to_string().contains("/no/such/dir"), "{err}");
}

#[test]
fn output_beyond_the_limit_is_counted_not_kept() {
    let rt = runtime();
    let out = rt
        .spawn_command(Command::shell("head -c 100000 /dev/zero").output_limit(1000))
        .join()
        .unwrap();
    assert_eq!((out.stdout.len(), out.stdout_dropped), (1000, 99_000));
    assert!(out.success());
}

/// The pid a command's background child wrote to `file`, once it has.
fn read_pid(file: &std::path::Path) -> u32 {
    let started = Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(file)
            && let Ok(pid) = text.trim().parse()
        {
            return pid;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no pid in {file:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn wait_dead(pid: u32) {
    let started = Instant::now();
    while alive(pid) {
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "process {pid} outlived its command"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_time_limit_kills_the_whole_process_group() {
    let rt = runtime();
    let pidfile = std::env::temp_dir().join(format!("plait-timeout-{}", std::process::id()));
    let started = Instant::now();
    let out = rt
        .spawn_command(
            Command::shell(format!(
                "sleep 30 & echo $! > {}; echo started; wait",
                pidfile.display()
            ))
            .timeout(Duration::from_millis(300)),
        )
        .join()
        .unwrap();
    assert!(out.timed_out && !out.success(), "{out:?}");
    assert_eq!(out.signal, Some(9));
    assert_eq!(out.stdout, b"started\n");
    assert!(started.elapsed() < Duration::from_secs(5));
    wait_dead(read_pid(&pidfile));
    let _ = std::fs::remove_file(pidfile);
}

#[test]
fn cancelling_a_command_kills_its_process_group() {
    let rt = runtime();
    let pidfile = std::env::temp_dir().join(format!("plait-cancel-{}", std::process::id()));
    let handle = rt.spawn_command(Command::shell(format!(
        "sleep 30 & echo $! > {}; wait",
        pidfile.display()
    )));
    let sleeper = read_pid(&pidfile);
    assert!(alive(sleeper));
    assert!(handle.cancel());
    assert!(handle.join().unwrap_err().is_cancelled());
    wait_dead(sleeper);
    let _ = std::fs::remove_file(pidfile);
}

#[test]
fn the_command_task_runs_in_a_worker_and_by_name() {
    let rt = runtime();
    let out = rt
        .spawn_process(
            run_command::task(),
            Command::new("echo").arg("from a worker"),
        )
        .join()
        .unwrap()
        .unwrap();
    assert_eq!(out.stdout, b"from a worker\n");
    let args = plait::process::EncodedArgs::encode(&Command::new("printf").arg("by name")).unwrap();
    let encoded = rt
        .spawn_process_by_name("plait::process::command::run_command", args)
        .join()
        .unwrap();
    let out: Result<plait::process::CommandOutput, plait::process::CommandError> =
        postcard::from_bytes(&encoded).unwrap();
    assert_eq!(out.unwrap().stdout, b"by name");
}

#[test]
fn lines_reach_the_sink_while_the_command_runs_and_past_the_output_limit() {
    let rt = runtime();
    let (tx, rx) = std::sync::mpsc::channel::<(plait::process::Stream, String)>();
    let tx = std::sync::Mutex::new(tx);
    // `first`, then a wait the command leaves only when told (a file appears).
    let gate = std::env::temp_dir().join(format!("plait-lines-gate-{}", std::process::id()));
    let _ = std::fs::remove_file(&gate);
    let command = Command::shell(format!(
        "echo first; while [ ! -e {0} ]; do sleep 0.01; done; seq 1 20000; echo last >&2",
        gate.display()
    ))
    .output_limit(16)
    .on_line(move |stream, line| {
        let _ = tx
            .lock()
            .unwrap()
            .send((stream, String::from_utf8_lossy(line).into_owned()));
    });
    let handle = rt.spawn_command(command);
    let (stream, first) = rx.recv_timeout(Duration::from_secs(60)).unwrap();
    assert_eq!(
        (stream, first.as_str()),
        (plait::process::Stream::Stdout, "first")
    );
    assert!(!handle.is_finished(), "the line came while the command ran");
    std::fs::write(&gate, b"").unwrap();
    let out = handle.join().unwrap();
    let _ = std::fs::remove_file(&gate);
    let rest: Vec<_> = rx.try_iter().collect();
    let numbers = rest
        .iter()
        .filter(|(stream, _)| *stream == plait::process::Stream::Stdout)
        .count();
    assert_eq!(numbers, 20_000, "every line, past the 16 bytes kept");
    assert!(rest.contains(&(plait::process::Stream::Stderr, "last".to_owned())));
    assert_eq!(out.stdout.len(), 16);
    assert!(out.stdout_dropped > 0);
}
