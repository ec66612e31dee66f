"""The Scheduler: which ready bead goes to which polecat, under the rig's limit. Engine: pure.

At no moment does a rig hold more beads in flight (hooked to a polecat, or in progress) than
its ``maxPolecats``, not counting the beads of sessions ``winding`` down (their agent has exited,
their wrapper pushes and books the result): each polecat runs at most one session, so agents
never exceed it either, and a slot frees the moment its agent exits. Priority, then age, decides who goes first. A rig-wide pause and a rate-limit
backoff live on the scheduler's own bead in the ledger, so that `gt scheduler pause` works
the same on a cluster and locally, and survives restarts.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import KW_ONLY, dataclass, field
from datetime import datetime, timedelta

from .convoy import SKIPPED, STEP, convoy_of
from .ledger import Bead, BeadType, Status, query
from .ledger.ids import stable_id
from .ledger.ops import Tx, merged, revise
from .polecats import EnsureAgent, Hook, next_name

DISPATCHABLE = frozenset({BeadType.TASK, BeadType.BUG, BeadType.FEATURE})
BACKOFF_BASE = timedelta(seconds=30)
BACKOFF_MAX = timedelta(minutes=30)


def scheduler_id(prefix: str) -> str:
    return stable_id(prefix, "role", "scheduler")


@dataclass(frozen=True, kw_only=True)
class SchedulerState:
    paused: bool = False
    paused_by: str | None = None
    backoff_until: datetime | None = None
    strikes: int = 0
    limit: int | None = None  # the rig's maxPolecats, as its controller last wrote it

    def held(self, now: datetime) -> str | None:
        """Why dispatch waits now, or None."""
        if self.paused:
            return f"paused by {self.paused_by or 'someone'}"
        if self.backoff_until and now < self.backoff_until:
            return f"rate-limit backoff until {self.backoff_until:%H:%M:%S} (strike {self.strikes})"
        return None


def state_of(beads: Mapping[str, Bead], prefix: str) -> SchedulerState:
    bead = beads.get(scheduler_id(prefix))
    if bead is None:
        return SchedulerState()
    m = bead.metadata
    until = datetime.fromisoformat(m["backoff_until"]) if m.get("backoff_until") else None
    limit = int(m["max_polecats"]) if m.get("max_polecats") is not None else None
    return SchedulerState(paused=bool(m.get("paused")), paused_by=m.get("paused_by"), backoff_until=until,
                          strikes=int(m.get("strikes", 0)), limit=limit)


def _scheduler_bead(tx: Tx, actor: str) -> Bead:
    sid = scheduler_id(tx.prefix)
    bead = tx.get(sid)
    if bead is None:
        bead = Bead(id=sid, title="scheduler", type=BeadType.AGENT, labels=["role"],
                    metadata={"role": "scheduler"}, created_by=actor, created_at=tx.now, updated_at=tx.now)
    return bead


class SharedBackoffs:
    """Town-wide: the rigs that use one API key share its rate-limit backoff.

    Each rig's own backoff lives on its scheduler bead (the ledger); a driver running several
    rigs notes each one under the key it uses, and a rig holds while any rig on its key backs
    off. ``key`` identifies a credential without holding it (runtimes.key_identity)."""

    def __init__(self) -> None:
        self._until: dict[str, tuple[datetime, str]] = {}
        self._lock = threading.Lock()

    def note(self, key: str, rig: str, until: datetime | None) -> None:
        if until is None:
            return
        with self._lock:
            current = self._until.get(key)
            if current is None or until > current[0]:
                self._until[key] = (until, rig)

    def held(self, key: str, now: datetime) -> str | None:
        """Why a rig on ``key`` waits now, or None."""
        with self._lock:
            entry = self._until.get(key)
        if entry is None or now >= entry[0]:
            return None
        return f"rate-limit backoff of its API key until {entry[0]:%H:%M:%S} (rig {entry[1]})"


@dataclass(frozen=True)
class SetPaused:
    paused: bool
    actor: str

    def apply(self, tx: Tx) -> Bead:
        bead = _scheduler_bead(tx, self.actor)
        if bool(bead.metadata.get("paused")) == self.paused and tx.get(bead.id) is not None:
            return bead
        meta = merged(bead.metadata, {"paused": self.paused or None, "paused_by": self.actor if self.paused else None})
        return tx.put(revise(bead, tx, metadata=meta), "dispatch paused" if self.paused else "dispatch resumed",
                      self.actor)


@dataclass(frozen=True)
class SetLimit:
    """Record the rig's concurrency limit where every driver and `gt sling` can read it."""

    limit: int
    actor: str

    def apply(self, tx: Tx) -> Bead:
        bead = _scheduler_bead(tx, self.actor)
        if bead.metadata.get("max_polecats") == self.limit and tx.get(bead.id) is not None:
            return bead
        return tx.put(revise(bead, tx, metadata=merged(bead.metadata, {"max_polecats": self.limit})),
                      f"limit set to {self.limit} polecats", self.actor)


@dataclass(frozen=True)
class RateLimitStrike:
    """A session ended on a rate limit: back off as long as the provider said (its Retry-After),
    or else twice as long as the last time."""

    session: str
    actor: str
    retry_after: float | None = None  # seconds

    def apply(self, tx: Tx) -> Bead:
        bead = _scheduler_bead(tx, self.actor)
        if bead.metadata.get("last_strike") == self.session:
            return bead
        strikes = int(bead.metadata.get("strikes", 0)) + 1
        wait = timedelta(seconds=self.retry_after) if self.retry_after else BACKOFF_BASE * 2 ** (strikes - 1)
        until = tx.now + min(wait, BACKOFF_MAX)
        meta = merged(bead.metadata, {"strikes": strikes, "backoff_until": until.isoformat(),
                                      "last_strike": self.session})
        return tx.put(revise(bead, tx, metadata=meta), f"rate limited: dispatch waits until {until:%H:%M:%S}",
                      self.actor)


