"""One verification run: check out the stacked tip and run the rig's gates on it.

The same code (``verify_run``) runs in a verification Job's pod (`gt mq verify`) and, locally,
in a thread of the daemon (``VerifierThreads``: no Python process to start, the daemon's own
ledger to record in); it records the result in the ledger itself, so a queue that restarts
meanwhile finds it there. Gates are argv lists, run in order, each a subprocess; the first that
fails decides.
"""

from __future__ import annotations

import contextvars
import logging
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..ledger import Ledger, Unavailable
from ..ledger.worktree import git
from ..telemetry import tracing
from .bisect import Run, run_id
from .records import RecordRun

log = logging.getLogger("gastown.refinery")

VERIFY_REFS = "refs/gastown/verify"


@dataclass(frozen=True)
class Verification:
    """One verification of a run: the run on the batch's current base."""

    batch: str
    run: Run
    attempt: int  # the batch's rebases: a batch rebuilt on a moved target verifies its runs anew
    tip: str = ""  # the stacked commit, when the verifier reads it from the Refinery's own cache (no ref pushed)

    @property
    def ident(self) -> str:
        """The run's ID: unique per batch, attempt and run (a flaky retry included)."""
        return f"{run_id(self.batch, self.run, self.attempt)}-{self.attempt}"

    @property
    def ref(self) -> str:
        """The scratch ref of the stacked tip, pushed for the verifier."""
        return f"{VERIFY_REFS}/{self.batch}/{self.ident}"


@dataclass(frozen=True)
class GateResult:
    ok: bool
    gate: str | None  # the gate that failed
    log: str


def checkout(workdir: Path, remote: str, ref: str) -> str:
    """``workdir`` holds exactly the commit at ``ref`` (a fresh or reused checkout); its sha."""
    _init(workdir)
    git(workdir, "fetch", "--quiet", "--no-tags", remote, f"+{ref}:refs/gastown/verify")
    git(workdir, "checkout", "--quiet", "--force", "--detach", "refs/gastown/verify")
    git(workdir, "clean", "-fdxq")
    return git(workdir, "rev-parse", "HEAD")


def checkout_in_place(workdir: Path, objects: Path, commit: str) -> str:
    """``workdir`` holds exactly ``commit``, read where it is: ``objects``, the object directory of
    the repository that built it (the Refinery's cache, shared as git's alternates): nothing is
    fetched, and the stack need not be pushed anywhere. A reused checkout whose objects are gone
    (the cache was made anew) is made anew."""
    try:
        _checkout_shared(workdir, objects, commit)
    except Unavailable:
        shutil.rmtree(workdir, ignore_errors=True)
        _checkout_shared(workdir, objects, commit)
    return commit


def _checkout_shared(workdir: Path, objects: Path, commit: str) -> None:
    _init(workdir)
    alternates = workdir / ".git" / "objects" / "info" / "alternates"
    if not alternates.exists() or alternates.read_text() != f"{objects}\n":
        alternates.parent.mkdir(parents=True, exist_ok=True)
        alternates.write_text(f"{objects}\n")
    git(workdir, "checkout", "--quiet", "--force", "--detach", commit)
    git(workdir, "clean", "-fdxq")


def _init(workdir: Path) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    if not (workdir / ".git").exists():
        git(workdir, "init", "--quiet")


