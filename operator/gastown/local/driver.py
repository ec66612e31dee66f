"""The local driver of one rig: the rig loop with local subprocesses and threads as its ports.

Between two ticks the driver waits for what happens on this machine, a stat and a few process polls
``check`` seconds apart, made by one thread for every rig of the process (watch.py): a ledger write
by any process here (each Ledger replaces the remote's ``pushed`` marker after a push:
ledger.pushed_marker), a session, a verifier or a Mayor ending. Any of them ends the wait at once;
the remote itself is asked with the loop's backoff (1 s while busy, up to GT_POLL_IDLE_SECONDS when
idle), which is how soon other machines' writes are seen.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import threading
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from .. import convoy as convoys
from .. import escalation, witness
from ..api.budget import RigBudget
from ..api.common import RuntimeSpec
from ..api.rig import Dogs, EscalationSpec
from ..budget import SharedLimits
from ..deacon import Heal
from ..dogs import DogReport, Kennel, stale_polecats
from ..escalation import Routes
from ..ledger import Bead, Ledger, LedgerError, Status
from ..ledger.ledger import pushed_marker, pushed_stamp
from ..ledger.worktree import commit_leftovers, current_branch, last_commit_age, push_branch
from ..mayor import MayorRun, PlanInvalid
from ..names import DAEMON_ACTOR, branch_for
from ..refinery import QueueSettings
from ..refinery.verify import Verification, VerifierThreads, alive
from ..rigloop import Cadence, Driver, DriverPort, RigLoop, Round
from ..rigpass import PassConfig, PassReport
from ..runtimes import ConfigError, resolve
from ..runtimes.local import LocalBackend, LocalSession, SessionRequest
from ..scheduler import SharedBackoffs
from ..settings import Settings
from ..telemetry import tracing
from ..trouble import Trouble
from .watch import Watch

log = logging.getLogger("gastown.local")
LOCAL = "local"  # the namespace label of a town's metrics


def town_holder(town: Path, rig: str) -> str:
    """How a town's rig signs the driver claim of its ledger: this machine, this town, this rig."""
    return f"town {socket.gethostname()}:{town} rig {rig}"


@dataclass
class RigConfig:
    name: str
    remote: str
    _: KW_ONLY
    max_polecats: int = 3
    runtime: RuntimeSpec = field(default_factory=lambda: RuntimeSpec(preset="script"))
    target: str = "main"
    deadline: float = 3600.0
    escalation: EscalationSpec = field(default_factory=EscalationSpec)
    webhook_url: str | None = None  # where webhook-routed escalations go (a local town keeps it in town.json)
    thresholds: witness.Thresholds = field(default_factory=witness.Thresholds)
    gates: list[tuple[str, list[str]]] = field(default_factory=list)  # the Refinery's, in order
    queue: QueueSettings | None = None  # default: QueueSettings(target=target)
    verify_timeout: float = 1800.0
    dogs: Dogs = field(default_factory=Dogs)
    budget: RigBudget = field(default_factory=RigBudget)

    @property
    def queue_settings(self) -> QueueSettings:
        return self.queue or QueueSettings(target=self.target)


