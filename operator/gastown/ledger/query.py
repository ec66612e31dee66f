"""Questions asked of a set of beads: ready work, filters, counts. Pure."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping

from .model import Bead, BeadType, DepType, Status


def blockers(bead: Bead, beads: Mapping[str, Bead]) -> list[str]:
    """IDs of the beads that still block ``bead`` (a `blocks` dependency not yet closed)."""
    out = []
    for dep_id in bead.deps(DepType.BLOCKS):
        dep = beads.get(dep_id)
        if dep is None or dep.status != Status.CLOSED:
            out.append(dep_id)
    return out


def ready(beads: Mapping[str, Bead], assignee: str | None = None) -> list[Bead]:
    """Open beads with nothing open blocking them: most urgent first, then oldest."""
    out = [b for b in beads.values()
           if b.status == Status.OPEN and not blockers(b, beads)
           and (assignee is None or b.assignee == assignee)]
    return sorted(out, key=lambda b: (b.priority, b.created_at, b.id))


def select(beads: Iterable[Bead], *, status: Iterable[Status] | None = None,
           label: str | None = None, assignee: str | None = None,
           type: BeadType | None = None) -> list[Bead]:
    statuses = set(status) if status is not None else None
    out = [b for b in beads
           if (statuses is None or b.status in statuses)
           and (label is None or label in b.labels)
           and (assignee is None or b.assignee == assignee)
           and (type is None or b.type == type)]
    return sorted(out, key=lambda b: (b.priority, b.created_at, b.id))


def counts_by_status(beads: Iterable[Bead]) -> dict[str, int]:
    return dict(sorted(Counter(str(b.status) for b in beads).items()))


def children(beads: Mapping[str, Bead], parent: str) -> list[Bead]:
    return sorted((b for b in beads.values() if parent in b.deps(DepType.PARENT_CHILD)),
                  key=lambda b: b.id)
