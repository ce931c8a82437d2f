//! `plait run --dry-run`: what would run and why, as `make -n` says it, by levels (or as
//! one JSON object with `--json`); nothing runs and nothing is recorded.

use std::fmt::Write as _;
use std::path::Path;

use serde_json::json;

use crate::job::inputs::{self, Made, Outputs};
use crate::job::plan::Plan;
use crate::journal::{self, Journal};

/// What the run would do with one task.
pub(super) enum Would {
    Run(String),
    Skip,
    Fail(String),
}

/// What the run would do with each task (by task), and why.
///
/// The input files' digests it finds are not written to the journal: nothing is recorded.
pub(super) fn decide(plan: &Plan, base: &Path, journal: &Journal, forced: &[bool]) -> Vec<Would> {
    let digests = journal.digests();
    // Each task's fingerprint, once known, whether it would run, and its outputs as found.
    let mut seen: Vec<Option<(Option<String>, bool, Outputs)>> = Vec::new();
    seen.resize_with(plan.tasks.len(), || None);
    let mut would = Vec::with_capacity(plan.tasks.len());
    would.resize_with(plan.tasks.len(), || Would::Skip);
    for task in plan.dependency_order() {
        let spec = &plan.tasks[task];
        let needs = &plan.needs[task];
        let running_need = needs
            .iter()
            .find(|&&need| seen[need].as_ref().is_none_or(|(_, runs, _)| *runs));
        let (fingerprint, what, outputs) = if let Some(&need) = running_need {
            let why = format!("`{}`, which it needs, runs first", plan.tasks[need].name);
            (None, Would::Run(why), Outputs::default())
        } else {
            let prints: Vec<&str> = needs
                .iter()
                .filter_map(|&need| seen[need].as_ref()?.0.as_deref())
                .collect();
            let made = needs.iter().map(|&need| Made {
                outputs: &plan.tasks[need].outputs,
                found: seen[need]
                    .as_ref()
                    .and_then(|(_, _, found)| found.found.as_deref()),
            });
            let outputs = Outputs::find(base, &spec.outputs);
            match inputs::gather(&spec.name, base, &spec.inputs, made) {
                Err(message) => (None, Would::Fail(message), outputs),
                Ok(files) => {
                    let fingerprint = journal::fingerprint(spec, base, &prints, &files, &digests);
                    let what = if forced[task] {
                        Would::Run("--force".to_owned())
                    } else {
                        match journal.why_run(spec, &fingerprint, &outputs) {
                            Some(why) => Would::Run(why),
                            None => Would::Skip,
                        }
                    };
                    (Some(fingerprint), what, outputs)
                }
            }
        };
        seen[task] = Some((fingerprint, !matches!(what, Would::Skip), outputs));
        would[task] = what;
    }
    would
}

/// The plan by levels, with what each task would do and why.
pub(super) fn explain(plan: &Plan, would: &[Would]) -> String {
    let width = plan
        .tasks
        .iter()
        .map(|t| t.name.chars().count())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    let (mut runs, mut skips) = (0, 0);
    for (level, tasks) in plan.by_level().iter().enumerate() {
        let _ = writeln!(out, "level {level}:");
        for &task in tasks {
            let spec = &plan.tasks[task];
            let status = match &would[task] {
                Would::Run(why) => {
                    runs += 1;
                    format!("would run: {why}")
                }
                Would::Skip => {
                    skips += 1;
                    "up to date".to_owned()
                }
                Would::Fail(why) => format!("would fail: {why}"),
            };
            let _ = writeln!(out, "  {:<width$}  {status}", spec.name);
            // The command's first line, so that a multi-line one keeps the layout.
            let shown = spec.run.to_string();
            let mut lines = shown.lines();
            let first = lines.next().unwrap_or("");
            let more = if lines.next().is_some() { " ..." } else { "" };
            let _ = writeln!(out, "  {:<width$}  $ {first}{more}", "");
        }
    }
    let _ = writeln!(out, "{runs} would run, {skips} up to date; nothing was run");
    out
}

/// The plan as one JSON object: `tasks`, each with its `name`, `level`, `would` (`run`,
/// `skip` or `fail`), `why` and `cmd`; and the counts `would_run`, `up_to_date` and
/// `would_fail`.
pub(super) fn json(plan: &Plan, would: &[Would]) -> serde_json::Value {
    let mut tasks = Vec::with_capacity(plan.tasks.len());
    let mut counts = [0_usize; 3];
    for (level, members) in plan.by_level().iter().enumerate() {
        for &task in members {
            let spec = &plan.tasks[task];
            let (what, why, count) = match &would[task] {
                Would::Run(why) => ("run", Some(why.as_str()), 0),
                Would::Skip => ("skip", None, 1),
                Would::Fail(why) => ("fail", Some(why.as_str()), 2),
            };
            counts[count] += 1;
            tasks.push(json!({
                "name": spec.name,
                "level": level,
                "would": what,
                "why": why,
                "cmd": spec.run.to_string(),
            }));
        }
    }
    json!({
        "tasks": tasks,
        "would_run": counts[0],
        "up_to_date": counts[1],
        "would_fail": counts[2],
    })
}
