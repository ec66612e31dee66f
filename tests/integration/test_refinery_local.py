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
from concurrent.futures import Future
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gastown.ledger import BeadType, Status
from gastown.local.driver import LocalPort, RigConfig
from gastown.refinery import QueueSettings, Refinery
from gastown.refinery.records import SettleRound, state_of, verified_tip
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
    backend = LocalBackend(tmp_path / "town", cache_root=tmp_path / "town-cache")
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


def test_the_step_that_forms_a_batch_starts_its_first_round(rig, tmp_path):
    port, ledger, settings = make_port(rig, tmp_path)
    mrs = [push_mr(rig, tmp_path, f"m{i}", "fine\n") for i in range(3)]
    report = Refinery(ledger, port, settings).step(ledger.snapshot().beads(), datetime.now(UTC))
    assert (report.opened, report.started, report.phase) == (1, 1, "Verifying")  # no pass waited for in between
    beads = settle(Refinery(ledger, port, settings), ledger, idle)
    assert all(beads[m].status == Status.CLOSED for m in mrs)
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
    # pushed, not recorded: the round that decided it is not even settled (one write records both)
    assert batch.metadata["phase"] == "verifying" and [r["tip"] for r in batch.metadata["runs"].values()] == [tip]

    beads = settle(Refinery(ledger, port, settings), ledger, idle)
    assert git("rev-parse", "main", cwd=rig.remote) == tip
    assert all(beads[m].status == Status.CLOSED and beads[m].metadata["merged_commit"] == tip for m in mrs)
    assert state_of(beads[batch.id]).accepted == mrs
    ledger.close()


def test_the_round_that_decides_a_merge_is_recorded_with_it_in_one_write(rig, tmp_path):
    port, ledger, settings = make_port(rig, tmp_path, parallel=4)
    mrs = [push_mr(rig, tmp_path, f"m{i}", "BAD\n" if i == 1 else "fine\n") for i in range(4)]
    beads = settle(Refinery(ledger, port, settings), ledger, idle)
    assert main_mods(rig) == {"m0", "m2", "m3"} and beads[mrs[1]].status == Status.BLOCKED
    batch = next(b for b in beads.values() if b.type == BeadType.MERGE_BATCH)
    history = ledger.history(batch.id)
    rounds = [h for h in history if h.change.startswith("round ")]
    assert len(rounds) == state_of(batch).rounds >= 2
    assert rounds[-1].commit == history[-1].commit and history[-1].change.startswith("merged 3 as")
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



# a gate noting who started it (its parent process) and the run it checks (the checkout's HEAD)
WHO = "import os, subprocess, sys; head = subprocess.run(['git', 'rev-parse', 'HEAD'], capture_output=True, " \
      "text=True).stdout.strip(); open(sys.argv[1], 'a').write(f'{os.getppid()} {head}\\n')"
# a pre-receive hook noting, per push to the rig: the verification refs it sets, and the polecat
# branches it deletes
PUSHES = "#!/bin/sh\nawk '$2 !~ /^0+$/ && $3 ~ /^refs\\/gastown\\/verify\\// {{v++}} " \
         "$2 ~ /^0+$/ && $3 ~ /^refs\\/heads\\/polecat\\// {{d++}} END {{print v+0, d+0}}' >> {log}\n"


def test_a_round_runs_in_threads_of_the_daemon_started_together_on_reused_checkouts(rig, tmp_path):
    who, pushes = tmp_path / "gates", tmp_path / "pushes"
    hook = rig.remote / "hooks" / "pre-receive"
    hook.write_text(PUSHES.format(log=pushes))
    hook.chmod(0o755)
    gates = [("who", [sys.executable, "-c", WHO, str(who)]), ("test", [sys.executable, "check.py"])]
    port, ledger, settings = make_port(rig, tmp_path, gates=gates, parallel=4)
    mrs = [push_mr(rig, tmp_path, f"m{i}", "BAD\n" if i == 6 else "fine\n") for i in range(8)]
    beads = settle(Refinery(ledger, port, settings), ledger, idle)
    assert main_mods(rig) == {f"m{i}" for i in range(8)} - {"m6"}
    assert beads[mrs[6]].status == Status.BLOCKED

    # no Python process per run: every gate was started by this process (the daemon's verifier threads)
    started = [line.split() for line in who.read_text().splitlines()]
    batch = next(b for b in beads.values() if b.type == BeadType.MERGE_BATCH)
    assert len(started) == batch.metadata["total_runs"] >= 4
    assert {int(parent) for parent, _ in started} == {os.getpid()}
    # the verifiers read the stacks where the Refinery built them (the daemon's cache): no scratch
    # ref reaches the rig; each checkout is the run's own stack
    counts = [tuple(map(int, line.split())) for line in pushes.read_text().splitlines()]
    assert not any(v for v, _ in counts) and not git("for-each-ref", "refs/gastown/verify", cwd=rig.remote)
    assert sorted(head for _, head in started) == sorted(r["tip"] for r in batch.metadata["runs"].values())
    # the merged MRs' branches are deleted in one push
    assert [d for _, d in counts if d] == [7]
    # checkouts are reused, not made anew for each run: as many as ran at once
    checkouts = list((tmp_path / "town" / "verify" / "checkouts" / rig.name).iterdir())
    assert 1 <= len(checkouts) <= settings.parallel < len(started)
    ledger.close()


