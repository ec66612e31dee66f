"""Dispatch latency and scheduler utilisation in local mode, with real processes and real git.

A rig with a limit of L polecats gets a convoy of N independent beads; each session (the
`script` runtime) works for a fixed time. Figures:

  dispatch latency   from a session ending (its result recorded) to the next queued bead's
                     session starting: p50, p95, max
  utilisation        running sessions / limit, time-weighted, while work is still queued

Prints figures; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from gastown import convoy as convoys
from gastown.api.common import RuntimeSpec
from gastown.ledger import Ledger, Status
from gastown.local.driver import RigConfig, RigDriver
from gastown.runtimes.local import LocalBackend

AGENT = """
import os, pathlib, sys, time
time.sleep(float(sys.argv[1]))
pathlib.Path("work").mkdir(exist_ok=True)
pathlib.Path("work", os.environ["GT_BEAD"] + ".txt").write_text("done\\n")
"""


def git(*args: str, cwd: Path | None = None) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def make_rig(root: Path) -> Path:
    remote = root / "rig.git"
    git("init", "-q", "--bare", "--initial-branch=main", str(remote))
    git("clone", "-q", str(remote), str(root / "seed"))
    (root / "seed" / "README.md").write_text("bench\n")
    git("add", "-A", cwd=root / "seed")
    git("-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qm", "seed", cwd=root / "seed")
    git("push", "-q", "origin", "HEAD:main", cwd=root / "seed")
    return remote


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--beads", type=int, default=24)
    ap.add_argument("--limit", type=int, default=4)
    ap.add_argument("--work", type=float, nargs="+", default=[1.0, 5.0],
                    help="seconds each session works (one run per value)")
    args = ap.parse_args()
    for work in args.work:
        run(args.beads, args.limit, work)


def run(n_beads: int, limit: int, work: float) -> None:

    root = Path(tempfile.mkdtemp(prefix="gastown-sched-bench-"))
    remote = make_rig(root)
    agent = root / "agent.py"
    agent.write_text(AGENT)
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    with Ledger(str(remote), cache_dir=root / "cache", actor="bench") as ledger:
        info = convoys.ConvoyInfo("bench", "bench", "rig", "beads")
        plan = tuple(convoys.PlannedBead(f"b{i}", f"bead {i}") for i in range(n_beads))
        ledger.apply(convoys.OpenConvoy(info, "bench"))
        ledger.apply(convoys.PlanConvoy("bench", plan, "bench"))
        backend = LocalBackend(root / "town", cache_dir=root / "town-cache", heartbeat_interval=1.0)
        config = RigConfig("rig", str(remote), limit,
                           RuntimeSpec(preset="script", args=[sys.executable, str(agent), str(work)]))
        driver = RigDriver(config, backend, ledger)
        stop = threading.Event()
        thread = threading.Thread(target=driver.run, args=(stop,), kwargs={"poll": 0.05}, daemon=True)
        began = time.time()
        thread.start()
        while True:
            beads = ledger.beads()
            if all(b.status in (Status.IN_PROGRESS, Status.CLOSED) and not b.metadata.get("session")
                   for b in beads.values() if b.type == "task"):
                break
            time.sleep(0.2)
        stop.set()
        thread.join(10)
        wall = time.time() - began

    sessions = []
    for req in (root / "town" / "sessions").glob("*/request.json"):
        result = json.loads((req.parent / "result.json").read_text())
        sessions.append((json.loads(req.read_text())["started"], result["ended_at"], result["status"]))
    starts = sorted(s for s, _, _ in sessions)
    ends = sorted(e for _, e, _ in sessions)
    # each start after the first wave took the slot of the earliest unmatched end before it
    latencies, pending = [], list(ends)
    for start in starts[limit:]:
        freed = [e for e in pending if e <= start]
        if freed:
            latencies.append(start - freed[0])
            pending.remove(freed[0])
    # utilisation while work was queued: from the first start to the last start
    events = sorted([(s, 1) for s in starts] + [(e, -1) for e in ends])
    busy_time, running, last_t = 0.0, 0, starts[0]
    for t, delta in events:
        if t > starts[-1]:
            busy_time += running * (starts[-1] - last_t)
            break
        busy_time += running * (t - last_t)
        running, last_t = running + delta, t
    window = starts[-1] - starts[0]
    utilisation = busy_time / (limit * window) if window > 0 else 1.0
    peak = max(itertools.accumulate(d for _, d in events))

    print(f"scheduler benchmark: {n_beads} beads, limit {limit}, {work:.1f} s of agent work per session "
          f"({os.cpu_count()} cores), local mode")
    print(f"  sessions                 {len(sessions)} ({sum(1 for *_, s in sessions if s == 'completed')} completed), "
          f"peak running {peak} (limit {limit})")
    print(f"  dispatch latency         p50 {statistics.median(latencies):.3f} s   p95 {percentile(latencies, 95):.3f} s"
          f"   max {max(latencies):.3f} s   ({len(latencies)} hand-overs)")
    print(f"  utilisation while queued {utilisation * 100:.1f} %")
    ideal = n_beads / limit * work
    print(f"  wall time                {wall:.1f} s (ideal {ideal:.1f} s of pure work: {ideal / wall * 100:.0f} %)")


if __name__ == "__main__":
    main()
