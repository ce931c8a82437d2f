//! `plait matrix`, as a user runs it: every strand's row has every cell measured, the
//! Markdown table has the Python matrix's columns and the measured ones, and the chart is
//! an SVG file.

use std::process::{Command, Output};

fn matrix(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_plait"))
        .arg("matrix")
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn every_cell_of_the_quick_matrix_is_measured() {
    let svg = std::env::temp_dir().join(format!("plait-matrix-{}.svg", std::process::id()));
    let output = matrix(&[
        "--quick",
        "--format",
        "json",
        "--plot",
        svg.to_str().unwrap(),
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let matrix: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let strands = matrix["strands"].as_array().unwrap();
    let names: Vec<&str> = strands
        .iter()
        .map(|s| s["strand"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["process", "thread", "coroutine"]);
    for strand in strands {
        for column in [
            "unit",
            "memory",
            "suspended_by",
            "for",
            "crash",
            "hang",
            "leak",
            "recommendation",
        ] {
            let text = strand[column].as_str().unwrap_or_default();
            assert!(!text.is_empty(), "{column} of {strand}");
        }
        let measured = strand["measured"].as_object().unwrap();
        assert_eq!(measured.len(), 9, "{strand}");
        for (name, value) in measured {
            let value = value.as_f64().unwrap_or(f64::NAN);
            assert!(value.is_finite() && value >= 0.0, "{name} of {strand}");
        }
        for positive in [
            "tiny_per_s",
            "cpu_speedup",
            "waits_per_s",
            "payload_mib_per_s",
            "start_up_s",
            "crash_s",
        ] {
            assert!(
                measured[positive].as_f64().unwrap() > 0.0,
                "{positive} of {strand}"
            );
        }
    }
    // Where the strands differ by design, the numbers say so.
    let by = |name: &str| strands.iter().find(|s| s["strand"] == name).unwrap();
    let waits = |name: &str| by(name)["measured"]["waits_per_s"].as_f64().unwrap();
    assert!(
        waits("coroutine") > 5.0 * waits("thread"),
        "coroutines wait side by side"
    );
    let leak = |name: &str| by(name)["measured"]["leak_kept_bytes"].as_f64().unwrap();
    assert!(
        leak("thread") >= 16.0 * 1048576.0,
        "a thread's leak stays in the program"
    );
    assert!(
        leak("process") < 8.0 * 1048576.0,
        "a worker's leak stays in the worker"
    );
    // Medians with their spread, of the samples asked for, with the sizes.
    assert_eq!(matrix["samples"], 3, "--quick takes three");
    assert!(matrix["sizes"]["kernel_rounds"].as_u64().unwrap() > 0);
    for strand in strands {
        let [low, high] = [0, 1].map(|i| strand["spread"]["cpu_speedup"][i].as_f64().unwrap());
        let median = strand["measured"]["cpu_speedup"].as_f64().unwrap();
        assert!(low <= median && median <= high, "{strand}");
    }
    let chart = std::fs::read_to_string(&svg).unwrap();
    assert!(chart.contains("<svg") && chart.contains("tiny tasks per second"));
    // One unit a panel: memory per waiting task apart from memory per worker.
    assert!(chart.contains("memory per waiting task, bytes"));
    assert!(chart.contains("memory per worker process:"));
    assert!(!chart.contains("e0"), "no tick like 1.000e0");
    let _ = std::fs::remove_file(svg);
}

/// Every speedup's median, over five runs of `--quick`, is within the cores (a little
/// over, for clock granularity): a sample above them is impossible and set aside. The runs
/// take about a minute and a half in a debug build.
#[test]
fn no_speedup_exceeds_the_core_count() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    for _ in 0..5 {
        let output = matrix(&["--quick", "--format", "json"]);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let matrix: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        for strand in matrix["strands"].as_array().unwrap() {
            let speedup = strand["measured"]["cpu_speedup"].as_f64().unwrap();
            assert!(
                speedup <= cores * 1.1,
                "{speedup} on {cores} cores: {strand}"
            );
        }
    }
}

#[test]
fn the_table_keeps_the_python_columns_and_adds_the_measured_ones() {
    let output = matrix(&["--quick"]);
    assert!(output.status.success());
    let table = String::from_utf8_lossy(&output.stdout);
    for column in [
        "| strand | unit | memory | suspended by | for |",
        "speedup over serial",
        "start-up",
        "memory per task",
        "a crash",
        "a hang",
        "recommendation",
    ] {
        assert!(table.contains(column), "{column}: {table}");
    }
    assert_eq!(
        table
            .lines()
            .filter(|l| l.starts_with("| process")
                || l.starts_with("| thread")
                || l.starts_with("| coroutine"))
            .count(),
        3
    );
}

#[test]
fn a_plot_that_cannot_be_written_is_refused_before_measuring() {
    let started = std::time::Instant::now();
    let output = matrix(&["--plot", "/no/such/dir/m.svg"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("/no/such/dir/m.svg"), "{stderr}");
    assert!(
        !stderr.contains("measuring on"),
        "refused before measuring: {stderr}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

#[test]
fn a_plot_that_is_not_svg_is_refused_with_the_way_out() {
    let output = matrix(&["--quick", "--plot", "chart.png"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("chart.png") && stderr.contains(".svg"),
        "{stderr}"
    );
}
