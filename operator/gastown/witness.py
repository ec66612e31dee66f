"""The Witness: judges every polecat that holds work, from several signals, and heals. Pure.

Signals: whether a session exists, how old its heartbeat is, how long ago it started, when it
last committed on the polecat's branch (where the driver can see the checkout), whether
`gt done` or the session's end is already in the ledger. Verdicts:

  healthy           a session runs and beats (or is still starting, within the grace period),
                    or its heartbeat is late but it committed within the threshold
  hung              a session runs but neither its heartbeat nor its last commit is newer
                    than the threshold
  stalled           no session, but the ledger says one is in progress (it vanished)
  done-not-cleaned  the ledger has the session's result, yet its process or Job still runs
  stuck             the agent asked for help (its bead is blocked on an escalation)

Recovery is restart-first: a hung session is stopped (its work pushed first where it can
be) and its end recorded, so that the scheduler starts a new session on the same branch; at
most three sessions per bead, then the bead goes back to the queue with a P1 escalation
(once; a second time round it is blocked instead).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import KW_ONLY, dataclass
from datetime import datetime
from typing import Any, Literal

from .convoy import MOUNTAIN, convoy_of
from .escalation import raise_in
from .ledger import Bead, BeadType, Status
from .ledger.ops import Tx, merged, revise
from .polecats import MAX_ATTEMPTS, EndSession, agent_id

Verdict = Literal["healthy", "hung", "stalled", "done-not-cleaned", "stuck"]


@dataclass(frozen=True)
class SessionSignal:
    """What a driver knows of a polecat's session right now."""

    name: str
    running: bool
    _: KW_ONLY
    age: float  # seconds since it started
    heartbeat_age: float | None  # seconds since the last beat, None when it never beat
    commit_age: float | None = None  # seconds since its last commit on the branch, None when unseen

    def committed_within(self, seconds: float) -> bool:
        """It committed during this session, less than ``seconds`` ago."""
        return self.commit_age is not None and self.commit_age <= min(seconds, self.age)


@dataclass(frozen=True)
class Thresholds:
    start_grace: float = 120.0  # a session may take this long to beat for the first time
    hung_after: float = 300.0  # a running session whose last beat is older than this is hung
    linger: float = 120.0  # a session may take this long to exit after its result is recorded

    @classmethod
    def from_spec(cls, spec: Any) -> Thresholds:
        """From a Rig's ``witness`` (a WitnessSpec), the same locally and on a cluster."""
        return cls(float(spec.start_grace_seconds), float(spec.hung_after_seconds), float(spec.linger_seconds))


@dataclass(frozen=True)
class Judgement:
    polecat: str
    bead: str
    verdict: Verdict
    reason: str
    _: KW_ONLY
    session: str | None = None
    due: float | None = None  # seconds until time alone may change a healthy verdict (a grace runs out)


def held(beads: Mapping[str, Bead], polecat: str) -> Bead | None:
    """The work bead a polecat holds (hooked to it, in progress by it, or blocked asking for help)."""
    for b in beads.values():
        if b.assignee == polecat and b.type not in (BeadType.AGENT, BeadType.MERGE_REQUEST, BeadType.ESCALATION) \
                and b.status in (Status.HOOKED, Status.IN_PROGRESS, Status.BLOCKED):
            return b
    return None


def judge(polecat: str, bead: Bead, session: SessionSignal | None, t: Thresholds, *,
          now: datetime | None = None) -> Judgement:
    recorded = bead.metadata.get("session")  # a session the ledger says is under way
    if bead.status == Status.BLOCKED and bead.metadata.get("escalation"):
        return Judgement(polecat, bead.id, "stuck", f"asked for help: {bead.metadata['escalation']}")
    if session is not None and session.running:
        if recorded != session.name and bead.metadata.get("ended") == session.name:
            since = (now - bead.updated_at).total_seconds() if now else 0.0
            if since > t.linger:  # within `linger` it is just finishing: pushing, writing its result
                return Judgement(polecat, bead.id, "done-not-cleaned",
                                 f"its result was recorded {since:.0f}s ago and it still runs", session=session.name)
            return Judgement(polecat, bead.id, "healthy", "finishing", session=session.name,
                             due=t.linger - since if now else None)
        beat = session.heartbeat_age
        if beat is None and session.age <= t.start_grace:
            return Judgement(polecat, bead.id, "healthy", "starting", session=session.name,
                             due=t.start_grace - session.age)
        if beat is not None and beat <= t.hung_after:
            return Judgement(polecat, bead.id, "healthy", "beating", session=session.name, due=t.hung_after - beat)
        late = f"no heartbeat {session.age:.0f}s after it started" if beat is None else f"last heartbeat {beat:.0f}s ago"
        if session.committed_within(t.hung_after):  # the heartbeat is late, the work is not
            return Judgement(polecat, bead.id, "healthy", f"committed {session.commit_age:.0f}s ago ({late})",
                             session=session.name, due=t.hung_after - (session.commit_age or 0.0))
        if session.committed_within(session.age):  # this session committed, but long ago
            late += f", last commit {session.commit_age:.0f}s ago"
        return Judgement(polecat, bead.id, "hung", late, session=session.name)
    if bead.status == Status.IN_PROGRESS and recorded:
        return Judgement(polecat, bead.id, "stalled", f"session {recorded} is gone without a result", session=recorded)
    return Judgement(polecat, bead.id, "healthy", "waiting for a session")


