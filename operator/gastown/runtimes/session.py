"""One agent session, the same in a pod and in a local worktree: `gt session run` and `gt done`.

The session is prepared first (a ``Launch``: the polecat's branch checked out, unpushed commits
rescued, the prompt written, the runtime's argv) while its start is booked in the ledger, the
write running beside the git work; then the runtime runs as an argv list with a heartbeat and a
deadline. A backend that already holds the bead (the local daemon) prepares and books the session
itself before it starts the wrapper, so that a freed slot's next agent waits for no import, no
ledger read and no ledger write of its wrapper: the wrapper starts the agent first thing. A
session that ends well finishes with `gt done`: leftovers committed, the branch pushed, a
merge-request bead recorded (with what the session spent), the polecat idle. A session that ends
badly still pushes its work (so a restart resumes it) and leaves the bead hooked to the polecat.
Such a wrapper never loads the ledger: its records go to the machine's committer (``Writes``).
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
from collections.abc import Callable, Iterator, Mapping
from dataclasses import KW_ONLY, asdict, dataclass, field
from pathlib import Path

TYPE_CHECKING = False  # typing is not loaded before the agent starts (wrapper.py)

# Only what starts the agent is imported up front: git, tracing (and the ledger, for a session that
# prepares itself) load while the agent already runs, where they are used.
if TYPE_CHECKING:
    from concurrent.futures import Future
    from typing import Any

    from ..ledger import Bead, Ledger
    from ..ledger.ops import Operation
    from ..polecats import DoneStatus

    Named = tuple[str, dict[str, Any]]  # an operation named by its class, with its fields (handoff.Ops)

# `gt session run` exit codes, so that a Job's pod says how the session ended.
EXIT_CODES = {"completed": 0, "escalated": 0, "deferred": 0, "failed": 1, "rate_limited": 3,
              "timeout": 4}
KILL_GRACE = 10.0
AGENT_PGID = "agent.pgid"  # in the session dir: the runtime's process group, for whoever must end it
# set by a backend that prepares the session itself: the wrapper reads its Launch on stdin (nothing
# there, the backend gone or failed: it prepares the session itself)
LAUNCH_ENV, FROM_STDIN = "GT_LAUNCH", "stdin"
# The agent has exited and the wrapper wraps up (pushes, books the result): its slot is free. The
# wrapper leaves AGENT_ENDED in the session dir and, given a pipe to its backend (NOTIFY_ENV: the
# pipe's fd), writes a line on it, so that the backend's next agent need not wait for the wrap-up.
AGENT_ENDED, NOTIFY_ENV = "agent.ended", "GT_NOTIFY_FD"
# once its agent has exited, a wrapper whose slot goes to the next agent at once (a local rig bounded
# by no budget: SessionSpec.wrap_up_niceness) wraps up (leftovers, the branch, the result) this much
# nicer: the CPU goes first to the next agent starting in the freed slot
WRAP_UP_NICENESS = 10
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
    cache_root: Path | None = None  # gastown's cache root (GT_CACHE_DIR): the ledger's cache is under it
    state_dir: Path | None = None  # the polecat's own: its CLI's conversations, for resume
    max_tokens: int | None = None  # the session's ceiling (the Rig's budget.sessionTokens), as its output says
    max_seconds: float | None = None  # the session's ceiling in wall time (budget.sessionSeconds)
    git_timeout: float | None = None  # for every git command of the wrapper (the settings'), once its agent runs
    # how much nicer the wrapper wraps up once its agent has exited: WRAP_UP_NICENESS when its slot
    # goes to the next agent at once; 0 when the next start waits for the wrap-up (a Job's end, a
    # budget's spend to book)
    wrap_up_niceness: int = 0

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
    _: KW_ONLY
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
        from ..ledger.handoff import write_file

        write_file(path, (json.dumps(asdict(self), indent=2) + "\n").encode())  # a reader sees all of it or none

    @classmethod
    def read(cls, path: Path) -> Outcome | None:
        try:
            return cls(**json.loads(path.read_text()))
        except (FileNotFoundError, ValueError, TypeError):
            return None


@dataclass
class Launch:
    """How the agent starts, prepared and booked before it does: the runtime's argv and stdin,
    what its environment adds (the runtime's variables, the polecat's git identity), the branch it
    works on."""

    argv: list[str]
    env: dict[str, str]
    stdin: str | None
    branch: str

    def encode(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    @classmethod
    def received(cls) -> Launch | None:
        """The launch a backend sends on stdin (it waits until the backend has prepared it)."""
        if os.environ.get(LAUNCH_ENV) != FROM_STDIN:
            return None
        try:
            return cls(**json.loads(sys.stdin.buffer.read()))
        except (OSError, ValueError, TypeError):
            return None


@dataclass(frozen=True)
class Booking:
    """A session's start, submitted to the ledger with the rescues of its checkout (``book``)."""

    booked: Future
    rescues: list[tuple[str, str, str]]  # (ref, commit, where it was)


