"""One agent session, the same in a pod and in a local worktree: `gt session run` and `gt done`.

The wrapper records the start in the ledger, checks out the polecat's branch, writes the
prompt, runs the runtime as an argv list with a heartbeat and a deadline, and records how it
ended. A session that ends well finishes with `gt done`: leftovers committed, the branch
pushed, a merge-request bead recorded, the polecat idle. A session that ends badly still
pushes its work (so a restart resumes it) and leaves the bead hooked to the polecat.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..ledger import Bead, Ledger, LedgerError, query
from ..ledger.ops import Together
from ..ledger.worktree import (
    commit_leftovers,
    current_branch,
    delete_ref,
    done_ref,
    identity_env,
    prepare_branch,
    push_branch,
    rescue_prefix,
    rescue_unpushed,
)
from ..names import BEAD_LABEL, POLECAT_LABEL
from ..polecats import Done, DoneStatus, EndSession, RecordRescue, StartSession, branch_for
from ..scheduler import ClearStrikes, RateLimitStrike
from ..spend import RecordUsage
from . import output
from .config import resolve
from .heartbeat import Heartbeat
from .prompt import render

# `gt session run` exit codes, so that a Job's pod says how the session ended.
EXIT_CODES = {"completed": 0, "escalated": 0, "deferred": 0, "failed": 1, "rate_limited": 3,
              "timeout": 4}
KILL_GRACE = 10.0
AGENT_PGID = "agent.pgid"  # in the session dir: the runtime's process group, for whoever must end it
# Runs beside the runtime, in a session of its own, reading a pipe from the wrapper: when the
# wrapper is gone (whatever killed it, SIGKILL included) or done with its runtime, the pipe closes
# and the watchdog ends the runtime's whole process group, so that no agent outlives its session.
WATCHDOG = """
import os, signal, sys, time
pgid = int(sys.argv[1])
sys.stdin.buffer.read()
for sig, grace in ((signal.SIGTERM, float(sys.argv[2])), (signal.SIGKILL, 5.0)):
    try:
        os.killpg(pgid, signal.SIGCONT)
        os.killpg(pgid, sig)
    except OSError:
        sys.exit(0)
    end = time.monotonic() + grace
    while time.monotonic() < end:
        try:
            os.killpg(pgid, 0)
        except OSError:
            sys.exit(0)
        time.sleep(0.05)
