"""LocalBackend: sessions as subprocesses in git worktrees of a local clone, under a town dir.

    TOWN/rigs/RIG/repo              a clone of the rig repository
    TOWN/rigs/RIG/polecats/NAME     the polecat's worktree: its identity outlives its sessions
    TOWN/sessions/SESSION/          prompt.md, session.log, heartbeat, result.json, wrapper.log
"""

from __future__ import annotations

import functools
import json
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..ledger import Bead, LedgerError
from ..ledger.errors import Unavailable
from ..ledger.handoff import write_file
from ..ledger.ledger import default_cache_dir
from ..ledger.ops import Operation
from ..ledger.worktree import git
from ..telemetry import tracing
from . import wrapper
from .heartbeat import file_age
from .session import (
    AGENT_ENDED,
    AGENT_PGID,
    FROM_STDIN,
    LAUNCH_ENV,
    NOTIFY_ENV,
    WRAP_UP_NICENESS,
    Launch,
    Outcome,
    SessionSpec,
    book,
    prepare,
)

END_GRACE = 15.0  # SIGTERM to SIGKILL for an earlier session's leftovers: the wrapper saves work first


@dataclass(frozen=True)
class SessionRequest:
    rig: str  # the rig's name
    remote: str  # the rig repository
    bead: str
    polecat: str
    runtime: str = "script"
    model: str | None = None
    args: tuple[str, ...] = ()
    target: str = "main"
    deadline: float = 3600.0
    labels: dict[str, str] = field(default_factory=dict)  # convoy and the like, for listing
    max_tokens: int | None = None  # the session's ceilings (the Rig's budget.sessionTokens, sessionSeconds)
    max_seconds: float | None = None
    # its slot goes to the next agent the moment its agent exits (the rig is bounded by no budget,
    # whose spend the next start would wait for): its wrapper wraps up at a lower priority
    frees_at_exit: bool = False


@dataclass(kw_only=True)
class LocalSession:
    name: str
    request: SessionRequest
    dir: Path
    pid: int
    started: float
    _proc: subprocess.Popen | None = field(default=None, repr=False)
    _notify: int | None = field(default=None, repr=False)  # the read end of its wrapper's pipe (agent_exit)

    def running(self) -> bool:
        if self._proc is not None:
            return self._proc.poll() is None
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        return not (self.dir / "result.json").exists()

    def wait(self, timeout: float | None = None) -> Outcome | None:
        if self._proc is not None:
            self._proc.wait(timeout)
        else:
            deadline = None if timeout is None else time.monotonic() + timeout
            while self.running():
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(self.name)
                time.sleep(0.05)
        return self.outcome()

    def outcome(self) -> Outcome | None:
        return Outcome.read(self.dir / "result.json")

    def agent_ended(self) -> bool:
        """Its agent has exited (its wrapper may still wrap up: push, book the result)."""
        return (self.dir / AGENT_ENDED).exists()

    def agent_exit(self) -> None:
        """Wait until its wrapper says that the agent exited, or the wrapper is gone (one caller:
        it reads and closes the pipe; a session found again has none, and returns at once)."""
        fd, self._notify = self._notify, None
        if fd is not None:
            try:
                os.read(fd, 64)  # a line, or nothing when the wrapper exits
            finally:
                os.close(fd)

    def heartbeat_age(self) -> float | None:
        return file_age(self.dir / "heartbeat")

    @property
    def exit_code(self) -> int | None:
        return self._proc.poll() if self._proc is not None else None

    def groups(self) -> list[int]:
        """The process groups of this session still alive: its wrapper's and its runtime's."""
        try:
            agent = [int((self.dir / AGENT_PGID).read_text())]
        except (FileNotFoundError, ValueError):
            agent = []
        return [g for g in [self.pid, *agent] if group_alive(g, self.name)]


def _live(session: str) -> Iterator[tuple[int, int]]:
    """(pid, process group) of each live process of ``session`` (its environment names it; zombies
    are not alive). Linux: it reads /proc."""
    mark = f"GT_SESSION={session}".encode()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, _, group = stat.read_text().rpartition(")")[2].split()[:3]
            if state not in ("Z", "X") and mark in (stat.parent / "environ").read_bytes().split(b"\0"):
                yield int(stat.parent.name), int(group)
        except (OSError, ValueError):
            continue