def book(spec: SessionSpec, bead_id: str, submit: Callable[[Operation], Future]) -> Booking:
    """Push aside what the checkout holds that nobody pushed, and submit the session's start with
    those rescues through ``submit`` (a Ledger's): the first half of ``prepare``, which a backend
    may do where it also submits the bead's hook, so that both go out in one commit. Raises
    LedgerError (git)."""
    from ..ledger.ops import Together
    from ..ledger.worktree import rescue_prefix, rescue_unpushed
    from ..names import branch_for
    from ..polecats import RecordRescue, StartSession

    rescues = rescue_unpushed(spec.workdir, branch_for(spec.polecat, bead_id), rescue_prefix(spec.polecat, bead_id))
    booked = submit(Together((StartSession(bead_id, spec.polecat, spec.session, spec.actor),
                              *(RecordRescue(bead_id=bead_id, session=spec.session, ref=ref, commit=commit,
                                             source=where, actor=spec.actor)
                                for ref, commit, where in rescues)), spec.actor))
    return Booking(booked, rescues)


def prepare(spec: SessionSpec, bead: Bead, beads: Mapping[str, Bead], booking: Booking) -> Launch:
    """Everything else before the agent starts, once ``book`` has submitted its start: the checkout
    on the polecat's branch, the prompt and the runtime's files in the session dir, the argv; then
    it waits for the booking to be on the remote. Raises LedgerError (git, the ledger) or ValueError
    (the runtime)."""
    from ..ledger import query
    from ..ledger.worktree import identity_env, prepare_branch
    from ..names import branch_for
    from .config import resolve
    from .prompt import render

    runtime = resolve(spec.runtime)
    branch = branch_for(spec.polecat, bead.id)
    prepare_branch(spec.workdir, branch, spec.target, rescued=True)  # book() rescued what was unpushed
    notes = [_earlier_sessions(bead)] + [f"session {spec.session} pushed unpushed commits of {where} "
                                         f"({commit[:10]}) aside to {ref} before resetting the checkout"
                                         for ref, commit, where in booking.rescues]
    prompt = render(bead, branch=branch, target=spec.target, steps=query.children(beads, bead.id),
                    notes="\n".join(n for n in notes if n))
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
    stdin = runtime.stdin(prompt)
    booking.booked.result()  # on the remote before the agent starts: whatever happens next, the Witness knows of it
    return Launch(argv, {**runtime.session_env(spec.state_dir), **identity_env(spec.actor)},
                  stdin.decode() if stdin is not None else None, branch)



