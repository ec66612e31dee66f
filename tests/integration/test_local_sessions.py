"""Sessions through the LocalBackend with the `script` runtime, on real git and real processes."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from gastown.api.budget import RigBudget
from gastown.api.common import RuntimeSpec
from gastown.ledger import LEDGER_BRANCH, BeadType, Ledger, Status
from gastown.ledger.errors import Unavailable
from gastown.ledger.worktree import RESCUE_REFS, prepare_branch, rescue_unpushed
from gastown.local.driver import RigConfig, RigDriver
from gastown.polecats import agent_id
from gastown.runtimes.local import LocalBackend, SessionRequest
from gastown.runtimes.session import AGENT_PGID, WRAP_UP_NICENESS

from conftest import agents_at_once, most_at_once, session_processes, wait_for
from rigs import git, make_rig

AGENT = str(Path(__file__).resolve().parent.parent / "agent_script.py")


@pytest.fixture
def rig(tmp_path):
    return make_rig(tmp_path)


@pytest.fixture
def backend(tmp_path, monkeypatch):
    # `gt` inside the session must be this checkout's
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    return LocalBackend(tmp_path / "town", cache_root=tmp_path / "town-cache", heartbeat_interval=0.2)


def start(backend, rig, bead, mode, deadline=60.0, ledger=None):
    """A session of the `script` runtime; given the ``ledger`` a daemon holds, prepared and booked
    here as the daemon does, else by its wrapper (as in a pod)."""
    return backend.start(SessionRequest(rig=rig.name, remote=str(rig.remote), bead=bead, polecat="furiosa",
                                        runtime="script", args=(sys.executable, AGENT, mode),
                                        deadline=deadline),
                         *((ledger.beads(), ledger.submit) if ledger is not None else ()))


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


def test_a_sessions_wrapper_loads_neither_the_ledgers_model_nor_the_custom_resources(rig, backend, monkeypatch,
                                                                                     tmp_path):
    """A local session's wrapper, whose start the daemon prepared (its start, tracing, the runtime's
    config, its labels, the wrap-up), hands its result to the machine's committer as a `gt bead
    create` does: it loads neither the ledger's model (pydantic: about two thirds of the wrapper's
    CPU, on a machine where the next agents start), nor the custom resources' models (gastown.api),
    nor a YAML parser without a runtimes file. The result is booked all the same."""
    monkeypatch.setenv("PYTHONPROFILEIMPORTTIME", "1")  # the wrapper lists what it imports, in wrapper.log
    monkeypatch.setenv("GT_RUNTIMES_FILE", str(tmp_path / "runtimes.yaml"))  # none
    bead = rig.hooked_bead("Add a WORK file")
    with rig.ledger("gastown daemon") as ledger:
        session = start(backend, rig, bead, "edit", ledger=ledger)
        outcome = session.wait(60)
    assert outcome.status == "completed", (session.dir / "session.log").read_text()
    imported = [line.rsplit("|", 1)[-1].strip() for line in (session.dir / "wrapper.log").read_text().splitlines()
                if line.startswith("import time:")]
    assert {"gastown.ledger.handoff", "gastown.runtimes.config", "gastown.names"} <= set(imported)
    heavy = {"yaml", "pydantic", "gastown.ledger.model", "gastown.ledger.ledger", "hashlib"}  # hashlib: OpenSSL
    assert [m for m in imported if m.split(".")[:2] == ["gastown", "api"] or m in heavy] == []
    with rig.ledger() as lg:
        work = lg.get(bead)
    assert work.metadata["mr"] == outcome.result_bead and work.metadata["usage"][session.name]


@pytest.mark.parametrize("prepared", ["by the daemon", "by its wrapper (as in a pod)"])
def test_an_agents_own_gt_writes_through_the_one_cache_of_its_rigs_ledger(rig, backend, prepared):
    """The agent's `gt bead create` and `gt done` go through the cache its session writes through
    (and, prepared by the daemon, the daemon's): one spool and one committer for the rig's ledger on
    this machine, shared by every writer (group commit), not a second cache nested in the first."""
    remote = str(rig.remote)
    bead = rig.hooked_bead("Look around")
    with contextlib.ExitStack() as stack:
        ledger = (stack.enter_context(Ledger(remote, cache_dir=backend.ledger_cache(remote), actor="gastown daemon"))
                  if prepared == "by the daemon" else None)
        session = start(backend, rig, bead, "discover", ledger=ledger)
        outcome = session.wait(60)
    assert outcome.status == "completed", (session.dir / "session.log").read_text()
    caches = sorted(p.parent for p in backend.cache_root.rglob("spool"))
    assert caches == [backend.ledger_cache(remote)], "one cache for the rig's ledger on this machine"
    with rig.ledger() as lg:
        assert [b.title for b in lg.beads().values() if b.title.startswith("found")] == [f"found while working on {bead}"]


REFUSE_LEDGER_ONCE = """#!/bin/sh
# refuses every update of the ledger once {flag} exists (the agent has done its work)
while read -r old new ref; do
  if [ "$ref" = "refs/heads/{ledger}" ] && [ -e "{flag}" ]; then echo "the ledger is closed for repairs" >&2; exit 1; fi
done
"""


def test_a_session_whose_end_cannot_be_recorded_says_so_not_that_it_could_not_start(rig, backend):
    """The agent did its work and exited 0, then the ledger refused the session's record. The
    outcome says what happened (the work pushed, the end not recorded), not "could not start"."""
    bead = rig.hooked_bead("Add a WORK file")
    hook = rig.remote / "hooks" / "pre-receive"
    hook.write_text(REFUSE_LEDGER_ONCE.format(flag=backend.checkout(rig.name, "furiosa") / "WORK.md",
                                              ledger=LEDGER_BRANCH))
    hook.chmod(0o755)
    with rig.ledger("gastown daemon") as ledger:
        session = start(backend, rig, bead, "edit", ledger=ledger)
        outcome = session.wait(60)
    assert outcome.status == "failed", outcome
    assert not outcome.reason.startswith("could not start"), outcome.reason
    assert outcome.reason.count("the ledger is closed for repairs") == 1, outcome.reason  # the remote's hook: why
    assert outcome.reason.startswith("the agent finished, but its end could not be recorded: "), outcome.reason
    assert "the work could not be pushed" not in outcome.reason and outcome.commit, outcome
    assert rig.branch_file(f"polecat/furiosa/{bead}", "WORK.md").startswith(f"# {bead}")


PUSH_NICENESS = """#!{python}
import os, sys
refs = [line.split()[2] for line in sys.stdin if line.strip()]
with open({log!r}, "a") as out:
    out.write(f"{{os.nice(0)}} {{'session' if os.environ.get('GT_SESSION') else 'daemon'}} {{' '.join(refs)}}\\n")
"""


@pytest.mark.parametrize(("budget", "nicer"), [({}, WRAP_UP_NICENESS), ({"daily": {"tokens": 10**9}}, 0)],
                         ids=["no budget: its slot frees at its agent's exit", "a budget awaits its spend"])
def test_the_wrap_up_yields_the_cpu_when_its_slot_goes_to_the_next_agent(rig, backend, tmp_path, budget, nicer):
    """Once its agent has exited, the wrapper wraps up (leftovers committed, the branch pushed, the
    result booked). When its slot goes to the next agent at once, the wrap-up runs at a lower
    priority: on a busy machine the next agent starts first. On a rig bounded by a budget the next
    start waits for the spend to be booked, so the wrap-up keeps the daemon's priority. The rig's
    pre-receive hook runs under each push (a local remote: a child of the pushing process) and
    says at which niceness, and whose push it is."""
    log = tmp_path / "pushes.log"
    hook = rig.remote / "hooks" / "pre-receive"
    hook.write_text(PUSH_NICENESS.format(python=sys.executable, log=str(log)))
    hook.chmod(0o755)
    config = RigConfig(rig.name, str(rig.remote), max_polecats=1, budget=RigBudget.model_validate(budget),
                       runtime=RuntimeSpec(preset="script", args=[sys.executable, AGENT, "edit"]))
    with rig.ledger("gastown daemon") as ledger:
        driver = RigDriver(config, backend, ledger)
        driver.step()
        bead = ledger.create("Add a WORK file").id
        driver.step()
        [session] = backend.sessions()
        assert session.wait(60).status == "completed", (session.dir / "session.log").read_text()
    pushes = [line.split(" ", 2) for line in log.read_text().splitlines()]
    assert {int(n) for n, who, _ in pushes if who == "daemon"} == {os.nice(0)}, pushes  # its start, booked
    wrap_up = [(int(n), refs) for n, who, refs in pushes if who == "session"]
    branch = [n for n, refs in wrap_up if f"refs/heads/polecat/furiosa/{bead}" in refs]
    assert branch == [min(19, os.nice(0) + nicer)], pushes  # 19: the most
    # the result, from the machine's committer (its process started by the wrapper, which hands
    # it off): it serves every writer of the machine, the daemon included, so it never takes the
    # wrap-up's niceness
    assert {n for n, refs in wrap_up if f"refs/heads/{LEDGER_BRANCH}" in refs} == {os.nice(0)}, pushes


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


@pytest.mark.parametrize("path", ["gt on PATH", "gt not on the daemon's PATH"])
def test_the_agent_may_escalate_itself(rig, backend, monkeypatch, path):
    """The agent's own `gt done --status escalated` is an escalation, even where the daemon was
    started as `/path/to/venv/bin/gt up` and its PATH has no `gt`: the agent finds this one."""
    if path != "gt on PATH":
        monkeypatch.setenv("PATH", os.pathsep.join(d for d in os.environ["PATH"].split(os.pathsep)
                                                     if not (Path(d) / "gt").exists()))
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
        again = LocalBackend(tmp_path / "town", cache_root=tmp_path / "town-cache")
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


# A freed slot's next agent: the daemon prepares and books its session (it holds the bead), and
# the wrapper starts the agent first thing. The rig repository's pre-receive hook holds every push
# made from inside a session (its environment names the session) while a gate file exists: the
# agent starts all the same, its session already booked, and the session's own writes follow once
# the gate opens.

def gate_pushes_from_sessions(rig, tmp_path) -> Path:
    gate = tmp_path / "gate"
    gate.touch()
    hook = rig.remote / "hooks" / "pre-receive"
    hook.write_text(f'#!/bin/sh\n[ -z "$GT_SESSION" ] || while [ -e "{gate}" ]; do sleep 0.05; done\ncat >/dev/null\n')
    hook.chmod(0o755)
    return gate


def one_polecat_editing(rig) -> RigConfig:
    return RigConfig(rig.name, str(rig.remote), max_polecats=1,
                     runtime=RuntimeSpec(preset="script", args=[sys.executable, AGENT, "edit"]))


def test_a_session_the_daemon_prepared_starts_its_agent_before_any_write_of_its_own(rig, backend, tmp_path):
    bead = rig.hooked_bead("Add a WORK file")
    gate = gate_pushes_from_sessions(rig, tmp_path)
    config = one_polecat_editing(rig)
    work = backend.checkout(rig.name, "furiosa") / "WORK.md"
    with rig.ledger("gastown daemon") as ledger:
        driver = RigDriver(config, backend, ledger)
        assert driver.step().started == 1
        session = driver.port.sessions["furiosa"]
        try:
            wait_for(work.exists, timeout=30, what="the agent's first act while the session's own pushes are held")
            with rig.ledger() as lg:  # booked before the agent started, as when its wrapper booked it
                assert lg.beads()[bead].status == Status.IN_PROGRESS
                assert lg.beads()[bead].metadata["session"] == session.name
        finally:
            gate.unlink()
    outcome = session.wait(60)
    assert outcome.status == "completed", (session.dir / "session.log").read_text()
    with rig.ledger() as lg:
        beads = lg.beads()
    assert beads[bead].metadata["mr"] == outcome.result_bead
    assert beads[agent_id("gt", "furiosa")].metadata["sessions"] == 1
    assert session.name in beads[bead].metadata["usage"]  # what it spent, booked with its result


def test_a_session_ending_wakes_the_daemon_at_once(rig, backend):
    rig.hooked_bead("Quick one")
    config = RigConfig(rig.name, str(rig.remote), max_polecats=1,
                       runtime=RuntimeSpec(preset="script", args=[sys.executable, AGENT, "edit"]))
    with rig.ledger("gastown daemon") as ledger:
        driver = RigDriver(config, backend, ledger)
        assert driver.step().started == 1
        session = driver.port.sessions["furiosa"]
        # between ticks the driver looks at this machine every `check` seconds; a session's exit
        # is seen at once, whatever that interval
        woke, stop = threading.Event(), threading.Event()
        waiter = threading.Thread(target=lambda: (driver.wait(600, stop, 600), woke.set()))
        waiter.start()
        try:
            assert session.wait(60).status == "completed"
            assert woke.wait(30), "the session's exit did not end the driver's wait"
        finally:
            stop.set()
            waiter.join()


def test_a_session_that_ends_after_the_pass_read_the_ledger_is_not_judged_gone(rig, backend, tmp_path, caplog):
    # A wrapper records its end, then exits at once: a pass whose ledger was read before that end
    # sees the session gone while the bead still names it. Gone with its result recorded is no
    # stalled session: nothing is healed, nothing salvaged, the result stands.
    bead = rig.hooked_bead("Add a WORK file")
    gate = gate_pushes_from_sessions(rig, tmp_path)
    work = backend.checkout(rig.name, "furiosa") / "WORK.md"
    with rig.ledger("gastown daemon") as ledger:
        driver = RigDriver(one_polecat_editing(rig), backend, ledger)
        assert driver.step().started == 1
        session = driver.port.sessions["furiosa"]
        try:
            wait_for(work.exists, timeout=30, what="the agent's work, its session's end held back")
            ledger.refresh()  # what the next pass reads: the session under way
            assert ledger.beads(refresh=False)[bead].metadata["session"] == session.name
        finally:
            gate.unlink()
        outcome = session.wait(60)
        assert outcome.status == "completed", (session.dir / "session.log").read_text()
        with caplog.at_level(logging.WARNING, logger="gastown"):
            report = driver.step(fresh=False)
    assert report.healed == 0 and "stalled" not in caplog.text
    with rig.ledger() as lg:
        beads = lg.beads()
    assert beads[bead].metadata["mr"] == outcome.result_bead
    assert "stalled" not in " ".join(c.text for c in beads[bead].comments)


# A slot is an agent: the limit protects the API's rate limits, and agents spend them. The moment
# a session's agent exits its wrapper says so, and the slot is free while the wrapper wraps up
# (pushes the branch, books the result). Here every push from inside a session takes a second (the
# rig repository's pre-receive hook), so wrap-ups are slow; agents log when they start and end.

def slow_pushes_from_sessions(rig, seconds: float) -> None:
    hook = rig.remote / "hooks" / "pre-receive"
    hook.write_text(f'#!/bin/sh\n[ -z "$GT_SESSION" ] || sleep {seconds}\ncat >/dev/null\n')
    hook.chmod(0o755)


def agent_log(log: Path) -> tuple[list[float], list[float]]:
    """When the agents started and ended, from their "start|end RIG TIME" lines."""
    lines = [line.split() for line in log.read_text().splitlines()]
    return [float(t) for what, _r, t in lines if what == "start"], [float(t) for what, _r, t in lines if what == "end"]


@pytest.mark.slow
def test_a_slot_frees_when_its_agent_exits_and_the_limit_holds_for_agents(rig, backend, tmp_path, monkeypatch):
    log = tmp_path / "agents.log"
    monkeypatch.setenv("AGENT_LOG", str(log))
    monkeypatch.setenv("AGENT_SECONDS", "0.5")
    slow_pushes_from_sessions(rig, 1.0)
    with rig.ledger() as lg:
        beads = [lg.create(f"Part {n}").id for n in range(4)]
    config = RigConfig(rig.name, str(rig.remote), max_polecats=2,
                       runtime=RuntimeSpec(preset="script", args=[sys.executable, AGENT, "usage"]))
    stop = threading.Event()
    with rig.ledger("gastown daemon") as ledger:
        driver = RigDriver(config, backend, ledger)
        loop = threading.Thread(target=driver.run, args=(stop,), kwargs={"poll": 0.05}, daemon=True)
        loop.start()
        try:
            def all_done() -> bool:
                with rig.ledger() as lg:
                    return all(lg.beads()[b].metadata.get("mr") for b in beads)
            wait_for(all_done, timeout=90, what="every bead worked")
            wait_for(lambda: not any(s.running() for s in backend.sessions()), timeout=30, what="the wrappers' end")
        finally:
            stop.set()
            loop.join(30)
    sessions = backend.sessions()
    assert len(sessions) == 4 and all(s.outcome().status == "completed" for s in sessions)
    starts, ends = agent_log(log)
    assert most_at_once(starts, ends) == 2, log.read_text()  # the limit is used, never passed
    # and the session dirs say the same (the other tests count agents from them)
    assert agents_at_once(backend.town / "sessions") == 2
    starts.sort()
    wrapped_up = sorted(s.outcome().ended_at for s in sessions)
    # the third agent did not wait for a wrap-up: it started before the first session's wrapper ended
    assert starts[2] < wrapped_up[0], (starts, wrapped_up)


HOLD_PUSHES = """#!/bin/sh
cat > /dev/null
i=0
while [ -e {gate} ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i + 1)); done
"""  # every push held while the gate is there (a minute at most: a killed test leaves no hook spinning)


def test_a_hook_goes_out_with_its_sessions_start_and_the_agent_waits_for_both(rig, backend, tmp_path):
    """The pass does not wait for its hook's push before starting the session on it: the wrapper and
    the checkout get going meanwhile, the hook and the session's start go out in one commit, in that
    order, and the agent starts only once it is on the remote."""
    config = RigConfig(rig.name, str(rig.remote), max_polecats=1,
                       runtime=RuntimeSpec(preset="script", args=[sys.executable, AGENT, "edit"]))
    gate = tmp_path / "hold"
    hook = rig.remote / "hooks" / "pre-receive"
    hook.write_text(HOLD_PUSHES.format(gate=gate))
    hook.chmod(0o755)
    with rig.ledger("gastown daemon") as ledger:
        driver = RigDriver(config, backend, ledger)
        driver.step()  # the rig's own records (its limit) land first
        bead = ledger.create("Work while the hook is pushed").id
        gate.touch()
        step = threading.Thread(target=driver.step, daemon=True)
        try:
            step.start()
            # every push held: the session is under way all the same, its agent not started
            session_dir = wait_for(lambda: next((p.parent for p in (backend.town / "sessions").glob("*/request.json")),
                                                None),
                                   timeout=30, what="the session to start while its hook is being pushed")
            time.sleep(1.0)
            assert not (session_dir / AGENT_PGID).exists(), "the agent started before its hook was on the remote"
            assert ledger.snapshot(refresh=True).beads()[bead].status == Status.OPEN  # nothing landed
        finally:
            gate.unlink(missing_ok=True)
        step.join(30)
        assert not step.is_alive()
        [session] = backend.sessions()
        assert session.wait(60).status == "completed", (session.dir / "session.log").read_text()
        assert (session_dir / AGENT_PGID).exists()
        ledger_history = ledger.history(bead)
        history = [h.change for h in ledger_history]
    hooked = next(i for i, m in enumerate(history) if "hooked" in m)
    started = next(i for i, m in enumerate(history) if "session" in m and "in_progress" in m)
    assert hooked < started and ledger_history[hooked].commit == ledger_history[started].commit, ledger_history


REFUSE_RESCUES = """#!/bin/sh
while read old new ref; do
  case "$ref" in refs/gastown/rescue/*) echo "rescue refs are not taken here" >&2; exit 1;; esac
done
"""


def test_a_start_the_daemon_cannot_book_starts_no_wrapper_and_blocks_with_the_reason(rig, backend):
    """The daemon books a session's start beside its bead's hook (one commit). When it cannot (here
    the remote refuses the rescue of the polecat's unpushed work), no wrapper is started to try
    again on its own, before the hook has landed, and fail a session for it: the rig says why and
    backs off, the bead keeps its hook, and nothing counts as a failed attempt."""
    config = RigConfig(rig.name, str(rig.remote), max_polecats=1,
                       runtime=RuntimeSpec(preset="script", args=[sys.executable, AGENT, "edit"]))
    with rig.ledger("gastown daemon") as ledger:
        driver = RigDriver(config, backend, ledger)
        driver.step()
        bead = ledger.create("Work on a checkout with unpushed commits").id
        workdir = backend.worktree(rig.name, str(rig.remote), "furiosa")
        unpushed_commit(workdir, f"polecat/furiosa/{bead}", "head")
        hook = rig.remote / "hooks" / "pre-receive"
        hook.write_text(REFUSE_RESCUES)
        hook.chmod(0o755)
        loop = driver.loop()
        loop.step(driver.round())
        beads = ledger.snapshot(refresh=True).beads()
    assert backend.sessions() == [], [s.name for s in backend.sessions()]
    work = beads[bead]
    assert work.status == Status.HOOKED and work.assignee == "furiosa"
    assert int(work.metadata.get("attempts", 0)) == 0
    [trouble] = loop.troubles.current()
    assert "cannot start a session" in trouble.problem and "rescue refs are not taken here" in trouble.problem
