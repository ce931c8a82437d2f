"""`plait run` against make, ninja, xargs and GNU parallel on the same jobs, 2 at a time.

    cargo build --release -p plait-cli
    python3 crates/plait-bench/scripts/run_vs_make.py [--runs 5] [--plait target/release/plait]
        [--before OTHER/plait] [--only gzip]

Each job is written into a temporary folder for every tool, and the tools run in turn
(plait, make, ninja, ..., plait, make, ...), each run a fresh process timed from start to
exit; a tool that is not installed is left out, said once. Prints one markdown table: the
median wall time of each tool on each job, plait's median over each one's, and the median
of plait's time over each one's round by round (the two ran a few seconds apart, so a
machine that slows for a while slows both). `--only TEXT` runs the jobs whose name holds
it. Jobs:

* 2,000 independent `true` commands;
* a chain of 5,000 `true` commands, each after the last;
* the same chain of 5,000 `touch` commands when everything is up to date (the second run);
* 200 `gzip` of 1.1 MiB files.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time

JOBS = 2


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


def independent(n):
    names = [f"t{i}" for i in range(n)]
    return {
        "plait": "".join(f'[tasks.{t}]\ncmd = "true"\n' for t in names),
        "make": "all: " + " ".join(names) + "\n" + "".join(f"{t}:\n\t@true\n" for t in names)
        + ".PHONY: all " + " ".join(names) + "\n",
        "ninja": "rule t\n  command = true\n" + "".join(f"build {t}: t\n" for t in names),
        "xargs": "\n".join(["true"] * n) + "\n",
    }


def chain(n, command, files):
    """A chain of n tasks; with `files`, each makes the file its name says (so a second
    run finds it up to date)."""
    names = [f"t{i}" for i in range(n)]
    plait, make, ninja = [], ["all: " + names[-1] + "\n"], ["rule t\n  command = " + command + " $out\n"]
    for i, t in enumerate(names):
        target = f"{t}.done" if files else t
        need = [] if i == 0 else [names[i - 1]]
        cmd = f"{command} {target}" if files else command
        outputs = f'outputs = ["{target}"]\n' if files else ""
        needs = f'needs = ["{need[0]}"]\n' if need else ""
        plait.append(f'[tasks.{t}]\ncmd = "{cmd}"\n{needs}{outputs}')
        prev = (f"{need[0]}.done" if files else need[0]) if need else ""
        make.append(f"{target}: {prev}\n\t@{cmd}\n")
        ninja.append(f"build {target}: t {prev}\n" if files else f"build {t}: t {prev}\n")
    if files:
        make[0] = f"all: {names[-1]}.done\n"
    else:
        make.append(".PHONY: all " + " ".join(names) + "\n")
        ninja[0] = "rule t\n  command = " + command + "\n"
    return {"plait": "".join(plait), "make": "".join(make), "ninja": "".join(ninja)}


def gzips(n, folder):
    block = os.urandom(64 * 1024).hex().encode()  # compressible, 128 KiB
    for i in range(n):
        with open(os.path.join(folder, f"f{i}.dat"), "wb") as f:
            for _ in range(9):
                f.write(block)
    names = [f"f{i}.dat" for i in range(n)]
    return {
        "plait": "".join(f'[tasks.z{i}]\nargv = ["gzip", "-kf", "{f}"]\n' for i, f in enumerate(names)),
        "make": "all: " + " ".join(f"{f}.gz" for f in names) + "\n"
        + "".join(f"{f}.gz: {f}\n\t@gzip -kf {f}\n" for f in names),
        "ninja": "rule z\n  command = gzip -kf $in\n" + "".join(f"build {f}.gz: z {f}\n" for f in names),
        "xargs": "\n".join(names) + "\n",
    }


def commands(plait, folder, job, fresh, before=None):
    """Each tool's command line for a job written into `folder`, and what to clear
    between runs (`fresh`: start from nothing; otherwise the state stays)."""
    rm = "rm -rf .plait *.done *.gz .ninja_log .ninja_deps; " if fresh else ""
    tools = {}
    if "plait" in job:
        tools["plait"] = f"{rm}{plait} run job.toml --jobs {JOBS} > /dev/null"
        if before:
            # Another build of plait (an earlier commit, say), measured in the same rounds,
            # on a copy of the job file: its journal is its own (named after the file).
            tools["plait-before"] = f"{rm}{before} run job-before.toml --jobs {JOBS} > /dev/null"
    if "make" in job and shutil.which("make"):
        tools["make"] = f"{rm}make -s -j{JOBS} -f job.mk > /dev/null"
    if "ninja" in job and shutil.which("ninja"):
        tools["ninja"] = f"{rm}ninja -j{JOBS} -f job.ninja > /dev/null"
    if "xargs" in job:
        per = "gzip -kf" if "gzip" in job["plait"] else "sh -c true"
        tools["xargs"] = f"{rm}xargs -P{JOBS} -n1 {per} < job.list > /dev/null"
        if shutil.which("parallel"):
            tools["parallel"] = f"{rm}parallel -j{JOBS} {per} < job.list > /dev/null"
    return tools


def measure(folder, tools, runs):
    walls = {tool: [] for tool in tools}
    for _ in range(runs + 1):  # the first round warms up and is not kept
        for tool, line in tools.items():
            started = time.perf_counter()
            subprocess.run(["sh", "-c", line], cwd=folder, check=True)
            walls[tool].append(time.perf_counter() - started)
    return {tool: w[1:] for tool, w in walls.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--plait", default=os.path.abspath("target/release/plait"))
    parser.add_argument("--before", help="another plait binary to measure beside it")
    parser.add_argument("--only", default="", help="run only the jobs whose name holds this")
    args = parser.parse_args()
    for tool in ("make", "ninja", "parallel"):
        if not shutil.which(tool):
            print(f"({tool} is not installed: left out)")
    rows = []
    cases = [
        ("2,000 independent `true`", lambda d: independent(2000), True, None),
        ("a chain of 5,000 `true`", lambda d: chain(5000, "true", False), True, None),
        ("the chain of 5,000, all up to date", lambda d: chain(5000, "touch", True), False, "touch"),
        ("200 `gzip` of 1.1 MiB", lambda d: gzips(200, d), True, None),
    ]
    for name, make_job, fresh, prime in cases:
        if args.only not in name:
            continue
        with tempfile.TemporaryDirectory(prefix="plait-vs-make-") as folder:
            job = make_job(folder)
            write(os.path.join(folder, "job.toml"), job["plait"])
            write(os.path.join(folder, "job-before.toml"), job["plait"])
            if "make" in job:
                write(os.path.join(folder, "job.mk"), job["make"])
            if "ninja" in job:
                write(os.path.join(folder, "job.ninja"), job["ninja"])
            if "xargs" in job:
                write(os.path.join(folder, "job.list"), job["xargs"])
            tools = commands(args.plait, folder, job, fresh, args.before)
            if prime:
                # Everything made once, so that every run finds it up to date.
                for line in tools.values():
                    subprocess.run(["sh", "-c", line], cwd=folder, check=True)
            walls = measure(folder, tools, args.runs)
        rows.append((name, walls))
        print(f"{name}: " + ", ".join(
            f"{t} {statistics.median(w):.3f} s" for t, w in walls.items()), flush=True)
    print()
    print("| job | tool | median wall | plait / tool | round by round |")
    print("|---|---|---:|---:|---:|")
    for name, walls in rows:
        plait = walls["plait"]
        for tool, w in walls.items():
            median = statistics.median(w)
            ratio = paired = ""
            if tool != "plait":
                ratio = f"{statistics.median(plait) / median:.2f}"
                paired = f"{statistics.median(p / t for p, t in zip(plait, w)):.2f}"
            print(f"| {name} | {tool} | {median:.3f} s | {ratio} | {paired} |")


if __name__ == "__main__":
    main()
