"""Polecats in the ledger: identities, hooks, sessions and `gt done`. Engine: pure operations.

A polecat's identity is an agent bead (type ``agent``) with a stable ID derived from its
name; its sessions come and go. Every change here is one ledger operation that touches the
work bead and the agent bead together, in one commit, so they never disagree.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from .escalation import raise_in
from .ledger import Bead, BeadType, Comment, Dependency, DepType, InvalidOperation, Status
from .ledger.ids import new_id, stable_id
from .ledger.ops import Tx, merged, revise
from .names import branch_for

# Names for polecats, handed out in order per rig: the crew of the War Rig and friends.
NAME_POOL = (
    "furiosa", "nux", "capable", "toast", "cheedo", "dag", "angharad", "slit", "max", "rictus",
    "ace", "keeper", "valkyrie", "morsov", "corpus", "organic", "miss-giddy", "vuvalini",
    "scrotus", "praetorian", "jack", "dementus", "mary", "glory", "pissboy", "octoboss",
)

DoneStatus = Literal["completed", "escalated", "deferred"]
FailStatus = Literal["failed", "timeout", "rate_limited", "hung"]
MAX_ATTEMPTS = 3


def agent_id(prefix: str, name: str) -> str:
    return stable_id(prefix, "agent", name)


def dns_name(text: str, limit: int = 63) -> str:
    """``text`` as a DNS label of at most ``limit`` characters; when it had to be cut, a hash of
    the whole keeps two long names that share a beginning apart."""
    out = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    if len(out) <= limit:
        return out
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    return f"{out[:limit - len(digest) - 1].rstrip('-')}-{digest}"


def resource_name(rig: str, polecat: str) -> str:
    """The name of the Polecat resource of ``polecat`` (a ledger name) on ``rig``: the rig's name
    first, so that two rigs of a namespace never share one; a DNS label, so that it fits in a
    label value and in the names made from it (session Jobs, HOME claims)."""
    return dns_name(f"{rig}-{polecat}")


def next_name(taken: Iterable[str]) -> str:
    used = set(taken)
    for n in range(1, 1000):
        for base in NAME_POOL:
            name = base if n == 1 else f"{base}-{n}"
            if name not in used:
                return name
    raise RuntimeError("no polecat name left")


def agent_of(tx: Tx, name: str) -> Bead:
    bead = tx.get(agent_id(tx.prefix, name))
    if bead is None:
        raise InvalidOperation(f"no polecat {name} in this rig's ledger")
    return bead


def _meta(bead: Bead, **changes: Any) -> dict[str, Any]:
    return merged(bead.metadata, changes)


def _put(tx: Tx, bead: Bead, line: str, actor: str, **changes: Any) -> Bead:
    return tx.put(revise(bead, tx, **changes), line, actor)


@dataclass(frozen=True)
class EnsureAgent:
    """The polecat's identity bead exists (created once, never duplicated)."""

    name: str
    rig: str
    actor: str
    runtime: str = ""

    def apply(self, tx: Tx) -> Bead:
        bead_id = agent_id(tx.prefix, self.name)
        existing = tx.get(bead_id)
        if existing is not None:
            return existing
        bead = Bead(id=bead_id, title=f"polecat {self.name}", type=BeadType.AGENT, labels=["polecat"],
                    metadata={"name": self.name, "rig": self.rig, "state": "idle", "sessions": 0,
                              "runtime": self.runtime},
                    created_by=self.actor, created_at=tx.now, updated_at=tx.now)
        return tx.put(bead, f"polecat {self.name} joined rig {self.rig}", self.actor)


@dataclass(frozen=True)
class Hook:
    """Give an open bead to a polecat: the bead is `hooked` and the polecat holds it."""

    bead_id: str
    polecat: str
    actor: str

    def apply(self, tx: Tx) -> Bead:
        bead = tx.require(self.bead_id)
        agent = agent_of(tx, self.polecat)
        if bead.status == Status.HOOKED and bead.assignee == self.polecat:
            return bead
        if bead.status != Status.OPEN:
            raise InvalidOperation(f"{bead.id} is {bead.status}; only an open bead can be hooked")
        held = agent.metadata.get("hooked")
        if held and held != bead.id:
            raise InvalidOperation(f"polecat {self.polecat} already holds {held}")
        _put(tx, agent, f"polecat {self.polecat} hooked {bead.id}", self.actor,
             metadata=_meta(agent, hooked=bead.id))
        return _put(tx, bead, f"open -> hooked to {self.polecat}", self.actor, status=Status.HOOKED,
                    assignee=self.polecat)


