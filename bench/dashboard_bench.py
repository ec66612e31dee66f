"""What the dashboard costs: page renders and the event stream for a town of RIGS rigs and BEADS beads.

Prints figures; asserts nothing about time. Each rig's ledger is a real bare repository whose beads
were written as one commit (a ``Together`` of creates, a convoy tracking them) followed by COMMITS
commits of changes, so the feed has history to read.

  render     p50/p95 of the town, a rig, a convoy and the feed page (from the ledgers as last polled);
             the town page reads every bead of every rig, so it is kept per ledger tips: its figure
             uncached is what the first view after a ledger moved pays. Rig 0's merge queue is
             bisecting a batch of MRS with two bad ones (its last round running): its page draws the
             rounds from the batch's history, as the operator's MergeQueue status does on each pass
  mq status  the MergeQueue status of that rig (kube/mergequeue_handlers.mergequeue_status, the
             batch's history read again: what a pass pays after the batch moved) and its size
  poll       one refresh of every ledger, nothing new (what the poller pays each second)
  stream     a bead written -> the server-sent event that says so, at a poll interval of 0.2 s
  memory     the process's resident memory (now, not its peak) before the dashboard and after its
             polls, renders and event stream: what the dashboard adds to the operator's process
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from gastown import convoy as convoys
from gastown.dashboard import views
from gastown.dashboard.server import Dashboard
from gastown.dashboard.sources import RigView
from gastown.kube.mergequeue_handlers import mergequeue_status
from gastown.ledger import BeadType, Ledger
from gastown.ledger.ops import Create, Together
from gastown.refinery import QueueSettings
from gastown.refinery.records import OpenBatch, RecordRun, SettleRound, state_of

MRS = 16  # the batch rig 0's queue bisects
BAD = (5, 11)  # its bad MRs
PARALLEL = 4


def rss_mb() -> float:
    """Resident memory now (Linux: /proc), else the peak."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * resource.getpagesize() / 2**20
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build(root: Path, rigs: int, beads: int, commits: int) -> dict[str, Ledger]:
    out = {}
    per = beads // rigs
    for r in range(rigs):
        remote = root / f"rig{r}.git"
        subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(remote)], check=True)
        lg = Ledger(str(remote), cache_dir=root / f"cache{r}", actor="bench")
        lg.ensure()
        info = convoys.ConvoyInfo(key=f"c{r}", name=f"convoy-{r}", rig=f"rig{r}", source="beads", labels=(),
                                  strategy="direct", stall_after=3600)
        lg.apply(convoys.OpenConvoy(info, "bench"))
        plan = tuple(convoys.PlannedBead(f"b{i}", f"Bead {i} <of> rig {r}", needs=(f"b{i - 1}",) if i % 5 else ())
                     for i in range(min(per, 40)))
        lg.apply(convoys.PlanConvoy(f"c{r}", plan, "bench"))
        rest = per - len(plan)
        lg.apply(Together(tuple(Create(title=f"Task {i}", actor="bench", seed=f"{r}-{i}") for i in range(rest)),
                          "bench"))
        ids = list(lg.beads())[:commits]
        for i in ids:
            lg.comment(i, "progress")
        out[f"rig{r}"] = lg
    bisecting(out["rig0"])
    return out


def bisecting(lg: Ledger) -> str:
    """A batch of MRS merge requests (BAD among them) bisected round by round as the Refinery records
    it, its last round left running: the batch's ID."""
    tasks = sorted(b.id for b in lg.beads().values() if b.type == BeadType.TASK)
    lg.apply(Together(tuple(Create(title=f"Merge polecat/cat-{i:02}/work", actor="bench", seed=f"mr-{i}",
                                   type=BeadType.MERGE_REQUEST,
                                   metadata={"target": "main", "commit": f"{i:040}", "source": tasks[i]})
                            for i in range(MRS)), "bench"))
    mrs = [b.id for b in sorted((b for b in lg.beads().values() if b.type == BeadType.MERGE_REQUEST),
                                key=lambda b: b.title)]
    bad = {mrs[i] for i in BAD}
    batch = lg.apply(OpenBatch(target="main", base="0" * 40, mrs=mrs, commits={m: f"{i:040}" for i, m in enumerate(mrs)},
                               retry_flaky=False, actor="bench"))
    while True:
        state = state_of(batch)
        runs = state.next_round(PARALLEL)
        state.settle({r: "fail" if bad & set(r.stack) else "pass" for r in runs})
        if state.done:  # the last round: running
            return batch.id
        for r in runs:
            failed = bool(bad & set(r.stack))
            lg.apply(RecordRun(batch_id=batch.id, run=r, result="fail" if failed else "pass", tip="1" * 40,
                               gate="test" if failed else None, log="FAIL: bad line\n" if failed else "ok\n",
                               actor="bench"))
        batch = lg.apply(SettleRound(batch_id=batch.id, parallel=PARALLEL, actor="bench"))


