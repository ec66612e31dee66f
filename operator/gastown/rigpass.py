"""One pass over a rig: the engine's decisions, carried out through a driver's ports.

The rig loop (rigloop.py) runs it for both drivers, the local daemon and the operator; only
the ports differ (local subprocesses and threads, or Polecat resources and Jobs). Each pass
reads the ledger and, in order: heals (the Witness), plans convoys, keeps convoys (skip, stall,
close, announce), routes escalations, dispatches ready beads under the rig's limit and starts
the sessions that are due, then merges what `direct` convoys finished and moves the merge
queue on (the Refinery): a freed slot's next agent never waits for a merge. Everything is
re-derived from the ledger and the ports each time, so a driver that is killed and started
again carries on where it was.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

from . import budget, escalation, notify, scheduler, witness
from . import convoy as convoys
from .api.budget import RigBudget
from .api.rig import Dogs
from .budget import Gate, SharedLimits
from .dogs import NAMES as DOG_NAMES
from .ledger import Bead, BeadType, GitStopped, Ledger, LedgerError, Status, query
from .ledger.gitstore import Signature
from .ledger.merge import Branches
from .polecats import sessions_to_start
from .refinery import (
    QueueSettings,
    RecordConflict,
    RecordMerge,
    Refinery,
    RefineryReport,
    VerifyPort,
)
from .refinery.queue import is_direct
from .telemetry import tracing
from .trouble import MERGE, SESSION, Troubles, merge_problem, session_problem

log = logging.getLogger("gastown.rig")


def parts_done(peers: Callable[[str], Ledger | None], key: str, rigs: list[str]) -> bool:
    """The parts of convoy ``key`` on ``rigs`` are all closed (a rig we cannot read: not yet)."""
    for rig in rigs:
        ledger = peers(rig)
        if ledger is None:
            return False
        snap = ledger.snapshot()
        part = snap.get(convoys.convoy_id(snap.prefix, key))
        if part is None or part.status != Status.CLOSED:
            return False
    return True


def parts_of(peers: Callable[[str], Ledger | None], convoy: Bead, rig: str) -> list[budget.Part]:
    """The parts of ``convoy`` on the rigs other than ``rig`` that can be read now, with their rigs' beads."""
    out: list[budget.Part] = []
    for other in convoy.metadata.get("rigs") or []:
        ledger = peers(other) if other != rig else None
        if ledger is not None:
            snap = ledger.snapshot()
            part = snap.get(convoys.convoy_id(snap.prefix, convoy.metadata["key"]))
            if part is not None:
                out.append((part, snap.beads()))
    return out


class Port(VerifyPort, Protocol):
    """What a driver provides to the rig pass (and, as a VerifyPort, to the Refinery)."""

    @property
    def books_in_order(self) -> bool:
        """It books each session's start in start_session, through the pass's own ledger (the local
        daemon prepares its sessions itself): a bead's hook then goes out with its session's start,
        in one commit the agent waits for. False (the cluster's sessions book from their pods): a
        hook lands before its session is started."""

    def polecats(self) -> tuple[list[str], set[str]]:
        """The rig's polecats as the driver knows them, and which of them are retired."""

    def busy(self) -> set[str]:
        """Polecats with a session running now."""

    def add_polecat(self, name: str) -> None:
        """A new polecat joins (a resource on a cluster; nothing to do locally)."""

    def start_session(self, polecat: str, bead: str, beads: Mapping[str, Bead], *, frees_at_exit: bool) -> None:
        """Start a session of ``polecat`` on ``bead``; ``frees_at_exit``: its slot goes to the next
        agent the moment its agent exits (a Winding port, a rig bounded by no budget), so its
        wrap-up may yield the CPU to that agent's start."""

    def plan_with_mayor(self, key: str, goal: str) -> None:
        """Have the Mayor plan a goal convoy (asynchronously); called again until it is planned."""

    def announce(self, convoy: Bead, progress: convoys.ConvoyProgress) -> None: ...

    def session_signals(self) -> Mapping[str, witness.SessionSignal] | None:
        """Polecat -> its current session, for the Witness; None when the driver cannot tell."""

    def salvage(self, polecat: str, bead: str) -> None:
        """Push whatever the polecat's session left unpushed, where it can still be reached."""

    def stop_session(self, polecat: str) -> None: ...

    def webhook_url(self) -> str | None:
        """Where webhook-routed escalations go; None while the rig has none."""

    def deliver(self, esc: Bead, route: str) -> bool:
        """Send an escalation along ``route`` (any but the webhook, which the pass sends itself);
        False when the route is not set up here yet (it stays pending, and goes out once it is).
        Raising leaves it for the next pass."""


