"""Ledger throughput on a local bare remote: gastown's ledger against the naive way.

Prints figures; asserts nothing about time. Every run is checked for lost or duplicated
writes afterwards, from the remote alone.

  single writer   one process; 1 thread (each write waits for its push), then 16 threads
                  (group commit: what is queued during a push goes into the next commit)
  20 processes    20 writer processes at once against the same remote
  naive           the same workloads done as a person would script it: a working clone,
                  then per write: fetch + reset, edit the file, commit, push, and on a
                  rejected push start that write again (records flat in beads/<id>.json)
  ledger size     one create in a ledger of 100 / 1,000 / 5,000 beads: its time in process
                  (median of 20) and the remote's growth per create (loose objects, as a
                  push leaves them, after a gc of the remote at that size)

A "write" is one bead created or one comment added.

Every writer process (gastown's and the naive one's) first starts up: Python, its imports, its
Ledger opened and its cache brought up to date (the naive one: its clone). It then says it is
ready and waits; once every process of the row is ready they are all let go at once, and the
rate is the row's writes over the time from "go" to the last write of the last process (the
processes read one clock: time.monotonic). That is the ledger's throughput once the writers are
up, the same for one process as for twenty. Beside it each row prints the start-up (until the
last process was ready) and the rate over the whole wall time, start-up included, as it was
measured before: on a machine with few cores twenty Python start-ups weigh on that one.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from gastown.ledger import LEDGER_BRANCH, Ledger

BRANCH_REF = f"refs/heads/{LEDGER_BRANCH}"
PER_PROC = 48  # writes per process in the 20-process rows: 12 beads, 3 per thread, a few seconds of writing


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


def gastown_writer(remote: Path, cache: Path, writer: str, writes: int, threads: int,
                   ready: Callable[[], None]) -> None:
    work = plan(writer, writes)
    beads = [w for w in work if w[0] == "create"]
    with Ledger(str(remote), cache_dir=cache, actor=f"bench {writer}") as ledger:
        ledger.refresh()  # the cache made and up to date: this writer is up
        ready()
        def one_bead(title: str) -> None:
            bead = ledger.create(title)
            for kind, text in work:
                if kind == "comment" and text.startswith(title + "#"):
                    ledger.comment(bead.id, text)

        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(one_bead, [t for _, t in beads]))


def naive_writer(remote: Path, work_dir: Path, writer: str, writes: int, creates_only: bool = False,
                 ready: Callable[[], None] = lambda: None) -> None:
    clone = work_dir / writer
    if git("ls-remote", "--exit-code", str(remote), BRANCH_REF, check=False).returncode != 0:
        raise SystemExit("the naive writer needs an existing ledger branch")
    git("clone", "--quiet", "--branch", LEDGER_BRANCH, str(remote), str(clone))
    ready()
    ids: dict[str, str] = {}
    for kind, text in plan(writer, writes):
        if creates_only and kind != "create":
            continue
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
    for path in (work / "c" / "beads").rglob("*.json"):
        record = json.loads(path.read_text())
        seen.append(record["title"])
        seen += [c["text"] for c in record["comments"]]
    lost = len(set(expected) - set(seen))
    duplicated = len(seen) - len(set(seen))
    return lost, duplicated


def objects_bytes(repo: Path) -> int:
    return sum(f.stat().st_size for f in (repo / "objects").rglob("*") if f.is_file())


def fill(remote: Path, cache: Path, n: int) -> None:
    from gastown.ledger.ops import Create, Together
    with Ledger(str(remote), cache_dir=cache, actor="bench") as ledger:
        ledger.ensure()
        for i in range(0, n, 500):
            ledger.apply(Together(tuple(Create(title=f"filler {j}", actor="bench", seed=f"filler {j}")
                                        for j in range(i, min(n, i + 500)))))
    git("gc", "--quiet", cwd=remote)


def size_rows(root: Path, sizes: tuple[int, ...], creates: int = 20) -> None:
    """Per ledger size: one in-process create (median ms) and remote growth per create, gastown
    and naive side by side."""
    print(f"ledger size: one create (median of {creates}) and remote growth per create")
    print(f"  {'beads':>6} {'gastown ms':>11} {'naive ms':>9} {'gastown KB':>11} {'naive KB':>9}"
          "   target: ms flat (5,000 within 1.3x of 100), growth < 2 KB")
    for n in sizes:
        remote = new_remote(root, f"size-{n}")
        fill(remote, root / f"size-fill-{n}", n)
        before = objects_bytes(remote)
        with Ledger(str(remote), cache_dir=root / f"size-cache-{n}", actor="bench") as ledger:
            ledger.beads()
            times = []
            for k in range(creates):
                start = time.perf_counter()
                ledger.create(f"sized {k}")
                times.append(time.perf_counter() - start)
        growth = (objects_bytes(remote) - before) / creates / 1024
        naive = root / f"naive-size-{n}.git"
        git("clone", "--quiet", "--bare", str(remote), str(naive))
        flatten(naive, root / f"naive-flat-{n}")
        git("gc", "--quiet", cwd=naive)
        before = objects_bytes(naive)
        start = time.perf_counter()
        naive_writer(naive, root / f"naive-size-work-{n}", "sz", creates * 4, creates_only=True)
        naive_ms = (time.perf_counter() - start) / creates * 1000
        naive_growth = (objects_bytes(naive) - before) / creates / 1024
        print(f"  {n:>6} {sorted(times)[creates // 2] * 1000:>11.1f} {naive_ms:>9.1f} {growth:>11.2f} "
              f"{naive_growth:>9.2f}")


def flatten(remote: Path, work: Path) -> None:
    """The naive writer's layout: every record flat in beads/<id>.json."""
    git("clone", "--quiet", "--branch", LEDGER_BRANCH, str(remote), str(work))
    for path in list((work / "beads").rglob("*.json")):
        path.rename(work / "beads" / path.name)
    git("add", "-A", cwd=work)
    git("-c", "user.name=naive", "-c", "user.email=n@x", "commit", "--quiet", "-m", "flat", cwd=work)
    git("push", "--quiet", "origin", LEDGER_BRANCH, cwd=work)