def group_alive(pgid: int, session: str) -> bool:
    """Process group ``pgid`` holds a live process of ``session``: a group id reused by another
    program is not the session's, a group of zombies is not alive."""
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    if not Path("/proc/self/stat").exists():
        return True  # no /proc to look into (macOS): trust the record
    return any(group == pgid for _pid, group in _live(session))


def wrapper_pid(session: str) -> int | None:
    """The live wrapper of ``session`` (it leads its own process group); None when there is none,
    or no /proc to look in."""
    return next((pid for pid, group in _live(session) if pid == group), None)


def end_groups(groups: list[tuple[int, str]], grace: float = END_GRACE) -> list[int]:
    """SIGTERM the (pgid, session) groups, SIGKILL what is left after ``grace``; what still lives."""
    alive = [(g, s) for g, s in groups if group_alive(g, s)]
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        for g, _ in alive:
            try:
                os.killpg(g, sig)
                os.killpg(g, signal.SIGCONT)  # a stopped group runs, to die
            except (ProcessLookupError, PermissionError):
                pass
        deadline = time.monotonic() + wait
        while alive and time.monotonic() < deadline:
            time.sleep(0.05)
            alive = [(g, s) for g, s in alive if group_alive(g, s)]
        if not alive:
            break
    return [g for g, _ in alive]


def _booked(spec: SessionSpec, bead: Bead, beads: Mapping[str, Bead],
            submit: Callable[[Operation], Future]) -> Callable[[], Launch]:
    """The session's start submitted here, in the caller's thread (beside whatever the caller
    submits meanwhile: the bead's hook, in one commit), and the rest of its preparation to do.
    Raises LedgerError when it cannot be booked (the rescue of unpushed work failed): then no
    wrapper starts, since one trying on its own could run before the hook lands and fail a
    session for nothing; the pass says why and tries again with backoff."""
    return functools.partial(prepare, spec, bead, beads, book(spec, bead.id, submit))


def _send_launch(proc: subprocess.Popen, prepared: Callable[[], Launch]) -> None:
    """Prepare and book the session, and send its wrapper the launch; nothing when that fails: the
    wrapper tries again, and says why it could not start in the session's result."""
    try:
        launch = prepared()
    except (LedgerError, ValueError, RuntimeError):  # RuntimeError: the ledger closed, the daemon stopping
        launch = None
    try:
        if proc.stdin is not None:
            with proc.stdin:
                proc.stdin.write(launch.encode() if launch else b"")
    except OSError:  # the wrapper is gone: its session's end says so
        pass


def _safe(text: str) -> str:
    return re.sub(r"[^a-z0-9.-]+", "-", text.lower()).strip("-")


