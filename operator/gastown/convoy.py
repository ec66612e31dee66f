"""Convoys in the ledger: opened, planned into beads, tracked, and closed. Engine: pure.

A convoy is a bead of type ``convoy`` with a stable ID derived from its key (for a cluster,
``namespace/name``), so that reconciling it again finds it instead of making another. Its
plan writes every bead in one commit and marks the convoy planned, so a plan is never
written twice. The convoy tracks its beads (``tracks`` dependencies); steps of a poured
formula are children of their molecule and are tracked through it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from . import spend
from .escalation import raise_in
from .graph import topo_order
from .ledger import (
    Bead,
    BeadType,
    Comment,
    Dependency,
    DepType,
    InvalidOperation,
    Ledger,
    Status,
    query,
)
from .ledger.ids import child_id, new_id, stable_id
from .ledger.merge import Branches
from .ledger.ops import Tx, merged, revise
from .polecats import MAX_ATTEMPTS

MOUNTAIN = "mountain"
SKIPPED = "skipped"
STEP = "step"


def convoy_id(prefix: str, key: str) -> str:
    return stable_id(prefix, "convoy", key)


@dataclass(frozen=True)
class ConvoyInfo:
    key: str  # unique in the rig: "namespace/name" on a cluster, the name locally
    name: str
    rig: str
    source: str  # goal | beads | formula
    goal: str = ""
    labels: tuple[str, ...] = ()
    strategy: str = "mr"  # mr | direct
    max_parallel: int | None = None
    stall_after: int = 3600
    notify: tuple[Mapping[str, Any], ...] = ()
    home: str = ""  # the rig of the Convoy itself; other rigs hold parts of it
    rigs: tuple[str, ...] = ()  # every rig with a part, when there is more than one


@dataclass(frozen=True)
class PlannedBead:
    key: str
    title: str
    description: str = ""
    acceptance: str = ""
    _: KW_ONLY
    priority: int = 2
    needs: tuple[str, ...] = ()
    parent: str | None = None  # key of the molecule this is a step of
    type: BeadType = BeadType.TASK
    rig: str | None = None  # another rig than the convoy's


def planned_from_list(beads: Iterable[Any]) -> list[PlannedBead]:
    """From ConvoyBead models (an explicit list, or the Mayor's plan)."""
    return [PlannedBead(b.key, b.title, b.description, b.acceptance, priority=b.priority, needs=tuple(b.needs),
                        rig=getattr(b, "rig", None)) for b in beads]


def planned_from_molecule(molecule: Any, poured: bool, priority: int = 2) -> list[PlannedBead]:
    root = PlannedBead("molecule", molecule.title, molecule.description(), priority=priority,
                       type=BeadType.FEATURE)
    if not poured:
        return [root]
    return [root] + [PlannedBead(s.id, s.title, s.description, priority=priority, needs=tuple(s.needs),
                                 parent="molecule") for s in molecule.steps]


def _comment(tx: Tx, actor: str, text: str) -> Comment:
    return Comment(author=actor, text=text, created=tx.now)


@dataclass(frozen=True)
class OpenConvoy:
    info: ConvoyInfo
    actor: str

    def apply(self, tx: Tx) -> Bead:
        cid = convoy_id(tx.prefix, self.info.key)
        existing = tx.get(cid)
        if existing is not None:
            return existing
        i = self.info
        bead = Bead(id=cid, title=f"convoy {i.name}", type=BeadType.CONVOY, status=Status.IN_PROGRESS,
                    description=i.goal, labels=sorted(set(i.labels)),
                    metadata={"key": i.key, "name": i.name, "rig": i.rig, "source": i.source,
                              "strategy": i.strategy, "max_parallel": i.max_parallel,
                              "stall_after": i.stall_after, "notify": [dict(n) for n in i.notify],
                              "planned": False, "home": i.home or i.rig, "rigs": list(i.rigs) or None},
                    created_by=self.actor, created_at=tx.now, updated_at=tx.now)
        return tx.put(bead, f"convoy {i.name} opened ({i.source})", self.actor)


@dataclass(frozen=True)
class PlanConvoy:
    """Write the convoy's beads, once: a second plan for a planned convoy changes nothing."""

    key: str
    beads: tuple[PlannedBead, ...]
    actor: str
    planned_by: str = ""

    def apply(self, tx: Tx) -> Bead:
        convoy = tx.require(convoy_id(tx.prefix, self.key))
        if convoy.metadata.get("planned"):
            return convoy
        if not self.beads:
            raise InvalidOperation(f"convoy {self.key}: a plan needs at least one bead")
        by_key = {b.key: b for b in self.beads}
        order = topo_order(list(by_key), lambda k: [*by_key[k].needs, *([p] if (p := by_key[k].parent) else [])])
        ids: dict[str, str] = {}
        for key in order:
            pb = by_key[key]
            existing = tx.reserved()
            if pb.parent:
                bead_id = child_id(ids[pb.parent], existing)
            else:
                bead_id = new_id(tx.prefix, f"{convoy.id}\0{key}", existing, len(existing))
            deps = [Dependency(id=ids[n], type=DepType.BLOCKS) for n in pb.needs]
            labels = [STEP] if pb.parent else []
            if pb.parent:
                deps.append(Dependency(id=ids[pb.parent], type=DepType.PARENT_CHILD))
            bead = Bead(id=bead_id, title=pb.title, description=pb.description, acceptance=pb.acceptance,
                        priority=pb.priority, type=pb.type, labels=labels, dependencies=deps,
                        metadata={"convoy": convoy.id, "key": key},
                        created_by=self.actor, created_at=tx.now, updated_at=tx.now)
            tx.put(bead, f'created {pb.type} "{pb.title[:60]}" for convoy {convoy.metadata["name"]}', self.actor)
            ids[key] = bead_id
        tracked = [Dependency(id=ids[k], type=DepType.TRACKS) for k in order if not by_key[k].parent]
        meta = merged(convoy.metadata, {"planned": True, "keys": ids, "planned_by": self.planned_by or None,
                                        "plan_error": None})
        return tx.put(revise(convoy, tx, dependencies=[*convoy.dependencies, *tracked], metadata=meta,
                             status=Status.IN_PROGRESS),
                      f"convoy {convoy.metadata['name']} planned: {len(tracked)} beads", self.actor)


@dataclass(frozen=True)
class FailPlan:
    """No valid plan: the convoy says why, and a person is asked (once)."""

    key: str
    error: str
    actor: str

    def apply(self, tx: Tx) -> Bead:
        convoy = tx.require(convoy_id(tx.prefix, self.key))
        if convoy.metadata.get("plan_error") == self.error:
            return convoy
        esc = raise_in(tx, "P2", f"convoy {convoy.metadata['name']}: the Mayor's plan is invalid", self.actor,
                       reason=self.error, related=convoy.id, source={"rig": convoy.metadata.get("rig", ""),
                                                                     "convoy": convoy.metadata["name"]},
                       dedupe=f"plan:{convoy.id}")
        meta = merged(convoy.metadata, {"plan_error": self.error, "escalation": esc.id})
        return tx.put(revise(convoy, tx, status=Status.BLOCKED, metadata=meta),
                      f"convoy {convoy.metadata['name']}: plan invalid", self.actor)


@dataclass(frozen=True)
class SkipBead:
    bead_id: str
    reason: str
    actor: str

    def apply(self, tx: Tx) -> Bead:
        bead = tx.require(self.bead_id)
        if SKIPPED in bead.labels or bead.status == Status.CLOSED:
            return bead
        meta = merged(bead.metadata, {"skip_reason": self.reason})
        return tx.put(revise(bead, tx, status=Status.BLOCKED, labels=sorted({*bead.labels, SKIPPED}), assignee=None,
                             metadata=meta, comments=[*bead.comments, _comment(tx, self.actor, f"skipped: {self.reason}")]),
                      f"{bead.status} -> blocked: skipped ({self.reason[:80]})", self.actor)


@dataclass(frozen=True)
class CloseConvoy:
    key: str
    reason: str
    actor: str

    def apply(self, tx: Tx) -> Bead:
        convoy = tx.require(convoy_id(tx.prefix, self.key))
        if convoy.status == Status.CLOSED:
            return convoy
        meta = merged(convoy.metadata, {"stalled_since": None})
        return tx.put(revise(convoy, tx, status=Status.CLOSED, closed_at=tx.now, close_reason=self.reason,
                             metadata=meta), f"convoy {convoy.metadata['name']} done: {self.reason}", self.actor)


@dataclass(frozen=True)
class MarkStalled:
    key: str
    since: datetime
    actor: str

    def apply(self, tx: Tx) -> Bead:
        convoy = tx.require(convoy_id(tx.prefix, self.key))
        if convoy.metadata.get("stalled_since"):
            return convoy
        minutes = int((tx.now - self.since).total_seconds() // 60)
        esc = raise_in(tx, "P2", f"convoy {convoy.metadata['name']} stalled: no bead progressed for {minutes} min",
                       self.actor, reason=f"Nothing in convoy {convoy.metadata['name']} changed since "
                                          f"{self.since.isoformat()}.", related=convoy.id,
                       source={"rig": convoy.metadata.get("rig", ""), "convoy": convoy.metadata["name"]},
                       dedupe=f"stall:{convoy.id}:{self.since.isoformat()}")
        meta = merged(convoy.metadata, {"stalled_since": self.since.isoformat(), "escalation": esc.id})
        return tx.put(revise(convoy, tx, metadata=meta), f"convoy {convoy.metadata['name']} stalled", self.actor)


@dataclass(frozen=True)
class ClearStall:
    key: str
    actor: str

    def apply(self, tx: Tx) -> Bead:
        convoy = tx.require(convoy_id(tx.prefix, self.key))
        if not convoy.metadata.get("stalled_since"):
            return convoy
        return tx.put(revise(convoy, tx, metadata=merged(convoy.metadata, {"stalled_since": None})),
                      f"convoy {convoy.metadata['name']} moving again", self.actor)


@dataclass(frozen=True)
class MarkNotified:
    key: str
    actor: str

    def apply(self, tx: Tx) -> Bead:
        convoy = tx.require(convoy_id(tx.prefix, self.key))
        if convoy.metadata.get("notified"):
            return convoy
        return tx.put(revise(convoy, tx, metadata=merged(convoy.metadata, {"notified": True})),
                      f"convoy {convoy.metadata['name']}: completion announced", self.actor)


# --- tracking -------------------------------------------------------------------------------------


@dataclass
class BeadProgress:
    key: str
    id: str
    title: str
    state: str


@dataclass
class ConvoyProgress:
    convoy: Bead
    beads: list[BeadProgress] = field(default_factory=list)
    done: int = 0
    skipped: int = 0
    last_progress: datetime | None = None
    spend: dict[str, float] = field(default_factory=dict)  # what its sessions spent (spend.total)

    @property
    def total(self) -> int:
        return len(self.beads)

    @property
    def text(self) -> str:
        return f"{self.done}/{self.total}"

    @property
    def finished(self) -> bool:
        return bool(self.beads) and self.done + self.skipped == self.total

    @property
    def phase(self) -> str:
        meta = self.convoy.metadata
        if self.convoy.status == Status.CLOSED:
            return "Done"
        if meta.get("plan_error"):
            return "Failed"
        if not meta.get("planned"):
            return "Planning"
        if meta.get("stalled_since"):
            return "Stalled"
        return "Running"


def bead_state(bead: Bead, beads: Mapping[str, Bead]) -> str:
    if bead.status == Status.CLOSED:
        return "merged"
    if SKIPPED in bead.labels:
        return "skipped"
    if bead.status == Status.IN_PROGRESS:
        mr = beads.get(bead.metadata.get("mr", ""))
        return "review" if mr is not None and mr.status != Status.CLOSED else "working"
    if bead.status == Status.OPEN:
        return "waiting" if query.blockers(bead, beads) else "ready"
    return str(bead.status)


def tracked(convoy: Bead, beads: Mapping[str, Bead]) -> list[Bead]:
    return [beads[i] for i in convoy.deps(DepType.TRACKS) if i in beads]


def progress(convoy: Bead, beads: Mapping[str, Bead]) -> ConvoyProgress:
    out = ConvoyProgress(convoy)
    keys = {v: k for k, v in (convoy.metadata.get("keys") or {}).items()}
    times = [convoy.created_at]
    worked: list[Bead] = []
    for bead in tracked(convoy, beads):
        state = bead_state(bead, beads)
        out.beads.append(BeadProgress(keys.get(bead.id, bead.id), bead.id, bead.title, state))
        out.done += state == "merged"
        out.skipped += state == "skipped"
        children = query.children(beads, bead.id)
        times += [bead.updated_at, *(c.updated_at for c in children)]
        worked += [bead, *children]
    out.last_progress = max(times)
    out.spend = spend.total(worked)
    return out


def upkeep(convoy: Bead, beads: Mapping[str, Bead], now: datetime, actor: str, *, others_done: bool = True) -> list[Any]:
    """What a convoy needs now: skip what keeps failing (mountain), close it when done (and,
    for the home part of a convoy across rigs, when ``others_done``), say when it stalls.
    Returns ledger operations; applying them twice changes nothing."""
    if convoy.status == Status.CLOSED or not convoy.metadata.get("planned"):
        return []
    key = convoy.metadata["key"]
    ops: list[Any] = []
    skipped = {b.id for b in tracked(convoy, beads) if SKIPPED in b.labels}
    if MOUNTAIN in convoy.labels:
        for bead in tracked(convoy, beads):
            if bead.status == Status.CLOSED or bead.id in skipped:
                continue
            if int(bead.metadata.get("attempts", 0)) >= MAX_ATTEMPTS:
                ops.append(SkipBead(bead.id, f"failed {MAX_ATTEMPTS} sessions: "
                                             f"{bead.metadata.get('last_reason', '')}"[:300], actor))
                skipped.add(bead.id)
        changed = True
        while changed:  # beads that need a skipped bead can never start: skip them too
            changed = False
            for bead in tracked(convoy, beads):
                if bead.id in skipped or bead.status == Status.CLOSED:
                    continue
                gone = [d for d in bead.deps(DepType.BLOCKS) if d in skipped]
                if gone:
                    ops.append(SkipBead(bead.id, f"needs {', '.join(gone)}, which was skipped", actor))
                    skipped.add(bead.id)
                    changed = True
    prog = progress(convoy, beads)
    done = prog.done
    if prog.beads and done + len(skipped) == prog.total and others_done:
        reason = f"{done} of {prog.total} beads merged" + (f", {len(skipped)} skipped" if skipped else "")
        return [*ops, CloseConvoy(key, reason, actor)]
    if ops:
        return ops
    stall_after = timedelta(seconds=int(convoy.metadata.get("stall_after") or 3600))
    idle_since = prog.last_progress or convoy.created_at
    if now - idle_since >= stall_after:
        return [MarkStalled(key, idle_since, actor)]
    if convoy.metadata.get("stalled_since") and now - idle_since < stall_after:
        return [ClearStall(key, actor)]
    return []


def open_convoys(beads: Mapping[str, Bead]) -> list[Bead]:
    return sorted((b for b in beads.values() if b.type == BeadType.CONVOY and b.status != Status.CLOSED),
                  key=lambda b: (b.created_at, b.id))


def convoy_of(bead: Bead, beads: Mapping[str, Bead]) -> Bead | None:
    cid = bead.metadata.get("convoy")
    if cid is None:
        parent = next(iter(bead.deps(DepType.PARENT_CHILD)), None)
        return convoy_of(beads[parent], beads) if parent is not None and parent in beads else None
    return beads.get(cid)


def members(beads: Mapping[str, Bead], convoys: Sequence[Bead]) -> dict[str, Bead]:
    """Bead id -> its convoy, for every tracked bead of ``convoys``."""
    return {i: c for c in convoys for i in c.deps(DepType.TRACKS)}


# --- from a Convoy spec (a manifest, or `gt convoy create`) -------------------------------------


def info_from_spec(key: str, name: str, spec: Any) -> ConvoyInfo:
    source = "goal" if spec.goal else "beads" if spec.beads else "formula"
    others = sorted({b.rig for b in spec.beads or [] if b.rig and b.rig != spec.rig})
    return ConvoyInfo(key=key, name=name, rig=spec.rig, source=source, goal=spec.goal or "",
                      labels=tuple(spec.labels), strategy=spec.merge_strategy, max_parallel=spec.max_parallel,
                      stall_after=spec.stall_after_seconds, notify=tuple(n.wire() for n in spec.notify),
                      home=spec.rig, rigs=(spec.rig, *others) if others else ())


def split(info: ConvoyInfo, plan: list[PlannedBead] | None) -> dict[str, tuple[ConvoyInfo, list[PlannedBead] | None]]:
    """One part per rig: the home rig's (which owns the goal, if any), and one per other rig."""
    if plan is None or not info.rigs:
        return {info.rig: (info, plan)}
    out: dict[str, tuple[ConvoyInfo, list[PlannedBead] | None]] = {}
    for rig in info.rigs:
        part = [b for b in plan if (b.rig or info.rig) == rig]
        out[rig] = (replace(info, rig=rig), part)
    return out


def is_home(convoy: Bead, rig: str) -> bool:
    return (convoy.metadata.get("home") or convoy.metadata.get("rig")) == rig


def other_rigs(convoy: Bead) -> list[str]:
    rigs = convoy.metadata.get("rigs") or []
    home = convoy.metadata.get("home") or convoy.metadata.get("rig")
    return [r for r in rigs if r != home]


def plan_from_spec(spec: Any, sources: list[Any]) -> list[PlannedBead] | None:
    """The beads an explicit list or a formula makes; None for a goal (the Mayor plans it).
    Raises FormulaError naming the missing or unknown var."""
    from . import formulas

    if spec.beads:
        return planned_from_list(spec.beads)
    if spec.formula:
        molecule = formulas.instantiate(formulas.find(spec.formula.name, sources), spec.formula.vars)
        return planned_from_molecule(molecule, poured=spec.formula.mode == "poured")
    return None


def rig_formula_sources(ledger: Ledger, target: str, workdir: Path) -> list[Any]:
    """Where a convoy of this rig finds its formula: the rig's own formulas (from its target branch,
    copied into ``workdir``), then the operator's, then the built-ins."""
    from . import formulas

    branches = Branches(ledger.store)
    tip = branches.fetch(target).get(target)
    files = branches.files(tip, ".gastown/formulas") if tip else {}
    for name, data in files.items():
        (workdir / name).write_bytes(data)
    return formulas.default_sources(workdir if files else None)
