"""Which merge requests wait, in what order, and when they form a batch. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from ..api.mergequeue import MergeQueueSpec
from ..convoy import convoy_of
from ..ledger import Bead, BeadType, Status


@dataclass(frozen=True)
class QueueSettings:
    target: str = "main"
    batch_size: int = 8
    fill_window: float = 30.0  # seconds a batch waits to fill
    parallel: int = 4  # verification runs at once
    retry_flaky: bool = False

    @classmethod
    def from_spec(cls, spec: MergeQueueSpec | None, default_target: str) -> QueueSettings:
        if spec is None:
            return cls(target=default_target)
        return cls(spec.target_branch or default_target, spec.batch_size, float(spec.fill_window_seconds),
                   spec.parallel_verifications, spec.retry_flaky)


def is_direct(mr: Bead, beads: Mapping[str, Bead]) -> bool:
    """Whether the MR belongs to a `direct` convoy (merged by the rig pass, not batched)."""
    source = beads.get(mr.metadata.get("source", ""))
    convoy = convoy_of(source, beads) if source else None
    return convoy is not None and convoy.metadata.get("strategy") == "direct"


def score(mr: Bead, beads: Mapping[str, Bead]) -> tuple:
    """Lower goes first: priority, then the older convoy, the older MR, the fewer retries."""
    source = beads.get(mr.metadata.get("source", ""))
    convoy = convoy_of(source, beads) if source else None
    retries = int(mr.metadata.get("rejections", 0)) + int(mr.metadata.get("conflict_rounds", 0))
    return (mr.priority, (convoy or mr).created_at, mr.created_at, retries, mr.id)


def merge_requests(beads: Mapping[str, Bead], target: str) -> list[Bead]:
    """Every MR into ``target`` that the queue handles (any status)."""
    return [b for b in beads.values() if b.type == BeadType.MERGE_REQUEST and b.metadata.get("target") == target
            and not is_direct(b, beads)]


def queued(beads: Mapping[str, Bead], target: str) -> list[Bead]:
    """MRs waiting for a batch, in queue order."""
    return sorted((b for b in merge_requests(beads, target) if b.status == Status.OPEN),
                  key=lambda b: score(b, beads))


def active_batch(beads: Mapping[str, Bead], target: str) -> Bead | None:
    found = [b for b in beads.values() if b.type == BeadType.MERGE_BATCH and b.status != Status.CLOSED
             and b.metadata.get("target") == target]
    return min(found, key=lambda b: b.created_at, default=None)


def due(queue: list[Bead], settings: QueueSettings, now: datetime) -> list[Bead]:
    """The next batch when it is time: a full one, or whatever waited out the fill window."""
    if not queue:
        return []
    if len(queue) >= settings.batch_size:
        return queue[:settings.batch_size]
    oldest = min(b.updated_at for b in queue)
    return queue if (now - oldest).total_seconds() >= settings.fill_window else []


def red_target_waits(beads: Mapping[str, Bead], target: str, tip: str, batch: list[Bead]) -> bool:
    """The target was found red at ``tip`` with exactly these MRs: trying again would only fail
    again. A new MR, a new commit of one, or a new target tip is worth a new batch."""
    commits = {b.id: b.metadata.get("commit") for b in batch}
    return any(b.type == BeadType.MERGE_BATCH and b.metadata.get("phase") == "target-red"
               and b.metadata.get("target") == target and b.metadata.get("base") == tip
               and b.metadata.get("commits") == commits for b in beads.values())


def counters(beads: Mapping[str, Bead], target: str) -> dict[str, int]:
    mrs = merge_requests(beads, target)
    batches = [b for b in beads.values() if b.type == BeadType.MERGE_BATCH and b.metadata.get("target") == target]
    return {"merged": sum(1 for b in mrs if b.metadata.get("merged_commit")),
            "rejected": sum(int(b.metadata.get("rejections", 0)) for b in mrs),
            "conflicts": sum(int(b.metadata.get("conflict_rounds", 0)) for b in mrs),
            "verification_runs": sum(int(b.metadata.get("total_runs", 0)) for b in batches)}