@dataclass(frozen=True)
class ClearStrikes:
    actor: str

    def apply(self, tx: Tx) -> Bead | None:
        bead = tx.get(scheduler_id(tx.prefix))
        if bead is None or not bead.metadata.get("strikes"):
            return bead
        meta = merged(bead.metadata, {"strikes": None, "backoff_until": None})
        return tx.put(revise(bead, tx, metadata=meta), "rate limits cleared", self.actor)


@dataclass(frozen=True)
class Assign:
    """Hook ``bead`` to ``polecat``, creating the polecat's identity if it is new: one commit."""

    bead_id: str
    polecat: str
    rig: str
    actor: str
    _: KW_ONLY
    runtime: str = ""

    def apply(self, tx: Tx) -> Bead:
        EnsureAgent(self.polecat, self.rig, self.actor, self.runtime).apply(tx)
        return Hook(self.bead_id, self.polecat, self.actor).apply(tx)


@dataclass
class Dispatch:
    assign: list[tuple[str, str]] = field(default_factory=list)  # (bead, polecat)
    new_polecats: list[str] = field(default_factory=list)
    in_flight: int = 0
    queued: int = 0
    held: str | None = None


def dispatchable(bead: Bead, beads: Mapping[str, Bead]) -> bool:
    if bead.type not in DISPATCHABLE or STEP in bead.labels or SKIPPED in bead.labels:
        return False
    convoy = convoy_of(bead, beads)
    return convoy is None or (convoy.status != Status.CLOSED and bool(convoy.metadata.get("planned")))


def flying(bead: Bead) -> bool:
    """Held by a polecat that works on it now or will: not waiting in review for a merge."""
    if not bead.assignee or bead.type not in DISPATCHABLE:
        return False
    if bead.status == Status.HOOKED:
        return True
    return bead.status == Status.IN_PROGRESS and (bead.metadata.get("session") or not bead.metadata.get("mr"))


def in_flight(beads: Mapping[str, Bead]) -> list[Bead]:
    return [b for b in beads.values() if flying(b)]


def in_slots(beads: Mapping[str, Bead], winding: Collection[str] = ()) -> list[Bead]:
    """The beads in flight that hold a slot: those of polecats ``winding`` down do not (their agent
    has exited; only their wrapper's wrap-up is left, which spends no API call)."""
    return [b for b in in_flight(beads) if b.assignee not in winding]


def known_polecats(beads: Mapping[str, Bead], polecats: Iterable[str] = ()) -> list[str]:
    """Every polecat of the rig: those a driver knows and those with an identity in the ledger."""
    return sorted(set(polecats) | {b.metadata["name"] for b in beads.values()
                                   if b.type == BeadType.AGENT and "name" in b.metadata})


def free_polecat(beads: Mapping[str, Bead], retired: Iterable[str] = ()) -> str:
    """The first idle polecat, or a new name from the pool."""
    known = known_polecats(beads)
    busy = {b.assignee for b in in_flight(beads)} | set(retired)
    idle = [p for p in known if p not in busy]
    return idle[0] if idle else next_name(known)


def plan(beads: Mapping[str, Bead], prefix: str, limit: int, polecats: Iterable[str], *,
         retired: Iterable[str] = (), now: datetime | None = None, held: str | None = None,
         share: int | None = None, waiting: Callable[[Bead], bool] | None = None,
         winding: Collection[str] = ()) -> Dispatch:
    """Which ready beads to hook to which polecats now.

    ``polecats`` are the names known on the rig (resources and identities); the idle ones are
    reused first, new names are taken from the pool while fewer than ``limit`` are active.
    ``held`` is a reason from outside the rig to hold (the backoff of the API key it shares, a
    budget); ``share`` the most beads to hook now (what the town's shared limits leave this rig);
    ``waiting`` says which ready beads wait nonetheless (their convoy's budget is exhausted);
    ``winding`` the polecats whose agent has exited while their session wraps up: their beads hold
    no slot, and they get no new bead until they are done (a new name is taken instead).
    """
    out = Dispatch()
    under_way = in_flight(beads)
    out.in_flight = len(under_way)
    ready = [b for b in query.ready(beads) if dispatchable(b, beads)]
    out.queued = len(ready)
    state = state_of(beads, prefix)
    out.held = (state.held(now) if now else ("paused" if state.paused else None)) or held
    if out.held or not ready:
        return out
    taken = len(in_slots(beads, winding))
    slots = limit - taken if share is None else min(limit - taken, share)
    retired_set = set(retired)
    known = known_polecats(beads, polecats)
    busy = {b.assignee for b in under_way} | set(winding)
    idle = [p for p in known if p not in busy and p not in retired_set]
    active = len([p for p in known if p not in retired_set and p not in winding])
    per_convoy = Counter(b.metadata.get("convoy") for b in under_way)
    for bead in ready:
        if slots <= 0:
            break
        if waiting is not None and waiting(bead):
            continue
        convoy = convoy_of(bead, beads)
        if convoy is not None:
            cap = convoy.metadata.get("max_parallel")
            if cap and per_convoy[convoy.id] >= int(cap):
                continue
        if idle:
            polecat = idle.pop(0)
        elif active < limit:
            polecat = next_name(known + out.new_polecats)
            out.new_polecats.append(polecat)
            active += 1
        else:
            break
        out.assign.append((bead.id, polecat))
        if convoy is not None:
            per_convoy[convoy.id] += 1
        slots -= 1
    return out
