"""What the compact Dog buys: reading the ledger with old closed records live, and archived.

Prints figures; asserts nothing about time. A rig pass reads the whole live ledger: after an
operator restart every record is parsed (cold), and after each write the tree is read again
and every record looked up in the blob cache (warm). Closed messages and merge batches pile up
over weeks; compacting moves them to archive/, out of that read.

  live        LIVE open work beads and OLD closed ephemeral records, all in beads/
  compacted   the same ledger after `gt dog run compact`: the OLD records in archive/
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from gastown.dogs import Kennel
from gastown.ledger import BeadType, Ledger
from gastown.ledger.ops import Close, Create


def fill(remote: Path, cache: Path, live: int, old: int) -> None:
    with Ledger(str(remote), cache_dir=cache, actor="bench") as ledger:
        ledger.ensure()
        futures = [ledger.submit(Create(title=f"work {i}", actor="bench", seed=f"w{i}")) for i in range(live)]
        kinds = (BeadType.MESSAGE, BeadType.MERGE_BATCH)
        records = [ledger.submit(Create(title=f"record {i}", actor="bench", seed=f"r{i}", type=kinds[i % 2]))
                   for i in range(old)]
        for f in futures:
            f.result()
        closes = [ledger.submit(Close(f.result().id, "bench", "done")) for f in records]
        for f in closes:
            f.result()


def read_cold(remote: Path, cache: Path) -> float:
    """A fresh process's first full read (the operator after a restart), the fetch left out."""
    with Ledger(str(remote), cache_dir=cache, actor="bench") as ledger:
        ledger.refresh()
        start = time.perf_counter()
        ledger.beads(refresh=False)
        return time.perf_counter() - start


def read_warm(remote: Path, cache: Path, rounds: int) -> float:
    """The median full read right after one write (a rig pass after the ledger moved)."""
    with Ledger(str(remote), cache_dir=cache, actor="bench") as ledger:
        ledger.beads()
        bead = ledger.create("touched")
        times = []
        for i in range(rounds):
            ledger.comment(bead.id, f"round {i}")
            start = time.perf_counter()
            ledger.beads(refresh=False)
            times.append(time.perf_counter() - start)
        return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--live", type=int, default=200, help="open work beads")
    ap.add_argument("--old", type=int, default=4000, help="old closed messages and merge batches")
    ap.add_argument("--rounds", type=int, default=20, help="warm reads to take the median of")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="gastown-dogs-bench-"))
    remote = root / "rig.git"
    subprocess.run(["git", "init", "--quiet", "--bare", str(remote)], check=True)
    print(f"compaction: {args.live} open beads, {args.old} old closed records, in {root}")
    fill(remote, root / "cache-fill", args.live, args.old)

    before = (read_cold(remote, root / "cache-cold-1"), read_warm(remote, root / "cache-fill", args.rounds))
    with Ledger(str(remote), cache_dir=root / "cache-fill", actor="dogs") as ledger:
        start = time.perf_counter()
        report = Kennel(ledger, "main", retain_days=14).compact(now=datetime.now(UTC) + timedelta(days=15))
        compact_seconds = time.perf_counter() - start
        remaining = len(ledger.beads())
    after = (read_cold(remote, root / "cache-cold-2"), read_warm(remote, root / "cache-fill", args.rounds))

    print(f"  compact Dog: {report.done[0].split(' (')[0]} in {compact_seconds:.2f} s; "
          f"{remaining} records stay live")
    print(f"  {'':<12} {'cold read':>12} {'warm read':>12}")
    print(f"  {'live':<12} {before[0] * 1000:10.1f} ms {before[1] * 1000:10.2f} ms")
    print(f"  {'compacted':<12} {after[0] * 1000:10.1f} ms {after[1] * 1000:10.2f} ms")
    print(f"  ratio        {before[0] / after[0]:10.1f}x {before[1] / after[1]:10.1f}x")


if __name__ == "__main__":
    main()
