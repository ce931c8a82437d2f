//! Results in completion order, across strands.

use std::time::Duration;

use plait::{Runtime, as_completed, sync::Event};
use std::sync::Arc;

#[test]
fn yields_in_the_order_tasks_finish_with_their_indices() {
    let rt = Runtime::builder().threads(2).build().unwrap();
    let gate = Arc::new(Event::new());
    let late = {
        let gate = gate.clone();
        rt.spawn(move || {
            gate.wait();
            "late"
        })
    };
    let early = rt.spawn_async(async { "early" });
    let mut results = as_completed([late, early]);
    assert_eq!(results.remaining(), 2);
    let (index, value) = results.next().unwrap();
    assert_eq!((index, value.unwrap()), (1, "early"));
    gate.set();
    let (index, value) = results.next().unwrap();
    assert_eq!((index, value.unwrap()), (0, "late"));
    assert!(results.next().is_none());
}

#[test]
fn errors_arrive_in_place() {
    let rt = Runtime::new().unwrap();
    let handles = vec![
        rt.spawn(|| -> u8 { panic!("first") }),
        rt.task()
            .timeout(Duration::from_millis(10))
            .spawn_async(async { std::future::pending::<u8>().await }),
    ];
    let mut errors: Vec<(usize, String)> = as_completed(handles)
        .map(|(i, r)| (i, r.unwrap_err().to_string()))
        .collect();
    errors.sort();
    assert_eq!(errors[0], (0, "task panicked: first".to_owned()));
    assert_eq!(errors[1], (1, "task timed out".to_owned()));
}
