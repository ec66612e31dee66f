"""The Refinery on real git with real gates: a tiny project whose test fails when a bad line is in.

Each MR is a real polecat branch recorded with `gt done`'s operation; verification runs are
real `gt mq verify` subprocesses in scratch checkouts, started by the local driver's port.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gastown.ledger import BeadType, Status
from gastown.local.driver import LocalPort, RigConfig
from gastown.refinery import QueueSettings, Refinery
from gastown.refinery.records import state_of, verified_tip
from gastown.runtimes.local import LocalBackend

from conftest import wait_for
from rigs import GATE_CHECK, git, make_rig, push_mr


@pytest.fixture
def rig(tmp_path):
    return make_rig(tmp_path, {"README.md": "# tiny\n", "check.py": GATE_CHECK, "mods/.keep": "",
                               "shared.txt": "one\ntwo\nthree\n"})


def make_port(rig, tmp_path, gate_delay=0.0, gates=None, **queue):
    gates = gates or [("test", [sys.executable, "check.py", str(gate_delay)])]
    settings = QueueSettings(fill_window=0, **queue)
    config = RigConfig(rig.name, str(rig.remote), gates=gates, queue=settings, verify_timeout=120)
    backend = LocalBackend(tmp_path / "town", cache_dir=tmp_path / "town-cache")
    ledger = rig.ledger("refinery")
    return LocalPort(config, backend, ledger), ledger, settings


def settle(refinery, ledger, until, timeout=90):
    def step():
        refinery.step(ledger.snapshot().beads(), datetime.now(UTC))
        beads = ledger.snapshot(refresh=False).beads()
        return beads if until(beads) else None
    return wait_for(step, timeout=timeout, what="the merge queue")


def idle(beads):
    return not any(b.type == BeadType.MERGE_BATCH and b.status != Status.CLOSED for b in beads.values()) and \
        not any(b.type == BeadType.MERGE_REQUEST and b.status in (Status.OPEN, Status.IN_PROGRESS)
                for b in beads.values())


def main_mods(rig) -> set[str]:
    out = git("ls-tree", "--name-only", "main", "mods/", cwd=rig.remote)
    return {Path(p).stem for p in out.splitlines() if p.endswith(".txt")}


@pytest.mark.parametrize("bad", [set(), {"m3"}, {"m1", "m6"}])
def test_batch_of_eight_merges_exactly_the_good_ones(rig, tmp_path, bad):
    port, ledger, settings = make_port(rig, tmp_path)
    names = [f"m{i}" for i in range(8)]
    mrs = {n: push_mr(rig, tmp_path, n, "BAD\n" if n in bad else f"good {n}\n") for n in names}
    refinery = Refinery(ledger, port, settings)
    beads = settle(refinery, ledger, idle)

    assert main_mods(rig) == set(names) - bad
    for n, mr in mrs.items():
        bead = beads[mr]
        source = beads[bead.metadata["source"]]
        if n in bad:
            assert bead.status == Status.BLOCKED and bead.metadata["rejections"] == 1
            assert source.status == Status.HOOKED and source.assignee == f"cat-{n}"
            assert "FAIL: bad line in" in source.comments[-1].text  # the gate's output goes back to the polecat
        else:
            assert bead.status == Status.CLOSED and source.status == Status.CLOSED
            assert bead.metadata["merged_commit"] == git("rev-parse", "main", cwd=rig.remote)
    batches = [b for b in beads.values() if b.type == BeadType.MERGE_BATCH]
    assert len(batches) == 1 and batches[0].status == Status.CLOSED
    runs = batches[0].metadata["total_runs"]
    if not bad:
        assert runs == 1
    # merged polecat branches are deleted, rejected ones kept; no scratch refs left behind
    branches = rig.branches()
    assert {n for n in names if f"polecat/cat-{n}/{n}" in branches} == bad
    assert not git("for-each-ref", "refs/gastown/verify", cwd=rig.remote)
    ledger.close()


def test_conflicting_mr_is_isolated_and_the_rest_merge(rig, tmp_path):
    port, ledger, settings = make_port(rig, tmp_path)
    good = [push_mr(rig, tmp_path, f"g{i}", "fine\n") for i in range(3)]
    clash = push_mr(rig, tmp_path, "clash", "fine\n", {"shared.txt": "one\nTWO (theirs)\nthree\n"})
    seed = tmp_path / "human"
    git("clone", "-q", str(rig.remote), str(seed))
    (seed / "shared.txt").write_text("one\nTWO (ours)\nthree\n")
    git("-c", "user.name=h", "-c", "user.email=h@x", "commit", "-qam", "human edit", cwd=seed)
    git("push", "-q", "origin", "main", cwd=seed)

    beads = settle(rig_refinery := Refinery(ledger, port, settings), ledger, idle)
    assert rig_refinery is not None
    assert main_mods(rig) == {"g0", "g1", "g2"}
    assert all(beads[m].status == Status.CLOSED for m in good)
    mr = beads[clash]
    assert mr.status == Status.BLOCKED and mr.metadata["conflicts"] == ["shared.txt"]
    source = beads[mr.metadata["source"]]
    assert source.status == Status.HOOKED and "shared.txt" in source.comments[-1].text
    ledger.close()


def test_target_moving_during_verification_rebuilds_and_loses_nothing(rig, tmp_path):
    port, ledger, settings = make_port(rig, tmp_path, gate_delay=1.0)
    mrs = [push_mr(rig, tmp_path, f"m{i}", "fine\n") for i in range(3)]
    refinery = Refinery(ledger, port, settings)
    settle(refinery, ledger, lambda b: any(r.type == BeadType.MERGE_BATCH for r in b.values()))
    human = tmp_path / "human"
    git("clone", "-q", str(rig.remote), str(human))
    (human / "NEWS.md").write_text("a human pushed meanwhile\n")
    git("add", "-A", cwd=human)
    git("-c", "user.name=h", "-c", "user.email=h@x", "commit", "-qm", "news", cwd=human)
    git("push", "-q", "origin", "main", cwd=human)
    human_commit = git("rev-parse", "HEAD", cwd=human)

    beads = settle(refinery, ledger, idle)
    assert main_mods(rig) == {"m0", "m1", "m2"}
    assert git("merge-base", "--is-ancestor", human_commit, "main", cwd=rig.remote) == ""  # kept, not forced over
    batch = next(b for b in beads.values() if b.type == BeadType.MERGE_BATCH)
    assert batch.metadata["rebases"] == 1 and batch.metadata["base"] == human_commit
    # verified once on each base: the first base's verifier is not mistaken for the second's
    assert batch.metadata["total_runs"] == 2 and [r["result"] for r in batch.metadata["runs"].values()] == ["pass"]
    assert all(beads[m].status == Status.CLOSED for m in mrs)
    ledger.close()


def test_red_target_rejects_nobody_and_files_a_bug(rig, tmp_path):
    human = tmp_path / "human"
    git("clone", "-q", str(rig.remote), str(human))
    (human / "mods" / "broken.txt").write_text("BAD\n")
    git("add", "-A", cwd=human)
    git("-c", "user.name=h", "-c", "user.email=h@x", "commit", "-qm", "oops", cwd=human)
    git("push", "-q", "origin", "main", cwd=human)
    red = git("rev-parse", "HEAD", cwd=human)
    port, ledger, settings = make_port(rig, tmp_path)
    mrs = [push_mr(rig, tmp_path, f"m{i}", "fine\n") for i in range(4)]
    refinery = Refinery(ledger, port, settings)

    beads = settle(refinery, ledger, lambda b: any(r.type == BeadType.BUG for r in b.values()))
    bug = next(b for b in beads.values() if b.type == BeadType.BUG)
    assert bug.priority == 1 and red[:12] in bug.title and "FAIL: bad line in broken" in bug.description
    assert all(beads[m].status == Status.OPEN and not beads[m].metadata.get("rejections") for m in mrs)
    assert git("rev-parse", "main", cwd=rig.remote) == red
    # the same MRs on the same red target are not tried again
    for _ in range(3):
        report = refinery.step(ledger.snapshot().beads(), datetime.now(UTC))
        assert not report.opened
    assert sum(b.type == BeadType.MERGE_BATCH for b in ledger.beads().values()) == 1
    ledger.close()


# fails the first time it runs, passes after: each run leaves a line in the marker file
FLAKY = "import pathlib, sys; m = pathlib.Path(sys.argv[1]); n = len(m.read_text().splitlines()) if m.exists() " \
        "else 0; m.write_text('run\\n' * (n + 1)); print('flaky run', n + 1); sys.exit(1 if n == 0 else 0)"


@pytest.mark.parametrize("count", [1, 3])
def test_retry_flaky_runs_the_failed_batch_again_and_it_merges(rig, tmp_path, count):
    marker = tmp_path / "flaky-runs"
    port, ledger, settings = make_port(rig, tmp_path, gates=[("test", [sys.executable, "-c", FLAKY, str(marker)])],
                                       retry_flaky=True)
    mrs = [push_mr(rig, tmp_path, f"m{i}", "fine\n") for i in range(count)]
    beads = settle(Refinery(ledger, port, settings), ledger, idle)

    assert marker.read_text().splitlines() == ["run", "run"]  # the gate ran twice: failed, then retried
    assert main_mods(rig) == {f"m{i}" for i in range(count)}
    assert all(beads[m].status == Status.CLOSED and not beads[m].metadata.get("rejections") for m in mrs)
    batch = next(b for b in beads.values() if b.type == BeadType.MERGE_BATCH)
    runs = batch.metadata["runs"].values()
    assert batch.metadata["total_runs"] == 2 and sorted(r["result"] for r in runs) == ["fail", "pass"]
    assert all(r["group"] == mrs and r["prefix"] == [] for r in runs)  # the same group, no target-only run
    ledger.close()


QUEUE_PROCESS = textwrap.dedent("""\
    import sys, time
    from datetime import UTC, datetime
    sys.path.insert(0, sys.argv[1])
    from test_refinery_local import make_port
    from gastown.refinery import Refinery
    from pathlib import Path
    from rigs import Rig
    rig = Rig(Path(sys.argv[2]), Path(sys.argv[3]) / "ledger-cache")
    port, ledger, settings = make_port(rig, Path(sys.argv[3]), gate_delay=float(sys.argv[4]))
    refinery = Refinery(ledger, port, settings)
    while True:
        refinery.step(ledger.snapshot().beads(), datetime.now(UTC))
        time.sleep(0.05)