@runtime_checkable
class Winding(Protocol):
    """A port's optional capability: it knows when a session's agent exits before its wrapper does
    (the local one). Those sessions hold no slot while they wrap up; a port without it (the
    cluster's Jobs) counts a session until its end is recorded."""

    def winding(self) -> set[str]:
        """Polecats whose session's agent has exited, their session still wrapping up."""


def winding(port: Port) -> set[str]:
    return port.winding() if isinstance(port, Winding) else set()


@dataclass(frozen=True, kw_only=True)
class PassConfig:
    """What a pass (and the rig loop around it) takes from the rig's spec; the same for both drivers."""

    limit: int
    runtime: str = ""
    target: str = "main"
    routes: escalation.Routes = field(default_factory=escalation.Routes)
    thresholds: witness.Thresholds = field(default_factory=witness.Thresholds)
    queue: QueueSettings = field(default_factory=QueueSettings)
    dogs: Dogs = field(default_factory=Dogs)
    dog_names: tuple[str, ...] = DOG_NAMES  # the Dogs the rig loop walks (on a cluster the others are CronJobs)
    key: str | None = None  # the identity of the rig's API key, whose rate-limit backoff rigs share
    budget: RigBudget = field(default_factory=RigBudget)  # the rig's budgets (budget.py)
    shared: SharedLimits | None = None  # the town's budget and shared limits: one for all the driver's rigs


@dataclass
class PassReport:
    mayors: int = 0
    merged: int = 0
    conflicts: int = 0
    upkeep: int = 0
    assigned: int = 0
    started: int = 0
    escalations: int = 0
    healed: int = 0
    held: str | None = None
    beads: Mapping[str, Bead] | None = None
    refinery: RefineryReport | None = None
    budget: Gate | None = None  # spend against the budgets, as the pass judged it
    due: float | None = None  # seconds until the Witness owes a look (a session's grace runs out): witness.next_due

    @property
    def acted(self) -> bool:
        return any((self.mayors, self.merged, self.conflicts, self.upkeep, self.assigned, self.started,
                    self.escalations, self.healed, self.refinery and self.refinery.acted))