def session_env(spec: SessionSpec, branch: str, launch_env: Mapping[str, str]) -> dict[str, str]:
    """What the runtime (and a `gt done` it runs) needs to know about its session."""
    env = {**os.environ, **launch_env}
    env.pop(LAUNCH_ENV, None)
    env.pop(NOTIFY_ENV, None)
    # where the agent is: some CLIs take the shell's $PWD over their real working directory, and
    # the wrapper's own (wherever `gt up` was typed) would send them to work in the wrong checkout
    env["PWD"] = str(spec.workdir)
    env.pop("OLDPWD", None)
    env["PATH"] = _with_gt(env.get("PATH", ""))
    env.update(GT_RIG=spec.rig, GT_BEAD=spec.bead, GT_POLECAT=spec.polecat, GT_SESSION=spec.session,
               GT_SESSION_DIR=str(spec.session_dir), GT_PROMPT_FILE=str(spec.session_dir / "prompt.md"),
               GT_BRANCH=branch, GT_TARGET=spec.target, GT_ACTOR=spec.actor,
               GT_WORKDIR=str(spec.workdir), GT_PATH=env["PATH"])  # GT_PATH: for a login shell to restore
    if spec.cache_root:  # the agent's own `gt` writes through the session's cache of the ledger
        env["GT_CACHE_DIR"] = str(spec.cache_root)
    return env


def _with_gt(path: str) -> str:
    """``path`` where the agent finds a `gt`: this installation's is put last when none is on it (a
    daemon started as `/path/to/venv/bin/gt up`), so that the agent's `python` stays its own."""
    dirs = [d for d in path.split(os.pathsep) if d]
    if any(os.access(os.path.join(d, "gt"), os.X_OK) for d in dirs):
        return path
    here = os.path.dirname(sys.executable)
    return os.pathsep.join([*dirs, here]) if os.access(os.path.join(here, "gt"), os.X_OK) else path


def run_session(spec: SessionSpec) -> Outcome:
    spec.session_dir.mkdir(parents=True, exist_ok=True)
    started, started_at = time.monotonic(), time.time()
    stopping = threading.Event()  # SIGTERM (the Witness, or the pod deleted), whenever it comes
    with _on_sigterm(stopping.set):
        launch = Launch.received()
        agent = _spawn(spec, launch) if launch is not None else None  # prepared for it: the agent first
        outcome = _session(spec, started, launch=launch, agent=agent, stopping=stopping)
    outcome.started_at = started_at
    outcome.write(spec.result_path)
    return outcome


def _session(spec: SessionSpec, started: float, *, launch: Launch | None, agent: _Agent | None,
             stopping: threading.Event) -> Outcome:
    from ..ledger.errors import LedgerError
    from ..ledger.gitrun import set_git_timeout
    from ..names import BEAD_LABEL, POLECAT_LABEL
    from ..telemetry import tracing
    from .heartbeat import Heartbeat

    if spec.git_timeout is not None:
        set_git_timeout(spec.git_timeout)
    labels = {POLECAT_LABEL: spec.polecat, BEAD_LABEL: spec.bead}
    # the heartbeat covers the whole session, `gt done` included: a session busy pushing its
    # work is alive, never a zombie; its spans go under the daemon's dispatch span (its TRACEPARENT)
    with tracing.carried_on("gastown-session"), \
            tracing.span("session", bead=spec.bead, polecat=spec.polecat, session=spec.session,
                         runtime=spec.runtime) as span, \
            Heartbeat(spec.heartbeat, spec.session, spec.heartbeat_interval, labels), \
            Writes(spec.rig, spec.cache_root, spec.actor) as writes:
        try:
            outcome = _run(spec, writes, started, launch=launch, agent=agent, stopping=stopping)
        except (LedgerError, ValueError) as e:
            outcome = Outcome("failed", f"could not start: {e}", seconds=time.monotonic() - started)
            _record_failure(spec, writes, outcome, spec.runtime)
        span.set_attribute("gastown.outcome", outcome.status)
    outcome.ended_at = time.time()
    return outcome


