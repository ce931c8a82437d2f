//! The Python peers (`../shared/bench/peers`), run in the same session so that ratios hold on
//! a machine whose absolute speed drifts.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;

use crate::report::Row;

/// A Python peer script, and the suites it is the peer of.
pub(crate) struct Peer {
    pub(crate) script: &'static str,
    pub(crate) suites: &'static [&'static str],
    /// In this crate's `peers/` rather than the shared folder.
    pub(crate) own: bool,
}

/// The scripts whose workloads match plait's suites.
pub(crate) const PEERS: &[Peer] = &[
    Peer {
        script: "tiny_tasks.py",
        suites: &["spawn", "map", "coroutine", "memory", "process"],
        own: false,
    },
    Peer {
        script: "cpu_bound.py",
        suites: &["cpu"],
        own: false,
    },
    Peer {
        script: "io_bound.py",
        suites: &["waits"],
        own: false,
    },
    Peer {
        script: "celery_queue.py",
        suites: &["queue", "queue-redis"],
        own: false,
    },
    Peer {
        script: "celery_latency.py",
        suites: &["queue"],
        own: true,
    },
    Peer {
        script: "dask_map.py",
        suites: &["queue-redis"],
        own: false,
    },
    Peer {
        script: "ray_tasks.py",
        suites: &["queue-redis"],
        own: false,
    },
    Peer {
        script: "dask_graphs.py",
        suites: &["graph"],
        own: true,
    },
];

/// This crate's own peer scripts (workloads the shared folder does not have).
pub(crate) fn own_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("peers")
}

#[derive(Deserialize)]
struct Output {
    results: Vec<PeerRow>,
    #[serde(default)]
    pending_task_memory: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct PeerRow {
    system: String,
    workload: String,
    n: u64,
    wall_s: f64,
    per_task_us: f64,
    runs_wall_s: Vec<f64>,
    #[serde(default)]
    speedup_vs_sequential: Option<f64>,
    #[serde(default)]
    peak_rss_growth_bytes: Option<f64>,
    /// Kept as the row's note where it says something the figures do not (a p99, say).
    #[serde(default)]
    notes: Option<String>,
}

/// Where the peers live by default: beside this checkout.
pub(crate) fn default_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/bench/peers")
}

/// Runs one script with `python` and turns its JSON line into rows.
pub(crate) fn run(python: &Path, dir: &Path, script: &str) -> Result<Vec<Row>, String> {
    eprintln!("plait-bench: running the Python peer {script} (minutes)...");
    let path = dir.join(script);
    let output = Command::new(python)
        .arg(&path)
        .current_dir(dir)
        .output()
        .map_err(|e| {
            format!(
                "could not run {} {}: {e}; set up the peers' venv (see {}/README.md) or pass --python",
                python.display(),
                path.display(),
                dir.display()
            )
        })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: String = stderr.lines().rev().take(5).collect::<Vec<_>>().join(" | ");
        return Err(format!("{script} failed ({}): {tail}", output.status));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .ok_or_else(|| format!("{script} printed no JSON line"))?;
    let parsed: Output =
        serde_json::from_str(line).map_err(|e| format!("{script}: unreadable JSON: {e}"))?;
    let suite = script.trim_end_matches(".py");
    let mut rows: Vec<Row> = parsed
        .results
        .into_iter()
        .map(|r| {
            let mut row = Row {
                suite: format!("python:{suite}"),
                case: r.workload,
                system: r.system,
                n: r.n,
                wall_s: r.wall_s,
                ns_per_task: r.per_task_us * 1e3,
                tasks_per_s: r.n as f64 / r.wall_s,
                runs_wall_s: r.runs_wall_s,
                bytes_per_task: None,
                heap_bytes_per_task: None,
                note: r.notes.filter(|notes| notes.contains("p99")),
            };
            if let Some(speedup) = r.speedup_vs_sequential {
                row.note = Some(format!("speedup {speedup:.2}x"));
            }
            if let Some(peak) = r.peak_rss_growth_bytes {
                row.bytes_per_task = Some(peak / r.n.max(1) as f64);
                row.note = Some(format!("peak RSS +{:.0} MiB", peak / 1048576.0));
            }
            row
        })
        .collect();
    if let Some(memory) = parsed.pending_task_memory {
        for loop_name in ["asyncio", "uvloop"] {
            let Some(m) = memory.get(loop_name) else {
                continue;
            };
            let bytes = m.get("bytes_per_task").and_then(serde_json::Value::as_f64);
            let n = m.get("n").and_then(serde_json::Value::as_u64).unwrap_or(0);
            let wall = m
                .get("wall_s")
                .and_then(serde_json::Value::as_f64)
                .unwrap_or(f64::NAN);
            rows.push(Row {
                suite: format!("python:{suite}"),
                case: "pending task awaiting asyncio.sleep".to_owned(),
                system: format!("{loop_name} (memory)"),
                n,
                wall_s: wall,
                ns_per_task: wall * 1e9 / n.max(1) as f64,
                tasks_per_s: n as f64 / wall,
                runs_wall_s: vec![wall],
                bytes_per_task: bytes,
                heap_bytes_per_task: None,
                note: bytes.map(|b| format!("{b:.0} B resident per task")),
            });
        }
    }
    Ok(rows)
}
