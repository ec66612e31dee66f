"""The `gt` command line: start-up, one bead create, and concurrent creates.

Prints figures beside the targets of issue #19 and the baseline measured there; asserts nothing
about time. Every `gt` is a fresh process, as a person or an agent runs it.

  start-up         `gt --help` and `gt bead --help`: median wall time of N runs
  create           `gt bead create` on a local bare repository (its ledger already made); and the
                   CPU of its `gt` process, the command line read by the entry point (cli/entry.py)
                   against the same read by click, as every command was before; the same CPU for
                   a `gt bead comment` (handed to the committer too, as close and reopen are)
  8 concurrent     creates by 8 `gt` processes at a time against one per time: the throughput
                   ratio; afterwards the ledger must hold every bead once. Twice: on a local bare
                   repository, and on a remote across a "network": a smart-HTTP git server on
                   127.0.0.1 (tests/githttp.py, `git http-backend`) that waits --delay seconds
                   before answering each request, as a round trip to a git host would.
                   Beside each ratio, the most that this machine's cores allow: cores x the wall
                   time of one create alone / the CPU that one create costs when 8 run at a time
                   (the `gt` process, the committer, git and the server)
  by cores         the local ratio again with this bench and every process it starts pinned to
                   1, 2, 4, 8 cores (sched_setaffinity, inherited by `gt`, its committer and git):
                   how the ratio grows with the cores, where this machine has too few to show 4x
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
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
CLICK_GT = [sys.executable, "-c", "from gastown.cli.main import main; main()"]  # `gt` as click alone reads it
FIRST = "the first: makes the ledger and the cache"


def timed(args: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run([GT, *args], env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def process_cpu(program: list[str], args: list[str], env: dict[str, str], runs: int) -> float:
    """Median CPU seconds of the `program ARGS` process alone (its own and its waited children's:
    none for a create, whose committer is detached)."""
    used = []
    for _ in range(runs):
        before = cpu_seconds()
        subprocess.run([*program, *args], env=env, check=True, capture_output=True)
        used.append(cpu_seconds() - before)
    return statistics.median(used)


def median_time(args: list[str], env: dict[str, str], runs: int) -> float:
    return statistics.median(timed(args, env) for _ in range(runs))


def committers_cpu() -> dict[int, float]:
    """CPU seconds of each live group committer, with the children it waited for (git, and a local
    remote's receive-pack). Linux; empty elsewhere."""
    out = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if b"gastown.ledger.committer" in (stat.parent / "cmdline").read_bytes():
                fields = stat.read_text().rpartition(")")[2].split()
                out[int(stat.parent.name)] = sum(map(int, fields[11:15])) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError):
            continue
    return out


def cpu_seconds() -> float:
    """CPU of this process's waited children (the `gt` processes, the HTTP server's git)."""
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def creates_per_second(rig: str, env: dict[str, str], creates: int, at_once: int, tag: str) -> tuple[float, float]:
    """Creates per second, and CPU seconds per create (a committer that exits meanwhile is undercounted)."""
    def one(i: int) -> float:
        return timed(["bead", "--rig", rig, "create", f"{tag} {i}"], env)

    committers, cpu = committers_cpu(), cpu_seconds()
    start = time.perf_counter()
    with ThreadPoolExecutor(at_once) as pool:
        list(pool.map(one, range(creates)))
    rate = creates / (time.perf_counter() - start)
    committed = sum(v - committers.get(pid, 0.0) for pid, v in committers_cpu().items())
    return rate, (cpu_seconds() - cpu + committed) / creates


def throughput(rig: str, env: dict[str, str], creates: int, runs: int) -> tuple[float, float, float, float]:
    """(median seconds of one create, creates per second one at a time, 8 at a time, CPU seconds per
    create 8 at a time) on ``rig``, whose ledger must afterwards hold every bead once."""
    timed(["bead", "--rig", rig, "create", FIRST], env)
    create_s = median_time(["bead", "--rig", rig, "create", "one"], env, runs)
    one, _ = creates_per_second(rig, env, creates, 1, "alone")
    eight, cpu = creates_per_second(rig, env, creates, 8, "together")
    listed = subprocess.run([GT, "bead", "--rig", rig, "list", "--all", "--json"], env=env,
                            check=True, capture_output=True, text=True).stdout
    titles = Counter(b["title"] for b in json.loads(listed))
    expected = Counter({FIRST: 1, "one": runs} | {f"{tag} {i}": 1 for tag in ("alone", "together")
                                                   for i in range(creates)})
    if titles != expected:
        sys.exit(f"cli bench: the ledger of {rig} lost {sorted(expected - titles)} and has more of "
                 f"{sorted(titles - expected)}")
    return create_s, one, eight, cpu


