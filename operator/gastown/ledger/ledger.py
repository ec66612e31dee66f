"""The Ledger: a rig's beads, read from a local cache and written with group commit."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import ops, query
from .claim import ClaimStore
from .errors import NotFound
from .gitstore import MIGRATION, GitSnapshot, GitStore, Signature
from .handoff import cache_dir_for, create_seed, default_actor, normalise_remote
from .layout import FORMAT, record_paths
from .model import Bead, BeadType, Dependency, DepType, Status
from .spool import Spool
from .writer import Pending, commit_batch

# how long a block in ``Ledger.held`` keeps the machine's writer turn (then the other processes
# writing through the cache go first: a dispatch's block takes 30-200 ms, a first clone far longer)
HOLD_TURN_SECONDS = 1.0


def default_cache_dir(remote: str, root: Path | None = None) -> Path:
    """Where the ledger of ``remote`` is cached (``handoff.cache_dir_for``)."""
    return Path(cache_dir_for(remote, root))


def pushed_marker(remote: str, root: Path | None = None) -> Path:
    """The file every Ledger on this machine replaces after each push to ``remote`` (beside the
    remote's default cache): a town's daemon stats it to learn of local writes at once."""
    cache = default_cache_dir(remote, root)
    return cache.with_name(f"{cache.name}.pushed")


def pushed_stamp(marker: Path | str) -> tuple[int, int] | None:
    """When a ``pushed_marker`` was last replaced (None: never): what a daemon compares to wake."""
    try:
        st = os.stat(marker)
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns


def _pushed(remote: str) -> None:
    path = pushed_marker(remote)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}")
    try:  # a new file each time (its inode changes): seen whatever the filesystem's mtime resolution
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(f"{time.time_ns()}\n")
        tmp.replace(path)
    except OSError:  # only a notification: the daemon's next remote poll sees the write anyway
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def _fail(waiting: Iterable[Pending], e: BaseException) -> None:
    for p in waiting:
        if not p.future.done():
            p.future.set_exception(e)


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
    (``gastown.ledger.ops``) queued to one writer thread and spooled in the cache for the
    machine's other processes: everything queued or spooled while a push is in flight goes
    into the next commit, whichever process makes it (group commit, ``spool.py``), and a
    rejected push re-applies the operations on the new tip.
    """

    def __init__(self, remote: str, *, cache_dir: Path | None = None, prefix: str = "gt",
                 actor: str | None = None, max_batch: int = 500, env: Mapping[str, str] | None = None):
        self.remote = normalise_remote(remote)
        self.actor = actor or default_actor()
        self.store = GitStore(self.remote, cache_dir or default_cache_dir(remote), prefix, env)
        self.claims = ClaimStore(self.store)  # who drives this ledger
        self.spool = Spool(self.store.cache)  # this machine's writes waiting for a turn (group commit)
        self.max_batch = max_batch
        self._tip: str | None = None
        self._known = False
        self._queue: list[Pending] = []
        self._cv = threading.Condition()
        self._writer: threading.Thread | None = None
        self._closed = False
        self._holds = 0  # blocks ``held`` is in: the writer starts no commit meanwhile

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

    def preview(self, operations: Sequence[ops.Operation]) -> dict[str, Bead]:
        """The beads as they will read once ``operations`` land: applied in memory to the tip this
        ledger knows, nothing written (raises as the first that cannot apply would)."""
        snap = self.snapshot(refresh=False)
        tx = ops.Tx(snap, datetime.now(UTC))
        for op in operations:
            op.apply(tx)
        return {**{k: v for k, v in snap.beads().items() if k not in tx.archive}, **tx.changes}

    def ready(self, assignee: str | None = None) -> list[Bead]:
        return query.ready(self.beads(), assignee)

    def history(self, bead_id: str) -> list[HistoryEntry]:
        """What happened to a bead, oldest first, from the ledger's git log."""
        tip = self.tip
        snap = self.store.snapshot(tip) if tip else None
        if not tip or snap is None or (bead_id not in snap and bead_id not in snap.archive):
            raise NotFound(f"no bead {bead_id} in the ledger of {self.remote}")
        out = []
        marker = f"bead {bead_id}: "
        for entry in reversed(self.store.log(tip, *record_paths(bead_id))):
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
        """Queue ``op`` (and spool it for this machine's other writers to commit it with theirs);
        the future resolves once its commit is on the remote."""
        pending = Pending(op)
        with self._cv:
            if self._closed:
                raise RuntimeError("the ledger is closed")
            self.spool.put(pending)
            self._queue.append(pending)
            if self._writer is None:
                self._writer = threading.Thread(target=self._write_loop, name="ledger-writer",
                                                daemon=True)
                self._writer.start()
            self._cv.notify()
        return pending.future

    def apply(self, op: ops.Operation) -> Any:
        return self.submit(op).result()

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """What this process submits inside the block goes out together, in one commit when it can:
        the writer starts none until the block ends. It takes the machine's writer turn as soon as
        something is submitted, though, and keeps it: a write another process of this machine
        spools meanwhile (a session's wrapper booking its result) joins that commit instead of
        pushing first and making this one wait. A block that lasts longer than ``HOLD_TURN_SECONDS``
        (a first session cloning its rig) gives the turn back, so that the machine's other writers
        never wait on it. Nothing inside may wait for a write of its own."""
        with self._cv:
            self._holds += 1
        try:
            yield
        finally:
            with self._cv:
                self._holds -= 1
                self._cv.notify_all()

    def _write_loop(self) -> None:
        while True:
            with self._cv:
                while not self._queue and not self._closed:
                    self._cv.wait()
                if not self._queue:
                    return
            try:
                # the processes sharing this cache take turns; a waiting one may find its writes done
                with self.store.writing(done=self._collected) as turn:
                    ended = not turn or self._hold_ended(HOLD_TURN_SECONDS)  # a block in ``held`` ends first
                    if turn and ended:
                        self._commit_turn()
                if not ended:  # a long one: waited for without the turn, which others take meanwhile
                    self._hold_ended(None)
            except BaseException as e:  # noqa: BLE001 (the lock itself failed: every waiter must hear of it)
                with self._cv:
                    waiting, self._queue = self._queue, []
                self.spool.retract(waiting)
                _fail(waiting, e)

    def _hold_ended(self, timeout: float | None) -> bool:
        """Wait (up to ``timeout``) until no block is in ``held``; False if one still is."""
        with self._cv:
            return self._cv.wait_for(lambda: not self._holds or self._closed, timeout)

    def _collected(self) -> bool:
        """Pick up the outcomes of this process's writes that another process committed; True when
        none is left waiting."""
        with self._cv:
            waiting = list(self._queue)
        self.spool.collect(waiting)
        with self._cv:
            self._queue = [p for p in self._queue if not p.future.done()]
            return not self._queue

    def commit_spooled(self) -> int:
        """Take a turn of the writer lock for the writes this machine's other processes spooled
        (the machine's committer: committer.py); how many writes it carried. Should the turn fail,
        each of them hears the error (their processes wait for nobody else)."""
        with self.store.writing():
            return self._commit_turn(tell_others=True)

    def _commit_turn(self, tell_others: bool = False) -> int:
        """Holding the writer lock: commit this process's writes and every other process's spooled
        write, in one commit and one push; each outcome goes to its own process."""
        self._collected()
        with self._cv:
            batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch:]
        try:
            if self.spool.settle(self._landed):  # a holder was killed after it pushed: its writes are done
                self.refresh()
                self.spool.collect(batch)
                batch = [p for p in batch if not p.future.done()]
            batch += self.spool.others(batch, self.max_batch - len(batch))
            if batch:
                tip = commit_batch(self.store, self._base(), batch, Signature.of, pushed=self._pushed,
                                   pushing=self.spool.journal)
                with self._cv:
                    self._tip, self._known = tip, True
                _pushed(self.remote)
            self.spool.finish(batch)
        except BaseException as e:  # noqa: BLE001 (every waiter of this process must hear of it)
            with self._cv:
                self._known = False
            mine = [p for p in batch if p.owned]
            self.spool.retract(mine)  # told it failed: no other process may commit it later
            _fail(mine, e)
            if tell_others:  # the committer's turn: every write it was to make hears why it was not
                self.spool.refuse(e, [p for p in batch if not p.owned], self.max_batch)
                return max(len(batch), 1)
        return len(batch)

    def _landed(self, commit: str) -> bool:
        tip = self.store.fetch()
        return tip is not None and self.store.has(commit) and self.store.is_ancestor(commit, tip)

    def _pushed(self, tip: str) -> None:
        with self._cv:
            self._tip, self._known = tip, True
        self.store.wrote(tip)

    def _base(self) -> str | None:
        """The tip to build on: the last one pushed through this cache, if another process of this
        machine pushed since this one looked (else a push would be refused and re-applied)."""
        tip, written = self.tip, self.store.written_tip()
        if (written is not None and written != tip and self.store.has(written)
                and (tip is None or self.store.is_ancestor(tip, written))):  # never an older tip than ours
            return written
        return tip

    def ensure(self) -> str:
        """Create the ledger branch when it is missing; return the tip."""
        tip = self.refresh()
        if tip is not None:
            return tip
        self.apply(_Init(self.actor))
        return self.tip  # type: ignore[return-value]

    def migrate(self) -> bool:
        """Bring the ledger to this release's format now, in one commit; False: it already was.

        The first write of this release migrates an older ledger anyway, in the commit of that
        write; this is for doing it on purpose (``gt bead migrate``)."""
        tip = self.refresh()
        if tip is None or self.store.snapshot(tip).format == FORMAT:
            return False
        self.apply(_Migrate(self.actor))
        return True

    # --- conveniences for the common operations ------------------------------------------

    def create(self, title: str, *, type: BeadType | str = BeadType.TASK, description: str = "",
               acceptance: str = "", priority: int = 2, labels: Iterable[str] = (),
               assignee: str | None = None, owner: str | None = None, parent: str | None = None,
               deps: Iterable[tuple[str, DepType | str]] = (), metadata: Mapping[str, Any] | None = None,
               status: Status | str = Status.OPEN, bead_id: str | None = None,
               actor: str | None = None) -> Bead:
        actor = actor or self.actor
        return self.apply(create_op(
            title, actor=actor, seed=create_seed(title, description, actor), type=type, description=description,
            acceptance=acceptance, priority=priority, labels=labels, assignee=assignee, owner=owner, parent=parent,
            deps=deps, metadata=metadata, status=status, bead_id=bead_id))

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


