"""Merge-queue arithmetic: verification runs and rounds to settle a batch, by strategy.

A batch of n MRs with k bad ones at random positions (several seeds; k = n is an all-bad
batch); a run fails when its stack holds a bad MR; every run lasts the same time, so a round
(runs verified at once) is one gate duration of wall time. Strategies, per cell (n, k, parallel):

  one-at-a-time    each MR verified on the last, then merged: n runs, n rounds
  bors-ng          sequential bisection: a red batch is split in halves, queued, run one after another
  gastown          gastown.refinery.bisect, the Refinery's engine, with ``parallel`` runs at once

Targets (issues #6 and #19), checked on every seed and printed beside the figures:
  k = 0 -> 1 run; runs (mean) no more than bors-ng's in every cell, and on an all-bad batch
  no more than bors-ng's on any seed; rounds <= ceil(log2 n) + 2 for k <= 2 and parallel >= 4;
  n = 32: rounds <= 4 for k = 1 with parallel >= 8, rounds <= 6 for k = 4 with parallel 8.
Overhead (issue #19): the Refinery on real git (a bare rig remote, MRs recorded by `gt done`'s
operation, the local driver's port), its gate a shell script that sleeps and notes its own start
and end. A round's overhead is the wall time of the queue (from the first step to the last MR
merged or rejected, the Refinery stepped every 20 ms as a daemon woken at once would) minus the
gate's own time (its measured mean: every run of a round starts together and runs the same
gate), divided by the rounds. Rows, side by side: the Refinery as the daemon runs it (runs in
threads of the daemon reading each stack in place from its cache), the same with each stack
pushed to the rig as a scratch ref and fetched by its verifier (before), the same with each run in
a fresh `gt mq verify` process (before that), and one-at-a-time merging (batches of one, a
`gt mq verify` process each); idle, and under load (CPU burners, one per core).

Prints figures; asserts nothing about time. Exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from gastown.ledger import BeadType, Status
from gastown.local.driver import LocalPort, RigConfig
from gastown.refinery import QueueSettings, Refinery
from gastown.refinery.bisect import Bisection, Run
from gastown.refinery.records import state_of
from gastown.refinery.verify import Verification
from gastown.runtimes.local import LocalBackend

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from rigs import make_rig, push_mr  # noqa: E402

OVERHEAD_TARGET = 0.3  # seconds per round beyond the gate, idle (issue #19)
OVERHEAD_BASELINE = "0.7-1.2 s idle, ~3.8 s under load"
# the gate: sleeps, fails when a mods/*.txt holds BAD, and notes its own start and end
GATE = """s=$(date +%s.%N); sleep "$1"; if grep -qs BAD mods/*.txt; then rc=1; else rc=0; fi
echo "$s $(date +%s.%N)" >> "$2"; exit $rc
"""


def gastown(mrs: list[str], bad: set[str], parallel: int) -> tuple[int, int, set[str]]:
    b = Bisection.start(mrs)
    while runs := b.next_round(parallel):
        b.settle({r: "fail" if bad & set(r.stack) else "pass" for r in runs})
    assert not b.target_red
    assert set(b.accepted) == set(mrs) - bad and set(b.rejected) == bad, (mrs, bad, b)
    return b.runs, b.rounds, set(b.rejected)


def sequential(mrs: list[str], bad: set[str]) -> tuple[int, int]:
    """bors-ng: runs and rounds (the same: one run at a time)."""
    runs, queue = 0, [mrs]
    while queue:
        group = queue.pop(0)
        runs += 1
        if bad & set(group) and len(group) > 1:
            half = len(group) // 2
            queue[0:0] = [group[:half], group[half:]]
    return runs, runs


def one_at_a_time(mrs: list[str], bad: set[str]) -> tuple[int, int]:
    return len(mrs), len(mrs)


def targets(n: int, k: int, parallel: int) -> list[tuple[str, str, int]]:
    """The targets of one cell: (text, "runs" | "rounds" | "runs<=bors" | "runs<=bors each", bound)."""
    out: list[tuple[str, str, int]] = [("runs <= bors-ng", "runs<=bors", 0)]
    if k == 0:
        out.append(("runs = 1", "runs", 1))
    if k == n:
        out.append(("all-bad: runs <= bors-ng each seed", "runs<=bors each", 0))
    if 0 < k <= 2 and parallel >= 4:
        out.append((f"rounds <= {math.ceil(math.log2(n)) + 2}", "rounds", math.ceil(math.log2(n)) + 2))
    if n == 32 and k == 1 and parallel >= 8:
        out.append(("rounds <= 4", "rounds", 4))
    if n == 32 and k == 4 and parallel == 8:
        out.append(("rounds <= 6", "rounds", 6))
    return out


def figure(values: list[int]) -> str:
    return f"{statistics.mean(values):6.2f} ({max(values):>2})"


class ProcessPort(LocalPort):
    """The local port with each verification run in a fresh `gt mq verify` process (the way before)."""

    shares_cache = False  # (`gt mq verify` fetches the stack's scratch ref from the rig)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.procs: dict[str, subprocess.Popen] = {}

    def start_verification(self, verification: Verification) -> None:
        vdir = self.backend.town / "verify" / verification.batch / verification.ident
        vdir.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-m", "gastown.cli.main", "mq", "verify", "--rig", self.config.remote,
                "--batch", verification.batch, "--run", json.dumps(verification.run.to_dict()),
                "--ref", verification.ref, "--attempt", str(verification.attempt),
                "--gates", json.dumps(self.config.gates), "--workdir", str(vdir / "checkout"),
                "--cache-dir", str(self.backend.cache_root)]
        self.procs[verification.ident] = subprocess.Popen(argv, stdout=subprocess.DEVNULL,
                                                          stderr=subprocess.DEVNULL)

    def verifications(self, batch: str) -> dict[str, str | None]:
        return {ident: None if p.poll() is None else "ended" for ident, p in self.procs.items()}


class PushingPort(LocalPort):
    """The local port with each stack pushed to the rig and fetched by its verifier thread (the way before)."""

    shares_cache = False


@contextmanager
def burners(count: int) -> Iterator[None]:
    """``count`` processes spinning on a core each (the load), stopped on the way out."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        yield
    finally:
        for p in procs:
            p.kill()
            p.wait()


def settled(beads) -> bool:
    return not any(b.type == BeadType.MERGE_BATCH and b.status != Status.CLOSED for b in beads.values()) and \
        not any(b.type == BeadType.MERGE_REQUEST and b.status in (Status.OPEN, Status.IN_PROGRESS)
                for b in beads.values())


def queue_overhead(root: Path, *, n: int, bad: set[int], gate: float, batch_size: int, port: type[LocalPort],
                   parallel: int = 4) -> tuple[int, float, float]:
    """A queue of ``n`` MRs (``bad`` the bad ones) settled once: (rounds, wall seconds, gate seconds)."""
    rig = make_rig(root, {"README.md": "# bench\n", "mods/.keep": ""})
    for i in range(n):
        push_mr(rig, root, f"m{i}", "BAD\n" if i in bad else f"fine {i}\n")
    script, times = root / "gate.sh", root / "gate-times"
    script.write_text(GATE)
    settings = QueueSettings(fill_window=0, batch_size=batch_size, parallel=parallel)
    config = RigConfig(rig.name, str(rig.remote), gates=[("test", ["sh", str(script), str(gate), str(times)])],
                       queue=settings, verify_timeout=120)
    with rig.ledger("refinery") as ledger:
        refinery = Refinery(ledger, port(config, LocalBackend(root / "town", cache_root=root / "cache"), ledger),
                            settings)
        started = time.monotonic()
        while not settled(beads := ledger.snapshot().beads()):
            refinery.step(beads, datetime.now(UTC))
            time.sleep(0.02)
        wall = time.monotonic() - started
    rounds = sum(state_of(b).rounds for b in beads.values() if b.type == BeadType.MERGE_BATCH)
    spans = [float(end) - float(start) for start, end in (line.split() for line in times.read_text().splitlines())]
    return rounds, wall, statistics.mean(spans)


def overheads(gate: float) -> None:
    """Print the Refinery's overhead per round beyond the gate, beside its target and baselines."""
    cells = [("gastown, threads reading stacks in place", LocalPort, 8, 8),
             ("gastown, threads, stacks pushed and fetched", PushingPort, 8, 8),
             ("gastown, a `gt mq verify` process per run", ProcessPort, 8, 8),
             ("one at a time, a `gt mq verify` process each", ProcessPort, 4, 1)]
    logging.disable(logging.WARNING)  # (the Refinery's Rejected events: the bench's bad MRs)
    print(f"\nrefinery overhead per round beyond the gate ({gate:.1f} s gate, real git; issue: {OVERHEAD_BASELINE})")
    print(f"{'queue':<46} {'load':<8} {'MRs':>3} {'rounds':>6} {'wall':>7} {'gate':>6} {'overhead/round':>14} | target")
    for load in (0, os.cpu_count() or 1):
        with burners(load):
            for name, port, n, batch_size in cells:
                with tempfile.TemporaryDirectory(prefix="refinery-bench-") as tmp:
                    rounds, wall, gate_took = queue_overhead(Path(tmp), n=n, bad={n // 2 - 1}, gate=gate,
                                                             batch_size=batch_size, port=port)
                per_round = (wall - rounds * gate_took) / rounds
                mark = "" if load or port is not LocalPort else \
                    f"< {OVERHEAD_TARGET} s {'ok' if per_round < OVERHEAD_TARGET else 'MISSED'}"
                print(f"{name:<46} {f'{load} CPU' if load else 'idle':<8} {n:>3} {rounds:>6} {wall:>6.2f}s "
                      f"{gate_took:>5.2f}s {per_round:>13.2f}s | {mark}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, nargs="+", default=[8, 32])
    parser.add_argument("-k", type=int, nargs="+", default=[0, 1, 2, 4, 8],
                        help="bad MRs per batch (an all-bad batch, k = n, is added for each n)")
    parser.add_argument("--seeds", type=int, default=200)
    parser.add_argument("--parallel", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--gate", type=float, default=0.5, help="seconds each gate of the overhead rows sleeps")
    parser.add_argument("--no-overhead", action="store_true", help="only the arithmetic (no real git)")
    args = parser.parse_args()
    print(f"refinery: {args.seeds} seeds per cell; runs and rounds as mean (max)")
    print(f"{'n':>3} {'k':>3} {'par':>3} | {'one-at-a-time':^13} | {'bors-ng runs=rounds':^19} | "
          f"{'gastown runs':^12} {'gastown rounds':^14} | targets")
    missed: list[str] = []
    for n in args.n:
        mrs = [f"mr-{i:02d}" for i in range(n)]
        for k in sorted({k for k in args.k if k < n} | {n}):
            bads = [set(random.Random(seed).sample(mrs, k)) for seed in range(args.seeds if 0 < k < n else 1)]
            single = [one_at_a_time(mrs, bad) for bad in bads]
            bors = [sequential(mrs, bad)[0] for bad in bads]
            for p in args.parallel:
                ours = [gastown(mrs, bad, p)[:2] for bad in bads]
                runs, rounds = [r for r, _ in ours], [d for _, d in ours]
                marks = []
                for text, kind, bound in targets(n, k, p):
                    ok = {"runs<=bors": statistics.mean(runs) <= statistics.mean(bors),
                          "runs<=bors each": all(r <= s for r, s in zip(runs, bors, strict=True)),
                          "runs": max(runs) <= bound, "rounds": max(rounds) <= bound}[kind]
                    marks.append(f"{text} {'ok' if ok else 'MISSED'}")
                    if not ok:
                        missed.append(f"n={n} k={k} parallel={p}: {text}")
                print(f"{n:>3} {k:>3} {p:>3} | {single[0][0]:>4} / {single[0][1]:<6} | {figure(bors):^19} | "
                      f"{figure(runs):>12} {figure(rounds):>14} | {'; '.join(marks)}")
    print("targets:", "all met" if not missed else "MISSED " + "; ".join(missed))
    if not args.no_overhead:
        overheads(args.gate)
    if missed:
        sys.exit(1)


if __name__ == "__main__":
    main()


__all__ = ["Run", "gastown", "one_at_a_time", "sequential", "targets"]
