"""10,000 idle connections against a hello-world server: the server's memory (RSS, its
children included) before, while they are held, and after; how many it still holds when
measured; and how long a GET takes meanwhile. Each idle connection is opened and sends
nothing. Server and client share the machine.

    cargo build --release -p plait-web --example web_server
    /tmp/plait-peers-venv/bin/python crates/plait-bench/scripts/web_idle.py [plait|aiohttp-uvloop|sanic ...]

Needs `ulimit -n` above 10,000 (the client holds them all). Prints one line per server.
"""
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.abspath(__file__)) + "/../../.."
PEERS = ROOT + "/../shared/bench/peers/http_servers.py"
IDLE = 10_000


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(name, port):
    if name == "plait":
        command = [ROOT + "/target/release/examples/web_server"]
        env = dict(os.environ, PORT=str(port))
    else:
        command = [sys.executable, PEERS, "--serve", name, str(port)]
        env = os.environ
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(300):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1).read()
            return proc
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"{name} did not answer")


def tree(pid):
    """The pid and its descendants."""
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        try:
            with open(f"/proc/{p}/task/{p}/children") as f:
                todo.extend(int(c) for c in f.read().split())
        except OSError:
            pass
    return pids


def rss_mib(pid):
    total = 0
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def sockets(pid):
    held = 0
    for p in tree(pid):
        try:
            for fd in os.listdir(f"/proc/{p}/fd"):
                if os.readlink(f"/proc/{p}/fd/{fd}").startswith("socket:"):
                    held += 1
        except OSError:
            pass
    return held


def get_ms(port, n=20):
    times = []
    for _ in range(n):
        t = time.perf_counter()
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30).read()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


async def hold(port, n):
    conns = []
    for start in range(0, n, 500):
        batch = await asyncio.gather(
            *(asyncio.open_connection("127.0.0.1", port) for _ in range(min(500, n - start))),
            return_exceptions=True,
        )
        conns.extend(c for c in batch if not isinstance(c, Exception))
    return conns


def bench(name):
    """Two rounds: the second shows whether memory freed by the first is reused (bounded)
    or grows again."""
    port = free_port()
    proc = start(name, port)
    try:
        time.sleep(0.5)
        before = rss_mib(proc.pid)
        loop = asyncio.new_event_loop()
        rounds = []
        for _ in range(2):
            t = time.perf_counter()
            conns = loop.run_until_complete(hold(port, IDLE))
            opened = time.perf_counter() - t
            time.sleep(0.5)
            held, during, get = sockets(proc.pid), rss_mib(proc.pid), get_ms(port)
            for _, writer in conns:
                writer.close()
            loop.run_until_complete(asyncio.sleep(1))
            time.sleep(1)
            rounds.append((len(conns), opened, held, during, get, rss_mib(proc.pid)))
        first = rounds[0]
        print(
            f"{name}: {first[0]} opened in {first[1]:.1f}s; server holds {first[2]} sockets; "
            f"RSS {before:.1f} MiB idle, {first[3]:.1f} MiB with them "
            f"({(first[3] - before) * 1024 / max(first[2], 1):.1f} KiB each), "
            f"{first[5]:.1f} MiB after; second round {rounds[1][3]:.1f} MiB with them, "
            f"{rounds[1][5]:.1f} MiB after; GET meanwhile {first[4]:.2f} ms (median of 20)",
            flush=True,
        )
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    for name in sys.argv[1:] or ["plait", "aiohttp-uvloop", "sanic"]:
        bench(name)
