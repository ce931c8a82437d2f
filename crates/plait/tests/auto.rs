//! `Strand::Auto`: a closure that computes stays on the thread strand, one that waits goes
//! to the coroutine strand's blocking-I/O threads, and the runtime says why; a closure that
//! changes its ways is re-routed at a re-check.
//!
//! One test, cases in turn: CPU time against wall time is distorted by other tests running
//! at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use plait::Strand;
use plait::advise::auto::{RECHECK, WARM_UP};
use plait::advise::{Bound, Decision};

plait::test_worker!();

fn spin(for_how_long: Duration) {
    let end = Instant::now() + for_how_long;
    while Instant::now() < end {
        std::hint::spin_loop();
    }
}

fn on_io_thread() -> bool {
    std::thread::current()
        .name()
        .is_some_and(|name| name.ends_with("-io"))
}

fn decision(rt: &plait::Runtime, part: &str) -> Decision {
    rt.explain_auto()
        .into_iter()
        .find(|d| d.task.contains(part))
        .unwrap_or_else(|| panic!("no decision for {part}: {:?}", rt.explain_auto()))
}

fn computes() -> impl FnOnce() -> bool + Send + 'static {
    || {
        spin(Duration::from_millis(5));
        on_io_thread()
    }
}

fn waits() -> impl FnOnce() -> bool + Send + 'static {
    || {
        std::thread::sleep(Duration::from_millis(5));
        on_io_thread()
    }
}

fn changes(waiting: Arc<AtomicBool>) -> impl FnOnce() -> bool + Send + 'static {
    move || {
        if waiting.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(2));
        } else {
            spin(Duration::from_millis(2));
        }
        on_io_thread()
    }
}

#[test]
fn auto_routes_closures_by_what_bounds_them_and_says_why() {
    let rt = plait::Runtime::builder().threads(2).build().unwrap();

    let places: Vec<bool> = (0..10)
        .map(|_| rt.spawn_on(Strand::Auto, computes()).join().unwrap())
        .collect();
    assert!(
        places.iter().all(|io| !io),
        "a computing closure stays on the thread strand"
    );
    let cpu = decision(&rt, "computes");
    assert_eq!(cpu.strand, Strand::Thread, "{cpu}");
    assert!(
        matches!(cpu.bound, Some(Bound::Cpu | Bound::Mixed)),
        "{cpu}"
    );
    assert_eq!((cpu.calls, cpu.measured), (10, WARM_UP as u64), "{cpu}");

    let places: Vec<bool> = (0..10)
        .map(|_| rt.spawn_on(Strand::Auto, waits()).join().unwrap())
        .collect();
    assert!(
        places[..WARM_UP].iter().all(|io| !io),
        "measured first on the thread strand"
    );
    assert!(
        places[WARM_UP..].iter().all(|io| *io),
        "then on the blocking-I/O threads"
    );
    let io = decision(&rt, "waits");
    assert_eq!(
        (io.strand, io.bound),
        (Strand::Coroutine, Some(Bound::Io)),
        "{io}"
    );
    assert!(
        io.reason.contains("io-bound") && io.reason.contains("CPU share"),
        "{io}"
    );

    // Computes at first, then waits: a re-check moves it.
    let waiting = Arc::new(AtomicBool::new(false));
    for _ in 0..WARM_UP {
        rt.spawn_on(Strand::Auto, changes(Arc::clone(&waiting)))
            .join()
            .unwrap();
    }
    assert_eq!(decision(&rt, "changes").strand, Strand::Thread);
    waiting.store(true, Ordering::SeqCst);
    // Enough calls for WARM_UP re-checks, each measured, to outvote the first runs.
    for _ in 0..(RECHECK as usize * (WARM_UP + 1)) {
        rt.spawn_on(Strand::Auto, changes(Arc::clone(&waiting)))
            .join()
            .unwrap();
    }
    let changed = decision(&rt, "changes");
    assert_eq!(changed.strand, Strand::Coroutine, "{changed}");
    assert_eq!(changed.changes, 1, "{changed}");
}

