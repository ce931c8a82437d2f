//! The graph's command nodes, each run by a thread of its own: chains and fan-outs run
//! whole, a cancelled run or a runtime shut down kills and reaps what runs, and nothing is
//! left behind under load.

mod common;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use plait::Strand;
use plait::graph::{Graph, NodeStatus};
use plait::process::Command;

/// A command that says its process id on a line (through `told`), then sleeps for ten
/// minutes.
fn sleeper(told: mpsc::Sender<u32>) -> Command {
    Command::shell("echo $$; exec sleep 600").on_line(move |_, line| {
        if let Ok(pid) = String::from_utf8_lossy(line).trim().parse() {
            let _ = told.send(pid);
        }
    })
}

#[test]
fn a_chain_and_a_fan_of_commands_run_whole_and_pass_their_output_on() {
    let rt = common::runtime(2);
    let mut graph = Graph::new();
    // Each link adds one to what the last printed.
    let mut last = graph.command((), |()| Command::new("echo").arg("0"));
    for _ in 0..100 {
        last = graph.command(last, |before| {
            let n: u32 = String::from_utf8_lossy(&before.stdout)
                .trim()
                .parse()
                .unwrap();
            Command::new("echo").arg((n + 1).to_string())
        });
    }
    let _ = graph.node(last).keep();
    let fan: Vec<_> = (0..50)
        .map(|i| graph.command(last, move |_| Command::new("echo").arg(i.to_string())))
        .collect();
    let sum = graph.task(fan, |outputs| {
        outputs
            .iter()
            .map(|output| {
                String::from_utf8_lossy(&output.stdout)
                    .trim()
                    .parse::<u32>()
                    .unwrap()
            })
            .sum::<u32>()
    });
    let mut results = common::within_a_minute("the graph ends", move || {
        graph.runner(rt).limit(Strand::Process, 3).start().join()
    });
    assert!(results.is_success(), "{results:?}");
    assert_eq!(
        String::from_utf8_lossy(&results.take(last).unwrap().stdout).trim(),
        "100"
    );
    assert_eq!(results.take(sum).unwrap(), (0..50).sum::<u32>());
}

#[test]
fn cancelling_a_run_kills_and_reaps_its_running_commands() {
    let rt = common::runtime(2);
    let (tell, told) = mpsc::channel();
    let mut graph = Graph::new();
    let nodes: Vec<_> = (0..3)
        .map(|_| {
            let tell = tell.clone();
            graph.command((), move |()| sleeper(tell.clone()))
        })
        .collect();
    let run = graph.runner(rt).limit(Strand::Process, 3).start();
    let pids: Vec<u32> = (0..3).map(|_| told.recv().unwrap()).collect();
    let began = Instant::now();
    run.canceller().cancel();
    let results = common::within_a_minute("the cancelled run ends", move || run.join());
    assert!(
        began.elapsed() < Duration::from_secs(30),
        "{:?}",
        began.elapsed()
    );
    for node in nodes {
        assert_eq!(
            results.status(node.id()),
            NodeStatus::Cancelled,
            "{results:?}"
        );
    }
    // Reaped before the run ended: not even a zombie is left.
    for pid in pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "{pid} is still there"
        );
    }
}

#[test]
fn a_runtime_shut_down_kills_and_reaps_a_graphs_commands_before_it_returns() {
    let rt = common::runtime(2);
    let (tell, told) = mpsc::channel();
    let mut graph = Graph::new();
    let node = graph.command((), move |()| sleeper(tell.clone()));
    let run = graph.runner(rt.clone()).start();
    let pid = told.recv().unwrap();
    let report = rt.shutdown(Duration::from_millis(50));
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "{pid} is still there after shutdown returned"
    );
    assert_eq!(report.processes.cancelled, 1, "{report:?}");
    // The run was not cancelled: its node failed, cancelled by the runtime's end.
    let results = common::within_a_minute("the run ends", move || run.join());
    let error = results.error(node.id()).expect("the node failed");
    assert!(error.is_cancelled(), "{error}");
}

#[test]
fn many_commands_cancelled_at_random_leave_nothing_behind() {
    let rt = common::runtime(2);
    for round in 0..20_u64 {
        let (tell, told) = mpsc::channel();
        let mut graph = Graph::new();
        let mut nodes = Vec::new();
        for i in 0..40_u64 {
            let tell = tell.clone();
            // Quick ones, and some that sleep until killed.
            nodes.push(graph.command((), move |()| {
                if i % 5 == 0 {
                    sleeper(tell.clone())
                } else {
                    Command::new("true")
                }
            }));
        }
        drop(tell);
        let run = graph.runner(rt.clone()).limit(Strand::Process, 4).start();
        // Cancel once 1 to 3 of the sleepers have said they run.
        let mut pids: Vec<u32> = (0..1 + round % 3).map(|_| told.recv().unwrap()).collect();
        run.canceller().cancel();
        let results = common::within_a_minute("the cancelled run ends", move || run.join());
        pids.extend(told.try_iter());
        for node in &nodes {
            let status = results.status(node.id());
            assert!(
                matches!(status, NodeStatus::Succeeded | NodeStatus::Cancelled),
                "round {round}: {status:?}"
            );
        }
        for pid in pids {
            assert!(
                !std::path::Path::new(&format!("/proc/{pid}")).exists(),
                "round {round}: {pid} is still there"
            );
        }
    }
}