def pct(xs: list[float], p: float) -> float:
    return sorted(xs)[min(len(xs) - 1, int(p * len(xs)))] * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rigs", type=int, default=20)
    ap.add_argument("--beads", type=int, default=5000)
    ap.add_argument("--commits", type=int, default=20, help="changes after the creates, per rig")
    ap.add_argument("--renders", type=int, default=30)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.monotonic()
        ledgers = build(Path(tmp), args.rigs, args.beads, args.commits)
        print(f"built {args.rigs} rigs, {args.beads} beads in {time.monotonic() - t0:.1f}s")
        rigs = {n: RigView(n, lg, 4, QueueSettings()) for n, lg in ledgers.items()}
        before = rss_mb()
        dash = Dashboard(lambda: rigs, interval=0.2)
        t0 = time.monotonic()
        dash.poll()
        print(f"first poll (every ledger's history read): {time.monotonic() - t0:.2f}s")
        polls = []
        for _ in range(5):
            t0 = time.monotonic()
            dash.poll()
            polls.append(time.monotonic() - t0)
        print(f"poll, nothing new ({args.rigs} ledgers): p50 {pct(polls, .5):.0f} ms")
        convoy = next(b for b in ledgers["rig0"].beads(refresh=False).values() if b.type == "convoy")
        actions = views.Actions(False, "x")
        times = []
        for _ in range(args.renders):
            t0 = time.monotonic()
            views.town_page(rigs, {n: lg.beads(refresh=False) for n, lg in ledgers.items()}, actions)
            times.append(time.monotonic() - t0)
        print(f"render {'/ uncached (a ledger moved)':<24} p50 {pct(times, .5):7.1f} ms  p95 {pct(times, .95):7.1f} ms")
        for path in ("/", "/rig/rig0", "/rig/rig1", f"/convoy/rig0/{convoy.id}", "/feed"):
            times = []
            for _ in range(args.renders):
                t0 = time.monotonic()
                dash.render(path, {}, actions)
                times.append(time.monotonic() - t0)
            print(f"render {path:<24} p50 {pct(times, .5):7.1f} ms  p95 {pct(times, .95):7.1f} ms")
        beads = ledgers["rig0"].beads(refresh=False)
        times = []
        for _ in range(args.renders):
            t0 = time.monotonic()
            status = mergequeue_status(beads, "main", None, history=ledgers["rig0"].history, parallel=PARALLEL)
            times.append(time.monotonic() - t0)
        shown = status["batch"]
        print(f"mq status (rig0: {len(shown['mrs'])} MRs, round {shown['round']}, "
              f"{sum(len(r['runs']) for r in shown['rounds'])} runs) p50 {pct(times, .5):7.1f} ms  "
              f"p95 {pct(times, .95):7.1f} ms  {len(json.dumps(status))} bytes")
        server = dash.start("127.0.0.1", 0)
        url = f"http://127.0.0.1:{server.server_address[1]}/events"
        stream = urllib.request.urlopen(url, timeout=30)
        stream.readline()
        stream.readline()
        lat = []
        for i in range(10):
            got = threading.Event()

            def read(got: threading.Event = got) -> None:
                while not stream.readline().startswith(b"data:"):
                    pass
                got.set()
            reader = threading.Thread(target=read, daemon=True)
            reader.start()
            t0 = time.monotonic()
            ledgers[f"rig{i % args.rigs}"].create(f"live {i}")
            got.wait(30)
            lat.append(time.monotonic() - t0)
            reader.join(5)
        print(f"stream: write -> event  p50 {pct(lat, .5):.0f} ms  p95 {pct(lat, .95):.0f} ms "
              f"(poll interval 200 ms; the write itself included)")
        after = rss_mb()
        print(f"memory: RSS {before:.0f} MB before the dashboard, {after:.0f} MB after (+{after - before:.0f} MB)")
        dash.stop()
        for lg in ledgers.values():
            lg.close()


if __name__ == "__main__":
    main()
