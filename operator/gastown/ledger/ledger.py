"""The Ledger: a rig's beads, read from a local cache and written with group commit."""

from __future__ import annotations

import getpass
import hashlib
import os
import socket
import threading
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..settings import cache_root
from . import ops, query
from .claim import ClaimStore
from .errors import NotFound
from .gitstore import ARCHIVE_DIR, GitSnapshot, GitStore, Signature, normalise_remote
from .model import Bead, BeadType, Dependency, DepType, Status, bead_path
from .writer import Pending, commit_batch


def default_actor() -> str:
    return os.environ.get("GT_ACTOR") or f"user {getpass.getuser()}@{socket.gethostname()}"


def default_cache_dir(remote: str, root: Path | None = None) -> Path:
    """Where the ledger of ``remote`` is cached: under ``ledgers/`` of the cache root."""
    base = (root or cache_root()) / "ledgers"
    key = hashlib.sha256(normalise_remote(remote).encode()).hexdigest()[:20]
    return base / key


@dataclass(frozen=True)
class HistoryEntry:
    commit: str
    author: str
    date: str
    change: str


class Ledger:
    """The beads of one rig.

    ``remote`` is the rig repository (a path or a URL). Reads come from a bare cache
    repository that is fetched only when the remote tip moved. Writes are operations
    (``gastown.ledger.ops``) queued to one writer thread: everything queued while a push is
    in flight goes into the next commit (group commit), and a rejected push re-applies
    the operations on the new tip.
    """

    def __init__(self, remote: str, *, cache_dir: Path | None = None, prefix: str = "gt",
                 actor: str | None = None, max_batch: int = 500, env: Mapping[str, str] | None = None):
        self.remote = normalise_remote(remote)
        self.actor = actor or default_actor()
        self.store = GitStore(self.remote, cache_dir or default_cache_dir(remote), prefix, env)
        self.claims = ClaimStore(self.store)  # who drives this ledger
        self.max_batch = max_batch
        self._tip: str | None = None
        self._known = False
        self._queue: list[Pending] = []
        self._cv = threading.Condition()
        self._writer: threading.Thread | None = None
        self._closed = False

    # --- lifecycle ------------------------------------------------------------------

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        if self._writer:
            self._writer.join()
        self.store.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- reads --------------------------------------------------------------------------

    def refresh(self) -> str | None:
        """Ask the remote for its tip; fetch only when the cache does not have it."""
        tip = self.store.remote_tip()
        if tip is not None:
            tip = self.store.ensure(tip)
        with self._cv:
            self._tip, self._known = tip, True
        return tip

    @property
    def tip(self) -> str | None:
        if not self._known:
            self.refresh()
        return self._tip

    def snapshot(self, refresh: bool = True) -> GitSnapshot:
        tip = self.refresh() if refresh or not self._known else self._tip
        return self.store.snapshot(tip)

    @property
    def prefix(self) -> str:
        return self.snapshot(refresh=False).prefix

    def get(self, bead_id: str, refresh: bool = True) -> Bead:
        """A bead, live or archived (to read: operations see live beads only)."""
        snap = self.snapshot(refresh)
        bead = snap.get(bead_id) or snap.get_archived(bead_id)
        if bead is None:
            raise NotFound(f"no bead {bead_id} in the ledger of {self.remote}")
        return bead

    def beads(self, refresh: bool = True) -> dict[str, Bead]:
        return self.snapshot(refresh).beads()

    def ready(self, assignee: str | None = None) -> list[Bead]:
        return query.ready(self.beads(), assignee)

    def history(self, bead_id: str) -> list[HistoryEntry]:
        """What happened to a bead, oldest first, from the ledger's git log."""
        tip = self.tip
        snap = self.store.snapshot(tip) if tip else None
        if snap is None or (bead_id not in snap and bead_id not in snap.archive):
            raise NotFound(f"no bead {bead_id} in the ledger of {self.remote}")
        out = []
        marker = f"bead {bead_id}: "
        for entry in reversed(self.store.log(tip, bead_path(bead_id), f"{ARCHIVE_DIR}/{bead_id}.json")):
            for line in entry["message"].splitlines():
                if line.startswith(marker):
                    out.append(HistoryEntry(entry["commit"], entry["author"], entry["date"],
                                            line[len(marker):]))
        return out

    def log(self, limit: int | None = None) -> list[dict]:
        tip = self.tip
        entries = self.store.log(tip) if tip else []
        return entries[:limit] if limit else entries

    # --- writes -------------------------------------------------------------------------

    def submit(self, op: ops.Operation) -> Future:
        """Queue ``op``; the future resolves once its commit is on the remote."""
        pending = Pending(op)
        with self._cv:
            if self._closed:
                raise RuntimeError("the ledger is closed")
            self._queue.append(pending)
            if self._writer is None:
                self._writer = threading.Thread(target=self._write_loop, name="ledger-writer",
                                                daemon=True)
                self._writer.start()
            self._cv.notify()
        return pending.future

    def apply(self, op: ops.Operation) -> Any:
        return self.submit(op).result()

    def _write_loop(self) -> None:
        while True:
            with self._cv:
                while not self._queue and not self._closed:
                    self._cv.wait()
                if not self._queue:
                    return
                batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch:]
            try:
                tip = commit_batch(self.store, self.tip, batch, Signature.of)
                with self._cv:
                    self._tip, self._known = tip, True
            except BaseException as e:  # noqa: BLE001 (every waiter must hear of it)
                with self._cv:
                    self._known = False
                for p in batch:
                    if not p.future.done():
                        p.future.set_exception(e)

    def ensure(self) -> str:
        """Create the ledger branch when it is missing; return the tip."""
        tip = self.refresh()
        if tip is not None:
            return tip
        self.apply(_Init(self.actor))
        return self.tip  # type: ignore[return-value]

    # --- conveniences for the common operations ------------------------------------------

    def create(self, title: str, *, type: BeadType | str = BeadType.TASK, description: str = "",
               acceptance: str = "", priority: int = 2, labels: Iterable[str] = (),
               assignee: str | None = None, owner: str | None = None, parent: str | None = None,
               deps: Iterable[tuple[str, DepType | str]] = (), metadata: Mapping[str, Any] | None = None,
               status: Status | str = Status.OPEN, bead_id: str | None = None,
               actor: str | None = None) -> Bead:
        actor = actor or self.actor
        seed = f"{title}\0{description}\0{actor}\0{time.time_ns()}\0{os.urandom(8).hex()}"
        return self.apply(ops.Create(
            title=title, actor=actor, seed=seed, type=BeadType(type), description=description,
            acceptance=acceptance, priority=priority, labels=tuple(labels), assignee=assignee,
            owner=owner, parent=parent, deps=tuple(Dependency(id=i, type=DepType(t)) for i, t in deps),
            metadata=dict(metadata or {}), status=Status(status), bead_id=bead_id))

    def update(self, bead_id: str, *, status: Status | str | None = None, actor: str | None = None,
               add_labels: Iterable[str] = (), remove_labels: Iterable[str] = (),
               metadata: Mapping[str, Any] | None = None, **fields: Any) -> Bead:
        return self.apply(ops.Update(
            bead_id=bead_id, actor=actor or self.actor, fields=fields,
            status=Status(status) if status is not None else None, add_labels=tuple(add_labels),
            remove_labels=tuple(remove_labels), metadata=dict(metadata or {})))

    def close_bead(self, bead_id: str, reason: str = "", actor: str | None = None) -> Bead:
        return self.apply(ops.Close(bead_id, actor or self.actor, reason))

    def reopen(self, bead_id: str, reason: str = "", actor: str | None = None) -> Bead:
        return self.apply(ops.Reopen(bead_id, actor or self.actor, reason))

    def comment(self, bead_id: str, text: str, actor: str | None = None) -> Bead:
        return self.apply(ops.AddComment(bead_id, actor or self.actor, text))

    def add_dep(self, bead_id: str, depends_on: str, type: DepType | str = DepType.BLOCKS,
                actor: str | None = None) -> Bead:
        return self.apply(ops.AddDep(bead_id, actor or self.actor, depends_on, DepType(type)))

    def remove_dep(self, bead_id: str, depends_on: str, type: DepType | str | None = None,
                   actor: str | None = None) -> Bead:
        return self.apply(ops.RemoveDep(bead_id, actor or self.actor, depends_on,
                                        DepType(type) if type else None))


@dataclass(frozen=True)
class _Init:
    """Create the ledger: a first commit with its config and no beads."""

    actor: str

    def apply(self, tx: ops.Tx) -> None:
        if not tx.exists:
            tx.note(f"ledger: created with prefix {tx.prefix} ({self.actor})")
