"""The four custom resource kinds: their models and how kubectl shows them."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from .common import GROUP, VERSION
from .convoy import ConvoySpec, ConvoyStatus
from .mergequeue import MergeQueueSpec, MergeQueueStatus
from .polecat import PolecatSpec, PolecatStatus
from .rig import RigSpec, RigStatus


@dataclass(frozen=True)
class Column:
    name: str
    json_path: str
    type: str = "string"
    priority: int = 0
    description: str = ""


AGE = Column("Age", ".metadata.creationTimestamp", "date")


@dataclass(frozen=True)
class Kind:
    kind: str
    plural: str
    short_name: str  # gt-prefixed: no built-in resource has it (tests/unit/test_crds.py checks)
    spec: type[BaseModel]
    status: type[BaseModel]
    columns: tuple[Column, ...]
    description: str
    initial_phase: str

    group = GROUP
    version = VERSION

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{GROUP}"


RIG = Kind(
    "Rig", "rigs", "gtrig", RigSpec, RigStatus,
    (
        Column("Phase", ".status.phase"),
        Column("URL", ".spec.gitUrl", priority=1),
        Column("Max", ".spec.maxPolecats", "integer", description="Most polecats at once"),
        Column("Active", ".status.activePolecats", "integer"),
        Column("Ledger", ".status.ledgerHead", priority=1),
        AGE,
    ),
    "A git repository and the agents that work on it.",
    "Pending",
)
POLECAT = Kind(
    "Polecat", "polecats", "gtpc", PolecatSpec, PolecatStatus,
    (
        Column("Polecat", r".metadata.labels.gastown\.dev/polecat", description="The polecat's name in the ledger"),
        Column("Rig", ".spec.rig"),
        Column("Phase", ".status.phase"),
        Column("Bead", ".status.currentBead"),
        Column("Sessions", ".status.sessionCount", "integer", priority=1),
        Column("Restarts", ".status.restartCount", "integer"),
        Column("Heartbeat", ".status.lastHeartbeat", "date", priority=1),
        AGE,
    ),
    "A worker agent with a persistent identity; its sessions run as Jobs.",
    "Idle",
)
CONVOY = Kind(
    "Convoy", "convoys", "gtcv", ConvoySpec, ConvoyStatus,
    (
        Column("Rig", ".spec.rig"),
        Column("Phase", ".status.phase"),
        Column("Progress", ".status.progress"),
        Column("Bead", ".status.convoyBead", priority=1),
        AGE,
    ),
    "A bundle of beads delivered together: a goal, an explicit list, or a formula.",
    "Planning",
)
MERGEQUEUE = Kind(
    "MergeQueue", "mergequeues", "gtmq", MergeQueueSpec, MergeQueueStatus,
    (
        Column("Rig", ".spec.rig"),
        Column("Phase", ".status.phase"),
        Column("Queue", ".status.queueLength", "integer"),
        Column("Merged", ".status.counters.merged", "integer"),
        Column("Rejected", ".status.counters.rejected", "integer"),
        Column("Last", ".status.lastMergedCommit", priority=1),
        AGE,
    ),
    "The Refinery of a rig: a bisecting merge queue.",
    "Idle",
)

KINDS: tuple[Kind, ...] = (RIG, POLECAT, CONVOY, MERGEQUEUE)


def kind_named(kind: str) -> Kind:
    for k in KINDS:
        if k.kind == kind:
            return k
    raise KeyError(f"unknown kind {kind!r}; gastown.dev kinds are {', '.join(k.kind for k in KINDS)}")
