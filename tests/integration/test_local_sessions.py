"""Sessions through the LocalBackend with the `script` runtime, on real git and real processes."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from gastown.ledger import BeadType, Status
from gastown.ledger.errors import Unavailable
from gastown.ledger.worktree import RESCUE_REFS, prepare_branch, rescue_unpushed
from gastown.polecats import agent_id
from gastown.runtimes.local import LocalBackend, SessionRequest

from conftest import session_processes, wait_for
from rigs import git, make_rig

AGENT = str(Path(__file__).resolve().parent.parent / "agent_script.py")


@pytest.fixture
def rig(tmp_path):
    return make_rig(tmp_path)


@pytest.fixture
def backend(tmp_path, monkeypatch):
    # `gt` inside the session must be this checkout's
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    return LocalBackend(tmp_path / "town", cache_dir=tmp_path / "town-cache", heartbeat_interval=0.2)


def start(backend, rig, bead, mode, deadline=60.0):
    return backend.start(SessionRequest(rig=rig.name, remote=str(rig.remote), bead=bead, polecat="furiosa",
                                        runtime="script", args=(sys.executable, AGENT, mode),
                                        deadline=deadline))


def test_a_session_edits_files_and_done_records_the_merge_request(rig, backend):
    bead = rig.hooked_bead("Add a WORK file; rm -rf / `whoami` $(id)")
    session = start(backend, rig, bead, "edit")
    outcome = session.wait(60)
    assert outcome.status == "completed", (session.dir / "session.log").read_text()
    branch = f"polecat/furiosa/{bead}"
    assert branch in rig.branches()
    assert rig.branch_file(branch, "WORK.md") == f"# {bead}: Add a WORK file; rm -rf / `whoami` $(id)"
    assert rig.branch_file("main", "README.md") == "# webapp"  # main untouched

    with rig.ledger() as lg:
        beads = lg.beads()
    mr = beads[outcome.result_bead]
    assert mr.type == BeadType.MERGE_REQUEST and mr.status == Status.OPEN
    assert mr.metadata["branch"] == branch and mr.metadata["target"] == "main"
    assert mr.metadata["source"] == bead and mr.metadata["worker"] == "furiosa"
    assert mr.metadata["commit"] == outcome.commit
    work = beads[bead]
    assert work.status == Status.IN_PROGRESS and work.metadata["mr"] == mr.id
    agent = beads[agent_id("gt", "furiosa")]
    assert agent.metadata["state"] == "idle" and "hooked" not in agent.metadata
    assert agent.metadata["sessions"] == 1
    assert session.heartbeat_age() is not None
    prompt = (session.dir / "prompt.md").read_text()
    assert f"polecat/furiosa/{bead}" in prompt and "gt done" in prompt


def test_agent_commits_of_its_own_are_kept(rig, backend):
    bead = rig.hooked_bead("Commit it yourself")
    outcome = start(backend, rig, bead, "commit").wait(60)
    assert outcome.status == "completed"
    assert git("log", "-1", "--format=%s", f"polecat/furiosa/{bead}", cwd=rig.remote) == "agent work"


@pytest.mark.parametrize(("mode", "status", "words", "code"), [
    ("fail", "failed", "exited with code 2: error: the tests do not pass", 1),
    ("ratelimit", "rate_limited", "hit a rate limit: API Error: 429", 3),
])
def test_failures_end_with_a_clear_reason(rig, backend, mode, status, words, code):
    bead = rig.hooked_bead(f"Try {mode}")
    session = start(backend, rig, bead, mode)
    outcome = session.wait(60)
    assert outcome.status == status and words in outcome.reason
    assert session.exit_code == code
    with rig.ledger() as lg:
        work = lg.get(bead)
        agent = lg.get(agent_id("gt", "furiosa"))
    assert work.status == Status.HOOKED and work.assignee == "furiosa"  # kept for a restart
    # a rate limit is the provider's: it spends no attempt (the rig backs off instead)
    assert work.metadata["attempts"] == (0 if status == "rate_limited" else 1)
    assert work.metadata["last_outcome"] == status
    assert words in work.comments[-1].text
    assert agent.metadata["state"] == "idle"


def test_a_hung_runtime_is_stopped_at_its_deadline_and_its_work_pushed(rig, backend):
    bead = rig.hooked_bead("Hang")
    session = start(backend, rig, bead, "hang", deadline=2)
    outcome = session.wait(60)
    assert outcome.status == "timeout" and "no result after 2s" in outcome.reason
    assert session.exit_code == 4
    assert rig.branch_file(f"polecat/furiosa/{bead}", "PARTIAL.md") == "half done"
    with rig.ledger() as lg:
        assert lg.get(bead).metadata["last_outcome"] == "timeout"


def test_the_agent_may_escalate_itself(rig, backend):
    bead = rig.hooked_bead("Ambiguous work")
    outcome = start(backend, rig, bead, "escalate").wait(60)
    assert outcome.status == "escalated"
    with rig.ledger() as lg:
        beads = lg.beads()
    esc = beads[outcome.result_bead]
    assert esc.type == BeadType.ESCALATION and "the spec contradicts itself" in esc.description
    assert beads[bead].status == Status.BLOCKED


def test_a_restarted_session_resumes_the_pushed_branch(rig, backend):
    bead = rig.hooked_bead("Resume me")
    assert start(backend, rig, bead, "hang", deadline=2).wait(60).status == "timeout"
    outcome = start(backend, rig, bead, "edit").wait(60)
    assert outcome.status == "completed"
    branch = f"polecat/furiosa/{bead}"
    assert rig.branch_file(branch, "PARTIAL.md") == "half done"  # the first session's work
    assert rig.branch_file(branch, "WORK.md").startswith(f"# {bead}")
    with rig.ledger() as lg:
        assert lg.get(agent_id("gt", "furiosa")).metadata["sessions"] == 2


def test_an_unknown_bead_fails_cleanly(rig, backend):
    rig.hooked_bead("something")
    outcome = start(backend, rig, "gt-zzzz", "edit").wait(60)
    assert outcome.status == "failed" and "no bead gt-zzzz" in outcome.reason


def test_a_session_stopped_from_outside_saves_its_work_first(rig, backend):
    """SIGTERM to the session (the Witness stopping it, or Kubernetes deleting its pod): the runtime
    is stopped, what it wrote is committed and pushed on the branch, and the end is recorded."""
    bead = rig.hooked_bead("Think forever")
    session = start(backend, rig, bead, "hang")
    log = session.dir / "session.log"
    for _ in range(200):
        if log.exists() and "thinking very hard" in log.read_text():
            break
        time.sleep(0.05)
    os.kill(session.pid, signal.SIGTERM)  # the wrapper only: its runtime is in a process group of its own
    outcome = session.wait(60)
    assert outcome.status == "failed" and "stopped from outside" in outcome.reason
    assert rig.branch_file(f"polecat/furiosa/{bead}", "PARTIAL.md") == "half done"
    with rig.ledger() as lg:
        work = lg.get(bead)
    assert work.status == Status.HOOKED and work.metadata["ended"] == session.name  # ready for a restart


def test_a_new_session_starts_only_once_an_earlier_sessions_agent_is_gone(rig, backend):
    """Belt and braces: an agent that outlived its wrapper and its watchdog (both SIGKILLed) is ended
    by the backend before it starts the polecat's next session in the same worktree."""
    bead = rig.hooked_bead("Think forever")
    first = start(backend, rig, bead, "hang")
    log = first.dir / "session.log"
    wait_for(lambda: log.exists() and "thinking very hard" in log.read_text(), what="the agent at work")
    group = next(g for _, g, cmd in session_processes(first.name) if cmd.startswith(f"{sys.executable} {AGENT}"))
    try:
        others = {first.pid, *(pid for pid, g, _ in session_processes(first.name) if g != group)}  # a watchdog
        for sig in (signal.SIGSTOP, signal.SIGKILL):
            for pid in others:
                os.kill(pid, sig)
        first.wait(10)
        time.sleep(0.5)
        assert [g for _, g, _ in session_processes(first.name)] == [group]  # an orphan, at work in the worktree
        second = start(backend, rig, bead, "edit")
        assert session_processes(first.name) == []
        assert second.wait(60).status == "completed"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)


