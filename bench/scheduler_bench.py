"""Dispatch latency and scheduler utilisation in local mode, with real processes and real git.

A rig with a limit of L polecats gets a convoy of N independent beads; each session (the
`script` runtime) works for a fixed time. The agent writes a timestamp as its first act and
another as its last. Figures, idle and under load (as many busy processes as cores), each over
--runs runs (3) with their hand-overs pooled:

  agent-to-agent gap  from an agent's last instruction (its exit: its slot frees) to the next
                      queued bead's agent's first instruction: p50, p95, max. Everything between
                      is counted: the wrapper saying its agent exited (its wrap-up, the branch
                      pushed and the result booked, goes on beside), the daemon noticing, the pass
                      (its ledger write hooking the bead), the next session prepared (checkout,
                      prompt), its wrapper's start, the agent's
  wrapper spawn       the old figure: from a session's recorded end to the next wrapper's start
  utilisation         running agents / limit, time-weighted, while work is still queued
  session lookup      in a town that has run 5,000 sessions (80 polecats), what a start reads to
                      end whatever its polecat's earlier sessions left running: that polecat's
                      session dirs, against every session dir of the town (the naive way); and
                      every session listed again by a reader that listed them before (the TUI):
                      it parses only the session dirs new since

Prints figures beside the target and the baseline (issue #19); asserts nothing about time.
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
from dataclasses import dataclass
from pathlib import Path

from gastown import convoy as convoys
from gastown.api.common import RuntimeSpec
from gastown.ledger import Ledger, Status
from gastown.local.daemon import CHECK_SECONDS
from gastown.local.driver import RigConfig, RigDriver
from gastown.runtimes.local import LocalBackend

AGENT = """
import time; first = time.time()
import os, pathlib, sys
stamps = pathlib.Path(sys.argv[2])
(stamps / (os.environ["GT_BEAD"] + ".first")).write_text(repr(first))
time.sleep(float(sys.argv[1]))
pathlib.Path("work").mkdir(exist_ok=True)
pathlib.Path("work", os.environ["GT_BEAD"] + ".txt").write_text("done\\n")
(stamps / (os.environ["GT_BEAD"] + ".last")).write_text(repr(time.time()))
"""
TARGET = "p50 < 0.3 s"
BASELINE = {False: "p50 0.93 s", True: "p50 2.8 s"}  # idle, loaded (issue #19)
LOAD = "while True: pass"


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
    ap.add_argument("--beads", type=int, default=16)
    ap.add_argument("--limit", type=int, default=4)
    ap.add_argument("--work", type=float, default=1.0, help="seconds each session works")
    ap.add_argument("--load", type=int, default=os.cpu_count() or 2, help="busy processes in the loaded run")
    ap.add_argument("--runs", type=int, default=3, help="runs of each scenario, their hand-overs pooled")
    args = ap.parse_args()
    for loaded in (False, True):
        load = args.load if loaded else 0
        report([run(args.beads, args.limit, args.work, load) for _ in range(args.runs)], args.beads, args.limit,
               args.work, load)
    session_lookup()


def session_lookup(sessions: int = 5000, polecats: int = 80) -> None:
    with tempfile.TemporaryDirectory(prefix="gastown-sched-bench-") as tmp:
        backend = LocalBackend(Path(tmp) / "town")
        for i in range(sessions):
            sdir = backend.town / "sessions" / f"p{i % polecats}-gt-{i:05d}-20261201000000-0000"
            sdir.mkdir(parents=True)
            request = {"rig": "rig", "remote": "/rig.git", "bead": f"gt-{i:05d}", "polecat": f"p{i % polecats}",
                       "args": []}
            (sdir / "request.json").write_text(json.dumps({"request": request, "argv": [], "started": float(i)}))
            (sdir / "pid").write_text("999999999")  # long gone
            (sdir / "result.json").write_text("{}")
        own = statistics.median(timed(lambda: LocalBackend(backend.town).sessions("rig", "p7")) for _ in range(5))
        every = statistics.median(timed(LocalBackend(backend.town).sessions) for _ in range(3))
        backend.sessions()  # a first listing reads them all
        again = statistics.median(timed(backend.sessions) for _ in range(3))
    print(f"session lookup: a start in a town that has run {sessions:,} sessions ({polecats} polecats)")
    print(f"  its polecat's sessions   {own * 1000:.1f} ms   every session (naive) {every * 1000:.0f} ms   "
          f"({every / own:.0f}x)")
    print(f"  every session again, by a reader that listed them before (the TUI's refresh, gt status in the "
          f"daemon): {again * 1000:.0f} ms ({every / again:.0f}x less than reading them all)")


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def gaps(lasts: list[float], firsts: list[float], limit: int) -> list[float]:
    """Each first instruction after the first wave took the slot of the earliest unmatched last one
    before it: the gaps between them."""
    out, pending = [], sorted(lasts)
    for first in sorted(firsts)[limit:]:
        freed = [e for e in pending if e <= first]
        if freed:
            out.append(first - freed[0])
            pending.remove(freed[0])
    return out


def run(n_beads: int, limit: int, work: float, load: int) -> Run:
    root = Path(tempfile.mkdtemp(prefix="gastown-sched-bench-"))
    remote = make_rig(root)
    agent, stamps = root / "agent.py", root / "stamps"
    agent.write_text(AGENT)
    stamps.mkdir()
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    burners = [subprocess.Popen([sys.executable, "-c", LOAD]) for _ in range(load)]
    try:
        backend = LocalBackend(root / "town", cache_root=root / "town-cache", heartbeat_interval=1.0)
        # the daemon's ledger shares its cache with the sessions' wrappers, as `gt up`'s does
        with Ledger(str(remote), cache_dir=backend.ledger_cache(str(remote)), actor="bench") as ledger:
            info = convoys.ConvoyInfo("bench", "bench", "rig", "beads")
            plan = tuple(convoys.PlannedBead(f"b{i}", f"bead {i}") for i in range(n_beads))
            ledger.apply(convoys.OpenConvoy(info, "bench"))
            ledger.apply(convoys.PlanConvoy("bench", plan, "bench"))
            config = RigConfig("rig", str(remote), max_polecats=limit,
                               runtime=RuntimeSpec(preset="script", args=[sys.executable, str(agent), str(work), str(stamps)]))
            driver = RigDriver(config, backend, ledger)
            stop = threading.Event()
            thread = threading.Thread(target=driver.run, args=(stop,), kwargs={"poll": CHECK_SECONDS}, daemon=True)
            began = time.time()
            thread.start()
            while True:
                beads = ledger.beads()
                if all(b.status in (Status.IN_PROGRESS, Status.CLOSED) and not b.metadata.get("session")
                       for b in beads.values() if b.type == "task"):
                    break
                time.sleep(0.2)
            # the last wrappers record their usage and result after the bead is done: let them finish
            for session in backend.sessions():
                session.wait(30)
            stop.set()
            thread.join(10)
            wall = time.time() - began
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()

    sessions, wrap_up, start_up = [], [], []
    for req in (root / "town" / "sessions").glob("*/request.json"):
        result = json.loads((req.parent / "result.json").read_text())
        request = json.loads(req.read_text())
        sessions.append((request["started"], result["ended_at"], result["status"]))
        stamp = stamps / request["request"]["bead"]
        if stamp.with_suffix(".first").exists() and stamp.with_suffix(".last").exists():
            wrap_up.append(result["ended_at"] - float(stamp.with_suffix(".last").read_text()))
            start_up.append(float(stamp.with_suffix(".first").read_text()) - request["started"])
    starts = sorted(s for s, _, _ in sessions)
    ends = sorted(e for _, e, _ in sessions)
    spawn = gaps(ends, starts, limit)
    lasts = [float(p.read_text()) for p in stamps.glob("*.last")]
    firsts = [float(p.read_text()) for p in stamps.glob("*.first")]
    agent_gap = gaps(lasts, firsts, limit)
    to_wrapper = gaps(lasts, starts, limit)  # a slot frees when its agent exits: the wrap-up goes on beside
    # utilisation while work was queued, of the slots (the limit counts agents): from the first
    # agent's start to the last agent's start
    agent_events = sorted([(t, 1) for t in firsts] + [(t, -1) for t in lasts])
    busy_time, running, last_t = 0.0, 0, min(firsts)
    for t, delta in agent_events:
        if t > max(firsts):
            busy_time += running * (max(firsts) - last_t)
            break
        busy_time += running * (t - last_t)
        running, last_t = running + delta, t
    window = max(firsts) - min(firsts)
    utilisation = busy_time / (limit * window) if window > 0 else 1.0
    agents_peak = max(itertools.accumulate(d for _, d in agent_events))
    peak = max(itertools.accumulate(d for _, d in sorted([(s, 1) for s in starts] + [(e, -1) for e in ends])))

    return Run(agent_gap, spawn, to_wrapper, start_up, wrap_up, utilisation, wall, len(sessions),
               sum(1 for *_, s in sessions if s == "completed"), peak, agents_peak)


@dataclass
class Run:
    """One run's figures: the gaps of its hand-overs, and the rest."""

    agent_gap: list[float]
    spawn: list[float]
    to_wrapper: list[float]
    start_up: list[float]
    wrap_up: list[float]
    utilisation: float
    wall: float
    sessions: int
    completed: int
    peak: int
    agents_peak: int


