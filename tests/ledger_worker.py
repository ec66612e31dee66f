"""A writer process for the concurrency tests and the benchmark.

usage: python ledger_worker.py REMOTE CACHE_DIR NAME BEADS STEPS THREADS

Creates BEADS beads titled NAME-i, then gives each STEPS comments "step 1".."step STEPS"
(in order) and closes it; THREADS threads share the work. Prints the IDs it created.
"""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from gastown.ledger import Ledger


def main() -> None:
    remote, cache, name, beads, steps, threads = sys.argv[1:7]
    with Ledger(remote, cache_dir=Path(cache), actor=f"polecat {name}") as ledger:
        def one(i: int) -> str:
            bead = ledger.create(f"{name}-{i}")
            ledger.update(bead.id, status="in_progress")
            for s in range(1, int(steps) + 1):
                ledger.comment(bead.id, f"step {s}")
            ledger.close_bead(bead.id, "done")
            return bead.id

        with ThreadPoolExecutor(int(threads)) as pool:
            ids = list(pool.map(one, range(int(beads))))
    print("\n".join(ids))


if __name__ == "__main__":
    main()
