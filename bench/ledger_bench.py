"""Ledger throughput on a local bare remote: gastown's ledger against the naive way.

Prints figures; asserts nothing about time. Every run is checked for lost or duplicated
writes afterwards, from the remote alone.

  single writer   one process; 1 thread (each write waits for its push), then 16 threads
                  (group commit: what is queued during a push goes into the next commit)
  20 processes    20 writer processes at once against the same remote
  naive           the same workloads done as a person would script it: a working clone,
                  then per write: fetch + reset, edit the file, commit, push, and on a
                  rejected push start that write again

A "write" is one bead created or one comment added.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from gastown.ledger import LEDGER_BRANCH, Ledger

BRANCH_REF = f"refs/heads/{LEDGER_BRANCH}"


def git(*args: str, cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=check)


def new_remote(root: Path, name: str) -> Path:
    path = root / f"{name}.git"
    git("init", "--quiet", "--bare", str(path))
    return path


# --- the workload -------------------------------------------------------------------------


def plan(writer: str, writes: int) -> list[tuple[str, str]]:
    """(kind, text) pairs: each bead is created, then gets comments, 4 writes per bead."""
    out = []
    for i in range(0, writes, 4):
        out.append(("create", f"{writer}-{i // 4}"))
        out += [("comment", f"{writer}-{i // 4}#{c}") for c in range(1, min(4, writes - i))]
    return out


def gastown_writer(remote: Path, cache: Path, writer: str, writes: int, threads: int) -> None:
    work = plan(writer, writes)
    beads = [w for w in work if w[0] == "create"]
    with Ledger(str(remote), cache_dir=cache, actor=f"bench {writer}") as ledger:
        def one_bead(title: str) -> None:
            bead = ledger.create(title)
            for kind, text in work:
                if kind == "comment" and text.startswith(title + "#"):
                    ledger.comment(bead.id, text)

        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(one_bead, [t for _, t in beads]))


def naive_writer(remote: Path, work_dir: Path, writer: str, writes: int) -> None:
    clone = work_dir / writer
    if git("ls-remote", "--exit-code", str(remote), BRANCH_REF, check=False).returncode != 0:
        raise SystemExit("the naive writer needs an existing ledger branch")
    git("clone", "--quiet", "--branch", LEDGER_BRANCH, str(remote), str(clone))
    ids: dict[str, str] = {}
    for kind, text in plan(writer, writes):
        while True:
            git("fetch", "--quiet", "origin", cwd=clone)
            git("reset", "--quiet", "--hard", f"origin/{LEDGER_BRANCH}", cwd=clone)
            if kind == "create":
                bead_id = ids.setdefault(text, f"nv-{abs(hash((writer, text))) % 36**8:x}")
                record = {"id": bead_id, "title": text, "comments": []}
            else:
                bead_id = ids[text.split("#")[0]]
                record = json.loads((clone / "beads" / f"{bead_id}.json").read_text())
                record["comments"].append({"text": text})
            path = clone / "beads" / f"{bead_id}.json"
            path.parent.mkdir(exist_ok=True)
            path.write_text(json.dumps(record, sort_keys=True, indent=2) + "\n")
            git("add", "-A", cwd=clone)
            git("-c", "user.name=naive", "-c", "user.email=n@x", "commit", "--quiet", "-m",
                f"{kind} {text}", cwd=clone)
            if git("push", "--quiet", "origin", LEDGER_BRANCH, cwd=clone, check=False).returncode == 0:
                break


# --- checking and measuring -----------------------------------------------------------------


def audit(remote: Path, writers: list[str], writes: int) -> tuple[int, int]:
    """(lost, duplicated) writes, counted from the records on the remote."""
    expected = [text for w in writers for _, text in plan(w, writes)]
    work = Path(tempfile.mkdtemp())
    git("clone", "--quiet", "--branch", LEDGER_BRANCH, str(remote), str(work / "c"))
    seen: list[str] = []
    for path in (work / "c" / "beads").glob("*.json"):
        record = json.loads(path.read_text())
        seen.append(record["title"])
        seen += [c["text"] for c in record["comments"]]
    lost = len(set(expected) - set(seen))
    duplicated = len(seen) - len(set(seen))
    return lost, duplicated


def seed(remote: Path, root: Path) -> None:
    with Ledger(str(remote), cache_dir=root / "seed-cache", actor="bench") as ledger:
        ledger.ensure()


def run_processes(argvs: list[list[str]]) -> float:
    start = time.perf_counter()
    procs = [subprocess.Popen(a, stderr=subprocess.PIPE, text=True) for a in argvs]
    for p in procs:
        _, err = p.communicate()
        if p.returncode:
            raise SystemExit(f"a writer failed: {err.strip().splitlines()[-1] if err else p.returncode}")
    return time.perf_counter() - start


def worker_argv(mode: str, remote: Path, place: Path, writer: str, writes: int, threads: int) -> list[str]:
    return [sys.executable, __file__, "--worker", mode, str(remote), str(place), writer, str(writes),
            str(threads)]


def report(name: str, writes: int, seconds: float, lost_dup: tuple[int, int]) -> float:
    rate = writes / seconds
    lost, dup = lost_dup
    print(f"  {name:<44} {writes:>5} writes {seconds:7.2f} s {rate:8.1f} writes/s"
          f"   lost {lost}, duplicated {dup}")
    return rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--writes", type=int, default=400, help="writes for the single-writer runs")
    ap.add_argument("--procs", type=int, default=20, help="writer processes for the concurrent runs")
    ap.add_argument("--per-proc", type=int, default=16, help="writes per process in the concurrent runs")
    ap.add_argument("--worker", nargs=6, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        mode, remote, place, writer, writes, threads = args.worker
        if mode == "gastown":
            gastown_writer(Path(remote), Path(place), writer, int(writes), int(threads))
        else:
            naive_writer(Path(remote), Path(place), writer, int(writes))
        return

    root = Path(tempfile.mkdtemp(prefix="gastown-bench-"))
    print(f"ledger benchmark on a local bare remote ({os.cpu_count()} cores), in {root}")
    rates = {}

    print("one process")
    for threads in (1, 16):
        remote = new_remote(root, f"single-{threads}")
        seed(remote, root)
        secs = run_processes([worker_argv("gastown", remote, root / f"cache-s{threads}", "w0",
                                          args.writes, threads)])
        label = "gastown, 1 thread" if threads == 1 else f"gastown, {threads} threads (group commit)"
        rates[("single", threads)] = report(label, args.writes, secs, audit(remote, ["w0"], args.writes))
    remote = new_remote(root, "naive-single")
    seed(remote, root)
    secs = run_processes([worker_argv("naive", remote, root / "naive-single", "w0", args.writes, 1)])
    rates[("single", "naive")] = report("naive (clone, edit, commit, push)", args.writes, secs,
                                        audit(remote, ["w0"], args.writes))

    n = args.procs
    total = n * args.per_proc
    writers = [f"p{i}" for i in range(n)]
    print(f"{n} processes at once, {args.per_proc} writes each")
    remote = new_remote(root, "multi")
    seed(remote, root)
    secs = run_processes([worker_argv("gastown", remote, root / f"cache-m{i}", w, args.per_proc, 4)
                          for i, w in enumerate(writers)])
    rates[("multi", "gastown")] = report("gastown, 4 threads each", total, secs,
                                         audit(remote, writers, args.per_proc))
    remote = new_remote(root, "naive-multi")
    seed(remote, root)
    secs = run_processes([worker_argv("naive", remote, root / "naive-multi", w, args.per_proc, 1)
                          for w in writers])
    rates[("multi", "naive")] = report("naive", total, secs, audit(remote, writers, args.per_proc))

    print("ratios")
    print(f"  one process, group commit / naive:     {rates[('single', 16)] / rates[('single', 'naive')]:6.1f}x")
    print(f"  one process, group commit / 1 thread:  {rates[('single', 16)] / rates[('single', 1)]:6.1f}x")
    print(f"  {n} processes, gastown / naive:          {rates[('multi', 'gastown')] / rates[('multi', 'naive')]:6.1f}x")


if __name__ == "__main__":
    main()