class RigPass:
    def __init__(self, *, rig: str, ledger: Ledger, port: Port, config: PassConfig, actor: str,
                 peers: Callable[[str], Ledger | None] | None = None,
                 backoffs: scheduler.SharedBackoffs | None = None, troubles: Troubles | None = None):
        self.rig, self.ledger, self.port, self.actor = rig, ledger, port, actor
        self.key, self.backoffs = config.key, backoffs  # the rig's API key's identity, and the town's backoffs on keys
        self.limit, self.runtime, self.routes = config.limit, config.runtime, config.routes
        self.thresholds, self.queue = config.thresholds, config.queue
        self.budget, self.shared = config.budget, config.shared
        self.peers = peers or (lambda rig: None)  # the other rigs' ledgers, for the parts of this rig's convoys
        self.branches = Branches(ledger.store)
        self.troubles = troubles or Troubles(rig)  # what keeps failing waits its backoff (the rig loop's)

    def run(self, now: datetime | None = None, fresh: bool = True) -> PassReport:
        """One pass. ``fresh=False`` when the caller has just refreshed the ledger itself."""
        now = now or datetime.now(UTC)
        report = PassReport()
        snap = self.ledger.snapshot(refresh=fresh)
        beads = snap.beads()
        state = scheduler.state_of(beads, snap.prefix)
        if state.limit != self.limit:
            self.ledger.apply(scheduler.SetLimit(self.limit, self.actor))
        report.healed, report.due = self._witness(beads, now)
        if report.healed or self.ledger.tip != snap.commit:  # healed, or looked again (_witness)
            beads = self.ledger.snapshot(refresh=False).beads()
        report.mayors = self._mayors(beads)
        upkeep = [op for c in convoys.open_convoys(beads)
                  for op in convoys.upkeep(c, beads, now, self.actor, others_done=self._others_done(c))]
        if upkeep:
            self._apply_all(upkeep)
            report.upkeep = len(upkeep)
            beads = self.ledger.snapshot(refresh=False).beads()
        for convoy in beads.values():
            if convoy.type == BeadType.CONVOY and convoy.status == Status.CLOSED and not convoy.metadata.get("notified"):
                if convoys.is_home(convoy, self.rig):  # the other rigs' parts close quietly
                    self.port.announce(convoy, convoys.progress(convoy, beads))
                    tracing.convoy_root(convoy, convoy.closed_at or now)
                self.ledger.apply(convoys.MarkNotified(convoy.metadata["key"], self.actor))
        report.budget = gate = budget.gate(beads, rig=self.rig, budget=self.budget, now=now, actor=self.actor,
                                           shared=self.shared, ident=self.ledger.store.remote,
                                           parts=lambda convoy: parts_of(self.peers, convoy, self.rig))
        if gate.raises:
            self._apply_all(list(gate.raises))
            beads = self.ledger.snapshot(refresh=False).beads()
        report.escalations = self._escalations(beads, now)
        if report.escalations:
            beads = self.ledger.snapshot(refresh=False).beads()
        known, retired = self.port.polecats()
        held = self._key_backoff(beads, snap.prefix, now) or gate.held
        # agents gone, their sessions wrapping up: their slots are free, unless a budget awaits their spend
        frees_at_exit = not gate.bounded and isinstance(self.port, Winding)
        wound = winding(self.port) if frees_at_exit else set()

        groups, granted = self._share(beads, now, lambda bead: gate.waits(bead, beads), held, wound=wound)
        share = min((n for n in (granted, gate.room) if n is not None), default=None)  # the tighter of the two
        decision = scheduler.plan(beads, snap.prefix, self.limit, known, retired=retired, now=now, held=held, share=share,
                                  waiting=gate.admits(beads), winding=wound)
        if self.shared is not None:
            self.shared.took(self.ledger.store.remote, groups, granted, len(decision.assign), under_way=gate.under_way)
            gate.turns = self.shared.turns(self.ledger.store.remote, groups, now)
        report.held = decision.held
        for name in decision.new_polecats:
            self.port.add_polecat(name)
        hooks = [scheduler.Assign(b, p, self.rig, self.actor, runtime=self.runtime) for b, p in decision.assign]
        report.assigned = len(hooks)
        ahead = self._ahead(hooks)
        if ahead is not None:
            beads = ahead
        elif hooks:
            self._apply_all(hooks)
            beads = self.ledger.snapshot(refresh=False).beads()
        known, retired = self.port.polecats()
        names = set(scheduler.known_polecats(beads, known))
        # while dispatch is held (a pause, a rate-limit backoff of the rig or of its key), hooked
        # work waits too: nothing new starts (a new session would only hit the limit again), what
        # runs finishes
        starts = [] if decision.held else sessions_to_start(beads, names - retired, self.port.busy(), self.limit,
                                                            winding=wound)
        with self.ledger.held() if ahead is not None else contextlib.nullcontext():  # hooks and starts: one commit
            hooking = [self.ledger.submit(op) for op in hooks] if ahead is not None else []
            for polecat, bead in starts if self.troubles.due(SESSION, now) else []:
                if bead in beads and gate.waits(beads[bead], beads, hooked=True):
                    continue  # its convoy's budget is exhausted: it stays hooked until the budget is raised
                if polecat not in known:  # hooked by hand (`gt sling`) to a polecat the driver has not met
                    self.port.add_polecat(polecat)
                with self.troubles.trying(SESSION, now, session_problem(polecat, bead, self.queue.target), (Exception,)):
                    with tracing.span("dispatch", tracing.bead_context(bead, beads), bead=bead, polecat=polecat,
                                      rig=self.rig):
                        self.port.start_session(polecat, bead, beads, frees_at_exit=frees_at_exit)
                    report.started += 1
                if not self.troubles.due(SESSION, now):
                    break  # the others would fail alike: they wait the backoff too
        if hooking:
            self._settle(hooking)
            beads = self.ledger.snapshot(refresh=False).beads()
        # the merges last: a freed slot's next agent does not wait for a merge's push (what a merge
        # makes ready, or hands back, starts in the next pass, which the ledger's move brings at once)
        report.merged, report.conflicts = self._merge_direct(beads, now)
        report.refinery = Refinery(self.ledger, self.port, self.queue, actor=self.actor, troubles=self.troubles).step(beads, now)
        if report.merged or report.conflicts or report.refinery.acted:
            beads = self.ledger.snapshot(refresh=False).beads()
        report.beads = beads
        return report

    def _ahead(self, hooks: list[Any]) -> dict[str, Bead] | None:
        """The beads as they will read once ``hooks`` land, when the port books its sessions in
        order (``Port.books_in_order``) and the hooks apply on the tip as it stands: then they are not
        awaited. They are submitted with the sessions' starts, in one commit the agents wait for,
        instead of one push before the sessions are prepared and one after. None: the hooks are
        written and awaited first (the cluster's sessions book from their pods; a hook that would
        not apply: the pass then starts what did land)."""
        if not hooks or not self.port.books_in_order:
            return None
        try:
            return self.ledger.preview(hooks)
        except LedgerError:
            return None

    def _key_backoff(self, beads: Mapping[str, Bead], prefix: str, now: datetime) -> str | None:
        """Note this rig's backoff under its key; why the key holds it now (another rig's backoff)."""
        if self.backoffs is None or not self.key:
            return None
        self.backoffs.note(self.key, self.rig, scheduler.state_of(beads, prefix).backoff_until)
        return self.backoffs.held(self.key, now)

    def _share(self, beads: Mapping[str, Bead], now: datetime, waiting: Callable[[Bead], bool],
               held: str | None, *, wound: set[str]) -> tuple[list[tuple[str, int]], int | None]:
        """What the town's shared limits (per key, per runtime) leave this rig now: its groups, and
        how many beads it may hook (None: no shared limit)."""
        if self.shared is None:
            return [], None
        groups = self.shared.groups(self.key, self.runtime)
        queued = [] if held else [b for b in query.ready(beads) if scheduler.dispatchable(b, beads) and not waiting(b)]
        return groups, self.shared.share(self.ledger.store.remote, groups, in_flight=len(scheduler.in_slots(beads, wound)),
                                         queued=len(queued), now=now, weight=self.budget.share,
                                         waiting_since=min((b.created_at for b in queued), default=None))

    def _apply_all(self, ops: list[Any]) -> None:
        """Submitted together, so group commit puts them in as few commits as it can."""
        self._settle([self.ledger.submit(op) for op in ops])

    def _settle(self, futures: list[Future]) -> None:
        """Wait for ``futures``; one that failed is a warning (the next pass sees the ledger as it is)."""
        for f in futures:
            try:
                f.result()
            except GitStopped:
                raise  # the process is stopping: the pass ends here, and the tick with it (rigloop)
            except LedgerError as e:
                log.warning("rig %s: %s", self.rig, e)

    def _witness(self, beads: Mapping[str, Bead], now: datetime) -> tuple[int, float | None]:
        """Judge the polecats that hold work; stop what hangs or lingers, record what vanished.
        The heals, and the seconds until the next look is owed."""
        signals = self.port.session_signals()
        if signals is None:
            return 0, None
        judgements = witness.patrol(beads, signals, self.thresholds, now)
        if any(j.verdict == "stalled" for j in judgements):
            # a session records its end before it exits: one gone since ``beads`` were read may
            # have, so the ledger is asked again (the signals are older than that answer)
            beads = self.ledger.snapshot(refresh=True).beads()
            judgements = witness.patrol(beads, signals, self.thresholds, now)
        ops, stop = witness.remedies(judgements, beads, self.actor)
        for j in judgements:
            if j.verdict != "healthy":
                log.warning("rig %s: polecat %s on %s is %s: %s", self.rig, j.polecat, j.bead, j.verdict, j.reason)
            if j.verdict in ("hung", "stalled"):
                self.port.salvage(j.polecat, j.bead)  # work first: nothing unpushed is thrown away
        if ops:  # recorded before the stop, so that the session's own last words do not replace the verdict
            self._apply_all(ops)
        for polecat in stop:
            self.port.stop_session(polecat)
        return len(ops) + len(stop), witness.next_due(judgements)

    def _others_done(self, convoy: Bead) -> bool:
        others = convoys.other_rigs(convoy)
        if not others or not convoys.is_home(convoy, self.rig):
            return True
        return parts_done(self.peers, convoy.metadata["key"], others)

    def _escalations(self, beads: Mapping[str, Bead], now: datetime) -> int:
        """Bump what went unacknowledged too long, then route what is not yet routed."""
        bumps = escalation.upkeep(beads, self.routes, now, self.actor)
        if bumps:
            self._apply_all(bumps)
            beads = self.ledger.snapshot(refresh=False).beads()
        delivered = []
        for esc in escalation.open_escalations(beads.values()):
            for route in self.routes.pending(esc):
                try:
                    sent = deliver(self.port, esc, route)
                except Exception as e:  # noqa: BLE001 (a failed delivery is retried next pass)
                    log.warning("rig %s: escalation %s via %s: %s", self.rig, esc.id, route, e)
                    continue
                if sent:  # a route with nowhere to go yet (no webhook URL) stays pending until it has one
                    delivered.append(escalation.Delivered(esc.id, route, self.actor))
        if delivered:
            self._apply_all(delivered)
        return len(bumps) + len(delivered)

    def _mayors(self, beads: Mapping[str, Bead]) -> int:
        asked = 0
        for convoy in convoys.open_convoys(beads):
            meta = convoy.metadata
            if meta.get("source") == "goal" and not meta.get("planned") and not meta.get("plan_error"):
                self.port.plan_with_mayor(meta["key"], convoy.description)
                asked += 1
        return asked

    def _merge_direct(self, beads: Mapping[str, Bead], now: datetime) -> tuple[int, int]:
        merged = conflicts = 0
        open_mrs = sorted((b for b in beads.values() if b.type == BeadType.MERGE_REQUEST and b.status == Status.OPEN),
                          key=lambda b: (b.priority, b.created_at))
        for mr in open_mrs:
            if not is_direct(mr, beads):
                continue  # the Refinery's
            if not self.troubles.due(MERGE, now):
                break
            source = beads[mr.metadata["source"]]
            result = None
            with self.troubles.trying(MERGE, now, merge_problem(mr.metadata["target"]), (LedgerError,)), \
                    tracing.span("merge", tracing.bead_context(mr.id, beads), merge_requests=mr.id, bead=source.id,
                                 target=mr.metadata["target"], rig=self.rig, strategy="direct"):
                result = self.branches.merge_into(mr.metadata["branch"], mr.metadata["target"],
                                                  f"Merge {mr.metadata['branch']} ({source.id}: {source.title})",
                                                  Signature.of(self.actor))
            if result is None:
                break
            if result.commit is not None:  # clean
                self.ledger.apply(RecordMerge(mr.id, result.commit, self.actor))
                merged += 1
            else:
                self.ledger.apply(RecordConflict(mr.id, tuple(result.conflicts), self.actor))
                conflicts += 1
        return merged, conflicts


def deliver(port: Port, esc: Bead, route: str) -> bool:
    """Send an escalation along ``route``: the webhook from here, the others through the port."""
    if route != "webhook":
        return port.deliver(esc, route)
    url = port.webhook_url()
    if not url:
        return False
    body = escalation.message(esc)
    notify.webhook(url, body["text"], body["fields"])
    return True