"""


@dataclass
class SessionSpec:
    rig: str  # the rig repository (path or URL): ledger and branch pushes
    bead: str
    polecat: str
    session: str
    runtime: str
    workdir: Path  # a git checkout whose `origin` is the rig repository
    session_dir: Path  # prompt, log, heartbeat, result: outside the checkout
    target: str = "main"
    model: str | None = None
    extra_args: list[str] = field(default_factory=list)
    deadline: float = 3600.0
    heartbeat: str | None = None
    heartbeat_interval: float = 10.0
    cache_dir: Path | None = None
    state_dir: Path | None = None  # the polecat's own: its CLI's conversations, for resume
    max_tokens: int | None = None  # the session's ceiling (the Rig's budget.sessionTokens), as its output says
    max_seconds: float | None = None  # the session's ceiling in wall time (budget.sessionSeconds)

    @property
    def actor(self) -> str:
        return f"polecat {self.polecat}"

    @property
    def log_path(self) -> Path:
        return self.session_dir / "session.log"

    @property
    def result_path(self) -> Path:
        return self.session_dir / "result.json"

    @property
    def done_path(self) -> Path:
        return self.session_dir / "done.json"


@dataclass
class Outcome:
    status: str  # completed | escalated | deferred | failed | timeout | rate_limited
    reason: str
    exit_code: int | None = None
    seconds: float = 0.0
    commit: str | None = None
    result_bead: str | None = None
    started_at: float = 0.0  # wall clock, seconds since the epoch
    ended_at: float = 0.0
    retry_after: float | None = None  # rate limited: what the provider asked for, in seconds
    usage: dict = field(default_factory=dict)  # tokens and cost, as the runtime reported them

    @property
    def code(self) -> int:
        return EXIT_CODES[self.status]

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def read(cls, path: Path) -> Outcome | None:
        try:
            return cls(**json.loads(path.read_text()))
        except (FileNotFoundError, ValueError, TypeError):
            return None


def session_env(spec: SessionSpec, prompt_file: Path, branch: str, runtime_env: dict[str, str]) -> dict[str, str]:
    """What the runtime (and a `gt done` it runs) needs to know about its session."""
    env = {**os.environ, **runtime_env, **identity_env(spec.actor)}
    # where the agent is: some CLIs take the shell's $PWD over their real working directory, and
    # the wrapper's own (wherever `gt up` was typed) would send them to work in the wrong checkout
    env["PWD"] = str(spec.workdir)
    env.pop("OLDPWD", None)
    env.update(GT_RIG=spec.rig, GT_BEAD=spec.bead, GT_POLECAT=spec.polecat, GT_SESSION=spec.session,
               GT_SESSION_DIR=str(spec.session_dir), GT_PROMPT_FILE=str(prompt_file),
               GT_BRANCH=branch, GT_TARGET=spec.target, GT_ACTOR=spec.actor,
               GT_WORKDIR=str(spec.workdir))
    if spec.cache_dir:
        env["GT_CACHE_DIR"] = str(spec.cache_dir)
    return env


def run_session(spec: SessionSpec) -> Outcome:
    spec.session_dir.mkdir(parents=True, exist_ok=True)
    started, started_at = time.monotonic(), time.time()
    labels = {POLECAT_LABEL: spec.polecat, BEAD_LABEL: spec.bead}
    # the heartbeat covers the whole session, `gt done` included: a session busy pushing its
    # work is alive, never a zombie
    with Heartbeat(spec.heartbeat, spec.session, spec.heartbeat_interval, labels), \
            Ledger(spec.rig, cache_dir=spec.cache_dir, actor=spec.actor) as ledger:
        try:
            outcome = _run(spec, ledger, started)
        except (LedgerError, ValueError) as e:
            outcome = Outcome("failed", f"could not start: {e}", seconds=time.monotonic() - started)
            _record_failure(spec, ledger, outcome, spec.runtime)
    outcome.started_at, outcome.ended_at = started_at, time.time()
    outcome.write(spec.result_path)
    return outcome


def _run(spec: SessionSpec, ledger: Ledger, started: float) -> Outcome:
    runtime = resolve(spec.runtime)
    beads = ledger.beads()
    if spec.bead not in beads:
        ledger.get(spec.bead)  # the precise error: not found or corrupt
    bead = beads[spec.bead]
    branch = branch_for(spec.polecat, bead.id)
    ledger.apply(StartSession(bead.id, spec.polecat, spec.session, spec.actor))
    # commits an earlier session made and never pushed are pushed aside and noted before the reset
    for ref, commit, source in rescue_unpushed(spec.workdir, branch, rescue_prefix(spec.polecat, bead.id)):
        bead = ledger.apply(RecordRescue(bead.id, spec.session, ref, commit, source, spec.actor))
    prepare_branch(spec.workdir, branch, spec.target)

    prompt = render(bead, branch=branch, target=spec.target, steps=query.children(beads, bead.id),
                    notes=_earlier_sessions(bead))
    prompt_file = spec.session_dir / "prompt.md"
    prompt_file.write_text(prompt)
    for name, content in runtime.files.items():
        (spec.session_dir / name).write_text(content)
    if spec.state_dir is not None:
        spec.state_dir.mkdir(parents=True, exist_ok=True)
    # a polecat resumes its own earlier conversation on this bead (after a crash, a rejection, a
    # rate limit); another polecat's, or a first session, starts fresh
    resume = bead.metadata.get("ended_by") == spec.polecat
    argv = runtime.argv(prompt=prompt, prompt_file=prompt_file, session_dir=spec.session_dir,
                        model=spec.model, extra_args=spec.extra_args, resume=resume, as_root=os.geteuid() == 0,
                        state_dir=spec.state_dir)
    env = session_env(spec, prompt_file, branch, runtime.session_env(spec.state_dir))
    ceiling: list[str] = []  # why the session was ended at its ceiling

    def over(elapsed: float) -> bool:
        if spec.max_seconds and elapsed > spec.max_seconds:
            ceiling.append(f"{spec.max_seconds:.0f}s of wall time")
        elif spec.max_tokens:
            used = output.read(runtime.output, _tail(spec.log_path), env)
            if used.input_tokens + used.output_tokens >= spec.max_tokens:
                ceiling.append(f"{spec.max_tokens:,} tokens ({used.input_tokens + used.output_tokens:,} used)")
        return bool(ceiling)

    exit_code, cut = _execute(spec, argv, runtime.stdin(prompt), env,
                              over=over if spec.max_tokens or spec.max_seconds else None)
    seconds = time.monotonic() - started
    log = _tail(spec.log_path)
    report = output.read(runtime.output, log, env)

    marker = _read_done(spec)
    if marker is not None:  # the agent ran `gt done` itself
        outcome = Outcome(marker["status"], marker.get("reason", ""), exit_code, seconds,
                          marker.get("commit"), marker.get("result"), usage=report.usage())
        _record_usage(spec, ledger, runtime.name, outcome)
        return outcome
    if report.rate_limited and (exit_code != 0 or cut == "timeout"):  # a CLI may retry until the deadline
        outcome = Outcome("rate_limited", f"{runtime.name} hit a rate limit: {report.error or ''}".strip(),
                          exit_code, seconds, retry_after=report.retry_after)
    elif cut == "timeout":
        outcome = Outcome("timeout", f"no result after {spec.deadline:.0f}s: the runtime was stopped",
                          exit_code, seconds)
    elif cut == "ceiling":
        outcome = Outcome("timeout", f"the session reached its ceiling of {ceiling[0]}: the runtime was stopped "
                                     "and its work pushed for the next session", exit_code, seconds)
    elif cut == "stopped":
        outcome = Outcome("failed", "stopped from outside (SIGTERM: the Witness, or the pod was deleted); "
                                    "the work so far is saved on the branch", exit_code, seconds)
    elif exit_code == 0:
        done = finish(spec.rig, spec.bead, spec.polecat, spec.session, "completed", "", spec.workdir,
                      spec.target, spec.session_dir, spec.cache_dir, ledger=ledger)
        outcome = Outcome("completed", "", exit_code, time.monotonic() - started, done["commit"], done["result"],
                          usage=report.usage())
        _record_usage(spec, ledger, runtime.name, outcome)
        return outcome
    elif exit_code == 127:
        outcome = Outcome("failed", f"runtime binary not found: {argv[0]}", exit_code, seconds)
    else:
        lines = output.strip_ansi(log).splitlines()
        last = report.error or next((ln for ln in reversed(lines) if ln.strip()), "")[:300]
        outcome = Outcome("failed", f"{runtime.name} exited with code {exit_code}: {last}", exit_code, seconds)
    outcome.usage = report.usage()
    outcome.commit = _save_work(spec, branch, outcome)
    _record_failure(spec, ledger, outcome, runtime.name)
    return outcome


def _execute(spec: SessionSpec, argv: list[str], stdin: bytes | None, env: dict[str, str],
             over: Callable[[float], bool] | None = None) -> tuple[int, str | None]:
    """Run the runtime until it exits, the deadline passes ("timeout"), ``over`` says the session
    reached its ceiling ("ceiling": asked about once a second) or this process is asked to stop
    ("stopped": SIGTERM, as when the Witness stops a session or Kubernetes deletes its pod); in the
    last three cases the runtime is stopped and the caller saves the work."""
    with spec.log_path.open("ab") as log:
        try:
            proc = subprocess.Popen(argv, cwd=spec.workdir, env=env, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                                    start_new_session=True)
        except FileNotFoundError:
            log.write(f"gastown: {argv[0]}: command not found\n".encode())
            return 127, None
        except PermissionError as e:
            log.write(f"gastown: {argv[0]}: {e}\n".encode())
            return 126, None
        (spec.session_dir / AGENT_PGID).write_text(str(proc.pid))
        watchdog = _watch(proc.pid)
        if stdin is not None:
            threading.Thread(target=_feed, args=(proc, stdin), daemon=True).start()
        stopping = threading.Event()
        try:
            with _on_sigterm(stopping.set):
                begun = time.monotonic()
                deadline, asked = begun + spec.deadline, begun
                while True:
                    try:
                        return proc.wait(timeout=0.2), None
                    except subprocess.TimeoutExpired:
                        cut = "stopped" if stopping.is_set() else "timeout" if time.monotonic() > deadline else None
                        if cut is None and over is not None and time.monotonic() - asked >= 1.0:
                            asked = time.monotonic()
                            cut = "ceiling" if over(asked - begun) else None
                        if cut:
                            _stop(proc)
                            return proc.returncode, cut
        finally:  # what the runtime left running in its group goes with it, before its work is saved
            _release(watchdog)


def _watch(pgid: int) -> subprocess.Popen | None:
    try:
        return subprocess.Popen([sys.executable, "-I", "-S", "-c", WATCHDOG, str(pgid), str(KILL_GRACE)],
                                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
    except OSError:  # no watchdog: the backend still ends the group before the next session starts
        return None


def _release(watchdog: subprocess.Popen | None) -> None:
    if watchdog is None or watchdog.stdin is None:
        return
    watchdog.stdin.close()
    with contextlib.suppress(subprocess.TimeoutExpired):
        watchdog.wait(timeout=3.0)


@contextlib.contextmanager
def _on_sigterm(handler: Callable[[], None]) -> Iterator[None]:
    """Call ``handler`` on SIGTERM instead of dying (only the main thread may set handlers)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, lambda *_: handler())
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _feed(proc: subprocess.Popen, data: bytes) -> None:
    try:
        assert proc.stdin is not None
        proc.stdin.write(data)
        proc.stdin.close()
    except (BrokenPipeError, OSError):
        pass


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM the whole process group, then SIGKILL what is left after a grace period."""
    for sig, wait in ((signal.SIGTERM, KILL_GRACE), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _tail(path: Path, size: int = 1024 * 1024) -> str:
    """The end of the session log: what the output readers need (a CLI's result is its last line)."""
    try:
        with path.open("rb") as fh:
            fh.seek(max(0, path.stat().st_size - size))
            return fh.read().decode(errors="replace")
    except FileNotFoundError:
        return ""


def _earlier_sessions(bead: Bead) -> str:
    notes = [c.text for c in bead.comments if c.text.startswith("session ")]
    return "\n".join(notes[-3:])


def _save_work(spec: SessionSpec, branch: str, outcome: Outcome) -> str | None:
    """Push whatever the session did, so that the next session resumes it; never lose work."""
    try:
        if current_branch(spec.workdir) != branch:
            return None
        commit_leftovers(spec.workdir, f"{spec.bead}: work in progress (session {spec.session}, "
                                       f"{outcome.status})", spec.actor)
        return push_branch(spec.workdir, branch)
    except LedgerError as e:
        outcome.reason += f" (and the work could not be pushed: {e})"
        return None


def _usage_op(spec: SessionSpec, runtime: str, outcome: Outcome) -> RecordUsage:
    return RecordUsage(spec.bead, spec.session, runtime, {**outcome.usage, "seconds": round(outcome.seconds, 1)},
                       spec.actor)


def _record_usage(spec: SessionSpec, ledger: Ledger, runtime: str, outcome: Outcome) -> None:
    try:
        ledger.apply(_usage_op(spec, runtime, outcome))
    except LedgerError as e:
        outcome.reason += f" (usage not recorded in the ledger: {e})"


def _record_failure(spec: SessionSpec, ledger: Ledger, outcome: Outcome, runtime: str) -> None:
    ops: list = [EndSession(spec.bead, spec.polecat, spec.session, outcome.status,  # type: ignore[arg-type]
                            outcome.reason, spec.actor), _usage_op(spec, runtime, outcome)]
    if outcome.status == "rate_limited":
        ops.append(RateLimitStrike(spec.session, spec.actor, outcome.retry_after))
    try:
        ledger.apply(Together(tuple(ops), spec.actor))
    except LedgerError as e:
        outcome.reason += f" (not recorded in the ledger: {e})"


def _read_done(spec: SessionSpec) -> dict | None:
    try:
        return json.loads(spec.done_path.read_text())
    except (FileNotFoundError, ValueError):
        return None


def finish(rig: str, bead: str, polecat: str, session: str, status: DoneStatus, reason: str,
           workdir: Path, target: str, session_dir: Path | None, cache_dir: Path | None,
           ledger: Ledger | None = None) -> dict:
    """`gt done`: commit leftovers, push the branch, record the result, set the polecat idle."""
    actor = f"polecat {polecat}"
    branch = current_branch(workdir)
    expected = branch_for(polecat, bead)
    if branch != expected:
        raise LedgerError(f"the checkout is on {branch}, not on the polecat branch {expected}")
    commit_leftovers(workdir, f"{bead}: leftovers of session {session or 'manual'}", actor)
    # finished work carries a done ref in the same push: if this process dies before the ledger
    # records it, the Deacon finds the ref and records it (deacon.py)
    marker_ref = done_ref(bead) if status == "completed" else None
    commit = push_branch(workdir, branch, marker=marker_ref)
    own = ledger is None
    ledger = ledger or Ledger(rig, cache_dir=cache_dir, actor=actor)
    try:
        done = Done(bead, polecat, session, status, branch, target, commit, reason, actor)
        result = ledger.apply(Together((ClearStrikes(actor), done), actor))
    finally:
        if own:
            ledger.close()
    if marker_ref:
        delete_ref(workdir, marker_ref)
    marker = {"status": status, "reason": reason, "commit": commit, "result": result.id if result else None}
    if session_dir is not None:
        session_dir.mkdir(parents=True, exist_ok=True)
        (session_dir / "done.json").write_text(json.dumps(marker) + "\n")
    return marker