#[test]
fn graph_nodes_on_auto_are_routed_and_observers_are_told_why() {
    use plait::graph::{EventKind, Graph, NodeStatus};
    use std::sync::Mutex;

    let rt = plait::Runtime::builder().threads(2).build().unwrap();
    let mut graph = Graph::new();
    let mut waiting = Vec::new();
    // One closure type, many nodes: a chain, so the runs are measured one after another.
    let mut last = graph.task((), |()| on_io_thread());
    let _ = graph.node(last).strand(Strand::Auto);
    for _ in 0..12 {
        last = graph.task(last, |_| {
            std::thread::sleep(Duration::from_millis(3));
            on_io_thread()
        });
        let _ = graph.node(last).strand(Strand::Auto).keep();
        waiting.push(last);
    }
    let blocking = graph.task((), |()| on_io_thread());
    let _ = graph.node(blocking).strand(Strand::Coroutine);
    let refused = graph.task((), |()| 1);
    let _ = graph.node(refused).strand(Strand::Process);

    let routed: Arc<Mutex<Vec<(Strand, String)>>> = Arc::default();
    let sink = Arc::clone(&routed);
    let results = graph
        .runner(rt.clone())
        .keep_going(true)
        .observe(move |event| {
            if let EventKind::Routed { strand, reason } = event.kind {
                sink.lock().unwrap().push((strand, reason.to_owned()));
            }
        })
        .start()
        .join();
    let ran_on_io: Vec<bool> = waiting.iter().map(|n| *results.get(*n).unwrap()).collect();
    // A chain runs one node at a time: each run is reported before the next is routed.
    assert!(
        ran_on_io[..WARM_UP].iter().all(|io| !io) && ran_on_io[WARM_UP..].iter().all(|io| *io),
        "the first {WARM_UP} measured on the thread strand, the rest on the blocking-I/O threads: {ran_on_io:?}"
    );
    assert!(
        *results.get(blocking).unwrap(),
        "Strand::Coroutine runs on the blocking-I/O threads"
    );
    let error = results.error(refused.id()).unwrap().to_string();
    assert!(error.contains("#[plait::task]"), "{error}");
    assert_eq!(results.status(refused.id()), NodeStatus::Failed);

    let routed = routed.lock().unwrap();
    assert_eq!(routed.len(), 13, "one Routed event per auto node");
    let (strand, reason) = routed.last().unwrap();
    assert_eq!(*strand, Strand::Coroutine);
    assert!(reason.contains("io-bound"), "{reason}");
    assert!(
        rt.explain_auto()
            .iter()
            .any(|d| d.strand == Strand::Coroutine),
        "{:?}",
        rt.explain_auto()
    );
}

fn burst() -> impl FnOnce() -> bool + Send + 'static {
    || {
        std::thread::sleep(Duration::from_millis(20));
        on_io_thread()
    }
}

#[test]
fn a_burst_before_the_first_decision_does_not_queue_on_the_cores() {
    let rt = plait::Runtime::builder().threads(2).build().unwrap();
    let handles: Vec<_> = (0..40)
        .map(|_| rt.spawn_on(Strand::Auto, burst()))
        .collect();
    let on_io = handles
        .into_iter()
        .map(|h| h.join().unwrap())
        .filter(|io| *io)
        .count();
    assert!(
        on_io >= 40 - WARM_UP,
        "at most {WARM_UP} measured on the thread strand, the rest on the blocking-I/O threads: {on_io} of 40"
    );
    assert_eq!(decision(&rt, "burst").measured, WARM_UP as u64);
}

#[test]
fn a_call_from_another_runtimes_pool_thread_is_not_taken_for_a_nested_one() {
    // Calls made from this runtime's own thread tasks stay on its thread strand; calls made
    // from a thread task of another runtime are calls from outside.
    let caller = plait::Runtime::builder().threads(1).build().unwrap();
    let rt = plait::Runtime::builder().threads(2).build().unwrap();
    let callee = rt.clone();
    let on_io = caller
        .spawn(move || {
            let handles: Vec<_> = (0..40)
                .map(|_| callee.spawn_on(Strand::Auto, burst()))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap())
                .filter(|io| *io)
                .count()
        })
        .join()
        .unwrap();
    assert!(
        on_io >= 40 - WARM_UP,
        "at most {WARM_UP} measured on the thread strand, the rest on the blocking-I/O threads: {on_io} of 40"
    );
}

#[plait::task]
fn crunch(ms: u64) -> bool {
    spin(Duration::from_millis(ms));
    on_io_thread()
}

#[plait::task]
fn nap(ms: u64) -> bool {
    std::thread::sleep(Duration::from_millis(ms));
    on_io_thread()
}

#[test]
fn registered_tasks_are_routed_by_name_and_may_go_to_a_process() {
    let rt = plait::Runtime::builder()
        .threads(2)
        .processes(plait::process::ProcessOptions::new().workers(1))
        .build()
        .unwrap();
    for _ in 0..8 {
        rt.spawn_task_on(Strand::Auto, crunch::task(), 3)
            .join()
            .unwrap();
    }
    let places: Vec<bool> = (0..8)
        .map(|_| {
            rt.spawn_task_on(Strand::Auto, nap::task(), 3)
                .join()
                .unwrap()
        })
        .collect();
    assert!(places[WARM_UP..].iter().all(|io| *io), "{places:?}");
    let crunched = decision(&rt, "crunch");
    assert_eq!(crunched.strand, Strand::Thread, "{crunched}");
    assert!(
        crunched.task.ends_with("::crunch"),
        "named by the task: {crunched}"
    );
    assert_eq!(decision(&rt, "nap").strand, Strand::Coroutine);
    // In a worker process on request: not this process's threads.
    assert!(
        !rt.spawn_task_on(Strand::Process, nap::task(), 1)
            .join()
            .unwrap()
    );
}

