//! Job files: tasks that run shell commands, and what each needs first. `plait graph`
//! reads one and shows its plan.

pub(crate) mod file;
pub(crate) mod plan;
