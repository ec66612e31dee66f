"""Group commit across the processes of one machine: a spool of pending operations in the cache.

Every operation a process submits is put in the spool (``<cache>/spool/<name>.op``) at once.
The process holding the cache's writer lock applies all the operations in the spool, its own
and the other processes', on the tip in one commit and one push, and leaves each other
process the outcome of its own operation (``<name>.done``: its result, or its own error such
as NotFound). A process waiting for the lock picks its outcomes up without the lock.

Nothing is lost or applied twice when a process is killed:

- a waiting process's operation stays in the spool and the next holder applies it;
- a holder writes a journal (its commit and every outcome) before it pushes: the next holder
  asks the remote whether that commit landed, and hands out the journal's outcomes if it did
  (the operations are not applied again), or applies the operations again if it did not;
- an owner removes its ``.op`` before its ``.done``, and a holder skips an ``.op`` that has a
  ``.done``, so an operation is never done again once its owner has read its outcome.

Only processes of the same installation share operations (they are pickled, and a holder
of another release could read their fields differently): the spool is private to the user
(0700, files checked to be the user's own), as the cache's git hooks already must be. A write
handed off by a light `gt` (``handoff.py``: a create, a close, a reopen, a comment) and its
outcome are marshal data instead, tagged with the installation the same way: that process
loads no pickle.
"""

from __future__ import annotations

import os
import pickle  # noqa: S403 (the spool is the user's own, 0700; see the module's docstring)
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from .errors import LedgerError
from .handoff import (
    JOURNAL,
    PLAIN,
    TAG,
    WAKE,
    new_key,
    plain_outcome,
    read_outcome,
    read_plain,
    spool_dir,
    take_outcome,
)
from .handoff import write_file as _write
from .writer import Pending

_PROC = Path("/proc")
PICKLED = b"\x80"  # how a pickle (protocol 2 or later) starts; marshal data never does


