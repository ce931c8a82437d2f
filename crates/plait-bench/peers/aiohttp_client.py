"""aiohttp's ClientSession fetching N URLs with at most 100 in flight (asyncio.gather over a
Semaphore(100)), on uvloop and on the default loop, against a server given on the command
line (the web strand's example server, so that both clients meet the same server):

    python aiohttp_client.py http://127.0.0.1:18082/light     # 10,000 GETs, 3 runs each

Prints one JSON line in the peers' format; progress on stderr."""
import asyncio
import json
import platform
import statistics
import sys
import time

import aiohttp

N = 10_000
IN_FLIGHT = 100
REPEATS = 3


async def fetch_all(url):
    limit = asyncio.Semaphore(IN_FLIGHT)
    connector = aiohttp.TCPConnector(limit=IN_FLIGHT)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one():
            async with limit:
                async with session.get(url) as response:
                    response.raise_for_status()
                    return await response.text()

        started = time.perf_counter()
        bodies = await asyncio.gather(*(one() for _ in range(N)))
        wall = time.perf_counter() - started
    assert len(bodies) == N
    return wall


def main():
    url = sys.argv[1]
    rows = []
    for label, uvloop in (("aiohttp ClientSession (uvloop)", True), ("aiohttp ClientSession", False)):
        walls = []
        for _ in range(REPEATS + 1):  # the first is a warm-up
            if uvloop:
                import uvloop as uv
                walls.append(uv.run(fetch_all(url)))
            else:
                walls.append(asyncio.run(fetch_all(url)))
        walls = walls[1:]
        wall = statistics.median(walls)
        rows.append({
            "system": label,
            "workload": f"{N} GETs, {IN_FLIGHT} in flight",
            "n": N,
            "wall_s": wall,
            "tasks_per_s": N / wall,
            "per_task_us": wall / N * 1e6,
            "runs_wall_s": walls,
        })
        print(f"{label}: {N / wall:.0f} GETs/s", file=sys.stderr)
    print(json.dumps({"script": "aiohttp_client",
                      "machine": {"python": platform.python_version()},
                      "results": rows}))


if __name__ == "__main__":
    main()