class LocalBackend:
    def __init__(self, town: Path, cache_root: Path | None = None, heartbeat_interval: float = 2.0,
                 git_timeout: float | None = None):
        self.town = Path(town)
        self.git_timeout = git_timeout  # for the git commands of its sessions' wrappers (the Settings')
        self.cache_root = cache_root or self.town / "cache"  # GT_CACHE_DIR of its sessions
        self.heartbeat_interval = heartbeat_interval
        self._locks: dict[str, threading.RLock] = {}
        self._guard = threading.Lock()
        self._known: dict[str, tuple[SessionRequest, int, float]] = {}  # session dir -> what it says (``_read``)

    def ledger_cache(self, remote: str) -> Path:
        """The cache of a rig's ledger: the one its sessions' `gt` finds under their GT_CACHE_DIR
        (and `gt` commands given --town)."""
        return default_cache_dir(remote, self.cache_root)

    def _lock(self, rig: str) -> threading.RLock:
        with self._guard:
            return self._locks.setdefault(rig, threading.RLock())

    def clone(self, rig: str, remote: str) -> Path:
        repo = self.town / "rigs" / rig / "repo"
        with self._lock(rig):
            if not (repo / ".git").exists():
                repo.parent.mkdir(parents=True, exist_ok=True)
                git(repo.parent, "clone", "--quiet", remote, str(repo))
        return repo

    def checkout(self, rig: str, polecat: str) -> Path:
        """Where the polecat's worktree is (or will be)."""
        return self.town / "rigs" / rig / "polecats" / polecat

    def state_dir(self, rig: str, polecat: str) -> Path:
        """The polecat's own state, kept across its sessions (its CLI's conversations)."""
        return self.town / "rigs" / rig / "state" / polecat

    def worktree(self, rig: str, remote: str, polecat: str) -> Path:
        repo = self.clone(rig, remote)
        path = self.checkout(rig, polecat)
        with self._lock(rig):
            if not (path / ".git").exists():
                git(repo, "worktree", "prune")
                git(repo, "worktree", "add", "--quiet", "--detach", str(path))
        return path

    def worktrees(self, rig: str) -> list[str]:
        """The polecats of ``rig`` that have a worktree."""
        return sorted(p.parent.name for p in (self.town / "rigs" / rig / "polecats").glob("*/.git"))

    def remove_worktree(self, rig: str, polecat: str) -> bool:
        """Remove a polecat's worktree, only when it holds nothing that is not on the remote: no
        uncommitted change, no commit that no remote branch has. False when it was kept."""
        path, repo = self.checkout(rig, polecat), self.town / "rigs" / rig / "repo"
        with self._lock(rig):  # the lock `start` holds from the worktree to the session's pid file
            if not path.is_dir() or any(s.running() for s in self.sessions(rig, polecat)):
                return False
            try:
                git(repo, "fetch", "--quiet", "--prune", "origin")
                if git(path, "status", "--porcelain") or git(path, "rev-list", "-1", "HEAD", "--not", "--remotes"):
                    return False
                git(repo, "worktree", "remove", "--force", str(path))
            except Unavailable:
                return False
            git(repo, "worktree", "prune", check=False)
        return True

    def start(self, req: SessionRequest, beads: Mapping[str, Bead] | None = None,
              submit: Callable[[Operation], Future] | None = None) -> LocalSession:
        """Start a session on ``req.bead``. Given the rig's beads as the caller just read them and
        its ledger's ``submit``, the session is prepared and booked here (checkout, prompt, argv;
        its start in the ledger meanwhile), and its wrapper starts the agent at once."""
        with self._lock(req.rig):  # a Dog removing a stale worktree waits, then sees this session
            self._end_earlier(req)
            return self._start(req, beads if submit is not None else None, submit)

    def _end_earlier(self, req: SessionRequest) -> None:
        """One session per polecat: whatever its earlier sessions left running (a runtime whose
        wrapper was killed, a wrapper nobody tracks) ends before a new one starts in its worktree."""
        groups = [(g, s.name) for s in self.sessions(req.rig, req.polecat) for g in s.groups()]
        if groups and end_groups(groups):
            raise Unavailable(f"polecat {req.polecat}'s earlier session outlives SIGKILL: no new one starts")

    def _start(self, req: SessionRequest, beads: Mapping[str, Bead] | None,
               submit: Callable[[Operation], Future] | None) -> LocalSession:
        name = _safe(f"{req.polecat}-{req.bead}-{time.strftime('%Y%m%d%H%M%S')}-{os.urandom(2).hex()}")
        sdir = self.town / "sessions" / name
        spec = SessionSpec(rig=req.remote, bead=req.bead, polecat=req.polecat, session=name, runtime=req.runtime,
                           workdir=self.worktree(req.rig, req.remote, req.polecat), session_dir=sdir,
                           target=req.target, model=req.model, extra_args=list(req.args), deadline=req.deadline,
                           heartbeat=f"file:{sdir / 'heartbeat'}", heartbeat_interval=self.heartbeat_interval,
                           cache_root=self.cache_root, state_dir=self.state_dir(req.rig, req.polecat),
                           max_tokens=req.max_tokens, max_seconds=req.max_seconds, git_timeout=self.git_timeout,
                           wrap_up_niceness=WRAP_UP_NICENESS if req.frees_at_exit else 0)
        argv = wrapper.argv(spec)
        env = {**tracing.environ(), "GT_SESSION": name}
        # the agent's spans go under its wrapper's: with a trace to carry, the wrapper prepares it
        prepared = None
        if beads is not None and submit is not None and req.bead in beads and tracing.TRACEPARENT not in env:
            prepared = _booked(spec, beads[req.bead], beads, submit)
        sdir.mkdir(parents=True)
        started = time.time()
        write_file(sdir / "request.json",  # at once: `gt status`, the TUI and a Dog read session dirs meanwhile
                   json.dumps({"request": asdict(req), "argv": argv, "started": started}, indent=2).encode())
        if prepared:
            env[LAUNCH_ENV] = FROM_STDIN
        notify, told = os.pipe() if submit is not None else (None, None)  # the daemon hears its agent's exit
        if told is not None:
            env[NOTIFY_ENV] = str(told)
        try:
            with (sdir / "wrapper.log").open("wb") as log:
                proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.PIPE if prepared else subprocess.DEVNULL,
                                        start_new_session=True, env=env, pass_fds=() if told is None else (told,))
        except BaseException:
            if notify is not None:
                os.close(notify)
            raise
        finally:
            if told is not None:
                os.close(told)
        (sdir / "pid").write_text(str(proc.pid))
        if prepared:  # while the wrapper starts up, beside the other sessions this pass starts
            threading.Thread(target=_send_launch, args=(proc, prepared), daemon=True, name=f"prepare-{name}").start()
        return LocalSession(name=name, request=req, dir=sdir, pid=proc.pid, started=started, _proc=proc,
                            _notify=notify)

    def sessions(self, rig: str | None = None, polecat: str | None = None, *, ended: bool = True) -> list[LocalSession]:
        """Every session this town has run, the newest last (re-derived from disk); or those of one
        polecat of one rig, read from its own session dirs only (a session dir is named after its
        polecat): a start in a town that has run thousands of sessions reads a handful. Without
        ``ended``, the sessions whose wrapper wrote its result are left unread."""
        out = []
        root = self.town / "sessions"
        prefix = f"{_safe(polecat)}-" if polecat is not None else ""
        try:
            names = [e.name for e in os.scandir(root) if e.name.startswith(prefix) and e.is_dir()]
        except FileNotFoundError:
            return []
        for name in names:
            sdir = root / name
            if not ended and (sdir / "result.json").exists():
                continue
            found = self._known.get(name) or self._read(sdir)
            if found is None:
                continue
            req, pid, started = found
            if (rig is not None and req.rig != rig) or (polecat is not None and req.polecat != polecat):
                continue
            out.append(LocalSession(name=name, request=req, dir=sdir, pid=pid, started=started))
        return sorted(out, key=lambda s: (s.started, s.name))

    def _read(self, sdir: Path) -> tuple[SessionRequest, int, float] | None:
        """A session dir's request, wrapper pid and start, read once: none of them changes after its
        start, so a reader that lists the sessions again (the TUI, a long-lived daemon) parses only
        the new ones. None when it never ran or is gone without saying its pid."""
        try:
            data = json.loads((sdir / "request.json").read_text())
        except FileNotFoundError:  # a start that has not written it yet
            return None
        req = SessionRequest(**{**data["request"], "args": tuple(data["request"]["args"])})
        try:
            pid = int((sdir / "pid").read_text())
        except (FileNotFoundError, ValueError):  # the daemon died between starting it and saying so
            found = wrapper_pid(sdir.name)
            if found is None:
                return None  # it never ran, or is gone: its bead's Witness sees no session and restarts it
            (sdir / "pid").write_text(str(pid := found))
        self._known[sdir.name] = known = (req, pid, data.get("started", 0.0))
        return known

    def stop(self, session: LocalSession, grace: float = 5.0) -> None:
        """SIGTERM the wrapper's process group (the wrapper stops its runtime and saves the work),
        SIGKILL what stays; then end the runtime's group, should it have outlived its wrapper."""
        self._stop_wrapper(session, grace)
        end_groups([(g, session.name) for g in session.groups()], grace)

    def _stop_wrapper(self, session: LocalSession, grace: float) -> None:
        for sig in (signal.SIGCONT, signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(session.pid, sig)
            except ProcessLookupError:
                return
            if sig == signal.SIGCONT:
                continue
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline and session.running():
                time.sleep(0.05)
            if not session.running():
                return
