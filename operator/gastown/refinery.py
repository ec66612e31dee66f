"""The Refinery's records: merges and conflicts of merge requests. Engine: pure operations.

(The bisecting queue itself builds on these.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .ledger import Bead, Comment, InvalidOperation, Status
from .ledger.ops import Tx, merged, revise
from .polecats import agent_of


def _source(tx: Tx, mr: Bead) -> Bead:
    source = tx.get(mr.metadata.get("source", ""))
    if source is None:
        raise InvalidOperation(f"merge request {mr.id} names no source bead")
    return source


@dataclass(frozen=True)
class RecordMerge:
    """The MR's branch is in the target: the MR and its source bead are closed."""

    mr_id: str
    commit: str
    actor: str

    def apply(self, tx: Tx) -> Bead:
        mr = tx.require(self.mr_id)
        if mr.status == Status.CLOSED:
            return mr
        source = _source(tx, mr)
        reason = f"merged into {mr.metadata.get('target', 'the target')} as {self.commit[:12]}"
        tx.put(revise(mr, tx, status=Status.CLOSED, closed_at=tx.now, close_reason=reason,
                      metadata=merged(mr.metadata, {"merged_commit": self.commit})), f"merged: {reason}", self.actor)
        if source.status == Status.CLOSED:
            return mr
        return tx.put(revise(source, tx, status=Status.CLOSED, closed_at=tx.now, close_reason=reason,
                             metadata=merged(source.metadata, {"merged_commit": self.commit})),
                      f"{source.status} -> closed: {reason}", self.actor)


@dataclass(frozen=True)
class RecordConflict:
    """The MR does not apply to the target: the work goes back to its polecat to resolve."""

    mr_id: str
    files: Sequence[str]
    actor: str

    def apply(self, tx: Tx) -> Bead:
        mr = tx.require(self.mr_id)
        if mr.status != Status.OPEN:
            return mr
        source = _source(tx, mr)
        worker = mr.metadata.get("worker")
        rounds = int(mr.metadata.get("conflict_rounds", 0)) + 1
        files = ", ".join(self.files) or "unknown files"
        target = mr.metadata.get("target", "the target")
        tx.put(revise(mr, tx, status=Status.BLOCKED, metadata=merged(mr.metadata, {
            "conflicts": list(self.files), "conflict_rounds": rounds})),
            f"conflict with {target} in {files} (round {rounds})", self.actor)
        text = (f"merge conflict with {target} in: {files}. Merge {target} into your branch, resolve, "
                f"commit and run `gt done` again.")
        if worker:
            agent = agent_of(tx, worker)
            if not agent.metadata.get("hooked"):
                tx.put(revise(agent, tx, metadata=merged(agent.metadata, {"hooked": source.id})),
                       f"polecat {worker} hooked {source.id} (conflict)", self.actor)
        return tx.put(revise(source, tx, status=Status.HOOKED if worker else Status.OPEN, assignee=worker,
                             comments=[*source.comments, Comment(author=self.actor, text=text, created=tx.now)]),
                      f"{source.status} -> {'hooked' if worker else 'open'}: merge conflict", self.actor)