def _run(spec: SessionSpec, writes: Writes, started: float, *, launch: Launch | None, agent: _Agent | None,
         stopping: threading.Event) -> Outcome:
    from ..ledger.errors import LedgerError
    from ..telemetry import tracing
    from . import output
    from .config import resolve

    try:
        runtime = resolve(spec.runtime)
        if launch is None:  # nobody prepared it (a pod): the bead from the ledger, the rest here
            ledger = writes.opened()
            beads = ledger.beads()
            if spec.bead not in beads:
                ledger.get(spec.bead)  # the precise error: not found or corrupt
            launch = prepare(spec, beads[spec.bead], beads, book(spec, spec.bead, ledger.submit))
    except BaseException:
        _abandon(agent)
        raise
    ceiling: list[str] = []  # why the session was ended at its ceiling

    def over(elapsed: float) -> bool:
        if spec.max_seconds and elapsed > spec.max_seconds:
            ceiling.append(f"{spec.max_seconds:.0f}s of wall time")
        elif spec.max_tokens:
            used = output.read(runtime.output, _tail(spec.log_path), agent.env if agent else {})
            if used.input_tokens + used.output_tokens >= spec.max_tokens:
                ceiling.append(f"{spec.max_tokens:,} tokens ({used.input_tokens + used.output_tokens:,} used)")
        return bool(ceiling)

    with tracing.span("runtime", runtime=runtime.name, model=spec.model):  # a `gt done` the agent runs: under it
        agent = agent or _spawn(spec, launch, tracing.environ)
        exit_code, cut = _wait(spec, agent, stopping, over=over if spec.max_tokens or spec.max_seconds else None)
    _agent_ended(spec)
    _reap(agent)
    if spec.wrap_up_niceness:
        writes.committer_ready()  # (not started by the nicer wrap-up: it serves every writer of the machine)
        _behind(spec.wrap_up_niceness)  # the wrap-up is off the freed slot's path: the next agent's start goes first
    seconds = time.monotonic() - started
    log = _tail(spec.log_path)
    report = output.read(runtime.output, log, agent.env)

    marker = _read_done(spec)
    if marker is not None:  # the agent ran `gt done` itself
        outcome = Outcome(marker["status"], marker.get("reason", ""), exit_code=exit_code, seconds=seconds,
                          commit=marker.get("commit"), result_bead=marker.get("result"), usage=report.usage())
        _record_usage(spec, writes, runtime.name, outcome)
        return outcome
    if report.rate_limited and (exit_code != 0 or cut == "timeout"):  # a CLI may retry until the deadline
        outcome = Outcome("rate_limited", f"{runtime.name} hit a rate limit: {report.error or ''}".strip(),
                          exit_code=exit_code, seconds=seconds, retry_after=report.retry_after)
    elif cut == "timeout":
        outcome = Outcome("timeout", f"no result after {spec.deadline:.0f}s: the runtime was stopped",
                          exit_code=exit_code, seconds=seconds)
    elif cut == "ceiling":
        outcome = Outcome("timeout", f"the session reached its ceiling of {ceiling[0]}: the runtime was stopped "
                                     "and its work pushed for the next session", exit_code=exit_code, seconds=seconds)
    elif cut == "stopped":
        outcome = Outcome("failed", "stopped from outside (SIGTERM: the Witness, or the pod was deleted); "
                                    "the work so far is saved on the branch", exit_code=exit_code, seconds=seconds)
    elif exit_code == 0:
        outcome = Outcome("completed", "", exit_code=exit_code, seconds=seconds, usage=report.usage())
        # what it spent is booked with its result: one ledger write between the agent's end and the slot's
        try:
            done = finish(spec.rig, spec.bead, polecat=spec.polecat, session=spec.session, status="completed",
                          reason="", workdir=spec.workdir, target=spec.target, session_dir=spec.session_dir,
                          cache_root=spec.cache_root, writes=writes, also=(_usage_op(spec, runtime.name, outcome),))
        except LedgerError as e:  # (the next session resumes the branch; a done ref says it was finished)
            outcome = Outcome("failed", f"the agent finished, but its end could not be recorded: {e}",
                              exit_code=exit_code, seconds=seconds)
        else:
            outcome.commit, outcome.result_bead = done["commit"], done["result"]
            outcome.seconds = time.monotonic() - started
            return outcome
    elif exit_code == 127:
        outcome = Outcome("failed", f"runtime binary not found: {launch.argv[0]}", exit_code=exit_code,
                          seconds=seconds)
    else:
        lines = output.strip_ansi(log).splitlines()
        last = report.error or next((ln for ln in reversed(lines) if ln.strip()), "")[:300]
        outcome = Outcome("failed", f"{runtime.name} exited with code {exit_code}: {last}", exit_code=exit_code,
                          seconds=seconds)
    outcome.usage = report.usage()
    outcome.commit = _save_work(spec, launch.branch, outcome)
    _record_failure(spec, writes, outcome, runtime.name)
    return outcome


