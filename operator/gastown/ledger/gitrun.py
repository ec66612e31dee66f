"""Running a git command: always an argv list, never a shell, within the process's git timeout,
in a process group of its own so that a stop (``stop_git``) or a timeout ends its helpers too.

Light (the standard library and the ledger's errors): a session's wrapper and `gt` run git
without loading the ledger's model.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path

from .errors import Unavailable

_timeout = {"git": 120.0}  # seconds one git command may take: Settings.git_timeout, set at start-up


def set_git_timeout(seconds: float) -> None:
    """Called once at start-up with the process's Settings.git_timeout."""
    _timeout["git"] = seconds


def git_timeout() -> float:
    return _timeout["git"]


class GitTimeout(Unavailable):
    """A git command did not finish in time; for a push, it may or may not have landed."""


class GitStopped(Unavailable):
    """The process is stopping (``stop_git``): the command was ended, or not started. A push
    ended so may or may not have landed: the next start reads the remote again."""


STOP_GRACE = 5.0  # seconds a command of a clean stop's last words (``stop_grace``) may take
_stop = threading.Event()
_running: set[subprocess.Popen] = set()  # the git commands running now, to end at a stop
_running_lock = threading.Lock()
_grace = threading.local()


def stop_git() -> None:
    """A requested stop (the operator's SIGTERM): end the git commands running now, and start none
    but a clean stop's last words (``stop_grace``), so that no thread holds the exit up."""
    _stop.set()
    with _running_lock:
        for proc in _running:
            _end(proc)


def _end(proc: subprocess.Popen, sig: signal.Signals = signal.SIGTERM) -> None:
    """End the command and its helpers (its process group: upload-pack, ssh, the remote's hooks on
    a local remote), which would otherwise hold its pipes open and its caller waiting."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)


def git_stopped() -> bool:
    return _stop.is_set()


@contextlib.contextmanager
def stop_grace() -> Iterator[None]:
    """The git commands of this block run even after ``stop_git``, for STOP_GRACE seconds at most
    each: what a clean stop still owes the remote (releasing the driver claim)."""
    _grace.on = True
    try:
        yield
    finally:
        _grace.on = False


def git_env(repo: Path | None = None) -> dict[str, str]:
    """This process's environment for git, never prompting; with the bare repository ``repo``
    named explicitly (GIT_DIR): a process may inherit ``safe.bareRepository=explicit`` (GitHub
    Copilot's shell sets it, in GIT_CONFIG_*), under which git refuses a bare repository it finds
    from its working directory, the ledger's cache included."""
    env = dict(os.environ)
    env.update(GIT_TERMINAL_PROMPT="0", GIT_ASKPASS=env.get("GIT_ASKPASS", "true"), LC_ALL="C")
    if repo is not None:
        env["GIT_DIR"] = str(repo)
    return env


def run_git(args: list[str], *, repo: Path | None = None, cwd: Path | None = None, input: bytes | None = None,
            timeout: float | None = None, check: bool = True,
            env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess:
    """``git ARGS``, in the bare repository ``repo`` or the working directory ``cwd``."""
    timeout = git_timeout() if timeout is None else timeout
    if _stop.is_set():
        if not getattr(_grace, "on", False):
            raise GitStopped(f"git {args[0]} not run: the process is stopping")
        timeout = min(timeout, STOP_GRACE)
    proc = subprocess.Popen(["git", *args], cwd=repo or cwd, stdin=subprocess.PIPE if input is not None else None,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**git_env(repo), **(env or {})},
                            start_new_session=True)  # its own group: a stop ends its helpers (upload-pack, ssh) too
    with _running_lock:
        _running.add(proc)
    if _stop.is_set() and not getattr(_grace, "on", False):
        _end(proc)  # stopped between the check and the start
    try:
        out, err = proc.communicate(input, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        _end(proc, signal.SIGKILL)  # the whole group: a helper left running keeps the pipes open
        proc.communicate()
        raise GitTimeout(f"git {args[0]} timed out after {timeout:.0f}s") from e
    finally:
        with _running_lock:
            _running.discard(proc)
    if proc.returncode < 0 and _stop.is_set():
        raise GitStopped(f"git {args[0]} ended: the process is stopping")
    if check and proc.returncode != 0:
        raise Unavailable(f"git {args[0]} failed: {first_line(err)}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def first_line(raw: bytes) -> str:
    return git_says(raw.decode(errors="replace"))


def git_says(output: str) -> str:
    """The line of git's output that says what went wrong: the first fatal, error or remote line
    (a remote's hook speaks first, git's own summary comes last), else the first line."""
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    fatal = [ln for ln in lines if ln.startswith(("fatal:", "error:", "remote:"))]
    return (fatal or lines or ["no error message"])[0]
