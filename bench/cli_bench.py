"""The `gt` command line: start-up, one bead create, and concurrent creates.

Prints figures beside the targets of issue #19 and the baseline measured there; asserts nothing
about time. Every `gt` is a fresh process, as a person or an agent runs it.

  start-up         `gt --help` and `gt bead --help`: median wall time of N runs
  create           `gt bead create` on a local bare repository (its ledger already made)
  8 concurrent     creates by 8 `gt` processes at a time against one per time: the throughput
                   ratio; afterwards the ledger must hold every bead once. Twice: on a local bare
                   repository, and on a remote across a "network": a smart-HTTP git server on
                   127.0.0.1 (tests/githttp.py, `git http-backend`) that waits --delay seconds
                   before answering each request, as a round trip to a git host would
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from githttp import GitHTTP  # noqa: E402

GT = str(Path(sys.executable).parent / "gt")
FIRST = "the first: makes the ledger and the cache"


def timed(args: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run([GT, *args], env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def median_time(args: list[str], env: dict[str, str], runs: int) -> float:
    return statistics.median(timed(args, env) for _ in range(runs))


def creates_per_second(rig: str, env: dict[str, str], creates: int, at_once: int, tag: str) -> float:
    def one(i: int) -> float:
        return timed(["bead", "--rig", rig, "create", f"{tag} {i}"], env)

    start = time.perf_counter()
    with ThreadPoolExecutor(at_once) as pool:
        list(pool.map(one, range(creates)))
    return creates / (time.perf_counter() - start)


def throughput(rig: str, env: dict[str, str], creates: int, runs: int) -> tuple[float, float, float]:
    """(median seconds of one create, creates per second one at a time, 8 at a time) on ``rig``,
    whose ledger must afterwards hold every bead once."""
    timed(["bead", "--rig", rig, "create", FIRST], env)
    create_s = median_time(["bead", "--rig", rig, "create", "one"], env, runs)
    one = creates_per_second(rig, env, creates, 1, "alone")
    eight = creates_per_second(rig, env, creates, 8, "together")
    listed = subprocess.run([GT, "bead", "--rig", rig, "list", "--all", "--json"], env=env,
                            check=True, capture_output=True, text=True).stdout
    titles = Counter(b["title"] for b in json.loads(listed))
    expected = Counter({FIRST: 1, "one": runs} | {f"{tag} {i}": 1 for tag in ("alone", "together")
                                                   for i in range(creates)})
    if titles != expected:
        sys.exit(f"cli bench: the ledger of {rig} lost {sorted(expected - titles)} and has more of "
                 f"{sorted(titles - expected)}")
    return create_s, one, eight


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=11, help="runs of each start-up and create measure")
    parser.add_argument("--creates", type=int, default=24, help="creates in each throughput measure")
    parser.add_argument("--delay", type=float, default=0.05,
                        help="seconds the HTTP git server waits before each answer (a round trip)")
    args = parser.parse_args()
    load_before = load()

    with tempfile.TemporaryDirectory(prefix="gt-cli-bench-") as tmp:
        root = Path(tmp)
        env = {**os.environ, "XDG_CACHE_HOME": str(root / "cache"), "GT_TOWN": str(root / "town"),
               "GT_ACTOR": "bench"}
        help_s = median_time(["--help"], env, args.runs)
        bead_help_s = median_time(["bead", "--help"], env, args.runs)

        rig = root / "rig.git"
        subprocess.run(["git", "init", "--quiet", "--bare", str(rig)], check=True)
        create_s, one, eight = throughput(str(rig), env, args.creates, args.runs)

        served = root / "served"
        served.mkdir()
        subprocess.run(["git", "init", "--quiet", "--bare", str(served / "rig.git")], check=True)
        with GitHTTP(served, delay=args.delay) as server:
            http_s, http_one, http_eight = throughput(server.url("rig.git"), env, args.creates, args.runs)
            requests = server.requests

    http = f"http, {args.delay * 1000:.0f} ms a request"
    rows = [("start-up: gt --help", f"{help_s:.3f} s", "< 0.1 s", "0.25 s"),
            ("start-up: gt bead --help", f"{bead_help_s:.3f} s", "< 0.1 s", ""),
            ("gt bead create (local bare repository)", f"{create_s:.3f} s", "", "~0.37 s"),
            (f"gt bead create ({http})", f"{http_s:.3f} s", "", ""),
            (f"8 creates at a time vs 1, local bare ({eight:.1f} vs {one:.1f} per s)", f"{eight / one:.1f}x",
             ">= 4x", "1.2x"),
            (f"8 creates at a time vs 1, {http} ({http_eight:.1f} vs {http_one:.1f} per s)",
             f"{http_eight / http_one:.1f}x", ">= 4x", "")]
    print(f"gt command line: {args.runs} runs each (median), {os.cpu_count()} cores, load {load_before} "
          f"(after: {load()}); the HTTP server answered {requests} requests")
    print(f"  {'':<66} {'figure':>8}  {'target':>8}  {'#19 baseline':>12}")
    for label, figure, target, baseline in rows:
        print(f"  {label:<66} {figure:>8}  {target:>8}  {baseline:>12}")


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3]) if Path("/proc/loadavg").exists() else "?"


if __name__ == "__main__":
    main()