@dataclass(frozen=True)
class StartSession:
    bead_id: str
    polecat: str
    session: str
    actor: str

    def apply(self, tx: Tx) -> Bead:
        bead = tx.require(self.bead_id)
        agent = agent_of(tx, self.polecat)
        if bead.assignee != self.polecat or bead.status not in (Status.HOOKED, Status.IN_PROGRESS):
            raise InvalidOperation(f"{bead.id} is not hooked to polecat {self.polecat}")
        if bead.metadata.get("session") == self.session:
            return bead  # already recorded (the wrapper was restarted)
        sessions = int(agent.metadata.get("sessions", 0)) + 1
        _put(tx, agent, f"polecat {self.polecat} started session {self.session}", self.actor,
             metadata=_meta(agent, state="working", session=self.session, hooked=bead.id,
                            sessions=sessions))
        return _put(tx, bead, f"{bead.status} -> in_progress (session {self.session})", self.actor,
                    status=Status.IN_PROGRESS,
                    metadata=_meta(bead, session=self.session, branch=branch_for(self.polecat, bead.id)))


@dataclass(frozen=True, kw_only=True)
class RecordRescue:
    """A session found commits nobody had pushed in its checkout and pushed them to ``ref`` before
    resetting it: where they are, on the bead (a comment the next prompts show, and metadata)."""

    bead_id: str
    session: str
    ref: str
    commit: str
    source: str  # the branch (or HEAD) they were on
    actor: str

    def apply(self, tx: Tx) -> Bead:
        bead = tx.require(self.bead_id)
        rescues = list(bead.metadata.get("rescues", []))
        if self.ref in rescues:
            return bead
        text = (f"session {self.session} rescued unpushed commits of {self.source} ({self.commit[:10]}) "
                f"to {self.ref} before resetting the checkout")
        return _put(tx, bead, f"rescued {self.commit[:10]} to {self.ref}", self.actor,
                    comments=[*bead.comments, _comment(self.actor, text, tx)],
                    metadata=_meta(bead, rescues=[*rescues, self.ref]))


@dataclass(frozen=True, kw_only=True)
class EndSession:
    """A session ended without `gt done`: the bead stays with the polecat for a restart."""

    bead_id: str
    polecat: str
    session: str
    status: FailStatus
    reason: str
    actor: str

    def apply(self, tx: Tx) -> Bead:
        bead = tx.require(self.bead_id)
        agent = agent_of(tx, self.polecat)
        if bead.metadata.get("ended") == self.session:
            return bead
        # a rate limit is the provider's, not the work's: it waits out the backoff, no attempt spent
        attempts = int(bead.metadata.get("attempts", 0)) + (self.status != "rate_limited")
        _put(tx, agent, f"polecat {self.polecat} is idle ({self.status})", self.actor,
             metadata=_meta(agent, state="idle", session=None, last_outcome=self.status))
        text = f"session {self.session} ended: {self.status}: {self.reason}"
        comments = [*bead.comments, _comment(self.actor, text, tx)]
        next_status = Status.HOOKED if bead.status == Status.IN_PROGRESS else bead.status
        return _put(tx, bead, f"{bead.status} -> {next_status}: session {self.status}", self.actor,
                    status=next_status, comments=comments,
                    metadata=_meta(bead, session=None, ended=self.session, ended_by=self.polecat,
                                   attempts=attempts, last_outcome=self.status, last_reason=self.reason[:500]))