@contextlib.contextmanager
def pinned(cores: int):
    """This process, and every process it starts meanwhile, on its first ``cores`` CPUs."""
    every = os.sched_getaffinity(0)
    os.sched_setaffinity(0, sorted(every)[:cores])
    try:
        yield
    finally:
        os.sched_setaffinity(0, every)


def by_cores(root: Path, env: dict[str, str], creates: int, runs: int) -> list[tuple[str, str, str, str]]:
    """The local ratio on 1, 2, 4 and 8 of this machine's cores (those it has), each on a fresh rig
    (and so a fresh committer, started under the same pinning)."""
    if not hasattr(os, "sched_setaffinity"):
        return []
    rows = []
    for cores in (n for n in (1, 2, 4, 8) if n <= len(os.sched_getaffinity(0))):
        rig = root / f"rig-{cores}-cores.git"
        subprocess.run(["git", "init", "--quiet", "--bare", str(rig)], check=True)
        with pinned(cores):
            _, one, eight, _ = throughput(str(rig), env, creates, runs)
        rows.append((f"  on {cores} core{'s' if cores > 1 else ''} ({eight:.1f} vs {one:.1f} per s)",
                     f"{eight / one:.1f}x", "", ""))
    return rows


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
        create_s, one, eight, cpu = throughput(str(rig), env, args.creates, args.runs)
        create_cpu, click_cpu = (process_cpu(program, ["bead", "--rig", str(rig), "create", "cpu"], env, args.runs)
                                 for program in ([GT], CLICK_GT))
        bead_id = subprocess.run([GT, "bead", "--rig", str(rig), "create", "commented"], env=env, check=True,
                                 capture_output=True, text=True).stdout.strip()
        comment_cpu, click_comment_cpu = (process_cpu(program, ["bead", "--rig", str(rig), "comment", bead_id, "cpu"],
                                                      env, args.runs)
                                          for program in ([GT], CLICK_GT))

        scaling = by_cores(root, env, args.creates, 3)

        served = root / "served"
        served.mkdir()
        subprocess.run(["git", "init", "--quiet", "--bare", str(served / "rig.git")], check=True)
        with GitHTTP(served, delay=args.delay) as server:
            http_s, http_one, http_eight, http_cpu = throughput(server.url("rig.git"), env, args.creates, args.runs)
            requests = server.requests

    http = f"http, {args.delay * 1000:.0f} ms a request"
    rows = [("start-up: gt --help", f"{help_s:.3f} s", "< 0.1 s", "0.25 s"),
            ("start-up: gt bead --help", f"{bead_help_s:.3f} s", "< 0.1 s", ""),
            ("gt bead create (local bare repository)", f"{create_s:.3f} s", "", "~0.37 s"),
            (f"gt bead create ({http})", f"{http_s:.3f} s", "", ""),
            (f"  CPU of its gt process (read by click: {1000 * click_cpu:.0f} ms, {click_cpu / create_cpu:.1f}x)",
             f"{1000 * create_cpu:.0f} ms", "", ""),
            (f"  the same for a gt bead comment (read by click: {1000 * click_comment_cpu:.0f} ms, "
             f"{click_comment_cpu / comment_cpu:.1f}x)", f"{1000 * comment_cpu:.0f} ms", "", ""),
            (f"8 creates at a time vs 1, local bare ({eight:.1f} vs {one:.1f} per s)", f"{eight / one:.1f}x",
             ">= 4x", "1.2x"),
            ceiling(one, cpu),
            *scaling,
            (f"8 creates at a time vs 1, {http} ({http_eight:.1f} vs {http_one:.1f} per s)",
             f"{http_eight / http_one:.1f}x", ">= 4x", ""),
            ceiling(http_one, http_cpu)]
    print(f"gt command line: {args.runs} runs each (median), {os.cpu_count()} cores, load {load_before} "
          f"(after: {load()}); the HTTP server answered {requests} requests")
    print(f"  {'':<66} {'figure':>8}  {'target':>8}  {'#19 baseline':>12}")
    for label, figure, target, baseline in rows:
        print(f"  {label:<66} {figure:>8}  {target:>8}  {baseline:>12}")


def ceiling(one: float, cpu: float) -> tuple[str, str, str, str]:
    """The row of the most that this machine's cores allow: cores x one create's wall time alone
    / one create's CPU at 8 at a time."""
    cores = os.cpu_count() or 1
    return (f"  the most {cores} cores allow ({1000 / one:.0f} ms a create alone, {1000 * cpu:.0f} ms of CPU)",
            f"{cores / one / cpu:.1f}x", "", "")


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3]) if Path("/proc/loadavg").exists() else "?"


if __name__ == "__main__":
    main()
