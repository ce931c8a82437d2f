//! `plait matrix`'s idle-coroutine memory agrees with this crate's memory suite: both take
//! 100,000 coroutines parked on a timer, handles held, in a fresh process, and the matrix
//! must not read low from memory that earlier measurements freed (issue #17). Three of each,
//! in turn; the medians within 10 %.

use std::path::PathBuf;
use std::process::Command;

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[test]
fn the_matrix_and_the_memory_suite_agree_on_an_idle_coroutine() {
    let bench = PathBuf::from(env!("CARGO_BIN_EXE_plait-bench"));
    // `cargo test --workspace` builds the plait binary beside this one.
    let plait = bench.with_file_name("plait");
    if !plait.exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{} is missing: build plait-cli first (CI runs the whole workspace)",
            plait.display()
        );
        eprintln!(
            "skipped: {} is not built (cargo build -p plait-cli)",
            plait.display()
        );
        return;
    }
    let n = 100_000_u32;
    let (mut suite, mut matrix) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        let out = Command::new(&bench)
            .args(["--memory-child", "plait", &n.to_string()])
            .output()
            .unwrap();
        let fields: Vec<f64> = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter_map(|f| f.parse().ok())
            .collect();
        // heap, rss, wall: resident bytes per task.
        suite.push(fields[1] / f64::from(n));
        let out = Command::new(&plait)
            .args(["matrix", "--probe-memory", "idle"])
            .output()
            .unwrap();
        matrix.push(
            String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse::<f64>()
                .unwrap(),
        );
    }
    let (suite, matrix) = (median(suite), median(matrix));
    let ratio = matrix / suite;
    assert!(
        (0.9..=1.1).contains(&ratio),
        "the matrix reads {matrix:.0} B per idle coroutine, the memory suite {suite:.0} B ({ratio:.2}x)"
    );
}