@dataclass(frozen=True, kw_only=True)
class Done:
    """`gt done`: record the result of the work and set the polecat idle."""

    bead_id: str
    polecat: str
    session: str
    status: DoneStatus
    branch: str
    target: str
    commit: str
    reason: str
    actor: str

    def apply(self, tx: Tx) -> Bead | None:
        bead = tx.require(self.bead_id)
        agent = agent_of(tx, self.polecat)
        if self.session and bead.metadata.get("ended") == self.session:
            return self._existing_mr(tx, bead)  # this session's done is already recorded
        result: Bead | None = None
        meta = _meta(bead, session=None, ended=self.session or None, ended_by=self.polecat)
        if self.status == "completed":
            result = self._merge_request(tx, bead)
            meta["mr"] = result.id
            line, status = f"{bead.status} -> in_progress: merge request {result.id}", Status.IN_PROGRESS
        elif self.status == "escalated":
            result = self._escalation(tx, bead)
            meta["escalation"] = result.id
            line, status = f"{bead.status} -> blocked: escalated ({result.id})", Status.BLOCKED
        else:
            line, status = f"{bead.status} -> deferred", Status.DEFERRED
        comments = list(bead.comments)
        if self.reason:
            comments.append(_comment(self.actor, f"{self.status}: {self.reason}", tx))
        _put(tx, bead, line, self.actor, status=status, metadata=meta, comments=comments,
             assignee=bead.assignee if self.status == "completed" else None)
        _put(tx, agent, f"polecat {self.polecat} is idle ({self.status})", self.actor,
             metadata=_meta(agent, state="idle", session=None, hooked=None, last_outcome=self.status))
        return result

    def _existing_mr(self, tx: Tx, bead: Bead) -> Bead | None:
        mr = bead.metadata.get("mr")
        return tx.get(mr) if mr else None

    def _merge_request(self, tx: Tx, bead: Bead) -> Bead:
        meta = {"branch": self.branch, "target": self.target, "source": bead.id, "worker": self.polecat,
                "commit": self.commit, "session": self.session}
        current = tx.get(bead.metadata.get("mr", "")) if bead.metadata.get("mr") else None
        if current is not None and current.status != Status.CLOSED:
            # the same branch, done again (after a rejection): the MR now points at the new commit
            return _put(tx, current, f"merge request updated to {self.commit[:12]}", self.actor,
                        status=Status.OPEN, metadata=_meta(current, **meta))
        mr_id = new_id(tx.prefix, f"mr\0{bead.id}\0{self.session}\0{self.commit}", tx.reserved(), len(tx.ids()))
        mr = Bead(id=mr_id, title=f"Merge {self.branch}", type=BeadType.MERGE_REQUEST,
                  priority=bead.priority, assignee=self.polecat, labels=["mr"], metadata=meta,
                  dependencies=[Dependency(id=bead.id, type=DepType.TRACKS)],
                  created_by=self.actor, created_at=tx.now, updated_at=tx.now)
        return tx.put(mr, f'created merge-request "{mr.title}" ({self.commit[:12]})', self.actor)

    def _escalation(self, tx: Tx, bead: Bead) -> Bead:
        return raise_in(tx, "P2", f"{self.polecat} needs help with {bead.id}: {bead.title}", self.actor,
                        reason=self.reason, related=bead.id,
                        source={"polecat": self.polecat, "bead": bead.id, "session": self.session},
                        dedupe=f"done:{bead.id}:{self.session}")


def _comment(actor: str, text: str, tx: Tx) -> Comment:
    return Comment(author=actor, text=text, created=tx.now)


def hooked_to(beads: Mapping[str, Bead], polecat: str) -> Bead | None:
    """The bead a polecat holds and should be working on, if any (most urgent first)."""
    held = [b for b in beads.values()
            if b.assignee == polecat and b.status == Status.HOOKED and b.type != BeadType.AGENT]
    return min(held, key=lambda b: (b.priority, b.created_at, b.id)) if held else None


def sessions_to_start(beads: Mapping[str, Bead], polecats: Iterable[str], busy: Iterable[str],
                      limit: int | None = None, *, winding: Iterable[str] = ()) -> list[tuple[str, str]]:
    """(polecat, bead) pairs that need a session: a hooked bead, no session running, and
    fewer than MAX_ATTEMPTS sessions tried on it (the Witness decides beyond that).

    With ``limit``, no more than ``limit`` sessions run at once, counting those in ``busy``: a
    bead handed back to its polecat (a conflict, a rejection) while the rig is full waits hooked,
    most urgent first, until a session ends. Sessions ``winding`` down (their agent has exited, their
    wrapper wraps up) are busy but hold no slot."""
    running = set(busy)
    wanted = [(bead, name) for name in set(polecats) - running
              if (bead := hooked_to(beads, name)) is not None and int(bead.metadata.get("attempts", 0)) < MAX_ATTEMPTS]
    wanted.sort(key=lambda pair: (pair[0].priority, pair[0].created_at, pair[0].id))
    if limit is not None:
        wanted = wanted[:max(0, limit - len(running - set(winding)))]
    return [(name, bead.id) for bead, name in wanted]
