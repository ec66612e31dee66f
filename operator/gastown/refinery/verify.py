"""One verification run: check out the stacked tip and run the rig's gates on it.

The same code runs in a verification Job's pod and in a local subprocess (`gt mq
verify`); it records the result in the ledger itself, so a queue that restarts meanwhile
finds it there. Gates are argv lists, run in order; the first that fails decides.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from ..ledger.worktree import git
from .bisect import Run, run_id

VERIFY_REFS = "refs/gastown/verify"


@dataclass(frozen=True)
class Verification:
    """One verification of a run: the run on the batch's current base."""

    batch: str
    run: Run
    attempt: int  # the batch's rebases: a batch rebuilt on a moved target verifies its runs anew

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
    workdir.mkdir(parents=True, exist_ok=True)
    if not (workdir / ".git").exists():
        git(workdir, "init", "--quiet")
    git(workdir, "fetch", "--quiet", "--no-tags", remote, f"+{ref}:refs/gastown/verify")
    git(workdir, "checkout", "--quiet", "--force", "--detach", "refs/gastown/verify")
    git(workdir, "clean", "-fdxq")
    return git(workdir, "rev-parse", "HEAD")


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
