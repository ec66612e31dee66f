"""The `gt` command line: start-up, one bead create, and concurrent creates.

Prints figures beside the targets of issue #19 and the baseline measured there; asserts nothing
about time. Every `gt` is a fresh process, as a person or an agent runs it.

  start-up         `gt --help` and `gt bead --help`: median wall time of N runs
  create           `gt bead create` on a local bare repository (its ledger already made)
  8 concurrent     creates by 8 `gt` processes at a time against one per time: the throughput
                   ratio; afterwards the ledger must hold every bead once
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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

GT = str(Path(sys.executable).parent / "gt")


def timed(args: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run([GT, *args], env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def median_time(args: list[str], env: dict[str, str], runs: int) -> float:
    return statistics.median(timed(args, env) for _ in range(runs))


def creates_per_second(rig: Path, env: dict[str, str], creates: int, at_once: int, tag: str) -> float:
    def one(i: int) -> float:
        return timed(["bead", "--rig", str(rig), "create", f"{tag} {i}"], env)

    start = time.perf_counter()
    with ThreadPoolExecutor(at_once) as pool:
        list(pool.map(one, range(creates)))
    return creates / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=11, help="runs of each start-up and create measure")
    parser.add_argument("--creates", type=int, default=24, help="creates in each throughput measure")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="gt-cli-bench-") as tmp:
        root = Path(tmp)
        rig = root / "rig.git"
        subprocess.run(["git", "init", "--quiet", "--bare", str(rig)], check=True)
        env = {**os.environ, "XDG_CACHE_HOME": str(root / "cache"), "GT_TOWN": str(root / "town"),
               "GT_ACTOR": "bench"}
        timed(["bead", "--rig", str(rig), "create", "the first: makes the ledger and the cache"], env)

        help_s = median_time(["--help"], env, args.runs)
        bead_help_s = median_time(["bead", "--help"], env, args.runs)
        create_s = median_time(["bead", "--rig", str(rig), "create", "one"], env, args.runs)
        one = creates_per_second(rig, env, args.creates, 1, "alone")
        eight = creates_per_second(rig, env, args.creates, 8, "together")

        listed = subprocess.run([GT, "bead", "--rig", str(rig), "list", "--all", "--json"], env=env,
                                check=True, capture_output=True, text=True).stdout
        titles = [b["title"] for b in json.loads(listed)]
        expected = 1 + args.runs + 2 * args.creates
        if len(titles) != expected or len(set(titles)) != len(titles) - args.runs + 1:
            sys.exit(f"cli bench: the ledger holds {len(titles)} beads, expected {expected}")

    rows = [("start-up: gt --help", f"{help_s:.3f} s", "< 0.1 s", "0.25 s"),
            ("start-up: gt bead --help", f"{bead_help_s:.3f} s", "< 0.1 s", ""),
            ("gt bead create (local bare repository)", f"{create_s:.3f} s", "", "~0.37 s"),
            (f"8 creates at a time vs 1 ({eight:.1f} vs {one:.1f} per s)", f"{eight / one:.1f}x", ">= 4x", "1.2x")]
    print(f"gt command line: {args.runs} runs each (median), {os.cpu_count()} cores")
    print(f"  {'':<48} {'figure':>8}  {'target':>8}  {'#19 baseline':>12}")
    for label, figure, target, baseline in rows:
        print(f"  {label:<48} {figure:>8}  {target:>8}  {baseline:>12}")

if __name__ == "__main__":
    main()