def seed(remote: Path, root: Path) -> None:
    with Ledger(str(remote), cache_dir=root / "seed-cache", actor="bench") as ledger:
        ledger.ensure()


@dataclass(frozen=True)
class Run:
    startup: float  # from starting the processes until the last of them was ready
    writing: float  # from "go" until the last write of the last process
    wall: float  # from starting the processes until the last exited


def run_processes(argvs: list[list[str]]) -> Run:
    """Start the writer processes, let them go together once all are ready, and time them."""
    start = time.monotonic()
    errs = [tempfile.TemporaryFile() for _ in argvs]  # noqa: SIM115 (closed below)
    procs = [subprocess.Popen(a, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=e, text=True)
             for a, e in zip(argvs, errs, strict=True)]
    try:
        for p, e in zip(procs, errs, strict=True):
            if p.stdout.readline().strip() != "ready":  # type: ignore[union-attr]
                failed(p, e)
        go = time.monotonic()
        for p in procs:
            p.stdin.close()  # type: ignore[union-attr]
        ends = []
        for p, e in zip(procs, errs, strict=True):
            out = p.stdout.read()  # type: ignore[union-attr]
            if p.wait():
                failed(p, e)
            ends.append(float(out.split()[-1]))
        return Run(go - start, max(ends) - go, time.monotonic() - start)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        for e in errs:
            e.close()


def failed(proc: subprocess.Popen, err) -> None:
    proc.kill()
    err.seek(0)
    lines = err.read().decode(errors="replace").strip().splitlines()
    raise SystemExit(f"a writer failed: {lines[-1] if lines else proc.wait()}")


def worker(mode: str, remote: Path, place: Path, writer: str, writes: int, threads: int) -> None:
    """One writer process: up, ready, waits for "go" (its stdin closed), writes, says when it was done."""
    def ready() -> None:
        print("ready", flush=True)
        sys.stdin.read()

    if mode == "gastown":
        gastown_writer(remote, place, writer, writes, threads, ready)
    else:
        naive_writer(remote, place, writer, writes, ready=ready)
    print(f"done {time.monotonic()!r}", flush=True)


def worker_argv(mode: str, remote: Path, place: Path, writer: str, writes: int, threads: int) -> list[str]:
    return [sys.executable, __file__, "--worker", mode, str(remote), str(place), writer, str(writes),
            str(threads)]


HEADER = (f"  {'':<44} {'writes':>6} {'start-up':>8} {'writing':>8} {'writes/s':>9}   "
          f"{'with start-up':>13}")