def unpushed_commit(workdir: Path, branch: str, where: str) -> str:
    """A commit nobody pushed, as an agent killed before its session saved its work leaves it."""
    git("checkout", "-q", "-B", branch, cwd=workdir)
    (workdir / "ORPHAN.md").write_text("work nobody pushed\n")
    git("add", "ORPHAN.md", cwd=workdir)
    git("-c", "user.name=orphan", "-c", "user.email=o@x", "commit", "-q", "-m", "orphan work", cwd=workdir)
    commit = git("rev-parse", "HEAD", cwd=workdir)
    if where == "branch":  # the checkout moved on; the local branch a new session resets still holds it
        git("checkout", "-q", "--detach", "origin/main", cwd=workdir)
    return commit


@pytest.mark.parametrize("where", ["head", "branch"])
def test_unpushed_commits_are_rescued_before_a_session_resets_the_checkout(rig, backend, where):
    bead = rig.hooked_bead("Rescue me")
    workdir = backend.worktree(rig.name, str(rig.remote), "furiosa")
    commit = unpushed_commit(workdir, f"polecat/furiosa/{bead}", where)
    outcome = start(backend, rig, bead, "edit").wait(60)
    assert outcome.status == "completed"
    with rig.ledger() as lg:
        work = lg.get(bead)
    [ref] = work.metadata["rescues"]
    assert ref.startswith(f"{RESCUE_REFS}/furiosa/{bead}/")
    assert git("rev-parse", ref, cwd=rig.remote) == commit  # on the remote: the work survives the checkout
    assert any(ref in c.text and "rescued" in c.text for c in work.comments)
    assert git("show", f"{commit}:ORPHAN.md", cwd=rig.remote) == "work nobody pushed"


