//! A job's tasks as a graph: every `needs` resolved, no cycle, and the order by levels.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;

use super::file::{FileError, TaskSpec};

/// A checked job: tasks in an order where each comes after what it needs.
#[derive(Debug)]
pub(crate) struct Plan {
    pub(crate) tasks: Vec<TaskSpec>,
    /// For each task (by index into `tasks`), the tasks it needs.
    pub(crate) needs: Vec<Vec<usize>>,
    /// For each task, its level: 0 for a task that needs nothing, else one more than the
    /// highest level among what it needs. Tasks of one level can run at once.
    pub(crate) levels: Vec<usize>,
}

impl Plan {
    /// Resolves `needs` and orders the tasks.
    ///
    /// # Errors
    ///
    /// A `needs` naming no task (with the closest name, if one is close), or a cycle (with
    /// its path).
    pub(crate) fn new(path: &Path, tasks: Vec<TaskSpec>) -> Result<Plan, FileError> {
        let index: HashMap<&str, usize> = tasks
            .iter()
            .enumerate()
            .map(|(i, task)| (task.name.as_str(), i))
            .collect();
        let mut needs = Vec::with_capacity(tasks.len());
        for task in &tasks {
            let mut resolved = Vec::with_capacity(task.needs.len());
            for (need, at) in task.needs.iter().zip(&task.needs_at) {
                match index.get(need.as_str()) {
                    Some(&i) => resolved.push(i),
                    None => {
                        let hint = closest(need, tasks.iter().map(|t| t.name.as_str()))
                            .map_or_else(String::new, |close| format!("; did you mean `{close}`?"));
                        return Err(FileError {
                            path: path.to_owned(),
                            at: Some(*at),
                            message: format!(
                                "task `{}` needs `{need}`, which is not a task in this file{hint}",
                                task.name
                            ),
                        });
                    }
                }
            }
            needs.push(resolved);
        }
        let levels = levels(&tasks, &needs).map_err(|cycle| FileError {
            path: path.to_owned(),
            at: None,
            message: format!(
                "the tasks need each other in a circle: {}",
                cycle
                    .iter()
                    .map(|&i| tasks[i].name.as_str())
                    .collect::<Vec<_>>()
                    .join(" -> ")
            ),
        })?;
        Ok(Plan {
            tasks,
            needs,
            levels,
        })
    }

    /// The plan of `targets` and everything they need, directly or not; all of it when
    /// `targets` is empty.
    ///
    /// # Errors
    ///
    /// A target that is not a task, with the closest name.
    pub(crate) fn only(self, path: &Path, targets: &[String]) -> Result<Plan, FileError> {
        if targets.is_empty() {
            return Ok(self);
        }
        let mut keep = vec![false; self.tasks.len()];
        let mut stack = Vec::new();
        for target in targets {
            let Some(task) = self.index_of(target) else {
                let hint = closest(target, self.tasks.iter().map(|t| t.name.as_str()))
                    .map_or_else(String::new, |close| format!("; did you mean `{close}`?"));
                return Err(FileError {
                    path: path.to_owned(),
                    at: None,
                    message: format!("`{target}` is not a task in this file{hint}"),
                });
            };
            stack.push(task);
        }
        while let Some(task) = stack.pop() {
            if !std::mem::replace(&mut keep[task], true) {
                stack.extend(&self.needs[task]);
            }
        }
        let kept = self
            .tasks
            .into_iter()
            .zip(keep)
            .filter_map(|(task, keep)| keep.then_some(task))
            .collect();
        Plan::new(path, kept)
    }

    /// The index of the task named `name`.
    pub(crate) fn index_of(&self, name: &str) -> Option<usize> {
        self.tasks.iter().position(|task| task.name == name)
    }

    /// The tasks of each level, in name order.
    pub(crate) fn by_level(&self) -> Vec<Vec<usize>> {
        let depth = self.levels.iter().max().map_or(0, |top| top + 1);
        let mut by_level = vec![Vec::new(); depth];
        for (task, &level) in self.levels.iter().enumerate() {
            by_level[level].push(task);
        }
        by_level
    }

    /// Every task after everything it needs: the levels, one after another.
    pub(crate) fn dependency_order(&self) -> Vec<usize> {
        self.by_level().concat()
    }