def run_gates(workdir: Path, gates: list[tuple[str, list[str]]], timeout: float) -> GateResult:
    """Run ``gates`` in ``workdir`` within ``timeout`` seconds in all."""
    deadline = time.monotonic() + timeout
    logs: list[str] = []
    for name, argv in gates:
        logs.append(f"$ {' '.join(argv)}    # gate {name}")
        left = deadline - time.monotonic()
        try:
            proc = subprocess.Popen(argv, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        except OSError as e:
            logs.append(f"cannot run gate {name}: {e}")
            return GateResult(False, name, "\n".join(logs))
        try:
            out, _ = proc.communicate(timeout=max(left, 0.1))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
            logs.append(out.decode(errors="replace"))
            logs.append(f"gate {name} timed out (verification timeout {timeout:.0f}s)")
            return GateResult(False, name, "\n".join(logs))
        logs.append(out.decode(errors="replace"))
        if proc.returncode != 0:
            logs.append(f"gate {name} failed with exit code {proc.returncode}")
            return GateResult(False, name, "\n".join(logs))
    if not gates:
        logs.append("no gates configured: the stack merges cleanly, nothing else is checked")
    return GateResult(True, None, "\n".join(logs))


def verify_run(verification: Verification, remote: str, gates: list[tuple[str, list[str]]], timeout: float, *,
               workdir: Path, ledger: Ledger, attempt: int | None,
               released: Callable[[], None] = lambda: None) -> tuple[GateResult, float]:
    """Check ``verification``'s tip out in ``workdir`` (its ``tip`` read in place from ``ledger``'s
    cache, or its ref fetched from ``remote``), run the gates, record the run in ``ledger``
    (``attempt`` None: whatever the batch's is then): (the gates' result, seconds taken), under a
    span of its own. ``released`` is called once the gates are done with ``workdir``, before the
    result is recorded: a run the Refinery starts on seeing it can have the checkout. Raises
    LedgerError when the tip cannot be checked out (nothing recorded)."""
    run = verification.run
    with tracing.span("verify run", batch=verification.batch, run=verification.ident,
                      stack=",".join(run.stack)) as span:
        started = time.monotonic()
        tip = (checkout_in_place(workdir.resolve(), ledger.store.cache.resolve() / "objects", verification.tip)
               if verification.tip else checkout(workdir.resolve(), remote, verification.ref))
        result = run_gates(workdir.resolve(), gates, timeout)
        took = time.monotonic() - started
        released()
        ledger.apply(RecordRun(batch_id=verification.batch, run=run, result="pass" if result.ok else "fail", tip=tip,
                               gate=result.gate, log=f"{result.log}\n(verified in {took:.1f}s)", actor=ledger.actor,
                               attempt=attempt))
        span.set_attribute("gastown.outcome", "pass" if result.ok else "fail")
        if result.gate:
            span.set_attribute("gastown.gate", result.gate)
    return result, took


class VerifierThreads:
    """The local daemon's verifiers: each run in a thread of this process, its gates subprocesses.

    A run's directory (``root``/BATCH/IDENT) holds its log, ``verify.log``, and the name of the
    process running it, ``owner``. Checkouts are reused: a run takes a free one of ``checkouts`` (as
    many as ever ran at once), so a round fetches only the commits the last one lacked and
    checks out only the files that differ. A run whose process is gone (the daemon restarted) is
    not under way: the Refinery starts it again. A run that ended without recording a result says
    why (``verifications``), and the Refinery records it as failed."""

    def __init__(self, root: Path, checkouts: Path, ledger: Ledger, *, remote: str,
                 gates: Sequence[tuple[str, list[str]]], timeout: float):
        self.root, self.checkouts, self.ledger = root, checkouts, ledger
        self.remote, self.gates, self.timeout = remote, list(gates), timeout
        self._threads: dict[str, threading.Thread] = {}
        self._ended: dict[str, str] = {}  # run -> why it ended without a result
        self._lock = threading.Lock()
        self._checkouts = 0
        self._free: list[Path] = []  # checkouts no run holds

    def start(self, verification: Verification) -> None:
        vdir = self.root / verification.batch / verification.ident
        vdir.mkdir(parents=True, exist_ok=True)
        (vdir / "owner").write_text(str(os.getpid()))
        key = f"{verification.batch}/{verification.ident}"
        context = contextvars.copy_context()  # the run's span goes under the Refinery's
        thread = threading.Thread(target=context.run, args=(self._run, verification, vdir, key), daemon=True,
                                  name=f"verify-{verification.ident}")
        with self._lock:  # (what this process ran for other batches is forgotten once it ended)
            self._threads = {k: t for k, t in self._threads.items() if t.is_alive()
                             or k.startswith(f"{verification.batch}/")}
            self._ended = {k: why for k, why in self._ended.items() if k in self._threads}
            self._threads[key] = thread
            self._ended.pop(key, None)
        thread.start()

    def _run(self, verification: Verification, vdir: Path, key: str) -> None:
        workdir = self._take()
        held = [workdir]  # given back once, as soon as the gates are done with it

        def give() -> None:
            if held:
                self._give(held.pop())
        try:
            with (vdir / "verify.log").open("w") as out:
                try:
                    result, took = verify_run(verification, self.remote, self.gates, self.timeout, workdir=workdir,
                                              ledger=self.ledger, attempt=verification.attempt, released=give)
                except Exception as e:  # noqa: BLE001 (a thread has no caller: the Refinery records it)
                    out.write(f"the verification could not run: {e}\n")
                    with self._lock:
                        self._ended[key] = f"the verification could not run: {e}"
                    return
                out.write(f"{result.log}\nrun {verification.ident}: "
                          f"{'pass' if result.ok else f'fail ({result.gate})'} in {took:.1f}s\n")
        finally:
            give()

    def _take(self) -> Path:
        """A checkout no run holds (reused when one is free)."""
        with self._lock:
            if self._free:
                return self._free.pop()
            self._checkouts += 1
            return self.checkouts / str(self._checkouts - 1)

    def _give(self, workdir: Path) -> None:
        with self._lock:
            self._free.append(workdir)

    def verifications(self, batch: str) -> dict[str, str | None]:
        """Run ident -> None while it runs, or why it ended without recording a result."""
        out: dict[str, str | None] = {}
        for vdir in (self.root / batch).glob("*"):
            key = f"{batch}/{vdir.name}"
            with self._lock:
                thread, ended = self._threads.get(key), self._ended.get(key)
            if thread is not None:
                out[vdir.name] = ended if ended is not None and not thread.is_alive() else None
            elif (vdir / "pid").exists() and alive(int((vdir / "pid").read_text() or 0)):
                out[vdir.name] = None  # a `gt mq verify` process of an older daemon, still running
        return out

    def under_way(self) -> frozenset[str]:
        """The runs of this process still running."""
        with self._lock:
            return frozenset(k for k, t in self._threads.items() if t.is_alive())


def alive(pid: int) -> bool:
    """Whether process ``pid`` runs (on this machine)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return pid > 0
