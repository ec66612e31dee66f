"""The Deacon: a slow patrol for what fell between the cracks, and its heals. No LLM.

The rig pass and the Witness keep things moving; the Deacon looks for what they cannot see
because a process died at the worst moment, or a person removed something by hand:

  done ref without MR    a session pushed its finished branch (with refs/gastown/done/<bead>, in
                         the same atomic push) but died before recording `gt done`: the Deacon
                         records it, so the work reaches the merge queue
  orphaned bead          a bead hooked to (or in progress by) a polecat that no longer exists:
                         reopened, for the scheduler to give to another
  finished convoy        every bead of a one-rig convoy is closed, yet the convoy is open: closed

Each heal is a ledger record (its commit says what and why) and, on a cluster, an Event. The
rig loop runs it every Settings.deacon_seconds; on a cluster the Deacon also deletes gastown's Jobs and pods that
have lost their owner (kube/rigloop_daemon.py).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from . import convoy as convoys
from .ledger import Bead, BeadType, Ledger, Status
from .ledger.merge import Branches
from .ledger.model import Comment
from .ledger.ops import Tx, merged, revise
from .ledger.worktree import DONE_REFS
from .names import branch_for
from .polecats import Done
from .settings import Settings

log = logging.getLogger("gastown.deacon")
ORPHAN_GRACE = timedelta(seconds=Settings.orphan_grace_seconds)  # the default; GT_ORPHAN_GRACE_SECONDS sets it
WORK = (BeadType.TASK, BeadType.BUG, BeadType.FEATURE)


@dataclass(frozen=True)
class Heal:
    kind: str  # RecordedDone | Reopened | ConvoyClosed | OrphanDeleted
    subject: str
    message: str


@dataclass(frozen=True)
class Reopen:
    """A bead held by a polecat that no longer exists goes back to the queue."""

    bead_id: str
    reason: str
    actor: str

    def apply(self, tx: Tx) -> Bead:
        bead = tx.require(self.bead_id)
        if bead.status not in (Status.HOOKED, Status.IN_PROGRESS):
            return bead
        comments = [*bead.comments, Comment(author=self.actor, text=self.reason, created=tx.now)]
        meta = merged(bead.metadata, {"session": None, "attempts": 0})
        return tx.put(revise(bead, tx, status=Status.OPEN, assignee=None, comments=comments, metadata=meta),
                      f"{bead.status} -> open: {self.reason}", self.actor)


def orphaned(beads: Mapping[str, Bead], polecats: Iterable[str], now: datetime,
             grace: timedelta = ORPHAN_GRACE) -> list[Bead]:
    """Work beads held for longer than ``grace`` by a polecat that is not among ``polecats``.
    The grace covers a polecat created a moment ago that the driver's view does not show yet. Pure."""
    known = set(polecats)
    return [b for b in beads.values() if b.type in WORK and b.assignee and b.assignee not in known
            and b.status in (Status.HOOKED, Status.IN_PROGRESS) and now - b.updated_at > grace]


def finished_convoys(beads: Mapping[str, Bead]) -> list[Bead]:
    """Open one-rig convoys whose every bead is closed. Pure."""
    out = []
    for c in convoys.open_convoys(beads):
        tracked = convoys.tracked(c, beads)
        if tracked and not convoys.other_rigs(c) and all(b.status == Status.CLOSED for b in tracked):
            out.append(c)
    return out


class Deacon:
    def __init__(self, ledger: Ledger, actor: str = "deacon", grace: timedelta = ORPHAN_GRACE):
        self.ledger, self.actor, self.grace = ledger, actor, grace
        self.branches = Branches(ledger.store)

    def patrol(self, polecats: Iterable[str] | None, busy: Iterable[str], target: str,
               *, now: datetime | None = None, fresh: bool = True) -> list[Heal]:
        """One round. ``polecats``: the polecats that exist (None: every agent of the ledger, as
        locally); ``busy``: those with a session running, whose beads are theirs to finish;
        ``fresh=False`` when the caller has just refreshed the ledger itself."""
        beads = self.ledger.beads(refresh=fresh)
        names = set(polecats) if polecats is not None else {
            b.metadata["name"] for b in beads.values() if b.type == BeadType.AGENT and "name" in b.metadata
            and b.metadata.get("state") != "retired"}
        running = set(busy)
        heals = self._done_refs(beads, running, target)
        for bead in orphaned(beads, names, now or datetime.now(UTC), self.grace):
            why = f"reopened by the Deacon: polecat {bead.assignee} no longer exists"
            self.ledger.apply(Reopen(bead.id, why, self.actor))
            heals.append(Heal("Reopened", bead.id, why))
        for c in finished_convoys(self.ledger.beads(refresh=False)):  # as of the reopens just written
            why = "every bead is closed (closed by the Deacon)"
            self.ledger.apply(convoys.CloseConvoy(c.metadata["key"], why, self.actor))
            heals.append(Heal("ConvoyClosed", c.id, f"convoy {c.metadata['name']}: {why}"))
        for heal in heals:
            log.warning("deacon: %s %s: %s", heal.kind, heal.subject, heal.message)
        return heals

    def _done_refs(self, beads: Mapping[str, Bead], running: set[str], target: str) -> list[Heal]:
        heals, stale = [], []
        for ref, commit in self.branches.remote_refs(DONE_REFS).items():
            bead = beads.get(ref.rsplit("/", 1)[-1])
            mr = beads.get(bead.metadata.get("mr", "")) if bead else None
            if bead is None or bead.status == Status.CLOSED or (mr is not None and mr.metadata.get("commit") == commit):
                stale.append(ref)  # recorded (or moot): only the ref was left behind
                continue
            polecat = bead.assignee
            if not polecat or polecat in running or bead.status not in (Status.HOOKED, Status.IN_PROGRESS):
                continue  # its session may still record it
            session = bead.metadata.get("session") or "unknown"
            self.ledger.apply(Done(bead_id=bead.id, polecat=polecat, session=session, status="completed",
                                   branch=branch_for(polecat, bead.id), target=target, commit=commit,
                                   reason="recorded by the Deacon: the session pushed its work but did not record it",
                                   actor=self.actor))
            stale.append(ref)
            heals.append(Heal("RecordedDone", bead.id, f"{polecat}'s finished branch at {commit[:12]} had no "
                                                         "merge request: recorded"))
        self.branches.delete_refs(*stale)
        return heals

