//! Task arrays: one table that stands for many tasks, one per value (or per combination
//! of values) of its `each` keys.
//!
//! ```toml
//! [tasks.count]
//! each = { shard = [0, 1, 2, 3] }        # or "0..4"; several keys: every combination
//! cmd = "wc -l < part-{shard}.txt > count-{shard}.txt"
//! needs = ["split"]
//!
//! [tasks.merge]
//! cmd = "cat count-*.txt"
//! needs = ["count"]                       # every task of the array
//! ```
//!
//! Each member is named `count[shard=2]`, and `{shard}` stands for its value in `cmd`,
//! `argv`, `env` values, `cwd`, `inputs`, `outputs` and `needs` (so a member can need its
//! partner in another array: `needs = ["split[shard={shard}]"]`). A `needs` that names an
//! array needs all of its members.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use super::file::{Position, Run, TaskSpec};

/// Where a job file is wrong, and why.
type Wrong = (Option<Position>, String);

/// An array's keys, each with its values as text.
type Keys = Vec<(String, Vec<String>)>;

/// The most tasks one array may stand for.
pub(crate) const MOST_MEMBERS: usize = 100_000;

/// An array's keys and their values, as the file gives them.
pub(crate) struct Each {
    pub(crate) keys: BTreeMap<String, toml::Value>,
    pub(crate) at: Option<Position>,
}

/// The job's tasks with every array expanded into its members, and every `needs` of an
/// array into needs of its members.
///
/// # Errors
///
/// Where an array is wrong (a key without values, values that are not numbers, strings,
/// booleans or a range, too many members) or two tasks end up with one name; with the
/// position and the way out.
pub(crate) fn expand(tasks: Vec<(TaskSpec, Option<Each>)>) -> Result<Vec<TaskSpec>, Wrong> {
    let mut members: HashMap<String, Vec<String>> = HashMap::new();
    let mut made_by: HashMap<String, String> = HashMap::new();
    let mut out = Vec::with_capacity(tasks.len());
    for (spec, each) in tasks {
        let Some(each) = each else {
            claim(&mut made_by, &spec.name, &spec.name, None)?;
            out.push(spec);
            continue;
        };
        let keys = values(&spec.name, &each)?;
        for combination in product(&keys) {
            let label = combination
                .iter()
                .map(|(key, value)| format!("{key}={value}"))
                .collect::<Vec<_>>()
                .join(",");
            let name = format!("{}[{label}]", spec.name);
            claim(&mut made_by, &name, &spec.name, each.at)?;
            members
                .entry(spec.name.clone())
                .or_default()
                .push(name.clone());
            out.push(member(&spec, name, &combination));
        }
    }
    for spec in &mut out {
        let mut needs = Vec::with_capacity(spec.needs.len());
        let mut needs_at = Vec::with_capacity(spec.needs.len());
        for (need, at) in spec.needs.iter().zip(&spec.needs_at) {
            match members.get(need) {
                Some(all) => {
                    needs.extend(all.iter().cloned());
                    needs_at.extend(std::iter::repeat_n(*at, all.len()));
                }
                None => {
                    needs.push(need.clone());
                    needs_at.push(*at);
                }
            }
        }
        spec.needs = needs;
        spec.needs_at = needs_at;
    }
    Ok(out)
}

/// Records that `name` is made by the table `by`; refuses a name made twice.
fn claim(
    made_by: &mut HashMap<String, String>,
    name: &str,
    by: &str,
    at: Option<Position>,
) -> Result<(), Wrong> {
    match made_by.insert(name.to_owned(), by.to_owned()) {
        None => Ok(()),
        Some(first) => Err((
            at,
            format!(
                "two tasks are named `{name}`: one from `{first}` and one from `{by}`; give \
                 the array values that make names of their own"
            ),
        )),
    }
}

/// Each key's values as text, checked.
fn values(task: &str, each: &Each) -> Result<Keys, Wrong> {
    let wrong = |message: String| (each.at, format!("task `{task}`: {message}"));
    let mut keys = Vec::with_capacity(each.keys.len());
    let mut count: usize = 1;
    for (key, value) in &each.keys {
        let texts =
            match value {
                toml::Value::Array(items) => items
                    .iter()
                    .map(|item| {
                        scalar(item).ok_or_else(|| wrong(format!(
                    "each.{key} holds {item}, which is not a number, a string or a boolean"
                )))
                    })
                    .collect::<Result<Vec<_>, _>>()?,
                toml::Value::String(range) => range_values(range).ok_or_else(|| {
                    wrong(format!(
                        "each.{key} = \"{range}\" is not a range; write \"0..8\" (0 to 7) or a \
                     list such as [\"eu\", \"us\"]"
                    ))
                })?,
                other => {
                    return Err(wrong(format!(
                        "each.{key} = {other} is neither a list nor a range like \"0..8\""
                    )));
                }
            };
        if texts.is_empty() {
            return Err(wrong(format!("each.{key} has no values")));
        }
        count = count.saturating_mul(texts.len());
        if count > MOST_MEMBERS {
            return Err(wrong(format!(
                "each stands for more than {MOST_MEMBERS} tasks; split the job"
            )));
        }
        keys.push((key.clone(), texts));
    }
    if keys.is_empty() {
        return Err(wrong(
            "`each` is empty; give it a key and values".to_owned(),
        ));
    }
    Ok(keys)
}

fn scalar(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(text) => Some(text.clone()),
        toml::Value::Integer(n) => Some(n.to_string()),
        toml::Value::Float(x) => Some(x.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

/// `"A..B"`: the integers from A up to B, B excluded.
fn range_values(range: &str) -> Option<Vec<String>> {
    let (start, end) = range.split_once("..")?;
    let (start, end): (i64, i64) = (start.trim().parse().ok()?, end.trim().parse().ok()?);
    (start <= end).then(|| (start..end).map(|n| n.to_string()).collect())
}

/// Every combination of the keys' values, the first key varying slowest.
fn product(keys: &[(String, Vec<String>)]) -> Vec<Vec<(&str, &str)>> {
    let mut all: Vec<Vec<(&str, &str)>> = vec![Vec::new()];
    for (key, values) in keys {
        all = all
            .into_iter()
            .flat_map(|prefix| {
                values.iter().map(move |value| {
                    let mut next = prefix.clone();
                    next.push((key.as_str(), value.as_str()));
                    next
                })
            })
            .collect();
    }
    all
}

/// The member of `spec` for one combination of values, named `name`.
fn member(spec: &TaskSpec, name: String, values: &[(&str, &str)]) -> TaskSpec {
    let fill = |text: &str| {
        values.iter().fold(text.to_owned(), |text, (key, value)| {
            text.replace(&format!("{{{key}}}"), value)
        })
    };
    let mut member = spec.clone();
    member.name = name;
    member.run = match &spec.run {
        Run::Shell(line) => Run::Shell(fill(line)),
        Run::Argv(argv) => Run::Argv(argv.iter().map(|arg| fill(arg)).collect()),
    };
    member.env = spec.env.iter().map(|(k, v)| (k.clone(), fill(v))).collect();
    member.cwd = spec
        .cwd
        .as_ref()
        .map(|cwd| PathBuf::from(fill(&cwd.to_string_lossy())));
    member.inputs = spec.inputs.iter().map(|input| fill(input)).collect();
    member.outputs = spec.outputs.iter().map(|output| fill(output)).collect();
    member.needs = spec.needs.iter().map(|need| fill(need)).collect();
    member
}