    /// The plan as text: each level and its tasks, with what each runs.
    pub(crate) fn text(&self) -> String {
        let mut out = String::new();
        for (level, tasks) in self.by_level().iter().enumerate() {
            let _ = writeln!(out, "level {level}:");
            for &task in tasks {
                let spec = &self.tasks[task];
                let needs = if spec.needs.is_empty() {
                    String::new()
                } else {
                    format!("  (after {})", spec.needs.join(", "))
                };
                let _ = writeln!(out, "  {:<20} {}{needs}", spec.name, spec.run);
            }
        }
        out
    }

    /// The graph in Graphviz's dot language.
    pub(crate) fn dot(&self) -> String {
        let mut out = String::from("digraph plait {\n  rankdir=LR;\n");
        for task in &self.tasks {
            let _ = writeln!(out, "  {};", quote(&task.name));
        }
        for (task, needs) in self.needs.iter().enumerate() {
            for &need in needs {
                let from = quote(&self.tasks[need].name);
                let _ = writeln!(out, "  {from} -> {};", quote(&self.tasks[task].name));
            }
        }
        out.push_str("}\n");
        out
    }

    /// The plan as JSON: `{"tasks": [{"name", "run", "needs", "level"}, ...]}`, in
    /// dependency order.
    pub(crate) fn json(&self) -> String {
        let tasks: Vec<serde_json::Value> = self
            .dependency_order()
            .into_iter()
            .map(|task| {
                let spec = &self.tasks[task];
                let run = match &spec.run {
                    super::file::Run::Shell(line) => serde_json::json!({ "cmd": line }),
                    super::file::Run::Argv(argv) => serde_json::json!({ "argv": argv }),
                };
                serde_json::json!({
                    "name": spec.name,
                    "run": run,
                    "needs": spec.needs,
                    "level": self.levels[task],
                })
            })
            .collect();
        let mut out = serde_json::json!({ "tasks": tasks }).to_string();
        out.push('\n');
        out
    }

    /// The graph as a Mermaid flowchart (task names as labels; ids are `t0`, `t1`, ...).
    pub(crate) fn mermaid(&self) -> String {
        let mut out = String::from("flowchart LR\n");
        for (i, task) in self.tasks.iter().enumerate() {
            let label = task.name.replace('"', "#quot;");
            let _ = writeln!(out, "  t{i}[\"{label}\"]");
        }
        for (task, needs) in self.needs.iter().enumerate() {
            for &need in needs {
                let _ = writeln!(out, "  t{need} --> t{task}");
            }
        }
        out
    }
}

impl std::fmt::Display for super::file::Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            super::file::Run::Shell(line) => f.write_str(line),
            super::file::Run::Argv(argv) => f.write_str(&argv.join(" ")),
        }
    }
}

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Each task's level, or a cycle (as the tasks on it, the first repeated at the end).
fn levels(tasks: &[TaskSpec], needs: &[Vec<usize>]) -> Result<Vec<usize>, Vec<usize>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnPath,
        Done,
    }
    let mut marks = vec![Mark::New; tasks.len()];
    let mut levels = vec![0; tasks.len()];
    // Depth-first, without recursion (a job may be a chain thousands long): a stack of
    // (task, how many of its needs are handled).
    for root in 0..tasks.len() {
        if marks[root] != Mark::New {
            continue;
        }
        let mut stack = vec![(root, 0)];
        marks[root] = Mark::OnPath;
        while let Some(&mut (task, ref mut next)) = stack.last_mut() {
            if let Some(&need) = needs[task].get(*next) {
                *next += 1;
                match marks[need] {
                    Mark::New => {
                        marks[need] = Mark::OnPath;
                        stack.push((need, 0));
                    }
                    Mark::OnPath => {
                        let from = stack.iter().position(|&(t, _)| t == need).unwrap_or(0);
                        let mut cycle: Vec<usize> = stack[from..].iter().map(|&(t, _)| t).collect();
                        // The path runs against the arrows (a task, then what it needs): show
                        // it in the order the tasks would run, from the first by name.
                        cycle.reverse();
                        let first = (0..cycle.len()).min_by_key(|&i| cycle[i]).unwrap_or(0);
                        cycle.rotate_left(first);
                        cycle.push(cycle[0]);
                        return Err(cycle);
                    }
                    Mark::Done => {}
                }
            } else {
                levels[task] = needs[task]
                    .iter()
                    .map(|&n| levels[n] + 1)
                    .max()
                    .unwrap_or(0);
                marks[task] = Mark::Done;
                stack.pop();
            }
        }
    }
    Ok(levels)
}