""")


def test_queue_killed_mid_verification_finishes_after_restart_without_merging_twice(rig, tmp_path):
    mrs = [push_mr(rig, tmp_path, f"m{i}", "BAD\n" if i == 2 else "fine\n") for i in range(4)]
    here = Path(__file__).resolve().parent
    env = {**os.environ, "PYTHONPATH": f"{here.parent}{os.pathsep}{here}"}
    proc = subprocess.Popen([sys.executable, "-c", QUEUE_PROCESS, str(here), str(rig.remote), str(tmp_path), "1.5"],
                            env=env, start_new_session=True)
    try:
        with rig.ledger() as lg:
            wait_for(lambda: any(b.type == BeadType.MERGE_BATCH and b.metadata.get("runs") == {}
                                 and (tmp_path / "town" / "verify" / b.id).exists()
                                 for b in lg.beads().values()), timeout=60, what="a verification to start")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the queue dies; its verifiers run on
        proc.wait()
    port, ledger, settings = make_port(rig, tmp_path, gate_delay=1.5)
    beads = settle(Refinery(ledger, port, settings), ledger, idle)
    assert main_mods(rig) == {"m0", "m1", "m3"}
    assert beads[mrs[2]].status == Status.BLOCKED
    # each MR merged once: exactly one merge commit per merged MR on main
    merges = git("log", "--merges", "--format=%s", "main", cwd=rig.remote).splitlines()
    assert sorted(m.split()[1] for m in merges) == sorted(m for m in (mrs[0], mrs[1], mrs[3]))
    ledger.close()


class Crash(Exception):
    """The queue process dying at one exact point."""


def test_restart_after_push_before_record_records_without_pushing_again(rig, tmp_path):
    port, ledger, settings = make_port(rig, tmp_path)
    mrs = [push_mr(rig, tmp_path, f"m{i}", "fine\n") for i in range(2)]
    refinery = Refinery(ledger, port, settings)
    push = refinery.branches.push

    def push_then_die(*args):
        assert push(*args)
        raise Crash

    refinery.branches.push = push_then_die
    with pytest.raises(Crash):
        settle(refinery, ledger, lambda beads: False)
    tip = git("rev-parse", "main", cwd=rig.remote)
    batch = next(b for b in ledger.beads().values() if b.type == BeadType.MERGE_BATCH)
    assert batch.metadata["phase"] == "merging" and verified_tip(batch) == tip  # pushed, not recorded

    beads = settle(Refinery(ledger, port, settings), ledger, idle)
    assert git("rev-parse", "main", cwd=rig.remote) == tip
    assert all(beads[m].status == Status.CLOSED and beads[m].metadata["merged_commit"] == tip for m in mrs)
    assert state_of(beads[batch.id]).accepted == mrs
    ledger.close()


def test_gt_mq_commands(rig, tmp_path):
    port, ledger, settings = make_port(rig, tmp_path)
    good = push_mr(rig, tmp_path, "ok", "fine\n")
    bad = push_mr(rig, tmp_path, "nope", "BAD\n")
    gt = [sys.executable, "-m", "gastown.cli.main", "mq"]
    rig_args = ["--rig", str(rig.remote), "--town", str(tmp_path / "gt-town")]

    def mq(*args):
        return subprocess.run([*gt, *args, *rig_args], capture_output=True, text=True, timeout=60)

    listed = mq("list")
    assert listed.returncode == 0 and good in listed.stdout and bad in listed.stdout
    assert mq("reject", good, "-r", "needs a test").returncode == 0
    assert ledger.get(good).status == Status.BLOCKED
    assert mq("retry", good).returncode == 0 and ledger.get(good).status == Status.OPEN
    not_an_mr = mq("reject", ledger.get(bad).metadata["source"], "-r", "x")
    assert not_an_mr.returncode == 1 and "is not a merge request" in not_an_mr.stderr
    settle(Refinery(ledger, port, settings), ledger, idle)
    status = mq("status")
    assert status.returncode == 0 and "merged 1, rejected 2" in status.stdout, status.stdout
    retried = mq("retry", good)
    assert retried.returncode == 1 and "already closed" in retried.stderr
    ledger.close()