def create_op(title: str, *, actor: str, seed: str, type: BeadType | str = BeadType.TASK, description: str = "",
              acceptance: str = "", priority: int = 2, labels: Iterable[str] = (), assignee: str | None = None,
              owner: str | None = None, parent: str | None = None,
              deps: Iterable[tuple[str, DepType | str]] = (), metadata: Mapping[str, Any] | None = None,
              status: Status | str = Status.OPEN, bead_id: str | None = None) -> ops.Create:
    """The operation creating a bead, from plain values (``Ledger.create``, ``handoff.Create``)."""
    return ops.Create(
        title=title, actor=actor, seed=seed, type=BeadType(type), description=description,
        acceptance=acceptance, priority=priority, labels=tuple(labels), assignee=assignee,
        owner=owner, parent=parent, deps=tuple(Dependency(id=i, type=DepType(t)) for i, t in deps),
        metadata=dict(metadata or {}), status=Status(status), bead_id=bead_id)


@dataclass(frozen=True)
class _Init:
    """Create the ledger: a first commit with its config and no beads."""

    actor: str

    def apply(self, tx: ops.Tx) -> None:
        if not tx.exists:
            tx.note(f"ledger: created with prefix {tx.prefix} ({self.actor})")


@dataclass(frozen=True)
class _Migrate:
    """Migrate the ledger to this release's format (``GitStore.write_commit`` does the work)."""

    actor: str

    def apply(self, tx: ops.Tx) -> None:
        if getattr(tx.base, "format", FORMAT) != FORMAT:
            tx.note(f"{MIGRATION} ({self.actor})")