def test_a_checkout_is_never_reset_over_commits_neither_pushed_nor_rescued(rig, backend):
    workdir = backend.worktree(rig.name, str(rig.remote), "furiosa")
    commit = unpushed_commit(workdir, "polecat/furiosa/gt-x", "head")
    with pytest.raises(Unavailable, match="neither pushed nor rescued"):
        prepare_branch(workdir, "polecat/furiosa/gt-x", "main")
    assert git("rev-parse", "HEAD", cwd=workdir) == commit
    [(ref, rescued, source)] = rescue_unpushed(workdir, "polecat/furiosa/gt-x", f"{RESCUE_REFS}/furiosa/gt-x")
    assert (rescued, source) == (commit, "polecat/furiosa/gt-x")
    assert rescue_unpushed(workdir, "polecat/furiosa/gt-x", f"{RESCUE_REFS}/furiosa/gt-x") == []  # once
    prepare_branch(workdir, "polecat/furiosa/gt-x", "main")
    assert git("rev-parse", "HEAD", cwd=workdir) == git("rev-parse", "main", cwd=rig.remote)
    assert git("rev-parse", ref, cwd=rig.remote) == commit


def test_a_session_whose_pid_was_never_recorded_is_found_by_its_environment(rig, backend, tmp_path):
    """The daemon killed between starting a wrapper and writing its pid: the next daemon finds the
    wrapper by the session name in its environment (and records it); a session directory with no
    process at all is skipped, not a crash of `gt up` (found by the chaos test)."""
    bead = rig.hooked_bead("Think forever")
    first = start(backend, rig, bead, "hang")
    try:
        wait_for(lambda: (first.dir / "session.log").exists(), what="the wrapper at work")
        (first.dir / "pid").unlink()
        ghost = first.dir.parent / "furiosa-gt-zzz-20260101000000-0000"
        ghost.mkdir()
        (ghost / "request.json").write_text((first.dir / "request.json").read_text())
        again = LocalBackend(tmp_path / "town", cache_dir=tmp_path / "town-cache")
        found = {s.name: s for s in again.sessions()}
        assert set(found) == {first.name}
        assert found[first.name].pid == first.pid and found[first.name].running()
        assert (first.dir / "pid").read_text() == str(first.pid)
    finally:
        backend.stop(first, grace=1)


def test_polecats_of_one_rig_fetch_at_once_without_failing(rig, backend):
    """The polecats' checkouts are worktrees of one clone, so their fetches update the same
    remote-tracking refs: git refuses a fetch whose ref another holds locked ("cannot lock ref").
    A session's start must wait that out, not fail (found by the chaos-hunting of a flaky test)."""
    names = [f"cat{i}" for i in range(6)]
    workdirs = [backend.worktree(rig.name, str(rig.remote), n) for n in names]
    seed = rig.remote.parent / "pusher"
    git("clone", "-q", str(rig.remote), str(seed))
    errors: list[Exception] = []
    for round_ in range(8):
        (seed / "README.md").write_text(f"round {round_}\n")
        git("-c", "user.name=s", "-c", "user.email=s@x", "commit", "-qam", f"round {round_}", cwd=seed)
        git("push", "-q", "origin", "HEAD:main", cwd=seed)
        barrier = threading.Barrier(len(workdirs))

        def start(workdir, n, branch, barrier=barrier):
            barrier.wait()
            try:
                prepare_branch(workdir, branch, "main")
            except Unavailable as e:
                errors.append(e)

        threads = [threading.Thread(target=start, args=(w, n, f"polecat/{n}/gt-x{round_}"))
                   for w, n in zip(workdirs, names, strict=True)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []
