//! `plait graph`, run as a user runs it, on job files in a temporary folder.

use std::path::PathBuf;
use std::process::{Command, Output};

fn job(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("plait-graph-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn graph(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_plait"))
        .arg("graph")
        .args(args)
        .output()
        .unwrap()
}

const PIPELINE: &str = r#"
[tasks.fetch]
cmd = "echo fetch"

[tasks.clean]
argv = ["echo", "clean"]
needs = ["fetch"]

[tasks.stats]
cmd = "echo stats"
needs = ["fetch"]

[tasks.report]
cmd = "echo report"
needs = ["clean", "stats"]
"#;

#[test]
fn the_plan_shows_levels_and_the_graph_exports() {
    let path = job("pipeline.toml", PIPELINE);
    let path = path.to_str().unwrap();
    let text = graph(&[path]);
    assert!(text.status.success());
    let stdout = String::from_utf8_lossy(&text.stdout);
    let level1 = stdout.split("level 1:").nth(1).expect(&stdout);
    assert!(
        level1.contains("clean") && level1.contains("stats"),
        "{stdout}"
    );
    assert!(
        stdout
            .split("level 2:")
            .nth(1)
            .expect(&stdout)
            .contains("report")
    );

    let dot = graph(&[path, "--format", "dot"]);
    let dot = String::from_utf8_lossy(&dot.stdout);
    assert!(dot.starts_with("digraph plait {"), "{dot}");
    assert!(dot.contains("\"stats\" -> \"report\";"), "{dot}");

    let mermaid = graph(&[path, "--format", "mermaid"]);
    let mermaid = String::from_utf8_lossy(&mermaid.stdout);
    assert!(mermaid.starts_with("flowchart LR"), "{mermaid}");

    let json = graph(&[path, "--format", "json"]);
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let tasks = json["tasks"].as_array().unwrap();
    let report = tasks.iter().find(|t| t["name"] == "report").unwrap();
    assert_eq!(report["level"], 2, "{json}");
    let mut needs: Vec<_> = report["needs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    needs.sort_unstable();
    assert_eq!(needs, ["clean", "stats"]);
    // In dependency order: what a task needs comes before it.
    let at = |name: &str| tasks.iter().position(|t| t["name"] == name).unwrap();
    assert!(at("clean") < at("report") && at("stats") < at("report"));
}

#[test]
fn bad_job_files_fail_with_the_file_the_place_and_the_way_out() {
    for (name, text, expected) in [
        (
            "cycle.toml",
            "[tasks.a]\ncmd='a'\nneeds=['b']\n[tasks.b]\ncmd='b'\nneeds=['a']\n",
            "a -> b -> a",
        ),
        (
            "typo.toml",
            "[tasks.build]\ncmd='b'\n[tasks.test]\ncmd='t'\nneeds=['biuld']\n",
            "did you mean `build`",
        ),
        (
            "unknown.toml",
            "[tasks.a]\ncmd='a'\nnedds=['b']\n",
            "line 3, column 1",
        ),
        ("empty.toml", "", "no tasks"),
    ] {
        let path = job(name, text);
        let output = graph(&[path.to_str().unwrap()]);
        assert!(!output.status.success(), "{name} was accepted");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(name), "{stderr}");
        assert!(stderr.contains(expected), "{name}: {stderr}");
    }
    let missing = graph(&["/no/such/job.toml"]);
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(
        !missing.status.success() && stderr.contains("/no/such/job.toml"),
        "{stderr}"
    );
}