@dataclass
class _Agent:
    """The runtime's process (None when it could not start: ``code`` says why, 127 or 126), its
    watchdog, its environment."""

    proc: subprocess.Popen | None
    watchdog: subprocess.Popen | None
    env: dict[str, str]
    code: int | None = None


def _spawn(spec: SessionSpec, launch: Launch,
           carry: Callable[[dict[str, str]], dict[str, str]] = dict) -> _Agent:
    """Start the runtime in a process group of its own, its output to the session log, with a
    watchdog that ends the group when this process goes (``carry``: the trace, when there is one)."""
    env = carry(session_env(spec, launch.branch, launch.env))
    stdin = launch.stdin.encode() if launch.stdin is not None else None
    with spec.log_path.open("ab") as log:
        try:
            proc = subprocess.Popen(launch.argv, cwd=spec.workdir, env=env, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                                    start_new_session=True)
        except FileNotFoundError:
            log.write(f"gastown: {launch.argv[0]}: command not found\n".encode())
            return _Agent(None, None, env, 127)
        except PermissionError as e:
            log.write(f"gastown: {launch.argv[0]}: {e}\n".encode())
            return _Agent(None, None, env, 126)
    (spec.session_dir / AGENT_PGID).write_text(str(proc.pid))
    agent = _Agent(proc, _watch(proc.pid), env)
    if stdin is not None:
        threading.Thread(target=_feed, args=(proc, stdin), daemon=True).start()
    return agent


def _abandon(agent: _Agent | None) -> None:
    """Stop an agent whose session cannot go on (its runtime could not be read)."""
    if agent is not None and agent.proc is not None:
        _stop(agent.proc)
        _release(agent)
        _reap(agent)


def _wait(spec: SessionSpec, agent: _Agent, stopping: threading.Event,
          over: Callable[[float], bool] | None = None) -> tuple[int, str | None]:
    """Wait for the runtime until it exits, the deadline passes ("timeout"), ``over`` says the
    session reached its ceiling ("ceiling": asked about once a second) or this process is asked to
    stop (``stopping``, "stopped": SIGTERM, as when the Witness stops a session or Kubernetes deletes
    its pod); in the last three cases the runtime is stopped and the caller saves the work."""
    proc = agent.proc
    if proc is None:
        return agent.code or 127, None
    exited = threading.Event()  # set the moment it exits (a timed wait would poll, up to 50 ms late)

    def watch() -> None:
        proc.wait()
        exited.set()

    threading.Thread(target=watch, daemon=True).start()
    try:
        begun = time.monotonic()
        deadline, asked = begun + spec.deadline, begun
        while not exited.wait(0.2):
            cut = "stopped" if stopping.is_set() else "timeout" if time.monotonic() > deadline else None
            if cut is None and over is not None and time.monotonic() - asked >= 1.0:
                asked = time.monotonic()
                cut = "ceiling" if over(asked - begun) else None
            if cut:
                _stop(proc)
                return proc.returncode, cut
        return proc.returncode, None
    finally:  # what the runtime left running in its group goes with it, before its work is saved
        _release(agent)


def _agent_ended(spec: SessionSpec) -> None:
    """Say that the agent is gone, its process group with it (``_wait`` ended it): its slot is free."""
    (spec.session_dir / AGENT_ENDED).touch()
    fd = os.environ.pop(NOTIFY_ENV, None)
    if fd is not None:
        with contextlib.suppress(OSError, ValueError):  # the backend gone: the file says it all the same
            os.write(int(fd), b"agent ended\n")
            os.close(int(fd))


