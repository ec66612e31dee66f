"""Merge-queue arithmetic: verification runs and rounds to settle a batch, by strategy.

A batch of n MRs with k bad ones at random positions (several seeds); a run fails when its
stack holds a bad MR; every run lasts the same time, so a round (runs verified at once) is
one gate duration of wall time. Strategies:

  one-at-a-time    each MR verified alone on the target: n runs, n rounds
  sequential       bors-ng: a red batch is split in halves, queued, run one after another
  gastown p=P      gastown.refinery.bisect, the Refinery's engine, with P parallel runs

Targets (issue #6): k = 0 -> 1 run; rounds <= ceil(log2 n) + 2 for k <= 2; runs no more than
sequential bisection's. Prints figures; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics

from gastown.refinery.bisect import Bisection, Run


def gastown(mrs: list[str], bad: set[str], parallel: int) -> tuple[int, int, set[str]]:
    b = Bisection.start(mrs)
    while runs := b.next_round(parallel):
        b.settle({r: "fail" if bad & set(r.stack) else "pass" for r in runs})
    assert not b.target_red
    assert set(b.accepted) == set(mrs) - bad and set(b.rejected) == bad, (mrs, bad, b)
    return b.runs, b.rounds, set(b.rejected)


def sequential(mrs: list[str], bad: set[str]) -> tuple[int, int]:
    runs, queue = 0, [mrs]
    while queue:
        group = queue.pop(0)
        runs += 1
        if bad & set(group) and len(group) > 1:
            half = len(group) // 2
            queue[0:0] = [group[:half], group[half:]]
    return runs, runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=32)
    parser.add_argument("--seeds", type=int, default=200)
    parser.add_argument("--parallel", type=int, nargs="+", default=[2, 4])
    args = parser.parse_args()
    n = args.n
    mrs = [f"mr-{i:02d}" for i in range(n)]
    target = math.ceil(math.log2(n)) + 2
    print(f"refinery: n = {n} MRs, {args.seeds} seeds; runs and rounds as mean (max); "
          f"rounds target <= {target} for k <= 2")
    print(f"{'k':>3} {'strategy':<16} {'runs':>14} {'rounds':>14}  vs sequential (mean; seeds with more runs)")
    missed = []
    for k in (0, 1, 2, 4):
        rows: dict[str, list[tuple[int, int]]] = {}
        for seed in range(args.seeds):
            bad = set(random.Random(seed).sample(mrs, k))
            rows.setdefault("one-at-a-time", []).append((n, n))
            rows.setdefault("sequential", []).append(sequential(mrs, bad))
            for p in args.parallel:
                runs, rounds, _ = gastown(mrs, bad, p)
                rows.setdefault(f"gastown p={p}", []).append((runs, rounds))
        seq = rows["sequential"]
        seq_runs, seq_rounds = statistics.mean(r for r, _ in seq), statistics.mean(d for _, d in seq)
        for name, figures in rows.items():
            runs, rounds = [r for r, _ in figures], [d for _, d in figures]
            more = sum(r > s for (r, _), (s, _) in zip(figures, seq, strict=True))
            print(f"{k:>3} {name:<16} {statistics.mean(runs):>8.2f} ({max(runs):>3}) "
                  f"{statistics.mean(rounds):>8.2f} ({max(rounds):>3})  runs x{statistics.mean(runs) / seq_runs:.2f}, "
                  f"rounds x{statistics.mean(rounds) / seq_rounds:.2f}; {more} seed(s) with more runs")
            if name.startswith("gastown"):
                if k == 0 and max(runs) != 1:
                    missed.append(f"k=0 {name}: {max(runs)} runs")
                if k <= 2 and max(rounds) > target and name == f"gastown p={max(args.parallel)}":
                    missed.append(f"k={k} {name}: {max(rounds)} rounds")
                if statistics.mean(runs) > seq_runs:
                    missed.append(f"k={k} {name}: more runs than sequential bisection")
    print("targets:", "all met" if not missed else "MISSED " + "; ".join(missed))


if __name__ == "__main__":
    main()


__all__ = ["Run", "gastown", "sequential"]
