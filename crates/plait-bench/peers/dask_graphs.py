"""Dask's schedulers on the graphs plait's `graph` suite measures: no-op tasks in a chain,
a fan-out then fan-in, and a random DAG (each node needs up to three of the thousand nodes
before it, from the same xorshift sequence as the Rust suite), of 100,000 and 1,000,000
nodes. Each case runs in a fresh child process, so that its peak memory is its own.

    python dask_graphs.py                 # every case: ~10 minutes on 2 cores
    python dask_graphs.py --sizes 100000  # the 100,000-node cases only

Prints one JSON line on stdout in the peers' format ({"script", "machine", "results": [...]}),
progress on stderr. Graphs are raw dask task dicts, the cheapest form to build; build time
is reported apart from the run."""
import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

MASK = (1 << 64) - 1
# Above this, the random DAG is not run on Dask (see not_run in the output).
RANDOM_LIMIT = 100_000
# A case running longer is stopped and reported as not run.
CHILD_TIMEOUT_S = 900


def log(*parts):
    print(*parts, file=sys.stderr, flush=True)


def noop(*_args):
    return None


def random_inputs(i, state):
    """The same sequence as random_inputs in crates/plait-bench/src/suites/graph.rs."""
    inputs = []
    if i == 0:
        return inputs
    window = min(i, 1000)
    for _ in range(min(3, i)):
        rng = state[0]
        rng ^= (rng << 13) & MASK
        rng ^= rng >> 7
        rng ^= (rng << 17) & MASK
        state[0] = rng
        j = i - 1 - (rng % window)
        if j not in inputs:
            inputs.append(j)
    return inputs


def build(shape, n):
    if shape == "chain":
        dsk = {0: (noop,)}
        for i in range(1, n):
            dsk[i] = (noop, i - 1)
        return dsk, [n - 1]
    if shape == "fan-out/fan-in":
        dsk = {0: (noop,)}
        for i in range(1, n - 1):
            dsk[i] = (noop, 0)
        dsk[n - 1] = (noop, *range(1, n - 1))
        return dsk, [n - 1]
    if shape == "random DAG":
        state = [0x2545F4914F6CDD1D]
        dsk = {}
        consumed = set()
        for i in range(n):
            inputs = random_inputs(i, state)
            consumed.update(inputs)
            dsk[i] = (noop, *inputs)
        sinks = [i for i in range(n) if i not in consumed]
        return dsk, sinks
    raise ValueError(shape)


def rss_kib():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def child(shape, n, scheduler, repeats):
    import dask
    import dask.threaded

    get = dask.get if scheduler == "sync" else dask.threaded.get
    kwargs = {} if scheduler == "sync" else {"num_workers": 2}
    before = rss_kib()
    walls, builds = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        dsk, keys = build(shape, n)
        builds.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        get(dsk, keys, **kwargs)
        walls.append(time.perf_counter() - t0)
        del dsk
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(json.dumps({
        "walls": walls,
        "builds": builds,
        "peak_rss_growth_bytes": (peak - before) * 1024,
    }), flush=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="*", default=[100_000, 1_000_000])
    parser.add_argument("--child", nargs=4, metavar=("SHAPE", "N", "SCHEDULER", "REPEATS"))
    args = parser.parse_args()
    if args.child:
        shape, n, scheduler, repeats = args.child
        child(shape, int(n), scheduler, int(repeats))
        return
    rows, not_run = [], []
    for n in args.sizes:
        for shape in ("chain", "fan-out/fan-in", "random DAG"):
            repeats = 3 if n <= 100_000 and shape != "random DAG" else 1
            for scheduler in ("sync", "threads"):
                system = "dask sync" if scheduler == "sync" else "dask threads (2)"
                workload = f"{shape} of {n} no-op nodes"
                if shape == "random DAG" and n > RANDOM_LIMIT:
                    not_run.append({"system": system, "workload": workload, "why": (
                        "dask.order is superlinear on this graph (measured: 10,000 nodes 0.47 s, "
                        "20,000 1.3 s of ordering alone; 40,000 nodes 8.7 s and 1.7 GB in all): "
                        "a million would take hours and more memory than this machine has")})
                    log(f"dask_graphs: {system}, {workload}: not run ({not_run[-1]['why']})")
                    continue
                log(f"dask_graphs: {system}, {workload}")
                try:
                    out = subprocess.run(
                        [sys.executable, __file__, "--child", shape, str(n), scheduler, str(repeats)],
                        capture_output=True, text=True, check=True, timeout=CHILD_TIMEOUT_S,
                    )
                except subprocess.TimeoutExpired:
                    not_run.append({"system": system, "workload": workload,
                                    "why": f"over {CHILD_TIMEOUT_S} s, stopped"})
                    log(f"  {not_run[-1]['why']}")
                    continue
                result = json.loads(out.stdout.strip().splitlines()[-1])
                wall = statistics.median(result["walls"])
                rows.append({
                    "system": system,
                    "workload": workload,
                    "n": n,
                    "wall_s": round(wall, 4),
                    "tasks_per_s": round(n / wall, 1),
                    "per_task_us": round(wall / n * 1e6, 3),
                    "runs_wall_s": [round(w, 4) for w in result["walls"]],
                    "build_s": round(statistics.median(result["builds"]), 4),
                    "peak_rss_growth_bytes": result["peak_rss_growth_bytes"],
                })
                log(f"  {rows[-1]['per_task_us']} us per task, build {rows[-1]['build_s']} s, "
                    f"peak RSS +{result['peak_rss_growth_bytes'] / 2**20:.0f} MiB")
    print(json.dumps({
        "script": "dask_graphs.py",
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "platform": platform.platform()},
        "results": rows,
        "not_run": not_run,
    }), flush=True)


if __name__ == "__main__":
    main()
