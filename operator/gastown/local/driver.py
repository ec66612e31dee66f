"""The local driver of one rig: the engine's decisions carried out with local processes.

Each step reads the ledger, then in order: plans convoys, merges what `direct` convoys
finished, keeps convoys (skip, stall, close), dispatches ready beads to polecats under the
limit, and starts the sessions that are due. Every decision is re-derived from the ledger
and the sessions on disk, so a driver that is killed and started again carries on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .. import convoy as convoys
from .. import scheduler
from ..api.common import RuntimeSpec
from ..ledger import Bead, BeadType, Ledger, LedgerError, Status
from ..ledger.gitstore import Signature
from ..ledger.merge import Branches
from ..mayor import MayorRun, PlanInvalid
from ..polecats import sessions_to_start
from ..refinery import RecordConflict, RecordMerge
from ..runtimes import resolve
from ..runtimes.local import LocalBackend, LocalSession, SessionRequest

log = logging.getLogger("gastown.local")
ACTOR = "gastown daemon"


@dataclass
class RigConfig:
    name: str
    remote: str
    max_polecats: int = 3
    runtime: RuntimeSpec = field(default_factory=lambda: RuntimeSpec(preset="script"))
    target: str = "main"
    deadline: float = 3600.0


@dataclass
class StepReport:
    planned: int = 0
    merged: int = 0
    conflicts: int = 0
    upkeep: int = 0
    assigned: int = 0
    started: int = 0
    held: str | None = None

    @property
    def acted(self) -> bool:
        return any((self.planned, self.merged, self.conflicts, self.upkeep, self.assigned, self.started))


class RigDriver:
    def __init__(self, config: RigConfig, backend: LocalBackend, ledger: Ledger,
                 on_session: Callable[[LocalSession], None] | None = None,
                 notify: Callable[[Bead, convoys.ConvoyProgress], None] | None = None):
        self.config, self.backend, self.ledger = config, backend, ledger
        self.branches = Branches(ledger.store)
        self.on_session = on_session
        self.notify = notify or (lambda convoy, prog: log.info("convoy %s done: %s", convoy.metadata["name"],
                                                               convoy.close_reason or prog.text))
        self.sessions: dict[str, LocalSession] = {
            s.request.polecat: s for s in backend.sessions() if s.request.rig == config.name and s.running()}
        self._mayors: dict[str, threading.Thread] = {}

    # --- one pass -----------------------------------------------------------------------------

    def step(self, now: datetime | None = None) -> StepReport:
        now = now or datetime.now(UTC)
        report = StepReport()
        self.sessions = {p: s for p, s in self.sessions.items() if s.running()}
        snap = self.ledger.snapshot()
        beads = snap.beads()
        report.planned = self._plan_convoys(beads)
        report.merged, report.conflicts = self._merge_direct(beads)
        if report.planned or report.merged or report.conflicts:
            beads = self.ledger.snapshot().beads()
        upkeep = [op for c in convoys.open_convoys(beads) for op in convoys.upkeep(c, beads, now, ACTOR)]
        if upkeep:
            self._apply_all(upkeep)
            report.upkeep = len(upkeep)
            beads = self.ledger.snapshot().beads()
        for convoy in convoys.open_convoys(beads) + self._closed_unannounced(beads):
            if convoy.status == Status.CLOSED and not convoy.metadata.get("notified"):
                self.notify(convoy, convoys.progress(convoy, beads))
                self.ledger.apply(convoys.MarkNotified(convoy.metadata["key"], ACTOR))
        decision = scheduler.plan(beads, snap.prefix, self.config.max_polecats, [], now=now)
        report.held = decision.held
        if decision.assign:
            self._apply_all([scheduler.Assign(b, p, self.config.name, ACTOR, self.config.runtime.preset)
                             for b, p in decision.assign])
            report.assigned = len(decision.assign)
            beads = self.ledger.snapshot().beads()
        for polecat, bead in sessions_to_start(beads, _polecats(beads), self.sessions):
            self.sessions[polecat] = self._start(polecat, bead)
            report.started += 1
        return report

    def _apply_all(self, ops: list[Any]) -> None:
        """Submit together so that group commit puts them in as few commits as it can."""
        futures = [self.ledger.submit(op) for op in ops]
        for f in futures:
            try:
                f.result()
            except LedgerError as e:
                log.warning("rig %s: %s", self.config.name, e)

    def _closed_unannounced(self, beads: Mapping[str, Bead]) -> list[Bead]:
        return [b for b in beads.values() if b.type == BeadType.CONVOY and b.status == Status.CLOSED
                and not b.metadata.get("notified")]

    # --- convoys ------------------------------------------------------------------------------

    def _plan_convoys(self, beads: Mapping[str, Bead]) -> int:
        """Convoys from a goal need the Mayor; it runs in a thread so dispatch never waits on it."""
        started = 0
        for convoy in convoys.open_convoys(beads):
            meta = convoy.metadata
            key = meta["key"]
            if meta.get("planned") or meta.get("plan_error") or meta.get("source") != "goal":
                continue
            if key in self._mayors and self._mayors[key].is_alive():
                continue
            thread = threading.Thread(target=self._run_mayor, args=(key, convoy.description), daemon=True,
                                      name=f"mayor-{key}")
            self._mayors[key] = thread
            thread.start()
            started += 1
        return started

    def _run_mayor(self, key: str, goal: str) -> None:
        rt = self.config.runtime
        workdir = self.backend.clone(self.config.name, self.config.remote)
        run = MayorRun(resolve(rt.preset), workdir, self.backend.town / "mayor" / _safe(key), rt.model,
                       tuple(rt.args))
        try:
            plan = run.plan(goal, self.config.name)
        except (PlanInvalid, OSError) as e:
            self.ledger.apply(convoys.FailPlan(key, str(e), ACTOR))
            return
        self.ledger.apply(convoys.PlanConvoy(key, tuple(convoys.planned_from_list(plan.beads)), ACTOR,
                                             planned_by="mayor"))

    # --- merges for `direct` convoys ---------------------------------------------------------------

    def _merge_direct(self, beads: Mapping[str, Bead]) -> tuple[int, int]:
        merged = conflicts = 0
        for mr in sorted((b for b in beads.values() if b.type == BeadType.MERGE_REQUEST and b.status == Status.OPEN),
                         key=lambda b: (b.priority, b.created_at)):
            source = beads.get(mr.metadata.get("source", ""))
            convoy = convoys.convoy_of(source, beads) if source else None
            if convoy is None or convoy.metadata.get("strategy") != "direct":
                continue  # the Refinery's
            result = self.branches.merge_into(mr.metadata["branch"], mr.metadata["target"],
                                              f"Merge {mr.metadata['branch']} ({source.id}: {source.title})",
                                              Signature.of(ACTOR))
            if result.clean:
                self.ledger.apply(RecordMerge(mr.id, result.commit, ACTOR))
                merged += 1
            else:
                self.ledger.apply(RecordConflict(mr.id, tuple(result.conflicts), ACTOR))
                conflicts += 1
        return merged, conflicts

    # --- sessions ------------------------------------------------------------------------------

    def _start(self, polecat: str, bead: str) -> LocalSession:
        rt = self.config.runtime
        session = self.backend.start(SessionRequest(
            rig=self.config.name, remote=self.config.remote, bead=bead, polecat=polecat, runtime=rt.preset,
            model=rt.model, args=tuple(rt.args), target=self.config.target, deadline=self.config.deadline))
        log.info("rig %s: %s started session %s on %s", self.config.name, polecat, session.name, bead)
        if self.on_session:
            self.on_session(session)
        return session

    # --- the loop ------------------------------------------------------------------------------

    def run(self, stop: threading.Event, poll: float = 0.1, idle_step: float = 2.0) -> None:
        """Step whenever the ledger moves or a session ends, and every ``idle_step`` seconds."""
        last_tip: object = None
        last_step = 0.0
        while not stop.is_set():
            try:
                tip = self.ledger.refresh()
                ended = any(not s.running() for s in self.sessions.values())
                if tip != last_tip or ended or time.monotonic() - last_step > idle_step:
                    self.step()
                    last_tip, last_step = self.ledger.tip, time.monotonic()
            except LedgerError as e:
                log.warning("rig %s: %s", self.config.name, e)
                stop.wait(1.0)
            stop.wait(poll)


def _polecats(beads: Mapping[str, Bead]) -> list[str]:
    return sorted(b.metadata["name"] for b in beads.values()
                  if b.type == BeadType.AGENT and "name" in b.metadata)


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in text)