def report(name: str, writes: int, run: Run, lost_dup: tuple[int, int]) -> tuple[float, float]:
    """Print a row; (writes/s once up, writes/s over the wall time start-up included)."""
    rate, with_startup = writes / run.writing, writes / run.wall
    lost, dup = lost_dup
    print(f"  {name:<44} {writes:>6} {run.startup:>7.2f}s {run.writing:>7.2f}s {rate:>9.1f}   "
          f"{with_startup:>6.1f} in {run.wall:.1f}s   lost {lost}, duplicated {dup}")
    return rate, with_startup


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--writes", type=int, default=400, help="writes for the single-writer runs")
    ap.add_argument("--procs", type=int, default=20, help="writer processes for the concurrent runs")
    ap.add_argument("--per-proc", type=int, default=PER_PROC, help="writes per gastown process in the concurrent runs")
    ap.add_argument("--alone-per-proc", type=int, default=16,
                    help="writes per process in the concurrent runs where each process pushes alone (a cache "
                         "each, naive): they go at ~10 writes/s")
    ap.add_argument("--sizes", default="100,1000,5000", help="ledger sizes for the per-create rows")
    ap.add_argument("--sizes-only", action="store_true", help="only the per-size rows")
    ap.add_argument("--rows", choices=["all", "concurrency"], default="all",
                    help="concurrency: only the gastown rows of one process, 1 thread, and 20 processes")
    ap.add_argument("--worker", nargs=6, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        mode, remote, place, writer, writes, threads = args.worker
        worker(mode, Path(remote), Path(place), writer, int(writes), int(threads))
        return

    root = Path(tempfile.mkdtemp(prefix="gastown-bench-"))
    print(f"ledger benchmark on a local bare remote ({os.cpu_count()} cores, load {load()}), in {root}")
    if args.sizes_only:
        size_rows(root, tuple(int(x) for x in args.sizes.split(",")))
        return
    everything = args.rows == "all"

    def row(name: str, label: str, mode: str, writers: list[str], writes: int, threads: int,
            shared: bool = True) -> tuple[float, float]:
        remote = new_remote(root, name)
        seed(remote, root)
        run = run_processes([worker_argv(mode, remote, root / (f"{name}-place" if shared else f"{name}-{w}"), w,
                                         writes, threads) for w in writers])
        return report(label, len(writers) * writes, run, audit(remote, writers, writes))

    rates: dict[tuple[str, int | str], tuple[float, float]] = {}
    print(HEADER)
    print("one process")
    for threads in (1, 16) if everything else (1,):
        label = "gastown, 1 thread" if threads == 1 else f"gastown, {threads} threads (group commit)"
        rates[("single", threads)] = row(f"single-{threads}", label, "gastown", ["w0"], args.writes, threads)
    if everything:
        rates[("single", "naive")] = row("naive-single", "naive (clone, edit, commit, push)", "naive", ["w0"],
                                         args.writes, 1)

    n = args.procs
    writers = [f"p{i}" for i in range(n)]
    print(f"{n} processes at once, {args.per_proc} writes each (a cache each and naive: {args.alone_per_proc})")
    rates[("multi", "gastown")] = row("multi", "gastown, 4 threads each, one machine's cache", "gastown",
                                      writers, args.per_proc, 4)
    if everything:
        rates[("multi", "own")] = row("multi-own", "gastown, 4 threads each, a cache each", "gastown",
                                      writers, args.alone_per_proc, 4, shared=False)
        rates[("multi", "naive")] = row("naive-multi", "naive", "naive", writers, args.alone_per_proc, 1)

    def ratio(a: tuple, b: tuple) -> str:
        return f"{rates[a][0] / rates[b][0]:6.1f}x   (with start-up {rates[a][1] / rates[b][1]:.1f}x)"

    print("ratios of writes/s once the writers are up")
    if everything:
        print(f"  one process, group commit / naive:                  {ratio(('single', 16), ('single', 'naive'))}")
        print(f"  one process, group commit / 1 thread:               {ratio(('single', 16), ('single', 1))}")
        print(f"  {n} processes, gastown / naive:                       {ratio(('multi', 'gastown'), ('multi', 'naive'))}")
    print(f"  {n} processes x 4 threads / one process, 1 thread:  {ratio(('multi', 'gastown'), ('single', 1))}"
          "   target >= 5x")
    print(f"load after the concurrency rows: {load()}")
    if everything:
        size_rows(root, tuple(int(x) for x in args.sizes.split(",")))


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3]) if Path("/proc/loadavg").exists() else "?"


if __name__ == "__main__":
    main()
