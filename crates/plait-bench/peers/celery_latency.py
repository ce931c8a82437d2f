"""Celery's latency from `.delay` to the task's start in a worker, one task at a time (each
sent once the last one's result is back), as plait's `queue` suite measures its own: Redis
broker and result backend (a redis-server of its own on 127.0.0.1:6398, started and stopped
here), one prefork worker of concurrency 2, as ../shared/bench/peers/celery_queue.py runs.

    python celery_latency.py            # 2,000 samples after 100 of warm-up

Prints one JSON line on stdout in the peers' format ({"script", "machine", "results": [...]}),
progress on stderr. The row's wall time is the p50 latency of one task (n = 1); the p99 is in
its notes. This file is also the worker's app module (celery -A celery_latency)."""
import json
import os
import platform
import statistics
import subprocess
import sys
import time

PORT = 6398
SAMPLES = 2_000
WARM_UP = 100
CONCURRENCY = 2
HERE = os.path.dirname(os.path.abspath(__file__))

from celery import Celery  # noqa: E402

app = Celery("celery_latency", broker=f"redis://127.0.0.1:{PORT}/0",
             backend=f"redis://127.0.0.1:{PORT}/1")
app.conf.update(broker_connection_retry_on_startup=True, worker_hijack_root_logger=False)


@app.task
def since(sent):
    """Seconds from `sent` (the sender's clock: the same machine's) to this task's start."""
    return time.time() - sent


def log(*parts):
    print(*parts, file=sys.stderr, flush=True)


def start_redis():
    import redis
    proc = subprocess.Popen(["redis-server", "--bind", "127.0.0.1", "--port", str(PORT),
                             "--save", "", "--appendonly", "no", "--loglevel", "warning"],
                            stdout=subprocess.DEVNULL)
    client = redis.Redis(host="127.0.0.1", port=PORT)
    for _ in range(100):
        try:
            client.ping()
            return proc
        except redis.ConnectionError:
            time.sleep(0.05)
    raise RuntimeError("redis-server did not start")


def start_worker():
    cmd = [sys.executable, "-m", "celery", "-A", "celery_latency", "worker", "--pool=prefork",
           f"--concurrency={CONCURRENCY}", "--loglevel=WARNING", "--without-gossip",
           "--without-mingle", "--without-heartbeat", "-n", "latency@localhost"]
    return subprocess.Popen(cmd, cwd=HERE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def stop(proc):
    """Ends the process and, for the worker, its pool's children (its process group)."""
    try:
        os.killpg(proc.pid, 15)
    except (ProcessLookupError, PermissionError):
        proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        proc.wait()


def main():
    redis_server = start_redis()
    try:
        worker = start_worker()
        try:
            since.delay(time.time()).get(timeout=60)  # the worker is up and consuming
            for _ in range(WARM_UP):
                since.delay(time.time()).get(timeout=60)
            samples = sorted(since.delay(time.time()).get(timeout=60) for _ in range(SAMPLES))
        finally:
            stop(worker)
    finally:
        redis_server.terminate()
        redis_server.wait()
    p50 = statistics.median(samples)
    p99 = samples[int((len(samples) - 1) * 0.99)]
    row = {
        "system": f"celery prefork worker (concurrency {CONCURRENCY}) + redis",
        "workload": "enqueue to start, one task at a time (p50)",
        "n": 1,
        "wall_s": p50,
        "tasks_per_s": 1 / p50,
        "per_task_us": p50 * 1e6,
        "runs_wall_s": [p50],
        "notes": f"{SAMPLES} samples, p99 {p99 * 1e6:.0f} us",
    }
    log(row)
    print(json.dumps({
        "script": "celery_latency",
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "platform": platform.platform()},
        "results": [row],
    }), flush=True)


if __name__ == "__main__":
    main()
