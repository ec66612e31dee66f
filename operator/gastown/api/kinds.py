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


@dataclass(frozen=True, kw_only=True)
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
    kind="Rig", plural="rigs", short_name="gtrig", spec=RigSpec, status=RigStatus,
    columns=(
        Column("Phase", ".status.phase"),
        Column("URL", ".spec.gitUrl", priority=1),
        Column("Max", ".spec.maxPolecats", "integer", description="Most polecats at once"),
        Column("Active", ".status.activePolecats", "integer"),
        Column("Ledger", ".status.ledgerHead", priority=1),
        AGE,
    ),
    description="A git repository and the agents that work on it.",
    initial_phase="Pending",
)
POLECAT = Kind(
    kind="Polecat", plural="polecats", short_name="gtpc", spec=PolecatSpec, status=PolecatStatus,
    columns=(
        Column("Polecat", r".metadata.labels.gastown\.dev/polecat", description="The polecat's name in the ledger"),
        Column("Rig", ".spec.rig"),
        Column("Phase", ".status.phase"),
        Column("Bead", ".status.currentBead"),
        Column("Sessions", ".status.sessionCount", "integer", priority=1),
        Column("Restarts", ".status.restartCount", "integer"),
        Column("Heartbeat", ".status.lastHeartbeat", "date", priority=1),
        AGE,
    ),
    description="A worker agent with a persistent identity; its sessions run as Jobs.",
    initial_phase="Idle",
)
CONVOY = Kind(
    kind="Convoy", plural="convoys", short_name="gtcv", spec=ConvoySpec, status=ConvoyStatus,
    columns=(
        Column("Rig", ".spec.rig"),
        Column("Phase", ".status.phase"),
        Column("Progress", ".status.progress"),
        Column("Bead", ".status.convoyBead", priority=1),
        AGE,
    ),
    description="A bundle of beads delivered together: a goal, an explicit list, or a formula.",
    initial_phase="Planning",
)
MERGEQUEUE = Kind(
    kind="MergeQueue", plural="mergequeues", short_name="gtmq", spec=MergeQueueSpec, status=MergeQueueStatus,
    columns=(
        Column("Rig", ".spec.rig"),
        Column("Phase", ".status.phase"),
        Column("Queue", ".status.queueLength", "integer"),
        Column("Merged", ".status.counters.merged", "integer"),
        Column("Rejected", ".status.counters.rejected", "integer"),
        Column("Batch", ".status.batch.id", priority=1, description="The batch being verified, else the last."),
        Column("Round", ".status.batch.round", "integer", priority=1, description="Its bisection's rounds so far."),
        Column("Last", ".status.lastMergedCommit", priority=1),
        AGE,
    ),
    description="The Refinery of a rig: a bisecting merge queue.",
    initial_phase="Idle",
)

KINDS: tuple[Kind, ...] = (RIG, POLECAT, CONVOY, MERGEQUEUE)


def kind_named(kind: str) -> Kind:
    for k in KINDS:
        if k.kind == kind:
            return k
    raise KeyError(f"unknown kind {kind!r}; gastown.dev kinds are {', '.join(k.kind for k in KINDS)}")
