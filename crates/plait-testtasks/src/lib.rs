//! Registered tasks in a crate of their own, used by plait's tests: a task registered in a
//! dependency must reach the worker's registry through the linker like one defined beside
//! its caller.

use serde::{Deserialize, Serialize};

/// Adds two numbers.
#[plait::task]
pub fn add(a: i64, b: i64) -> i64 {
    a + b
}

/// Returns its input, for payload round trips. (`ByteBuf` encodes as one run of bytes,
/// where a `Vec<u8>` goes element by element.)
#[plait::task]
pub fn echo(data: serde_bytes::ByteBuf) -> serde_bytes::ByteBuf {
    data
}

/// A record with nested data, to check that serde types of any shape travel.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Order {
    /// Who ordered.
    pub customer: String,
    /// Item prices in cents.
    pub items: Vec<u64>,
    /// A discount in percent, if any.
    pub discount: Option<u8>,
}

/// The total of an order after its discount.
#[plait::task]
pub fn total(order: Order) -> u64 {
    let sum: u64 = order.items.iter().sum();
    sum - sum * u64::from(order.discount.unwrap_or(0)) / 100
}

/// The process id of the worker that runs it.
#[plait::task]
pub fn worker_pid() -> u32 {
    std::process::id()
}
