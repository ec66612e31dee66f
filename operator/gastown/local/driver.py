"""The local driver of one rig: the rig loop with local subprocesses and threads as its ports."""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
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
from ..ledger.worktree import commit_leftovers, current_branch, last_commit_age, push_branch
from ..mayor import MayorRun, PlanInvalid
from ..names import DAEMON_ACTOR
from ..polecats import branch_for
from ..refinery import QueueSettings
from ..refinery.verify import Verification
from ..rigloop import Cadence, Driver, DriverPort, RigLoop, Round
from ..rigpass import PassConfig, PassReport
from ..runtimes import ConfigError, resolve
from ..runtimes.local import LocalBackend, LocalSession, SessionRequest
from ..scheduler import SharedBackoffs
from ..settings import Settings
from ..trouble import Trouble

log = logging.getLogger("gastown.local")
LOCAL = "local"  # the namespace label of a town's metrics


def town_holder(town: Path, rig: str) -> str:
    """How a town's rig signs the driver claim of its ledger: this machine, this town, this rig."""
    return f"town {socket.gethostname()}:{town} rig {rig}"


@dataclass
class RigConfig:
    name: str
    remote: str
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

    def __init__(self, config: RigConfig, backend: LocalBackend, ledger: Ledger, *,
                 on_session: Callable[[LocalSession], None] | None = None,
                 announce: Callable[[Bead, convoys.ConvoyProgress], None] | None = None):
        self.config, self.backend, self.ledger = config, backend, ledger
        self.on_session = on_session
        self._announce = announce
        self.sessions: dict[str, LocalSession] = {
            s.request.polecat: s for s in backend.sessions() if s.request.rig == config.name and s.running()}
        self._mayors: dict[str, threading.Thread] = {}
        self._verifiers: dict[str, subprocess.Popen] = {}
        self._said: set[tuple[str, object]] = set()  # the escalations logged (by id and version)

    def polecats(self) -> tuple[list[str], set[str]]:
        return [], set()  # locally a polecat is its identity in the ledger

    def busy(self) -> set[str]:
        self.sessions = {p: s for p, s in self.sessions.items() if s.running()}
        return set(self.sessions)

    def add_polecat(self, name: str) -> None:
        pass

    def start_session(self, polecat: str, bead: str, beads: Mapping[str, Bead]) -> None:
        rt = self.config.runtime
        session = self.backend.start(SessionRequest(
            rig=self.config.name, remote=self.config.remote, bead=bead, polecat=polecat, runtime=rt.preset,
            model=rt.model, args=tuple(rt.args), target=self.config.target, deadline=self.config.deadline,
            max_tokens=self.config.budget.session_tokens, max_seconds=self.config.budget.session_seconds))
        self.sessions[polecat] = session
        log.info("rig %s: %s started session %s on %s", self.config.name, polecat, session.name, bead)
        if self.on_session:
            self.on_session(session)

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
        run = MayorRun(resolve(rt.preset), workdir, self.backend.town / "mayor" / safe, rt.model, tuple(rt.args))
        try:
            plan = run.plan(goal, self.config.name)
        except (PlanInvalid, OSError) as e:
            self.ledger.apply(convoys.FailPlan(key, str(e), DAEMON_ACTOR))
            return
        self.ledger.apply(convoys.PlanConvoy(key, tuple(convoys.planned_from_list(plan.beads)), DAEMON_ACTOR,
                                             planned_by="mayor"))

    def session_signals(self) -> dict[str, witness.SessionSignal]:
        now = time.time()
        return {p: witness.SessionSignal(s.name, s.running(), now - s.started, s.heartbeat_age(),
                                         last_commit_age(self.backend.checkout(self.config.name, p), now))
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
        batch = verification.batch
        vdir = self.backend.town / "verify" / batch / verification.ident
        vdir.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-m", "gastown.cli.main", "mq", "verify", "--rig", self.config.remote,
                "--batch", batch, "--run", json.dumps(verification.run.to_dict()), "--ref", verification.ref,
                "--attempt", str(verification.attempt),
                "--gates", json.dumps(self.config.gates), "--timeout", str(self.config.verify_timeout),
                "--workdir", str(vdir / "checkout"), "--cache-dir", str(self.backend.ledger_cache(self.config.name))]
        with (vdir / "verify.log").open("wb") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        (vdir / "pid").write_text(str(proc.pid))
        self._verifiers[f"{batch}/{verification.ident}"] = proc

    def verifications(self, batch: str) -> dict[str, str | None]:
        """From the town's verify directory, so a restarted daemon still sees runs under way."""
        out: dict[str, str | None] = {}
        for pid_file in (self.backend.town / "verify" / batch).glob("*/pid"):
            vdir = pid_file.parent
            proc = self._verifiers.get(f"{batch}/{vdir.name}")
            alive = proc.poll() is None if proc is not None else _alive(int(pid_file.read_text()))
            if alive:
                out[vdir.name] = None
                continue
            shutil.rmtree(vdir / "checkout", ignore_errors=True)
            code = f" with exit code {proc.returncode}" if proc is not None else ""
            out[vdir.name] = f"the verifier ended{code} without recording a result; see {vdir / 'verify.log'}"
        return out

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
                    and not any(_alive(int(p.read_text())) for p in vdir.glob("*/pid") if p.read_text().strip()):
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


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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

    def wake_key(self, round: Round) -> Hashable:
        return (frozenset(p for p, s in self.port.sessions.items() if s.running()),  # a session ended
                self.shared.owed(self.ledger.store.remote) if self.shared else 0)  # a shared slot waits for it

    def passed(self, round: Round, report: PassReport) -> bool:
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

    def loop(self, poll: float = 0.1, idle_step: float = 2.0,
             clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> RigLoop:
        return RigLoop(rig=self.config.name, label=LOCAL, driver=self, actor=DAEMON_ACTOR,
                       holder=town_holder(self.backend.town, self.config.name),
                       cadence=Cadence.of(self.settings, poll=poll, period=idle_step),
                       peers=self.peers, backoffs=self.backoffs, clock=clock)

    def step(self, now: datetime | None = None, fresh: bool = True) -> PassReport:
        """One rig pass now (what the loop runs when the rig moves)."""
        return self.loop().step(self.round(), now, fresh)

    def run(self, stop: threading.Event, poll: float = 0.1, idle_step: float = 2.0,
            clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        """Drive the rig until ``stop`` is set."""
        self.loop(poll, idle_step, clock).run(stop.is_set, stop.wait)


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
