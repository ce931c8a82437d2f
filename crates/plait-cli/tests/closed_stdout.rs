//! A reader that closes plait's standard output early (`plait graph … | head -1`) ends
//! plait as SIGPIPE ends other tools: status 141, no panic, nothing on standard error.

use std::process::{Command, Stdio};

/// Runs plait with `args`, its standard output a pipe whose reader is already closed.
fn with_closed_stdout(args: &[&str]) -> std::process::Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    Command::new(env!("CARGO_BIN_EXE_plait"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

#[test]
fn a_closed_stdout_ends_plait_quietly() {
    let pipeline = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/pipeline.toml");
    for args in [
        &["graph", pipeline, "--format", "dot"][..],
        &["graph", pipeline],
        &["advise", "--list-tasks"],
        &["advise", "--", "true"],
    ] {
        let output = with_closed_stdout(args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(141), "plait {args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "plait {args:?}: {stderr}");
    }
}