class LocalPort:
    """Sessions are subprocesses, the Mayor a thread, announcements log lines (or a callback)."""

    shares_cache = True  # the verifiers are threads reading the stacks from the rig ledger's cache

    def __init__(self, config: RigConfig, backend: LocalBackend, ledger: Ledger, *,
                 on_session: Callable[[LocalSession], None] | None = None,
                 announce: Callable[[Bead, convoys.ConvoyProgress], None] | None = None):
        self.config, self.backend, self.ledger = config, backend, ledger
        self.on_session = on_session
        self._announce = announce
        self.sessions: dict[str, LocalSession] = {
            s.request.polecat: s for s in backend.sessions(config.name, ended=False) if s.running()}
        self._mayors: dict[str, threading.Thread] = {}
        self._verifiers = VerifierThreads(backend.town / "verify", backend.town / "verify" / "checkouts" / config.name,
                                          ledger, remote=config.remote, gates=config.gates,
                                          timeout=config.verify_timeout)
        # the rig looks at once: a session this port started has exited, or the watch saw a change
        self.wake = threading.Event()
        self._said: set[tuple[str, object]] = set()  # the escalations logged (by id and version)

    @property
    def books_in_order(self) -> bool:
        """A session's start is booked in start_session, through this pass's ledger; not while
        traces are sent (the wrapper prepares the session then, so that its spans go under its own)."""
        return not tracing.enabled()

    def polecats(self) -> tuple[list[str], set[str]]:
        return [], set()  # locally a polecat is its identity in the ledger

    def busy(self) -> set[str]:
        self.sessions = {p: s for p, s in self.sessions.items() if s.running()}
        return set(self.sessions)

    def winding(self) -> set[str]:
        """Polecats whose session's agent has exited, its wrapper wrapping up: their slots are free."""
        return {p for p, s in self.sessions.items() if s.running() and s.agent_ended()}

    def add_polecat(self, name: str) -> None:
        pass

    def start_session(self, polecat: str, bead: str, beads: Mapping[str, Bead], *, frees_at_exit: bool) -> None:
        rt = self.config.runtime
        session = self.backend.start(SessionRequest(
            rig=self.config.name, remote=self.config.remote, bead=bead, polecat=polecat, runtime=rt.preset,
            model=rt.model, args=tuple(rt.args), target=self.config.target, deadline=self.config.deadline,
            max_tokens=self.config.budget.session_tokens, max_seconds=self.config.budget.session_seconds,
            frees_at_exit=frees_at_exit),
            beads, self.ledger.submit)  # prepared and booked here, with the beads this pass read: its agent starts at once
        self.sessions[polecat] = session
        threading.Thread(target=self._watch, args=(session,), daemon=True, name=f"session-{session.name}").start()
        log.info("rig %s: %s started session %s on %s", self.config.name, polecat, session.name, bead)
        if self.on_session:
            self.on_session(session)

    def _watch(self, session: LocalSession) -> None:
        session.agent_exit()  # its slot is free: the rig looks at once, while the wrapper wraps up
        self.wake.set()
        session.wait()
        self.wake.set()

    def plan_with_mayor(self, key: str, goal: str) -> None:
        thread = self._mayors.get(key)
        if thread is not None and thread.is_alive():
            return
        thread = threading.Thread(target=self._mayor, args=(key, goal), daemon=True, name=f"mayor-{key}")
        self._mayors[key] = thread
        thread.start()

    def _mayor(self, key: str, goal: str) -> None:
        rt = self.config.runtime
        workdir = self.backend.clone(self.config.name, self.config.remote)
        safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in key)
        run = MayorRun(resolve(rt.preset), workdir, self.backend.town / "mayor" / safe, model=rt.model, args=tuple(rt.args))
        try:
            with tracing.planning(self.config.name, key, source="mayor"):
                plan = run.plan(goal, self.config.name)
        except (PlanInvalid, OSError) as e:
            self.ledger.apply(convoys.FailPlan(key, str(e), DAEMON_ACTOR))
            return
        self.ledger.apply(convoys.PlanConvoy(key, tuple(convoys.planned_from_list(plan.beads)), DAEMON_ACTOR,
                                             planned_by="mayor"))

    def session_signals(self) -> dict[str, witness.SessionSignal]:
        now = time.time()
        return {p: witness.SessionSignal(s.name, s.running(), age=now - s.started, heartbeat_age=s.heartbeat_age(),
                                         commit_age=last_commit_age(self.backend.checkout(self.config.name, p), now))
                for p, s in self.sessions.items()}

    def salvage(self, polecat: str, bead: str) -> None:
        workdir = self.backend.checkout(self.config.name, polecat)
        branch = branch_for(polecat, bead)
        try:
            if (workdir / ".git").exists() and current_branch(workdir) == branch:
                commit_leftovers(workdir, f"{bead}: work in progress, saved by the Witness", f"polecat {polecat}")
                push_branch(workdir, branch)
        except LedgerError as e:
            log.warning("rig %s: could not save %s's work on %s: %s", self.config.name, polecat, bead, e)

    def stop_session(self, polecat: str) -> None:
        session = self.sessions.pop(polecat, None)
        if session is not None:
            self.backend.stop(session)

    def webhook_url(self) -> str | None:
        return self.config.webhook_url  # a local town keeps it in town.json

    def deliver(self, esc: Bead, route: str) -> bool:
        # no cluster here: an Event or a condition is a log line, one for all of its routes
        if (esc.id, esc.updated_at) not in self._said:
            self._said.add((esc.id, esc.updated_at))
            log.warning("escalation %s", escalation.message(esc)["text"])
        return True

    def deacon_scope(self) -> None:
        return None  # locally a polecat is its identity in the ledger

    def after_patrol(self, heals: Sequence[Heal]) -> list[str]:
        return []  # the heals are the ledger's records and the Deacon's log lines

    def start_verification(self, verification: Verification) -> None:
        self._verifiers.start(verification)  # a thread of the daemon: no Python process to start

    def verifications(self, batch: str) -> dict[str, str | None]:
        return self._verifiers.verifications(batch)

    def under_way(self) -> frozenset[str]:
        """The verifiers and Mayors of this daemon still running (one ending wakes the rig)."""
        return self._verifiers.under_way() | {k for k, t in self._mayors.items() if t.is_alive()}

    def refinery_event(self, reason: str, message: str, warning: bool = False) -> None:
        log.log(logging.WARNING if warning else logging.INFO, "rig %s: refinery %s: %s", self.config.name, reason,
                message)

    def stale_worktrees(self, beads: Mapping[str, Bead]) -> list[str]:
        """The prune Dog's local part: worktrees of polecats long idle (kept when they hold
        anything unpushed), and the verification directories of this rig's finished batches."""
        rig, busy = self.config.name, self.busy()
        names = [n for n in stale_polecats(beads, self.backend.worktrees(rig), datetime.now(UTC),
                                           self.config.dogs.retain_days) if n not in busy]
        removed = [n for n in names if self.backend.remove_worktree(rig, n)]
        for vdir in (self.backend.town / "verify").glob("*"):
            batch = beads.get(vdir.name)  # a batch of another rig's ledger is not this Dog's to judge
            if batch is not None and batch.status == Status.CLOSED \
                    and not any(alive(int(p.read_text())) for p in vdir.glob("*/pid") if p.read_text().strip()):
                shutil.rmtree(vdir, ignore_errors=True)
                removed.append(f"verification {vdir.name}")
        return removed

    def run_dog(self, name: str) -> DogReport:
        kennel = Kennel(self.ledger, self.config.target, self.config.dogs.retain_days, DAEMON_ACTOR)
        local: dict[str, dict] = {"prune": {"worktrees": self.stale_worktrees},
                                  "gc": {"repos": [self.backend.town / "rigs" / self.config.name / "repo"]}}
        return kennel.run(name, **local.get(name, {}))

    def announce(self, convoy: Bead, progress: convoys.ConvoyProgress) -> None:
        if self._announce:
            self._announce(convoy, progress)
        log.info("convoy %s done: %s", convoy.metadata["name"], convoy.close_reason or progress.text)


