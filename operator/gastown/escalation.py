"""Escalations: problems for people, P0 (critical) to P3 (low). Engine: pure.

An escalation is a bead of type ``escalation``. It says what is wrong, where (rig, polecat,
bead, convoy), who raised it, who acknowledged and closed it. Routes (configuration) say
where each severity goes; an escalation nobody acknowledges is bumped one severity after a
period, at most twice. Every part of gastown that escalates (a stalled convoy, an invalid plan,
a refinery rejection, a session that keeps failing, an agent asking for help) calls ``raise_in``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from .ledger import Bead, BeadType, Dependency, DepType, InvalidOperation, Status
from .ledger.ids import new_id
from .ledger.ops import Tx, merged, revise

Severity = Literal["P0", "P1", "P2", "P3"]
SEVERITIES: tuple[Severity, ...] = ("P0", "P1", "P2", "P3")
MAX_BUMPS = 2
DEFAULT_BUMP_AFTER = timedelta(hours=4)
Route = Literal["event", "condition", "webhook", "log"]
ROUTES: tuple[Route, ...] = ("event", "condition", "webhook", "log")
UNRECORDED = "unrecorded-esc"  # the ID of an escalation that could not be recorded (``unrecorded``)


def higher(severity: str) -> str:
    i = SEVERITIES.index(severity)
    return SEVERITIES[max(i - 1, 0)]


def raise_in(tx: Tx, severity: str, title: str, actor: str, *, reason: str = "",
             related: str | None = None, source: Mapping[str, str] | None = None,
             dedupe: str | None = None) -> Bead:
    """Record an escalation in ``tx``. With ``dedupe``, an open escalation of the same key is
    returned instead of a second one, so a restarted controller never escalates twice."""
    if severity not in SEVERITIES:
        raise InvalidOperation(f"severity must be one of {', '.join(SEVERITIES)}, not {severity!r}")
    if dedupe:
        for bead_id in tx.ids():
            bead = tx.get(bead_id)
            if (bead is not None and bead.type == BeadType.ESCALATION and bead.status != Status.CLOSED
                    and bead.metadata.get("dedupe") == dedupe):
                return bead
    if related is not None:
        tx.require(related)
    esc_id = new_id(tx.prefix, f"esc\0{title}\0{related}\0{dedupe}\0{tx.now.isoformat()}", tx.reserved(),
                    len(tx.ids()))
    esc = _bead(esc_id, severity, title, actor, reason=reason, related=related, source=source, dedupe=dedupe,
                now=tx.now)
    return tx.put(esc, f"escalation {severity}: {title[:80]}", actor)


def _bead(esc_id: str, severity: str, title: str, actor: str, *, reason: str, related: str | None,
          source: Mapping[str, str] | None, dedupe: str | None, now: datetime) -> Bead:
    meta: dict[str, Any] = {"severity": severity, "raised_by": actor, "source": dict(source or {}),
                            "bumps": 0, "delivered": []}
    if dedupe:
        meta["dedupe"] = dedupe
    return Bead(id=esc_id, title=title[:500], type=BeadType.ESCALATION, description=reason,
                priority=int(severity[1]), labels=["escalation", severity], metadata=meta,
                dependencies=[Dependency(id=related, type=DepType.TRACKS)] if related else [],
                created_by=actor, created_at=now, updated_at=now)


def unrecorded(raised: Raise, now: datetime) -> Bead:
    """An escalation that cannot be written to the ledger (its remote is what is out of reach),
    to send along its routes all the same."""
    return _bead(UNRECORDED, raised.severity, raised.title, raised.actor, reason=raised.reason, related=None,
                 source=raised.source, dedupe=raised.dedupe, now=now)


def _escalation(tx: Tx, esc_id: str) -> Bead:
    bead = tx.require(esc_id)
    if bead.type != BeadType.ESCALATION:
        raise InvalidOperation(f"{esc_id} is a {bead.type}, not an escalation")
    return bead


@dataclass(frozen=True)
class Raise:
    severity: str
    title: str
    actor: str
    reason: str = ""
    related: str | None = None
    source: Mapping[str, str] = field(default_factory=dict)
    dedupe: str | None = None

    def apply(self, tx: Tx) -> Bead:
        return raise_in(tx, self.severity, self.title, self.actor, reason=self.reason, related=self.related,
                        source=self.source, dedupe=self.dedupe)


@dataclass(frozen=True)
class Ack:
    esc_id: str
    actor: str

    def apply(self, tx: Tx) -> Bead:
        esc = _escalation(tx, self.esc_id)
        if esc.metadata.get("acked_by") or esc.status == Status.CLOSED:
            return esc
        meta = merged(esc.metadata, {"acked_by": self.actor, "acked_at": tx.now.isoformat()})
        return tx.put(revise(esc, tx, status=Status.IN_PROGRESS, metadata=meta), "acknowledged", self.actor)


@dataclass(frozen=True)
class Close:
    esc_id: str
    actor: str
    reason: str = ""

    def apply(self, tx: Tx) -> Bead:
        esc = _escalation(tx, self.esc_id)
        if esc.status == Status.CLOSED:
            return esc
        meta = merged(esc.metadata, {"closed_by": self.actor})
        return tx.put(revise(esc, tx, status=Status.CLOSED, closed_at=tx.now, close_reason=self.reason or None,
                             metadata=meta), "closed" + (f": {self.reason}" if self.reason else ""), self.actor)


@dataclass(frozen=True)
class Bump:
    """One severity up, when the escalation went unacknowledged for a whole period."""

    esc_id: str
    after: timedelta
    actor: str
    at: datetime | None = None  # the decision's clock (default: the commit's)

    def apply(self, tx: Tx) -> Bead:
        esc = _escalation(tx, self.esc_id)
        now = self.at or tx.now
        if not due_for_bump(esc, now, self.after):
            return esc
        old = esc.metadata["severity"]
        new = higher(old)
        meta = merged(esc.metadata, {"severity": new, "bumps": int(esc.metadata.get("bumps", 0)) + 1,
                                     "last_bump": now.isoformat()})
        labels = sorted((set(esc.labels) - set(SEVERITIES)) | {new})
        return tx.put(revise(esc, tx, metadata=meta, labels=labels, priority=int(new[1])),
                      f"bumped {old} -> {new}: unacknowledged for {self.after}", self.actor)


@dataclass(frozen=True)
class Delivered:
    esc_id: str
    route: str
    actor: str

    def apply(self, tx: Tx) -> Bead:
        esc = _escalation(tx, self.esc_id)
        mark = f"{esc.metadata['severity']}:{self.route}"
        done = list(esc.metadata.get("delivered") or [])
        if mark in done:
            return esc
        return tx.put(revise(esc, tx, metadata=merged(esc.metadata, {"delivered": [*done, mark]})),
                      f"routed to {self.route} at {esc.metadata['severity']}", self.actor)


def due_for_bump(esc: Bead, now: datetime, after: timedelta) -> bool:
    meta = esc.metadata
    if esc.status == Status.CLOSED or meta.get("acked_by") or int(meta.get("bumps", 0)) >= MAX_BUMPS:
        return False
    if meta.get("severity") == "P0":
        return False
    since = datetime.fromisoformat(meta["last_bump"]) if meta.get("last_bump") else esc.created_at
    return now - since >= after


@dataclass(frozen=True)
class Routes:
    """Where each severity goes; a route not listed for a severity is not used for it."""

    by_severity: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: {
        "P0": ("event", "condition", "webhook", "log"), "P1": ("event", "condition", "webhook", "log"),
        "P2": ("event", "log"), "P3": ("log",)})
    bump_after: timedelta = DEFAULT_BUMP_AFTER

    @classmethod
    def from_spec(cls, spec: Any) -> Routes:
        """From a Rig's ``escalation`` (an EscalationSpec), the same locally and on a cluster."""
        return cls({k: tuple(v) for k, v in spec.routes.items()}, timedelta(seconds=spec.bump_after_seconds))

    def pending(self, esc: Bead) -> list[str]:
        """Routes this escalation has not been delivered to at its current severity."""
        if esc.status == Status.CLOSED:
            return []
        sev = esc.metadata.get("severity", "P2")
        done = set(esc.metadata.get("delivered") or [])
        return [r for r in self.by_severity.get(sev, ()) if f"{sev}:{r}" not in done]


def open_escalations(beads: Iterable[Bead]) -> list[Bead]:
    return sorted((b for b in beads if b.type == BeadType.ESCALATION and b.status != Status.CLOSED),
                  key=lambda b: (b.priority, b.created_at))


def upkeep(beads: Mapping[str, Bead], routes: Routes, now: datetime, actor: str) -> list[Bump]:
    """Bumps that are due (pure): one per period, at most twice, none once acknowledged."""
    return [Bump(b.id, routes.bump_after, actor, now) for b in open_escalations(beads.values())
            if due_for_bump(b, now, routes.bump_after)]


def message(esc: Bead) -> dict[str, Any]:
    """The Slack-compatible webhook body of an escalation."""
    meta = esc.metadata
    source = meta.get("source") or {}
    where = ", ".join(f"{k} {v}" for k, v in source.items() if v)
    fields = {"severity": meta.get("severity", ""), "escalation": esc.id, **{k: str(v) for k, v in source.items()}}
    text = f"[{meta.get('severity')}] {esc.title}" + (f" ({where})" if where else "")
    if esc.description:
        text += f"\n{esc.description[:1000]}"
    return {"text": text, "fields": fields}