def report(runs: list[Run], n_beads: int, limit: int, work: float, load: int) -> None:
    """The figures of ``runs``, their hand-overs pooled: a p50 of 12 hand-overs swings by a third
    from one run to the next on a shared 2-core machine."""
    def pooled(name: str) -> list[float]:
        return [x for r in runs for x in getattr(r, name)]
    print(f"scheduler benchmark: {n_beads} beads, limit {limit}, {work:.1f} s of agent work per session, "
          f"{f'under load ({load} busy processes, ' if load else 'idle ('}{os.cpu_count()} cores), local mode, "
          f"{len(runs)} runs")
    print(f"  sessions                 {sum(r.sessions for r in runs)} ({sum(r.completed for r in runs)} completed), "
          f"peak running {max(r.peak for r in runs)} wrappers, {max(r.agents_peak for r in runs)} agents (limit {limit})")
    print(f"  agent-to-agent gap       {figure(pooled('agent_gap'))}   target {TARGET}, baseline {BASELINE[bool(load)]}")
    print("                           p50 of each run: "
          + ", ".join(f"{statistics.median(r.agent_gap):.3f} s" for r in runs if r.agent_gap))
    print(f"  where it goes (p50)      an agent's exit to the next wrapper {statistics.median(pooled('to_wrapper')):.3f} s "
          f"(the wrapper saying so, the daemon's pass, the session prepared), that wrapper to its agent "
          f"{statistics.median(pooled('start_up')):.3f} s; beside it, off the gap: the wrapper's wrap-up "
          f"{statistics.median(pooled('wrap_up')):.3f} s")
    print(f"  wrapper spawn (old)      {figure(pooled('spawn'))}")
    print(f"  utilisation while queued {statistics.mean(r.utilisation for r in runs) * 100:.1f} % (mean of the runs)")
    ideal = n_beads / limit * work
    wall = statistics.median(r.wall for r in runs)
    print(f"  wall time                {wall:.1f} s, the median run (ideal {ideal:.1f} s of pure work: "
          f"{ideal / wall * 100:.0f} %)")


def figure(values: list[float]) -> str:
    if not values:
        return "(no hand-overs)"
    return (f"p50 {statistics.median(values):.3f} s   p95 {percentile(values, 95):.3f} s   max {max(values):.3f} s"
            f"   ({len(values)} hand-overs)")


if __name__ == "__main__":
    main()