def _behind(niceness: int) -> None:
    """This process at ``niceness`` more, every thread of it (Linux keeps a niceness per thread:
    the ledger's writer pushes from its own), and so what it starts from here on."""
    try:
        threads = [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:  # no /proc: this thread, and what it starts
        threads = [0]
    for tid in threads:
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + niceness)


def _watch(pgid: int) -> subprocess.Popen | None:
    try:
        return subprocess.Popen([sys.executable, "-I", "-S", "-c", WATCHDOG, str(pgid), str(KILL_GRACE)],
                                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
    except OSError:  # no watchdog: the backend still ends the group before the next session starts
        return None


def _release(agent: _Agent) -> None:
    """Let the runtime's watchdog go: it ends what the runtime left running in its group. When
    something was left, this waits until the watchdog has ended it (3 s at most); when the group
    went with the runtime there is nothing to wait for, and ``_reap`` collects the watchdog once
    the agent's end is said (a timed wait polls: it cost a freed slot's gap 3 to 8 ms)."""
    watchdog = agent.watchdog
    if watchdog is None or watchdog.stdin is None:
        return
    watchdog.stdin.close()
    if agent.proc is None or not _group_gone(agent.proc.pid):
        _reap(agent)


def _reap(agent: _Agent) -> None:
    if agent.watchdog is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            agent.watchdog.wait(timeout=3.0)


def _group_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # there, and not ours to signal
        return False
    return False


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
    from ..ledger.errors import LedgerError
    from ..ledger.worktree import commit_leftovers, current_branch, push_branch

    try:
        if current_branch(spec.workdir) != branch:
            return None
        commit_leftovers(spec.workdir, f"{spec.bead}: work in progress (session {spec.session}, "
                                       f"{outcome.status})", spec.actor)
        return push_branch(spec.workdir, branch)
    except LedgerError as e:
        outcome.reason += f" (and the work could not be pushed: {e})"
        return None


class Writes:
    """Where a session's records go: to the machine's committer (``handoff``, as a `gt bead create`
    hands its write off), so that a local session's wrapper, whose start the daemon prepared, never
    loads the ledger (pydantic and the model: two thirds of its CPU, on a machine where the next
    agents start); into a Ledger of its own once the session has opened one to prepare itself (a
    pod). Either way a record is on the remote when ``apply`` returns. The operations are named
    (``handoff.Ops``): the wrapper does not load them either."""

    def __init__(self, rig: str, cache_root: Path | None, actor: str) -> None:
        from ..ledger.handoff import cache_dir_for

        self.rig, self.actor = rig, actor
        self.cache = cache_dir_for(rig, cache_root)  # the one rule: what every `gt` of the machine finds
        self._ledger: Ledger | None = None

    def opened(self) -> Ledger:
        """A Ledger of the session's own, from here on where its records go."""
        if self._ledger is None:
            from ..ledger import Ledger

            self._ledger = Ledger(self.rig, cache_dir=Path(self.cache), actor=self.actor)
        return self._ledger

    def committer_ready(self) -> None:
        """Have the machine's committer of the cache running (if the records are handed off), before
        this process turns nicer: one started by the wrap-up would take that niceness, and serve
        every writer of the machine at it for as long as writes keep it alive, holding the writer
        lock that the daemon's bookings of the next starts wait for."""
        if self._ledger is None:
            from ..ledger.gitrun import git_timeout
            from ..ledger.handoff import normalise_remote, spool_dir, start_committer

            spool_dir(self.cache)  # (the cache made, if this is its first write)
            start_committer(normalise_remote(self.rig), self.cache, git_timeout())

    def apply(self, *named: Named) -> dict[str, Any] | None:
        """Apply the operations ``named`` in one commit; the last one's result, as JSON data."""
        from ..ledger.gitrun import git_timeout
        from ..ledger.handoff import Ops, hand_off, normalise_remote

        ops = Ops(self.actor, list(named))
        if self._ledger is not None:
            return self._ledger.apply(ops)
        return hand_off(normalise_remote(self.rig), self.cache, ops, git_timeout=git_timeout())

    def __enter__(self) -> Writes:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._ledger is not None:
            self._ledger.close()


def _usage_op(spec: SessionSpec, runtime: str, outcome: Outcome) -> Named:
    return "gastown.spend:RecordUsage", {"bead_id": spec.bead, "session": spec.session, "runtime": runtime,
                                        "usage": {**outcome.usage, "seconds": round(outcome.seconds, 1)},
                                        "actor": spec.actor}


def _record_usage(spec: SessionSpec, writes: Writes, runtime: str, outcome: Outcome) -> None:
    from ..ledger.errors import LedgerError

    try:
        writes.apply(_usage_op(spec, runtime, outcome))
    except LedgerError as e:
        outcome.reason += f" (usage not recorded in the ledger: {e})"


def _record_failure(spec: SessionSpec, writes: Writes, outcome: Outcome, runtime: str) -> None:
    from ..ledger.errors import LedgerError

    ops: list[Named] = [("gastown.polecats:EndSession",
                         {"bead_id": spec.bead, "polecat": spec.polecat, "session": spec.session,
                          "status": outcome.status, "reason": outcome.reason, "actor": spec.actor}),
                        _usage_op(spec, runtime, outcome)]
    if outcome.status == "rate_limited":
        ops.append(("gastown.scheduler:RateLimitStrike",
                    {"session": spec.session, "actor": spec.actor, "retry_after": outcome.retry_after}))
    try:
        writes.apply(*ops)
    except LedgerError as e:
        outcome.reason += " (nor could this be recorded)" if str(e) in outcome.reason else \
            f" (not recorded in the ledger: {e})"


def _read_done(spec: SessionSpec) -> dict | None:
    try:
        return json.loads(spec.done_path.read_text())
    except (FileNotFoundError, ValueError):
        return None


def finish(rig: str, bead: str, *, polecat: str, session: str, status: DoneStatus, reason: str,
           workdir: Path, target: str, session_dir: Path | None, cache_root: Path | None,
           writes: Writes | None = None, also: tuple[Named, ...] = ()) -> dict:
    """`gt done`: commit leftovers, push the branch, record the result (with ``also``, in the same
    write), set the polecat idle."""
    from ..telemetry import tracing

    with tracing.span("done", bead=bead, polecat=polecat, status=status):
        return _finish(rig, bead, polecat=polecat, session=session, status=status, reason=reason, workdir=workdir,
                       target=target, session_dir=session_dir, cache_root=cache_root, writes=writes, also=also)


def _finish(rig: str, bead: str, *, polecat: str, session: str, status: DoneStatus, reason: str,
            workdir: Path, target: str, session_dir: Path | None, cache_root: Path | None,
            writes: Writes | None, also: tuple[Named, ...]) -> dict:
    from ..ledger.errors import LedgerError
    from ..ledger.worktree import (
        commit_leftovers,
        current_branch,
        delete_ref,
        done_ref,
        push_branch,
    )
    from ..names import branch_for

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
    done = ("gastown.polecats:Done", {"bead_id": bead, "polecat": polecat, "session": session, "status": status,
                                      "branch": branch, "target": target, "commit": commit, "reason": reason,
                                      "actor": actor})
    into = writes or Writes(rig, cache_root, actor)  # (a Writes of its own opens no Ledger: nothing to close)
    result = into.apply(("gastown.scheduler:ClearStrikes", {"actor": actor}), *also, done)  # done's
    if marker_ref:
        delete_ref(workdir, marker_ref)
    marker = {"status": status, "reason": reason, "commit": commit, "result": result["id"] if result else None}
    if session_dir is not None:
        session_dir.mkdir(parents=True, exist_ok=True)
        (session_dir / "done.json").write_text(json.dumps(marker) + "\n")
    return marker
