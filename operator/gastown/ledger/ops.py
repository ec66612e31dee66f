"""Ledger operations. Each is re-appliable: it reads the state it needs from the transaction,
so when a push is rejected the same operation is applied again on the new tip. Pure."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from ..graph import find_cycle
from .errors import InvalidOperation, NotFound
from .handoff import check_title
from .ids import child_id, new_id
from .model import (
    ID_PATTERN,
    ORDERING,
    Bead,
    BeadType,
    Comment,
    Dependency,
    DepType,
    Status,
    check_transition,
)


class Snapshot(Protocol):
    """Read access to the ledger at one commit."""

    prefix: str
    commit: str | None  # None: the ledger branch does not exist yet

    def get(self, bead_id: str) -> Bead | None: ...
    def ids(self) -> Iterable[str]: ...
    def archived(self) -> Iterable[str]: ...


class Tx:
    """One batch of operations on top of a snapshot: reads see earlier writes of the batch."""

    def __init__(self, base: Snapshot, now: datetime):
        self.base, self.now = base, now
        self.prefix = base.prefix
        self.changes: dict[str, Bead] = {}
        self.archive: set[str] = set()  # beads moved out of the live ledger by this batch
        self.lines: list[str] = []

    def checkpoint(self) -> tuple[dict[str, Bead], set[str], int]:
        """Where the batch stands, to roll back to when an operation fails half-way."""
        return dict(self.changes), set(self.archive), len(self.lines)

    def rollback(self, mark: tuple[dict[str, Bead], set[str], int]) -> None:
        changes, archive, lines = mark
        self.changes, self.archive, self.lines = changes, archive, self.lines[:lines]

    def get(self, bead_id: str) -> Bead | None:
        if bead_id in self.archive:
            return None
        return self.changes.get(bead_id) or self.base.get(bead_id)

    def require(self, bead_id: str) -> Bead:
        bead = self.get(bead_id)
        if bead is None:
            if bead_id in self.archive or bead_id in set(self.base.archived()):
                raise InvalidOperation(f"{bead_id} is archived (compacted by the Dogs): it can be read, "
                                       "not changed")
            raise NotFound(f"no bead {bead_id} in this ledger")
        return bead

    def ids(self) -> set[str]:
        return (set(self.base.ids()) | set(self.changes)) - self.archive

    def reserved(self) -> set[str]:
        """IDs a new bead may not take: the live ones and the archived ones (IDs are never reused)."""
        return set(self.base.ids()) | set(self.changes) | set(self.base.archived())

    @property
    def exists(self) -> bool:
        return self.base.commit is not None

    def note(self, line: str) -> None:
        """A change that is not a bead (creating the ledger): it still needs a commit."""
        self.lines.append(line)

    def put(self, bead: Bead, line: str, actor: str) -> Bead:
        before = self.get(bead.id)
        if before is None or before.title != bead.title:  # every front door writes through here
            check_title(bead.title)
        self.changes[bead.id] = bead
        self.archive.discard(bead.id)
        self.lines.append(f"bead {bead.id}: {line} ({actor})")
        return bead

    def move_to_archive(self, bead_id: str, line: str, actor: str) -> None:
        """Out of the live ledger, into ``archive/``: still readable, never loaded with the rest."""
        self.require(bead_id)
        self.changes.pop(bead_id, None)
        self.archive.add(bead_id)
        self.lines.append(f"bead {bead_id}: {line} ({actor})")

    def ordering_cycle(self, changed: Bead) -> list[str] | None:
        """A cycle of ordering dependencies through ``changed`` (not yet written), if any."""
        def edges(bead_id: str) -> list[str]:
            bead = changed if bead_id == changed.id else self.get(bead_id)
            return bead.deps(*ORDERING) if bead else []
        return find_cycle([changed.id], edges)


class Operation(Protocol):
    @property
    def actor(self) -> str: ...  # read-only: operations are frozen dataclasses

    def apply(self, tx: Tx) -> Any: ...


def _check_id(bead_id: str) -> None:
    if not re.fullmatch(ID_PATTERN, bead_id):
        raise InvalidOperation(f"{bead_id!r} is not a bead ID (like gt-k3x9q or gt-k3x9q.2)")


def merged(metadata: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """``metadata`` with ``changes`` applied; a None value removes the key."""
    out = dict(metadata)
    for k, v in changes.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = v
    return out


def revise(bead: Bead, tx: Tx, **changes: Any) -> Bead:
    """``bead`` with ``changes`` and a fresh updated_at, validated."""
    data = bead.model_dump()
    data.update(changes, updated_at=tx.now)
    return Bead.model_validate(data)


def _validated_deps(tx: Tx, bead_id: str, deps: Iterable[Dependency]) -> list[Dependency]:
    out = []
    for d in deps:
        if d.id == bead_id:
            raise InvalidOperation(f"{bead_id} cannot depend on itself")
        tx.require(d.id)
        out.append(d)
    return out


@dataclass(frozen=True)
class Create:
    title: str
    actor: str
    seed: str  # content + creator + time + nonce, fixed when the call is made
    type: BeadType = BeadType.TASK
    description: str = ""
    acceptance: str = ""
    priority: int = 2
    labels: tuple[str, ...] = ()
    assignee: str | None = None
    owner: str | None = None
    parent: str | None = None
    deps: tuple[Dependency, ...] = ()
    metadata: Mapping[str, Any] = field(default_factory=dict)
    status: Status = Status.OPEN
    bead_id: str | None = None  # a fixed ID (for records with a natural name); else one is made

    def apply(self, tx: Tx) -> Bead:
        existing = tx.reserved()
        if self.bead_id:
            _check_id(self.bead_id)
            if self.bead_id in existing:
                raise InvalidOperation(f"{self.bead_id} already exists")
            bead_id = self.bead_id
        elif self.parent:
            tx.require(self.parent)
            bead_id = child_id(self.parent, existing)
        else:
            bead_id = new_id(tx.prefix, self.seed, existing, len(existing))
        deps = list(self.deps)
        if self.parent:
            deps.append(Dependency(id=self.parent, type=DepType.PARENT_CHILD))
        try:
            bead = Bead(
                id=bead_id, title=self.title, description=self.description,
                acceptance=self.acceptance, type=self.type, status=self.status,
                priority=self.priority, labels=sorted(set(self.labels)), assignee=self.assignee,
                owner=self.owner, dependencies=_validated_deps(tx, bead_id, deps),
                metadata=dict(self.metadata), created_by=self.actor, created_at=tx.now,
                updated_at=tx.now,
            )
        except ValueError as e:
            raise InvalidOperation(f"bad bead: {_first_error(e)}") from None
        return tx.put(bead, f'created {self.type} "{_short(self.title)}"', self.actor)


UPDATABLE = {"title", "description", "acceptance", "notes", "type", "priority", "assignee", "owner"}


@dataclass(frozen=True)
class Update:
    bead_id: str
    actor: str
    fields: Mapping[str, Any] = field(default_factory=dict)
    status: Status | None = None
    add_labels: tuple[str, ...] = ()
    remove_labels: tuple[str, ...] = ()
    metadata: Mapping[str, Any] = field(default_factory=dict)  # None deletes a key
    expect_status: frozenset[Status] | None = None  # compare-and-set on the status

    def apply(self, tx: Tx) -> Bead:
        bead = tx.require(self.bead_id)
        unknown = set(self.fields) - UPDATABLE
        if unknown:
            raise InvalidOperation(f"cannot update {', '.join(sorted(unknown))}")
        if self.expect_status is not None and bead.status not in self.expect_status:
            raise InvalidOperation(
                f"{bead.id} is {bead.status}, expected {' or '.join(sorted(self.expect_status))}")
        changes: dict[str, Any] = {k: v for k, v in self.fields.items() if getattr(bead, k) != v}
        what = sorted(changes)
        if self.add_labels or self.remove_labels:
            labels = (set(bead.labels) | set(self.add_labels)) - set(self.remove_labels)
            if sorted(labels) != bead.labels:
                changes["labels"] = sorted(labels)
                what.append("labels")
        if self.metadata:
            meta = merged(bead.metadata, self.metadata)
            if meta != bead.metadata:
                changes["metadata"] = meta
                what.append("metadata")
        line = "set " + ", ".join(what) if what else ""
        if self.status is not None and self.status != bead.status:
            check_transition(bead.id, bead.status, self.status)
            changes.update(_status_change(bead, self.status, tx.now))
            line = f"{bead.status} -> {self.status}" + (f"; {line}" if line else "")
        if not changes:
            return bead  # nothing to do: no commit line, no empty commit
        try:
            new = revise(bead, tx, **changes)
        except ValueError as e:
            raise InvalidOperation(f"{bead.id}: {_first_error(e)}") from None
        return tx.put(new, line, self.actor)


def _status_change(bead: Bead, status: Status, now: datetime) -> dict[str, Any]:
    out: dict[str, Any] = {"status": status}
    if status == Status.CLOSED:
        out["closed_at"] = now
    elif bead.status == Status.CLOSED:
        out.update(closed_at=None, close_reason=None)
    return out


@dataclass(frozen=True)
class Close:
    bead_id: str
    actor: str
    reason: str = ""

    def apply(self, tx: Tx) -> Bead:
        bead = tx.require(self.bead_id)
        if bead.status == Status.CLOSED:
            raise InvalidOperation(f"{bead.id} is already closed")
        check_transition(bead.id, bead.status, Status.CLOSED)
        new = revise(bead, tx, **_status_change(bead, Status.CLOSED, tx.now),
                     close_reason=self.reason or None)
        suffix = f": {_short(self.reason)}" if self.reason else ""
        return tx.put(new, f"{bead.status} -> closed{suffix}", self.actor)


@dataclass(frozen=True)
class Reopen:
    bead_id: str
    actor: str
    reason: str = ""

    def apply(self, tx: Tx) -> Bead:
        bead = tx.require(self.bead_id)
        if bead.status != Status.CLOSED:
            raise InvalidOperation(f"{bead.id} is {bead.status}, not closed: nothing to reopen")
        comments = list(bead.comments)
        if self.reason:
            comments.append(Comment(author=self.actor, text=f"reopened: {self.reason}", created=tx.now))
        new = revise(bead, tx, **_status_change(bead, Status.OPEN, tx.now), comments=comments)
        return tx.put(new, "closed -> open", self.actor)


@dataclass(frozen=True)
class AddComment:
    bead_id: str
    actor: str
    text: str

    def apply(self, tx: Tx) -> Bead:
        bead = tx.require(self.bead_id)
        if not self.text.strip():
            raise InvalidOperation("a comment needs some text")
        comment = Comment(author=self.actor, text=self.text, created=tx.now)
        return tx.put(revise(bead, tx, comments=[*bead.comments, comment]), "comment", self.actor)


@dataclass(frozen=True)
class AddDep:
    bead_id: str
    actor: str
    depends_on: str
    type: DepType = DepType.BLOCKS

    def apply(self, tx: Tx) -> Bead:
        bead = tx.require(self.bead_id)
        dep = _validated_deps(tx, bead.id, [Dependency(id=self.depends_on, type=self.type)])[0]
        if dep in bead.dependencies:
            return bead
        new = revise(bead, tx, dependencies=[*bead.dependencies, dep])
        cycle = tx.ordering_cycle(new) if dep.type in ORDERING else None
        if cycle:
            raise InvalidOperation(f"refused: dependency cycle {' -> '.join(cycle)}")
        return tx.put(new, f"depends on {dep.id} ({dep.type})", self.actor)


@dataclass(frozen=True)
class RemoveDep:
    bead_id: str
    actor: str
    depends_on: str
    type: DepType | None = None

    def apply(self, tx: Tx) -> Bead:
        bead = tx.require(self.bead_id)
        keep = [d for d in bead.dependencies
                if not (d.id == self.depends_on and (self.type is None or d.type == self.type))]
        if len(keep) == len(bead.dependencies):
            raise InvalidOperation(f"{bead.id} does not depend on {self.depends_on}")
        new = revise(bead, tx, dependencies=keep)
        return tx.put(new, f"no longer depends on {self.depends_on}", self.actor)


def _short(text: str, n: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def _first_error(err: ValueError) -> str:
    errors = getattr(err, "errors", None)
    if callable(errors):
        e = errors()[0]
        return f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
    return str(err)


@dataclass(frozen=True)
class Together:
    """Several operations as one: all of them land in the same commit, or none does."""

    ops: tuple[Operation, ...]
    actor: str = "gastown"

    def apply(self, tx: Tx) -> Any:
        mark = tx.checkpoint()
        try:
            result = None
            for op in self.ops:
                result = op.apply(tx)
            return result
        except Exception:
            tx.rollback(mark)
            raise
