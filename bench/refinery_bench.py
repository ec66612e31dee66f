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
Prints figures; asserts nothing about time. Exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys

from gastown.refinery.bisect import Bisection, Run


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, nargs="+", default=[8, 32])
    parser.add_argument("-k", type=int, nargs="+", default=[0, 1, 2, 4, 8],
                        help="bad MRs per batch (an all-bad batch, k = n, is added for each n)")
    parser.add_argument("--seeds", type=int, default=200)
    parser.add_argument("--parallel", type=int, nargs="+", default=[1, 2, 4, 8])
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
    if missed:
        sys.exit(1)


if __name__ == "__main__":
    main()


__all__ = ["Run", "gastown", "one_at_a_time", "sequential", "targets"]