class RigDriver:
    """The local ``Driver`` of the rig loop: one persistent LocalPort; a pass when the ledger moves, a
    session ends, and every ``idle_step`` seconds."""

    def __init__(self, config: RigConfig, backend: LocalBackend, ledger: Ledger, *,
                 on_session: Callable[[LocalSession], None] | None = None,
                 announce: Callable[[Bead, convoys.ConvoyProgress], None] | None = None,
                 peers: Callable[[str], Ledger | None] | None = None, backoffs: SharedBackoffs | None = None,
                 settings: Settings | None = None, shared: SharedLimits | None = None):
        self.config, self.backend, self.ledger = config, backend, ledger
        self.shared = shared  # the town's budget and shared limits
        self.settings = settings or Settings()
        self.port = LocalPort(config, backend, ledger, on_session=on_session, announce=announce)
        self.peers, self.backoffs = peers, backoffs
        self._claim: str | None = ""  # who holds the ledger, as last said ("": not said yet)
        self._marker = pushed_marker(config.remote)  # replaced by every push to it from this machine
        self._peer_markers: tuple[Path, ...] = ()  # the other rigs' of its open convoys (their parts, their budget)
        rt = config.runtime
        try:
            self.key = resolve(rt.preset).key_identity(rt.model, os.environ)
        except ConfigError:
            self.key = None

    def pass_config(self) -> PassConfig:
        c = self.config
        return PassConfig(limit=c.max_polecats, runtime=c.runtime.preset, target=c.target,
                          routes=Routes.from_spec(c.escalation), thresholds=c.thresholds, queue=c.queue_settings,
                          dogs=c.dogs, key=self.key, budget=c.budget, shared=self.shared)

    def round(self) -> Round:
        return Round(ledger=self.ledger, port=self.port, config=self.pass_config())

    def wake_key(self, round: Round | None) -> Hashable:
        return (frozenset(p for p, s in self.port.sessions.items() if s.running()),  # a session ended
                frozenset(self.port.winding()),  # an agent ended: its slot is free
                self.shared.owed(self.ledger.store.remote) if self.shared else 0,  # a shared slot waits for it
                tuple(pushed_stamp(m) for m in self._peer_markers))  # a rig of its convoys moved (a budget raised)

    def passed(self, round: Round, report: PassReport) -> bool:
        peers = {r for c in convoys.open_convoys(report.beads or {}) for r in c.metadata.get("rigs") or []
                 if r != self.config.name}
        self._peer_markers = tuple(pushed_marker(ledger.store.remote) for r in sorted(peers)
                                   if self.peers and (ledger := self.peers(r)) is not None)
        return False

    def troubles(self, troubles: Sequence[Trouble]) -> None:
        """Kept in the rig's directory of the town, for `gt status` (the log says each too)."""
        write_troubles(self.backend.town, self.config.name, troubles)

    def claim(self, holder: str | None) -> None:
        if holder != self._claim:
            if holder is None:
                log.info("rig %s: driving the ledger of %s", self.config.name, self.config.remote)
            else:
                log.warning("rig %s: not driven: the ledger of %s is driven by %s (gt status; it is taken over "
                            "when that claim goes stale)", self.config.name, self.config.remote, holder)
        self._claim = holder

    def loop(self, idle_step: float = 2.0, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> RigLoop:
        s = self.settings
        return RigLoop(rig=self.config.name, label=LOCAL, driver=self, actor=DAEMON_ACTOR,
                       holder=town_holder(self.backend.town, self.config.name),
                       cadence=Cadence.of(s, poll=s.poll_busy_seconds, period=idle_step, idle=s.poll_idle_seconds),
                       peers=self.peers, backoffs=self.backoffs, clock=clock)

    def local_key(self) -> Hashable:
        """What changes on this machine when the rig should look again: the ledger's ``pushed``
        marker (a write by any process here), the sessions, verifiers and Mayors running."""
        return pushed_stamp(self._marker), self.wake_key(None), self.port.under_way()

    def wait(self, seconds: float, stop: threading.Event, check: float) -> None:
        """Wait ``seconds`` for the next tick; what changes on this machine (``local_key``, looked at
        ``check`` seconds apart by the process's watch) ends the wait at once, and so do the exit of
        a session this driver started (its slot is free) and ``stop``."""
        with Watch.every(check).waiting(self.local_key, stop, self.port.wake):
            if self.port.wake.wait(seconds):
                self.port.wake.clear()

    def step(self, now: datetime | None = None, fresh: bool = True) -> PassReport:
        """One rig pass now (what the loop runs when the rig moves)."""
        return self.loop().step(self.round(), now, fresh)

    def run(self, stop: threading.Event, poll: float = 0.1, idle_step: float = 2.0,
            clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        """Drive the rig until ``stop`` is set, looking at this machine's changes every ``poll`` seconds."""
        self.loop(idle_step, clock).run(stop.is_set, lambda seconds: self.wait(seconds, stop, poll))




def trouble_file(town: Path, rig: str) -> Path:
    return town / "rigs" / rig / "trouble.json"


def write_troubles(town: Path, rig: str, troubles: Sequence[Trouble]) -> None:
    path = trouble_file(town, rig)
    if not troubles:
        path.unlink(missing_ok=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps([t.to_dict() for t in troubles], indent=2) + "\n")
    tmp.replace(path)


def read_troubles(town: Path, rig: str) -> list[Trouble]:
    """What the town's daemon last said keeps the rig from working (nothing when it did not say)."""
    try:
        return [Trouble.from_dict(t) for t in json.loads(trouble_file(town, rig).read_text())]
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return []


# The rig loop's Protocols, checked by mypy in `make lint`: a port that drifts fails there.
_port: type[DriverPort] = LocalPort
_driver: type[Driver] = RigDriver
