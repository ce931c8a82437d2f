//! Results: one row per measured case, printed as a table or as JSON lines.

use std::time::Duration;

use serde::Serialize;

/// One measured case.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Row {
    pub(crate) suite: String,
    pub(crate) case: String,
    pub(crate) system: String,
    pub(crate) n: u64,
    /// Median wall time of the runs, seconds.
    pub(crate) wall_s: f64,
    pub(crate) ns_per_task: f64,
    pub(crate) tasks_per_s: f64,
    pub(crate) runs_wall_s: Vec<f64>,
    /// Resident bytes per task (memory suite): peak RSS grown, in a fresh process.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) bytes_per_task: Option<f64>,
    /// Live heap bytes per task, counted by the allocator (memory suite).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) heap_bytes_per_task: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) note: Option<String>,
}

impl Row {
    /// A row from the wall times of several runs of `n` tasks.
    pub(crate) fn timed(suite: &str, case: &str, system: &str, n: u64, runs: &[Duration]) -> Row {
        let runs_wall_s: Vec<f64> = runs.iter().map(Duration::as_secs_f64).collect();
        let wall_s = median(&runs_wall_s);
        Row {
            suite: suite.to_owned(),
            case: case.to_owned(),
            system: system.to_owned(),
            n,
            wall_s,
            ns_per_task: wall_s * 1e9 / n as f64,
            tasks_per_s: n as f64 / wall_s,
            runs_wall_s,
            bytes_per_task: None,
            heap_bytes_per_task: None,
            note: None,
        }
    }

    pub(crate) fn note(mut self, note: impl Into<String>) -> Row {
        self.note = Some(note.into());
        self
    }
}

pub(crate) fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// A claim checked against the measurements: `value` against `target`.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Comparison {
    pub(crate) suite: &'static str,
    pub(crate) claim: String,
    pub(crate) ours: String,
    pub(crate) peer: String,
    /// Ours relative to the peer, in the direction the claim states ("1.12x", "310x").
    pub(crate) ratio: f64,
    pub(crate) target: String,
    pub(crate) met: bool,
}

pub(crate) fn format_ns(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.1} ns")
    }
}

pub(crate) fn print_table(rows: &[Row]) {
    println!("| suite | case | system | n | median wall | per task | tasks/s | runs | note |");
    println!("|---|---|---|---:|---:|---:|---:|---:|---|");
    for r in rows {
        println!(
            "| {} | {} | {} | {} | {:.4} s | {} | {:.0} | {} | {} |",
            r.suite,
            r.case,
            r.system,
            r.n,
            r.wall_s,
            format_ns(r.ns_per_task),
            r.tasks_per_s,
            r.runs_wall_s.len(),
            r.note.as_deref().unwrap_or("")
        );
    }
}

pub(crate) fn print_comparisons(comparisons: &[Comparison]) {
    println!();
    println!("| claim | plait | peer | ratio | target | met |");
    println!("|---|---|---|---:|---|---|");
    for c in comparisons {
        println!(
            "| {} | {} | {} | {:.2}x | {} | {} |",
            c.claim,
            c.ours,
            c.peer,
            c.ratio,
            c.target,
            if c.met { "yes" } else { "NO" }
        );
    }
}

pub(crate) fn print_json<T: Serialize>(items: &[T]) {
    for item in items {
        match serde_json::to_string(item) {
            Ok(line) => println!("{line}"),
            Err(error) => eprintln!("plait-bench: could not encode a result: {error}"),
        }
    }
}
