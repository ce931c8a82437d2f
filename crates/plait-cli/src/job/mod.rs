//! Job files: tasks that run shell commands, and what each needs first. `plait graph`
//! reads one and shows its plan; what plait keeps beside one is in `state`.

pub(crate) mod arrays;
pub(crate) mod file;
pub(crate) mod inputs;
pub(crate) mod parsed;
pub(crate) mod plan;
pub(crate) mod state;