def test_each_stack_is_built_on_the_stacks_already_verified(rig, tmp_path):
    # (a gate of a second or more: a stack built anew from the base would be a commit of another second)
    port, ledger, settings = make_port(rig, tmp_path, gate_delay=1.1, parallel=4)
    mrs = [push_mr(rig, tmp_path, f"m{i}", "BAD\n" if i == 6 else "fine\n") for i in range(8)]
    beads = settle(Refinery(ledger, port, settings), ledger, idle)
    batch = next(b for b in beads.values() if b.type == BeadType.MERGE_BATCH)
    runs = [r for r in batch.metadata["runs"].values() if r["tip"]]
    assert len(runs) >= 6 and any(r["prefix"] for r in runs)
    for run in runs:
        stack = run["prefix"] + run["group"]
        below = max((r for r in runs if r is not run and (r["prefix"] + r["group"]) == stack[:len(r["prefix"] + r["group"])]
                     and len(r["prefix"] + r["group"]) < len(stack)), key=lambda r: len(r["prefix"] + r["group"]),
                    default=None)
        if below is not None:  # built on the longest stack verified before it, never rebuilt from the base
            assert git("merge-base", "--is-ancestor", below["tip"], run["tip"], cwd=ledger.store.cache) == "", \
                (below, run)
    # what merges is the stack verified as a whole, and the merge commits name each MR and the batch
    assert git("rev-parse", "main", cwd=rig.remote) == verified_tip(batch)
    merges = git("log", "--merges", "--format=%s", "main", cwd=rig.remote).splitlines()
    assert sorted(merges) == sorted(f"Merge {mr} (merge queue {batch.id})" for i, mr in enumerate(mrs) if i != 6)
    ledger.close()


def test_the_next_round_starts_while_the_settling_is_pushed_and_a_lost_settling_runs_nothing_twice(rig, tmp_path):
    who = tmp_path / "gates"
    gates = [("who", [sys.executable, "-c", WHO, str(who)]), ("test", [sys.executable, "check.py"])]
    port, ledger, settings = make_port(rig, tmp_path, gates=gates, parallel=4)
    mrs = [push_mr(rig, tmp_path, f"m{i}", "BAD\n" if i == 5 else "fine\n") for i in range(8)]
    submit = ledger.submit

    def settling_lost(op):  # the first settling never reaches the ledger (the queue dies pushing it)
        if isinstance(op, SettleRound):
            lost = Future()
            lost.set_exception(Crash())
            return lost
        return submit(op)

    ledger.submit = settling_lost
    with pytest.raises(Crash):
        settle(Refinery(ledger, port, settings), ledger, lambda beads: False)
    ledger.submit = submit
    batch = next(b for b in ledger.beads().values() if b.type == BeadType.MERGE_BATCH)
    assert state_of(batch).rounds == 0  # not settled, and yet the next round is under way
    assert len(port.verifications(batch.id)) == 1 + 4  # the batch's run, and the next round's four

    beads = settle(Refinery(ledger, port, settings), ledger, idle)
    assert main_mods(rig) == {f"m{i}" for i in range(8)} - {"m5"}
    assert beads[mrs[5]].status == Status.BLOCKED
    batch = beads[batch.id]
    # every run verified once: the round started before the settling was lost is not started again
    assert len(who.read_text().splitlines()) == batch.metadata["total_runs"] == len(batch.metadata["runs"])
    ledger.close()
