//! `plait graph FILE`: a job file's plan, by levels, or as a picture's source.

use std::path::PathBuf;

use crate::job::{file, plan::Plan};

/// Options of `plait graph`.
#[derive(clap::Args)]
pub(crate) struct Args {
    /// The job file (TOML: `[tasks.NAME]` tables with `cmd` and `needs`).
    file: PathBuf,
    /// `text`: the tasks by level (a level's tasks can run at once); `dot`: Graphviz;
    /// `mermaid`: a Mermaid flowchart; `json`: one object per task, with what it runs,
    /// needs and its level.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Format {
    Text,
    Dot,
    Mermaid,
    Json,
}

pub(crate) fn run(args: &Args) -> Result<(), String> {
    let tasks = file::read(&args.file).map_err(|e| e.to_string())?;
    let plan = Plan::new(&args.file, tasks).map_err(|e| e.to_string())?;
    let out = match args.format {
        Format::Text => plan.text(),
        Format::Dot => plan.dot(),
        Format::Mermaid => plan.mermaid(),
        Format::Json => plan.json(),
    };
    out!("{out}");
    Ok(())
}
