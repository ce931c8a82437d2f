//! `plait demo`, run as a user runs it.

use std::process::Command;

fn plait() -> Command {
    Command::new(env!("CARGO_BIN_EXE_plait"))
}

#[test]
fn the_demo_does_work_on_all_three_strands_and_says_where() {
    let output = plait()
        .args([
            "demo",
            "--data-mib",
            "2",
            "--requests",
            "60",
            "--concurrency",
            "20",
            "--latency-ms",
            "2",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let hashing = stdout
        .lines()
        .find(|l| l.starts_with("SHA-256 of 2 files"))
        .expect(&stdout);
    assert!(
        hashing.contains("thread") && hashing.contains("plait-"),
        "{hashing}"
    );
    let requests = stdout
        .lines()
        .find(|l| l.starts_with("60 requests"))
        .expect(&stdout);
    assert!(
        requests.contains("coroutine") && requests.contains("plait-io"),
        "{requests}"
    );
    let isolated = stdout
        .lines()
        .find(|l| l.starts_with("the same files in worker processes"))
        .expect(&stdout);
    assert!(
        isolated.contains("process") && isolated.contains("pid ") && isolated.contains("SIGABRT"),
        "{isolated}"
    );
    assert!(stdout.contains("shut down in"), "{stdout}");
}

#[test]
fn a_missing_folder_is_named_with_the_way_out() {
    let output = plait()
        .args(["demo", "--files", "/no/such/folder"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("/no/such/folder"), "{stderr}");
    assert!(stderr.contains("--files"), "{stderr}");
}

#[test]
fn the_demo_hashes_a_given_folder() {
    let dir = std::env::temp_dir().join(format!("plait-demo-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for i in 0..3 {
        std::fs::write(dir.join(format!("f{i}")), vec![i as u8; 1000]).unwrap();
    }
    let output = plait()
        .args(["demo", "--requests", "5", "--latency-ms", "1", "--files"])
        .arg(&dir)
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("SHA-256 of 3 files"), "{stdout}");
}
