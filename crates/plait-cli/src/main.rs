//! The plait command (placeholder until the CLI lands).
fn main() {}
