"""The demo scenario, as `make demo` runs it: the `gt` CLI, the town daemon, scripted agents, the
real tests of the sample project as the merge queue's gate. Asserts on the ledger and on git."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter

import pytest

from gastown.demo import project
from gastown.demo.run import RIG, Demo
from gastown.ledger import BeadType, Status
from gastown.local import daemon
from gastown.local.town import Town

from conftest import agents_at_once, session_results, wait_for
from rigs import git


@pytest.fixture
def demo(tmp_path):
    d = Demo(tmp_path / "demo", agent_seconds=0.3, fill_window=1, echo=lambda line: None)
    d.setup()
    yield d
    daemon.stop(Town(d.town), timeout=10)


def check_outcome(demo: Demo, beads) -> None:
    convoy = next(b for b in beads.values() if b.type == BeadType.CONVOY)
    assert convoy.status == Status.CLOSED and convoy.close_reason == "8 of 8 beads merged"
    keys = convoy.metadata["keys"]
    assert set(keys) == {c.key for c in project.CHANGES}
    assert all(beads[i].status == Status.CLOSED for i in keys.values())
    # every change is on main, merged exactly once
    merges = git("log", "--merges", "--format=%s", "main", cwd=demo.remote).splitlines()
    merged = Counter(m.split()[1] for m in merges if "(merge queue " in m)  # "Merge MR-ID (merge queue BATCH)"
    mr_ids = {b.id for b in beads.values() if b.type == BeadType.MERGE_REQUEST}
    assert set(merged) == mr_ids and len(mr_ids) == 8 and set(merged.values()) == {1}, merges
    files = git("ls-tree", "-r", "--name-only", "main", cwd=demo.remote).splitlines()
    assert {p for c in project.CHANGES for p in c.files} <= set(files)
    # the broken change was rejected once, with the failing test's output, then fixed and merged
    mrs = {b.metadata["source"]: b for b in beads.values() if b.type == BeadType.MERGE_REQUEST}
    broken = beads[keys[project.BROKEN]]
    assert mrs[broken.id].metadata["rejections"] == 1 and mrs[broken.id].status == Status.CLOSED
    rejection = next(c.text for c in broken.comments if "rejected by the merge queue" in c.text)
    assert "FAIL: test_" in rejection and "AssertionError" in rejection
    assert all(int(m.metadata.get("rejections", 0)) == 0 for s, m in mrs.items() if s != broken.id)
    # and main passes the project's tests
    work = demo.root / "check"
    git("clone", "-q", str(demo.remote), str(work))
    assert subprocess.run([sys.executable, *project.GATE_ARGS], cwd=work, capture_output=True).returncode == 0
    # never more than 3 agents at once (a wrapper wrapping up holds no slot); one session per bead,
    # two for the rejected one
    results = session_results(demo.town / "sessions")
    requests = [json.loads(p.read_text())["request"] for p in (demo.town / "sessions").glob("*/request.json")]
    assert agents_at_once(demo.town / "sessions") <= 3
    assert all(r["status"] == "completed" for r in results) and len(results) == len(requests)
    per_bead = Counter(r["bead"] for r in requests)
    assert per_bead == {i: 2 if k == project.BROKEN else 1 for k, i in keys.items()}


def test_the_demo_builds_the_library_and_bisects_the_broken_change(demo):
    demo.start()
    demo.order()
    beads = demo.follow(timeout=180)
    demo.stop()
    check_outcome(demo, beads)
    status = subprocess.run([sys.executable, "-m", "gastown.cli.main", "status", "--json"], env=demo.env(),
                            capture_output=True, text=True, check=True)
    rig = json.loads(status.stdout)["rigs"][0]
    assert rig["name"] == RIG and rig["mergeQueue"]["merged"] == 8 and rig["mergeQueue"]["rejected"] == 1
    assert json.loads(status.stdout)["daemon"]["pid"] is None


def test_the_daemon_killed_mid_run_carries_on_after_gt_up(demo):
    demo.start()
    demo.order()
    town = Town(demo.town)

    def merged_some():
        with demo.ledger() as lg:
            return any(b.type == BeadType.MERGE_BATCH and b.status == Status.CLOSED for b in lg.beads().values())

    wait_for(merged_some, timeout=120, what="a first merge")
    os.kill(daemon.running(town), signal.SIGKILL)  # no clean shutdown at all
    wait_for(lambda: daemon.running(town) is None, timeout=10, what="the daemon to die")
    demo.start()
    beads = demo.follow(timeout=180)
    demo.stop()
    check_outcome(demo, beads)
