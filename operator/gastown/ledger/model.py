"""The bead record, its states and the rules between them. Pure."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from .errors import InvalidOperation

ID_PATTERN = r"^[a-z]{2,10}-[0-9a-z]{3,8}(\.[0-9]+)*$"
PREFIX_PATTERN = r"^[a-z]{2,10}$"


class Status(StrEnum):
    OPEN = "open"
    IN_PROGRESS = "in_progress"
    HOOKED = "hooked"
    BLOCKED = "blocked"
    DEFERRED = "deferred"
    CLOSED = "closed"


class BeadType(StrEnum):
    TASK = "task"
    BUG = "bug"
    FEATURE = "feature"
    EPIC = "epic"
    MERGE_REQUEST = "merge-request"
    ESCALATION = "escalation"
    CONVOY = "convoy"
    AGENT = "agent"
    MESSAGE = "message"
    MERGE_BATCH = "merge-batch"  # the Refinery's record of one batch: runs, results, bisection


class DepType(StrEnum):
    BLOCKS = "blocks"  # the named bead must close before this one is ready
    PARENT_CHILD = "parent-child"  # the named bead is this one's parent
    TRACKS = "tracks"  # this bead tracks the named one (a convoy tracks its beads)
    DISCOVERED_FROM = "discovered-from"  # found while working on the named bead


# Dependencies that order work: they must never form a cycle.
ORDERING = frozenset({DepType.BLOCKS, DepType.PARENT_CHILD})

TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.OPEN: frozenset({Status.IN_PROGRESS, Status.HOOKED, Status.BLOCKED, Status.DEFERRED,
                            Status.CLOSED}),
    Status.HOOKED: frozenset({Status.OPEN, Status.IN_PROGRESS, Status.BLOCKED, Status.DEFERRED,
                              Status.CLOSED}),
    Status.IN_PROGRESS: frozenset({Status.OPEN, Status.HOOKED, Status.BLOCKED, Status.DEFERRED,
                                   Status.CLOSED}),
    Status.BLOCKED: frozenset({Status.OPEN, Status.HOOKED, Status.IN_PROGRESS, Status.DEFERRED,
                               Status.CLOSED}),
    Status.DEFERRED: frozenset({Status.OPEN, Status.CLOSED}),
    Status.CLOSED: frozenset({Status.OPEN}),
}


def check_transition(bead_id: str, old: Status, new: Status) -> None:
    if old == new or new in TRANSITIONS[old]:
        return
    hint = " (reopen it first)" if old == Status.CLOSED else ""
    allowed = ", ".join(sorted(TRANSITIONS[old]))
    raise InvalidOperation(f"{bead_id}: cannot go from {old} to {new}{hint}; from {old} it may go to {allowed}")


def utcnow() -> datetime:
    return datetime.now(UTC)


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, use_enum_values=False)


class Dependency(Record):
    id: str = Field(pattern=ID_PATTERN)
    type: DepType = DepType.BLOCKS


class Comment(Record):
    author: str
    text: str = Field(min_length=1)
    created: datetime


class Bead(Record):
    id: str = Field(pattern=ID_PATTERN)
    title: str = Field(min_length=1, max_length=500)
    description: str = ""
    acceptance: str = ""
    notes: str = ""
    type: BeadType = BeadType.TASK
    status: Status = Status.OPEN
    priority: int = Field(default=2, ge=0, le=4)
    assignee: str | None = None
    owner: str | None = None
    labels: list[str] = Field(default_factory=list)
    comments: list[Comment] = Field(default_factory=list)
    dependencies: list[Dependency] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)
    created_by: str
    created_at: datetime
    updated_at: datetime
    closed_at: datetime | None = None
    close_reason: str | None = None

    @property
    def path(self) -> str:
        return bead_path(self.id)

    def deps(self, *types: DepType) -> list[str]:
        return [d.id for d in self.dependencies if not types or d.type in types]

    def to_json(self) -> bytes:
        data = self.model_dump(mode="json", exclude_none=True)
        return (json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Bead:
        return cls.model_validate_json(raw)


def bead_path(bead_id: str) -> str:
    """Where the bead's live record is, in the format this release writes (ledger/layout.py)."""
    from .layout import BEADS_DIR, record_path
    return record_path(BEADS_DIR, bead_id)