class Spool:
    def __init__(self, cache: Path):
        self.dir = Path(spool_dir(cache))

    # --- the owner's side: put an operation in, pick its outcome up -------------------------

    def put(self, pending: Pending) -> None:
        """Spool ``pending`` for whichever process holds the lock; an operation that cannot be
        pickled stays this process's own (applied in its own turn)."""
        try:
            data = pickle.dumps((TAG, pending.op), protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:  # noqa: BLE001 (a closure, a lock: not shareable, still writable by us)
            return
        name = new_key()
        _write(self.dir / f"{name}.op", data)
        pending.key = name

    def collect(self, mine: Iterable[Pending]) -> None:
        """Resolve those of ``mine`` that another process has done (the lock is not needed)."""
        for p in mine:
            if p.key is None or p.future.done():
                continue
            raw = take_outcome(self.dir, p.key)
            if raw is None:
                continue
            try:  # a plain operation (handoff.PLAIN) that another process committed: marshal data
                ok, value = pickle.loads(raw) if raw[:1] == PICKLED else read_outcome(raw)  # noqa: S301 (our own)
            except Exception:  # noqa: BLE001
                ok, value = False, LedgerError("this write was committed by another gt process of this "
                                               "machine, but its outcome could not be read: check the bead")
            _resolve(p, ok, value)

    def retract(self, mine: Iterable[Pending]) -> None:
        """Take back operations whose owner was told they failed (holding the lock)."""
        for p in mine:
            if p.key is not None:
                (self.dir / f"{p.key}.op").unlink(missing_ok=True)

    # --- the holder's side (always holding the writer lock) -----------------------------------

    def others(self, mine: Iterable[Pending], limit: int) -> list[Pending]:
        """The operations other processes spooled that nobody has done yet, oldest first; what
        dead processes left behind that nobody can apply is swept away."""
        keys = {p.key for p in mine}
        out: list[Pending] = []
        names = sorted(os.listdir(self.dir))
        present = set(names)
        for name in names:
            key, _, kind = name.partition(".")
            if kind != "op":
                if name not in (JOURNAL, WAKE) and not _alive(key):  # an outcome or a half-written file for nobody
                    if kind == "done":
                        (self.dir / f"{key}.op").unlink(missing_ok=True)  # first: done, never again
                    (self.dir / name).unlink(missing_ok=True)
                continue
            if key in keys or len(out) >= limit:
                continue
            if f"{key}.done" in present:  # done; its owner has not picked the outcome up yet
                continue
            op = self._load(self.dir / name)
            if op is not None:
                out.append(Pending(op, key=key, owned=False))
            elif not _alive(key):
                (self.dir / name).unlink(missing_ok=True)
        return out

    @staticmethod
    def holds_writes(cache: Path) -> bool:
        """Whether the spool of ``cache`` (if it has one) holds writes a turn must finish: spooled,
        or journaled by a holder killed as it pushed."""
        try:
            names = set(os.listdir(Path(cache, "spool")))
        except FileNotFoundError:
            return False
        return JOURNAL in names or _unanswered(names) > 0

    def waiting(self) -> int:
        """How many spooled writes wait for a holder (their outcome not written yet)."""
        return _unanswered(set(os.listdir(self.dir)))

    def journal(self, commit: str, outcomes: Sequence[tuple[Pending, bool, Any]]) -> None:
        """Before pushing ``commit``: what it holds, for the next holder should this one be killed."""
        _write(self.dir / JOURNAL, pickle.dumps((commit, {p.key: _outcome(p.op, ok, v) for p, ok, v in outcomes
                                                          if p.key is not None})))

    def settle(self, landed: Callable[[str], bool]) -> bool:
        """Finish a killed holder's turn from its journal: True when its commit landed (its
        operations are done: their outcomes are handed out), False when there was nothing to
        settle or it did not land (its operations are still in the spool, to apply again)."""
        path = self.dir / JOURNAL
        try:
            commit, outcomes = pickle.loads(path.read_bytes())  # noqa: S301 (our own spool)
        except FileNotFoundError:
            return False
        done = landed(commit)
        if done:
            for key, outcome in outcomes.items():
                if (self.dir / f"{key}.op").exists():  # (an older release journaled (ok, value) pairs)
                    self._done(key, outcome if isinstance(outcome, bytes) else pickle.dumps(outcome))
        path.unlink()
        return done

    def journaled(self) -> set[str]:
        """The operations in a killed holder's journal, not settled yet."""
        try:
            _, outcomes = pickle.loads((self.dir / JOURNAL).read_bytes())  # noqa: S301 (our own spool)
        except FileNotFoundError:
            return set()
        return set(outcomes)

    def refuse(self, error: BaseException, batch: Sequence[Pending] = (), limit: int = 500) -> None:
        """A committer's turn failed with ``error``: ``batch`` (other processes' operations) and
        what else is spooled hear it, but for a killed holder's journal (the next holder settles
        those: they may have landed)."""
        journaled = self.journaled()
        refused = [*batch, *(p for p in self.others(batch, limit) if p.key not in journaled)]
        for p in refused:
            if not p.future.done():
                p.future.set_exception(error)
        self.tell(refused)

    def finish(self, batch: Sequence[Pending]) -> None:
        """After a turn: every other process's outcome handed out, the turn's journal dropped."""
        self.tell(batch)
        (self.dir / JOURNAL).unlink(missing_ok=True)

    def tell(self, batch: Sequence[Pending]) -> None:
        """Hand every other process of ``batch`` its outcome (its future's)."""
        for p in batch:
            if p.key is None or not p.future.done():
                continue
            if p.owned:
                (self.dir / f"{p.key}.op").unlink(missing_ok=True)
            else:
                e = p.future.exception()
                self._done(p.key, _outcome(p.op, e is None, p.future.result() if e is None else e))

    def _done(self, key: str, outcome: bytes) -> None:
        if _alive(key):
            _write(self.dir / f"{key}.done", outcome)
        else:  # its owner was killed: its write is on the remote, nobody waits for the outcome
            (self.dir / f"{key}.op").unlink(missing_ok=True)

    def _load(self, path: Path) -> Any:
        """The operation in ``path``, or None: gone, not the user's, or another installation's."""
        try:
            with open(path, "rb") as fh:
                if os.fstat(fh.fileno()).st_uid != os.getuid():
                    return None
                data = fh.read()
            if data[:1] != PICKLED:
                return read_plain(data)  # a create handed off (handoff.py)
            tag, op = pickle.loads(data)  # noqa: S301 (the user's own, checked above)
        except FileNotFoundError:
            return None
        except Exception:  # noqa: BLE001 (a class this release does not have: its owner applies it)
            return None
        return op if tag == TAG else None


def _unanswered(names: set[str]) -> int:
    """The operations among a spool's file ``names`` that have no outcome yet."""
    return sum(1 for n in names if n.endswith(".op") and f"{n[:-3]}.done" not in names)


def _outcome(op: Any, ok: bool, value: Any) -> bytes:
    """The ``.done`` of ``op``: as its owner reads it (a write handed off: marshal data)."""
    return plain_outcome(ok, value) if isinstance(op, PLAIN) else pickle.dumps(_shareable(ok, value))


def _shareable(ok: bool, value: Any) -> tuple[bool, Any]:
    """An outcome another process can unpickle: else its gist, as a result or a clear error."""
    try:
        pickle.loads(pickle.dumps(value))  # noqa: S301 (just made)
        return ok, value
    except Exception:  # noqa: BLE001
        return (True, None) if ok else (False, LedgerError(str(value)))


def _resolve(p: Pending, ok: bool, value: Any) -> None:
    if ok:
        p.future.set_result(value)
    else:
        p.future.set_exception(value)


def _alive(key: str) -> bool:
    """Whether the process that spooled ``key`` (``<time>-<pid>-<n>``) still runs; one killed and
    not yet reaped by its parent (a zombie) does not."""
    try:
        pid = int(key.split("-")[1])
    except (IndexError, ValueError):
        return False
    if _PROC.is_dir():
        try:
            return (_PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except FileNotFoundError:
            return False
        except (OSError, IndexError):
            return True
    try:  # no /proc: ask the kernel whether the pid exists
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True

