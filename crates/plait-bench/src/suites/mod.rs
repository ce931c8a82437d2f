//! The benchmark suites: each measures plait and its Rust peers in the same run.

pub(crate) mod coroutine;
pub(crate) mod cpu;
pub(crate) mod graph;
pub(crate) mod join;
pub(crate) mod map;
pub(crate) mod memory;
pub(crate) mod process;
pub(crate) mod queue;
pub(crate) mod queue_million;
pub(crate) mod queue_redis;
pub(crate) mod scope;
pub(crate) mod spawn;
pub(crate) mod waits;

use crate::context::Context;
use crate::report::Row;

/// A suite's name and what runs it.
pub(crate) struct Suite {
    pub(crate) name: &'static str,
    pub(crate) about: &'static str,
    pub(crate) run: fn(&Context) -> Vec<Row>,
}

pub(crate) const ALL: &[Suite] = &[
    Suite {
        name: "spawn",
        about: "thread strand: spawn + join of tiny tasks vs raw rayon ThreadPool::spawn",
        run: spawn::run,
    },
    Suite {
        name: "scope",
        about: "thread strand: scoped spawns vs raw rayon scope + spawn",
        run: scope::run,
    },
    Suite {
        name: "join",
        about: "thread strand: divide and conquer by join, down to single items, vs rayon join",
        run: join::run,
    },
    Suite {
        name: "map",
        about: "thread strand: parallel map of tiny items vs rayon par_iter and a plain loop",
        run: map::run,
    },
    Suite {
        name: "cpu",
        about: "thread strand: CPU-bound kernel, speedup over one thread",
        run: cpu::run,
    },
    Suite {
        name: "coroutine",
        about: "coroutine strand: spawn_async + await of tiny tasks vs raw tokio",
        run: coroutine::run,
    },
    Suite {
        name: "waits",
        about: "coroutine strand: 10,000 concurrent 10 ms waits vs raw tokio",
        run: waits::run,
    },
    Suite {
        name: "memory",
        about: "coroutine strand: memory per idle coroutine vs raw tokio",
        run: memory::run,
    },
    Suite {
        name: "graph",
        about: "task graphs: scheduler cost per no-op node (chain, fan-out/in, random DAG), memory per node",
        run: graph::run,
    },
    Suite {
        name: "process",
        about: "process strand: tiny tasks through worker processes, start-up, crash recovery",
        run: process::run,
    },
    Suite {
        name: "queue",
        about: "durable queue: no-op tasks end to end through SQLite and a worker; enqueue-to-start latency",
        run: queue::run,
    },
    Suite {
        name: "queue-million",
        about: "durable queue: one million queued tasks: enqueue, `plait status`, a worker's memory",
        run: queue_million::run,
    },
    Suite {
        name: "queue-redis",
        about: "the queue on Redis: no-op tasks end to end with 1, 2 and 4 worker processes; enqueue-to-start latency",
        run: queue_redis::run,
    },
];