/// The name in `names` closest to `name`, if it is close enough to be a typo.
fn closest<'a>(name: &str, names: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    names
        .map(|candidate| {
            (
                strsim::normalized_damerau_levenshtein(name, candidate),
                candidate,
            )
        })
        .filter(|(score, _)| *score >= 0.6)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, candidate)| candidate)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::super::file::{Run, parse};
    use super::*;

    fn plan(text: &str) -> Result<Plan, FileError> {
        let path = Path::new("job.toml");
        Plan::new(path, parse(path, text)?)
    }

    #[test]
    fn levels_follow_needs() {
        let plan = plan(
            "[tasks.a]\ncmd='a'\n[tasks.b]\ncmd='b'\nneeds=['a']\n[tasks.c]\ncmd='c'\nneeds=['a','b']\n[tasks.d]\ncmd='d'\n",
        )
        .unwrap();
        let names = |level: &Vec<usize>| -> Vec<&str> {
            level.iter().map(|&t| plan.tasks[t].name.as_str()).collect()
        };
        let levels: Vec<Vec<&str>> = plan.by_level().iter().map(names).collect();
        assert_eq!(levels, [vec!["a", "d"], vec!["b"], vec!["c"]]);
        assert!(plan.text().contains("(after a, b)"), "{}", plan.text());
        assert!(plan.dot().contains("\"a\" -> \"c\";"), "{}", plan.dot());
        assert!(plan.mermaid().contains("t0 --> t2"), "{}", plan.mermaid());
    }

    #[test]
    fn an_unknown_need_names_the_task_the_need_and_a_close_name() {
        let err = plan("[tasks.fetch]\ncmd='f'\n[tasks.report]\ncmd='r'\nneeds=['fecth']\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 5, column 8"), "{err}");
        assert!(err.contains("`report` needs `fecth`"), "{err}");
        assert!(err.contains("did you mean `fetch`"), "{err}");
    }

    #[test]
    fn a_cycle_is_named_by_its_path() {
        let err = plan(
            "[tasks.a]\ncmd='a'\nneeds=['c']\n[tasks.b]\ncmd='b'\nneeds=['a']\n[tasks.c]\ncmd='c'\nneeds=['b']\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("a -> b -> c -> a"), "{err}");
        let err = plan("[tasks.me]\ncmd='x'\nneeds=['me']\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("me -> me"), "{err}");
    }

    #[test]
    fn a_long_chain_does_not_overflow_the_stack() {
        // Deep enough that a recursive walk would overflow a test thread's stack.
        let tasks: Vec<TaskSpec> = (0..200_000)
            .map(|i| {
                let mut task = TaskSpec::plain(&format!("t{i:06}"), Run::Shell("x".into()));
                if i > 0 {
                    task.needs = vec![format!("t{:06}", i - 1)];
                    task.needs_at = vec![Default::default()];
                }
                task
            })
            .collect();
        let plan = Plan::new(Path::new("job.toml"), tasks).unwrap();
        assert_eq!(plan.by_level().len(), 200_000);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn every_task_comes_after_what_it_needs(
            edges in prop::collection::vec((0usize..40, 0usize..40), 0..120),
        ) {
            // Edges only from lower to higher numbers: a random DAG.
            let mut text = String::new();
            for task in 0..40 {
                let needs: Vec<String> = edges
                    .iter()
                    .filter(|&&(from, to)| to == task && from < to)
                    .map(|&(from, _)| format!("'t{from}'"))
                    .collect();
                let _ = write!(text, "[tasks.t{task}]\ncmd='x'\nneeds=[{}]\n", needs.join(","));
            }
            let plan = plan(&text).unwrap();
            for (task, needs) in plan.needs.iter().enumerate() {
                for &need in needs {
                    prop_assert!(plan.levels[need] < plan.levels[task]);
                }
                if !needs.is_empty() {
                    let top = needs.iter().map(|&n| plan.levels[n]).max().unwrap();
                    prop_assert_eq!(plan.levels[task], top + 1);
                }
            }
        }
    }
}