#[test]
fn a_closure_cannot_be_sent_to_a_process() {
    let rt = plait::Runtime::builder().threads(1).build().unwrap();
    let error = rt.spawn_on(Strand::Process, || 1).join().unwrap_err();
    assert!(error.to_string().contains("#[plait::task]"), "{error}");
    assert_eq!(rt.spawn_on(Strand::Thread, || 2).join().unwrap(), 2);
    assert!(rt.spawn_on(Strand::Coroutine, on_io_thread).join().unwrap());
}

/// Panics on its first `panics` calls (counted in `calls`), then waits briefly.
fn flaky(calls: Arc<AtomicUsize>, panics: usize) -> impl FnOnce() + Send + 'static {
    move || {
        assert!(
            calls.fetch_add(1, Ordering::SeqCst) >= panics,
            "a measured call that fails"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn measured_calls_that_panic_give_their_place_to_others() {
    let rt = plait::Runtime::builder().threads(2).build().unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    for call in 0..2 * WARM_UP {
        let outcome = rt
            .spawn_on(Strand::Auto, flaky(Arc::clone(&calls), WARM_UP))
            .join();
        assert_eq!(outcome.is_err(), call < WARM_UP, "call {call}: {outcome:?}");
    }
    let decided = decision(&rt, "flaky");
    assert_eq!(decided.bound, Some(Bound::Io), "{decided}");
    assert_eq!(decided.measured, WARM_UP as u64, "{decided}");
}

/// Sums the leaves of a binary tree `depth` levels deep, each level spawned on Auto and
/// joined.
fn tree(rt: plait::Runtime, depth: u32) -> u64 {
    if depth == 0 {
        return 1;
    }
    let halves: Vec<_> = (0..2)
        .map(|_| {
            let inner = rt.clone();
            rt.spawn_on(Strand::Auto, move || tree(inner, depth - 1))
        })
        .collect();
    halves.into_iter().map(|h| h.join().unwrap()).sum()
}

#[test]
fn recursive_work_that_joins_completes_while_its_route_is_undecided() {
    // 2,047 calls, 1,023 of them waiting on their halves: more than tokio's 512 blocking
    // threads, had the burst gone there. Nested calls stay on the thread strand, where a
    // join runs queued work.
    const DEPTH: u32 = 10;
    let rt = plait::Runtime::builder().threads(2).build().unwrap();
    let inner = rt.clone();
    let leaves = rt
        .spawn_on(Strand::Auto, move || tree(inner, DEPTH))
        .join_timeout(Duration::from_secs(60))
        .expect("the recursion finishes");
    assert_eq!(leaves, 1 << DEPTH);
}

/// One closure type for every level of a tree whose leaves wait.
fn spawn_waiting_tree(rt: &plait::Runtime, depth: u32) -> plait::Handle<u64> {
    let inner = rt.clone();
    rt.spawn_on(Strand::Auto, move || {
        if depth == 0 {
            std::thread::sleep(Duration::from_millis(2));
            return 1;
        }
        let halves = [
            spawn_waiting_tree(&inner, depth - 1),
            spawn_waiting_tree(&inner, depth - 1),
        ];
        halves.into_iter().map(|h| h.join().unwrap()).sum()
    })
}

#[test]
fn recursive_calls_of_a_route_decided_io_bound_stay_on_the_thread_strand() {
    let rt = plait::Runtime::builder().threads(2).build().unwrap();
    for _ in 0..=WARM_UP {
        assert_eq!(spawn_waiting_tree(&rt, 0).join().unwrap(), 1);
    }
    let decided = decision(&rt, "spawn_waiting_tree");
    assert_eq!(decided.strand, Strand::Coroutine, "{decided}");
    // The root goes to a blocking-I/O thread; the 1,022 calls below it, had they gone
    // there too, would each hold one of tokio's 512 while joining their halves.
    const DEPTH: u32 = 10;
    let leaves = spawn_waiting_tree(&rt, DEPTH)
        .join_timeout(Duration::from_secs(60))
        .expect("the recursion finishes");
    assert_eq!(leaves, 1 << DEPTH);
}
