"""The Witness in local mode: real sessions killed, frozen and failing; nothing lost, no false zombie."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from gastown import convoy as convoys
from gastown.api.common import RuntimeSpec
from gastown.ledger import BeadType, Status
from gastown.ledger.worktree import RESCUE_REFS, last_commit_age
from gastown.local.driver import RigConfig, RigDriver
from gastown.runtimes.local import LocalBackend
from gastown.witness import Thresholds

from conftest import session_processes, wait_for
from rigs import git, make_rig

AGENT = str(Path(__file__).resolve().parent.parent / "agent_script.py")


@pytest.fixture
def rig(tmp_path):
    return make_rig(tmp_path)


@pytest.fixture
def make_driver(rig, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    made = []

    def make(mode, hung_after=3.0, heartbeat_interval=0.3):
        ledger = rig.ledger("gastown daemon")
        backend = LocalBackend(tmp_path / "town", cache_root=tmp_path / "town-cache",
                               heartbeat_interval=heartbeat_interval)
        config = RigConfig(rig.name, str(rig.remote), max_polecats=1,
                           runtime=RuntimeSpec(preset="script", args=[sys.executable, AGENT, mode]),
                           thresholds=Thresholds(start_grace=10, hung_after=hung_after))
        driver = RigDriver(config, backend, ledger)
        stop = threading.Event()
        thread = threading.Thread(target=driver.run, args=(stop,), kwargs={"poll": 0.05}, daemon=True)
        thread.start()
        made.append((stop, thread, ledger))
        return driver

    yield make
    for stop, thread, ledger in made:
        stop.set()
        thread.join(10)
        ledger.close()


def one_bead(rig, title="Resumable work", labels=()):
    info = convoys.ConvoyInfo("w", "w", rig.name, "beads", strategy="direct", labels=tuple(labels))
    with rig.ledger() as lg:
        lg.apply(convoys.OpenConvoy(info, "t"))
        convoy = lg.apply(convoys.PlanConvoy("w", (convoys.PlannedBead("only", title),), "t"))
    return convoy.metadata["keys"]["only"]


def current_session(driver):
    return wait_for(lambda: next((s for s in driver.port.sessions.values() if s.running()), None),
                    what="a running session")


def partial_committed(rig, driver, bead):
    workdir = driver.backend.town / "rigs" / rig.name / "polecats" / "furiosa"
    return (workdir / "PARTIAL.md").exists() and git("log", "-1", "--format=%s", cwd=workdir) == "half of it"


def finished(rig, bead):
    with rig.ledger() as lg:
        return lg.get(bead).status == Status.CLOSED


@pytest.mark.parametrize("how", ["killed", "frozen"])
def test_a_lost_session_is_restarted_on_its_branch_and_finishes(rig, make_driver, how):
    bead = one_bead(rig)
    driver = make_driver("resumable")
    session = current_session(driver)
    wait_for(lambda: partial_committed(rig, driver, bead), what="half the work committed (not pushed)")
    os.killpg(session.pid, signal.SIGKILL if how == "killed" else signal.SIGSTOP)
    wait_for(lambda: finished(rig, bead), timeout=60, what="the bead merged after a restart")
    with rig.ledger() as lg:
        work = lg.get(bead)
    assert work.metadata["attempts"] == 1
    expected = "hung" if how == "frozen" else "failed"
    assert any(c.text.startswith("session ") and f": {expected}: " in c.text for c in work.comments)
    main = git("ls-tree", "--name-only", "main", cwd=rig.remote).split()
    assert "PARTIAL.md" in main and "WORK.md" in main  # the first session's unpushed work survived


def test_a_killed_wrapper_takes_its_agent_along_and_sessions_never_interleave(rig, make_driver, monkeypatch):
    """kill -9 of `gt session run`: its agent, in a process group of its own, dies with it; the next
    session starts after it, so the branch never holds two sessions' commits mixed, and nothing the
    first one committed is lost (pushed by the Witness, or rescued by the next session)."""
    monkeypatch.setenv("AGENT_SECONDS", "4")
    bead = one_bead(rig)
    driver = make_driver("notes", hung_after=30)
    first = current_session(driver)
    workdir = driver.backend.town / "rigs" / rig.name / "polecats" / "furiosa"
    wait_for(lambda: git("log", "--format=%s", cwd=workdir).count(f"note {first.name} ") >= 3,
             what="the first session's notes committed")
    committed = git("rev-parse", "HEAD", cwd=workdir)
    os.kill(first.pid, signal.SIGKILL)  # the wrapper only: its agent is in a process group of its own
    wait_for(lambda: not session_processes(first.name), timeout=2, what="the killed session's agent gone")
    wait_for(lambda: finished(rig, bead), timeout=60, what="the bead merged after a restart")
    notes = [s.split()[1] for s in git("log", "--reverse", "--format=%s", "main", cwd=rig.remote).splitlines()
             if s.startswith("note ")]
    runs = [n for i, n in enumerate(notes) if i == 0 or n != notes[i - 1]]
    assert len(runs) == len(set(runs)), f"two sessions' commits interleave on the branch: {runs}"
    assert runs[-1] != first.name
    with rig.ledger() as lg:
        rescues = lg.get(bead).metadata.get("rescues", [])
    assert all(r.startswith(RESCUE_REFS) for r in rescues)
    assert any(subprocess.run(["git", "merge-base", "--is-ancestor", committed, ref], cwd=rig.remote).returncode == 0
               for ref in ["main", *rescues]), "the first session's commits are lost"


def test_a_session_busy_for_longer_than_the_threshold_is_not_a_zombie(rig, make_driver, monkeypatch):
    monkeypatch.setenv("AGENT_SECONDS", "4")
    bead = one_bead(rig)
    make_driver("resumable", hung_after=1.5)  # works 4 s, beats every 0.3 s
    wait_for(lambda: finished(rig, bead), timeout=60, what="the bead merged")
    with rig.ledger() as lg:
        assert lg.get(bead).metadata.get("attempts", 0) == 0
    sessions = list((rig.remote.parent / "town" / "sessions").iterdir())
    assert len(sessions) == 1


def test_a_session_whose_heartbeat_is_late_but_that_keeps_committing_is_not_a_zombie(rig, make_driver, monkeypatch):
    monkeypatch.setenv("AGENT_SECONDS", "4")
    bead = one_bead(rig)
    make_driver("steady", hung_after=1.5, heartbeat_interval=60)  # one beat at the start, then none for 60 s
    wait_for(lambda: finished(rig, bead), timeout=60, what="the bead merged")
    with rig.ledger() as lg:
        work = lg.get(bead)
    assert work.metadata.get("attempts", 0) == 0 and not any(": hung: " in c.text for c in work.comments)
    assert len(list((rig.remote.parent / "town" / "sessions").iterdir())) == 1
    steps = git("log", "--format=%s", "main", cwd=rig.remote).splitlines()
    assert sum(s.startswith("step ") for s in steps) >= 10  # it committed all along, as one session


def test_the_last_commit_is_read_from_a_clone_and_from_a_worktree(rig, tmp_path):
    clone = tmp_path / "clone"
    git("clone", "-q", str(rig.remote), str(clone))
    assert last_commit_age(clone) is None  # a clone made no commit of its own
    git("worktree", "add", "-q", "--detach", str(tmp_path / "wt"), cwd=clone)
    for where in (clone, tmp_path / "wt"):
        (where / "f.txt").write_text(str(where))
        git("add", "f.txt", cwd=where)
        git("commit", "-q", "-m", "work", cwd=where)
        git("checkout", "-q", "-b", f"later-{where.name}", cwd=where)  # not a commit: the commit's time stands
        assert 0 <= last_commit_age(where) < 30
        assert 3600 <= last_commit_age(where, time.time() + 3600) < 3630
    assert last_commit_age(tmp_path / "nowhere") is None


def test_a_session_busy_in_gt_done_for_longer_than_the_threshold_is_not_a_zombie(rig, make_driver, monkeypatch,
                                                                                  tmp_path):
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "pre-push").write_text(  # pushing a polecat branch takes 4 s (a big push, a slow server)
        "#!/bin/sh\nwhile read local sha remote rsha; do\n"
        "  case $remote in refs/heads/polecat/*) sleep 4;; esac\ndone\n")
    (hooks / "pre-push").chmod(0o755)
    for key, value in {"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "core.hooksPath",
                       "GIT_CONFIG_VALUE_0": str(hooks)}.items():
        monkeypatch.setenv(key, value)
    bead = one_bead(rig)
    make_driver("commit", hung_after=1.5)  # the agent is quick; `gt done` is not
    wait_for(lambda: finished(rig, bead), timeout=60, what="the bead merged")
    with rig.ledger() as lg:
        work = lg.get(bead)
    assert work.metadata.get("attempts", 0) == 0 and not any(": hung: " in c.text for c in work.comments)
    assert len(list((rig.remote.parent / "town" / "sessions").iterdir())) == 1


def test_a_bead_that_keeps_failing_is_requeued_once_then_blocked(rig, make_driver):
    bead = one_bead(rig, "BROKEN for good")
    driver = make_driver("convoy")

    def blocked():
        with rig.ledger() as lg:
            return lg.get(bead).status == Status.BLOCKED
    wait_for(blocked, timeout=90, what="the bead blocked")
    with rig.ledger() as lg:
        beads = lg.beads()
    work = beads[bead]
    assert work.metadata["requeues"] == 2 and work.assignee is None
    p1 = [b for b in beads.values() if b.type == BeadType.ESCALATION and b.metadata["severity"] == "P1"]
    assert len(p1) == 2
    assert "back in the queue" in min(p1, key=lambda b: b.created_at).title
    assert "blocked" in max(p1, key=lambda b: b.created_at).title
    assert len(list((driver.backend.town / "sessions").iterdir())) == 6  # 3 sessions, requeue, 3 more