def patrol(beads: Mapping[str, Bead], sessions: Mapping[str, SessionSignal], t: Thresholds,
           now: datetime | None = None) -> list[Judgement]:
    """Judge every polecat that holds work (``sessions``: polecat -> its current session)."""
    out = []
    names = sorted({b.metadata["name"] for b in beads.values() if b.type == BeadType.AGENT and "name" in b.metadata})
    for polecat in names:
        bead = held(beads, polecat)
        if bead is not None:
            out.append(judge(polecat, bead, sessions.get(polecat), t, now=now))
    return out


def next_due(judgements: list[Judgement]) -> float | None:
    """Seconds until the Witness owes its next look with nothing else happening (the earliest
    start grace, heartbeat or linger deadline of a session judged healthy); None: none is owed."""
    return min((j.due for j in judgements if j.due is not None), default=None)


@dataclass(frozen=True)
class Requeue:
    """A bead that failed MAX_ATTEMPTS sessions: back to the queue with a P1 escalation, once;
    the second time it is blocked for a person to look at."""

    bead_id: str
    actor: str

    def apply(self, tx: Tx) -> Bead:
        bead = tx.require(self.bead_id)
        if bead.status not in (Status.HOOKED, Status.OPEN) or int(bead.metadata.get("attempts", 0)) < MAX_ATTEMPTS:
            return bead
        convoy = convoy_of(bead, {i: b for i in tx.ids() if (b := tx.get(i)) is not None}) \
            if bead.metadata.get("convoy") else None
        if convoy is not None and MOUNTAIN in convoy.labels:
            return bead  # a mountain convoy skips it instead
        polecat = bead.assignee
        if polecat:
            agent = tx.get(agent_id(tx.prefix, polecat))
            if agent is not None and agent.metadata.get("hooked") == bead.id:
                tx.put(revise(agent, tx, metadata=merged(agent.metadata, {"hooked": None})),
                       f"polecat {polecat} let go of {bead.id}", self.actor)
        again = int(bead.metadata.get("requeues", 0)) >= 1
        esc = raise_in(tx, "P1", f"{bead.id} failed {MAX_ATTEMPTS} sessions"
                       + (" twice over: blocked" if again else ": back in the queue"), self.actor,
                       reason=bead.metadata.get("last_reason", ""), related=bead.id,
                       source={"bead": bead.id, "polecat": polecat or ""},
                       dedupe=f"requeue:{bead.id}:{bead.metadata.get('requeues', 0)}")
        meta = merged(bead.metadata, {"attempts": 0 if not again else bead.metadata["attempts"],
                                      "requeues": int(bead.metadata.get("requeues", 0)) + 1,
                                      "escalation": esc.id})
        status = Status.BLOCKED if again else Status.OPEN
        return tx.put(revise(bead, tx, status=status, assignee=None, metadata=meta),
                      f"{bead.status} -> {status}: {MAX_ATTEMPTS} sessions failed", self.actor)


def remedies(judgements: list[Judgement], beads: Mapping[str, Bead], actor: str) -> tuple[list[Any], list[str]]:
    """Ledger operations, and the polecats whose running session must be stopped first."""
    ops: list[Any] = []
    stop: list[str] = []
    for j in judgements:
        if j.verdict == "hung":
            stop.append(j.polecat)
            ops.append(EndSession(bead_id=j.bead, polecat=j.polecat, session=j.session or "", status="hung",
                                  reason=j.reason, actor=actor))
        elif j.verdict == "stalled":
            ops.append(EndSession(bead_id=j.bead, polecat=j.polecat, session=j.session or "", status="failed",
                                  reason=j.reason, actor=actor))
        elif j.verdict == "done-not-cleaned":
            stop.append(j.polecat)
    for bead in beads.values():
        if bead.status == Status.HOOKED and int(bead.metadata.get("attempts", 0)) >= MAX_ATTEMPTS \
                and bead.type in (BeadType.TASK, BeadType.BUG, BeadType.FEATURE):
            ops.append(Requeue(bead.id, actor))
    return ops, stop
