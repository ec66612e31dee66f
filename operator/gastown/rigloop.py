"""The rig loop: the one cycle that drives a rig, for the local daemon and for the operator.

Each tick the driver says what the rig is now (its ledger, its ports, its spec: a ``Round``);
the loop refreshes the ledger and runs the rig pass (rigpass.py) when something moved: the
ledger's tip, or what the driver watches besides (``Driver.wake_key``: sessions, resources,
other rigs' ledgers), and at least every ``period`` seconds for what only time changes
(heartbeats age, escalations bump). The remote is asked ``Cadence.poll`` seconds apart while the
rig is busy (sessions running, a batch verifying, a pass that acted); each quiet tick doubles the
wait, up to ``Cadence.idle`` (never beyond a third of the claim's lease, so that the claim is
renewed in time), and anything that moves makes it fast again. A wait never passes what the loop
owes next: a session's deadline as the Witness judged it (its start grace, its heartbeat's, its
linger: ``PassReport.due``), the Deacon's patrol, a Dog due, a backoff's end. A driver may end a wait early when
it learns of a change on its own (the local daemon: a write on this machine, a session ending;
``RigLoop.run``'s ``wait``). After a pass the driver projects it (statuses on a
cluster). Every ``deacon_seconds`` the Deacon patrols; the Dogs due by their schedules walk in a
background thread, so that a long `git gc` never stalls the rig. Metrics are observed here, once
for both drivers.

Before anything else each tick, the loop holds the ledger's driver claim (ledger/claim.py): one
driver per ledger, whatever town or operator it is. While another holds a live claim, the loop
does nothing but tell its driver (``Driver.claim``) and ask again; a clean stop releases it.

What keeps failing (the remote, a merge push, a worktree, a verification: trouble.py) is tried
again with backoff, not every tick; the driver is told the rig's problems when they change
(``Driver.troubles``: `gt status` locally, a condition and an Event on a cluster), and a problem
that lasts ``Backoff.escalate_after`` attempts is escalated once, and closed when it clears.

A driver provides ``Driver`` (the round, what wakes it, what to do after a pass) and, in each
round, a ``DriverPort``: the rig pass's ``Port`` plus the Deacon's and the Dogs' parts.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from . import escalation
from .deacon import Deacon, Heal
from .dogs import Timers
from .ledger import GitStopped, Ledger, LedgerError, git_stopped
from .rigpass import PassConfig, PassReport, Port, RigPass, deliver
from .scheduler import SharedBackoffs
from .settings import Settings
from .telemetry import metrics
from .trouble import PASS, REMOTE, Backoff, Trouble, Troubles

log = logging.getLogger("gastown.rig")
RESTART_SECONDS = 5.0  # a rig loop ended by a bug (an exception nothing expected) starts again after this, in both drivers
OWED_MARGIN = 0.05  # seconds past a deadline the loop wakes at: a deadline is passed, never met to the microsecond


class DriverPort(Port, Protocol):
    """The rig pass's ports, and what the Deacon and the Dogs need of a driver."""

    def deacon_scope(self) -> list[str] | None:
        """The polecats that exist, for the Deacon (None: every agent of the ledger)."""

    def after_patrol(self, heals: Sequence[Heal]) -> list[str]:
        """Carry out the driver's part of a patrol (say what was healed, delete what lost its
        owner); the kinds of the heals it did itself."""

    def run_dog(self, name: str) -> object:
        """Walk one Dog (prune, gc, compact) for this rig."""


@dataclass(frozen=True, kw_only=True)
class Round:
    """What the rig is at one tick of the loop."""

    ledger: Ledger
    port: DriverPort
    config: PassConfig


class Driver(Protocol):
    def round(self) -> Round | float:
        """This tick's round; a number of seconds instead when there is nothing to drive yet
        (no valid spec, no credentials): the loop waits that long and asks again."""

    def wake_key(self, round: Round) -> Hashable:
        """What, besides the ledger's tip, makes a pass due when it changes."""

    def passed(self, round: Round, report: PassReport) -> bool:
        """After a pass (project it); True when the next tick should pass again regardless."""

    def troubles(self, troubles: Sequence[Trouble]) -> None:
        """What keeps the rig from working now (empty: nothing), each time that changes."""

    def claim(self, holder: str | None) -> None:
        """Another driver holds the rig's ledger (``holder``: who, and how fresh its claim is), or
        this one drives it (None), after each tick that reached the remote."""


@dataclass(frozen=True, kw_only=True)
class Cadence:
    """How often the loop does what."""

    poll: float  # seconds between ticks while the rig is busy
    period: float  # a pass at least this often (at the ticks)
    idle: float = 0.0  # an idle rig's longest wait between ticks (0: always ``poll``)
    deacon_seconds: float = Settings.deacon_seconds
    orphan_grace: timedelta = timedelta(seconds=Settings.orphan_grace_seconds)
    lease: float = Settings.lease_seconds  # the driver claim's lease
    backoff: Backoff = Backoff()  # what fails is tried again this way (trouble.py)

    @classmethod
    def of(cls, settings: Settings, *, poll: float, period: float, idle: float = 0.0) -> Cadence:
        return cls(poll=poll, period=period, idle=idle, deacon_seconds=settings.deacon_seconds,
                   orphan_grace=timedelta(seconds=settings.orphan_grace_seconds), lease=settings.lease_seconds,
                   backoff=settings.backoff())

    def slower(self, wait: float) -> float:
        """The wait after a quiet tick that waited ``wait``: twice as long, up to the idle cap (a
        third of the lease at most: the claim is renewed every lease / 3)."""
        return max(self.poll, min(2 * wait, self.idle, self.lease / 3))


class RigLoop:
    """Drives one rig until stopped. ``label`` is the metrics' namespace label ("local" in a town);
    ``holder`` names this driver on the ledger's claim (the same after a restart, unique per rig)."""

    def __init__(self, *, rig: str, label: str, driver: Driver, actor: str, cadence: Cadence, holder: str,
                 peers: Callable[[str], Ledger | None] | None = None, backoffs: SharedBackoffs | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self.rig, self.label, self.driver, self.actor, self.cadence = rig, label, driver, actor, cadence
        self.holder = holder
        self._held: Ledger | None = None  # the ledger whose claim this loop holds
        self._claiming: Ledger | None = None  # the ledger whose claim is being taken or renewed (its answer not in)
        self.peers, self.backoffs, self.clock = peers, backoffs, clock  # backoffs: the town's, on API keys
        self._seen: Hashable = None
        self._last_pass = self._last_patrol = 0.0
        self._config: PassConfig | None = None
        self._timers: Timers | None = None
        self._walker: threading.Thread | None = None
        self.troubles = Troubles(rig, cadence.backoff)
        self._told: list[Trouble] | None = None  # what the driver was last told
        self._retried: datetime | None = None  # the retry the last pass was run for
        self._tried: Ledger | None = None  # the ledger whose remote was last asked
        self.wait = cadence.poll  # seconds to the next tick: poll while busy, longer while idle
        self._due: float | None = None  # when (time.monotonic) the Witness owes its next look
        self._working = False  # the last pass acted or left work under way (a batch, a Mayor)

    def step(self, round: Round, now: datetime | None = None, fresh: bool = True) -> PassReport:
        """One rig pass: the one place where a driver's rig pass runs."""
        return RigPass(rig=self.rig, ledger=round.ledger, port=round.port, config=round.config, actor=self.actor,
                       peers=self.peers, backoffs=self.backoffs, troubles=self.troubles).run(now, fresh)

    def run(self, stopped: Callable[[], bool], wait: Callable[[float], object]) -> None:
        try:
            while not stopped():
                wait(self.tick())
        finally:
            self.release()

    def release(self) -> None:
        """Give up the ledger's claim (a clean stop): the next driver need not wait out the lease. A
        stop in the middle of taking or renewing it (the push ended, its outcome unknown: it may have
        landed) releases it too, if the remote says it is this driver's."""
        ledgers = [lg for lg in (self._held, self._claiming) if lg is not None]
        self._held = self._claiming = None
        for ledger in dict.fromkeys(ledgers):
            try:
                ledger.claims.release(self.holder)
            except LedgerError as e:
                log.warning("rig %s: could not release the ledger's driver claim: %s", self.rig, e)

    def tick(self) -> float:
        """One turn of the loop; the seconds to wait before the next. A tick whose git the process
        ended (a requested stop, ``stop_git``) ends at once, and tells the driver of no trouble:
        the remote did not fail, the process is stopping."""
        try:
            return self._tick()
        except GitStopped:
            return 0.0

    def _tick(self) -> float:
        round = self.driver.round()
        if not isinstance(round, Round):
            return round
        if round.config != self._config:
            self._config, self._seen = round.config, None
            self._timers = Timers(round.config.dogs, self.clock(), only=round.config.dog_names)
        self._walk_dogs(round)
        now = self.clock()
        if round.ledger is self._tried and not self.troubles.due(REMOTE, now):
            return self._after(round, now)  # the remote waits its backoff (a ledger on a new URL is tried at once)
        self._tried = round.ledger
        try:
            tip = round.ledger.refresh()
            self._claiming = round.ledger
            drive = round.ledger.claims.drive(self.holder, self.cadence.lease)
            self._claiming = None
        except GitStopped:
            raise
        except LedgerError as e:
            self.troubles.failed(REMOTE, f"{e}; check the URL (it moved?) and the credentials", now)
            return self._after(round, now)
        self.troubles.cleared(REMOTE)
        if not drive.ok:
            self._held = None
            self.driver.claim(drive.claim.describe(self.clock()) if drive.claim else "another driver")
            return max(self._after(round, now), self.cadence.lease / 6)
        if self._held is not round.ledger:
            self._held = round.ledger
            self.driver.claim(None)
        try:
            key = (tip, self.driver.wake_key(round))
            moved = key != self._seen
            retry = self.troubles.next_try(besides=(REMOTE, PASS))  # an operation of the pass due again
            retry_due = retry is not None and retry <= now and retry != self._retried
            due = self._due is not None and time.monotonic() >= self._due
            if moved or time.monotonic() - self._last_pass > self.cadence.period or retry_due or due:
                self._retried = retry
                self._last_pass = time.monotonic()
                report = self.step(round, fresh=False)
                self._due = None if report.due is None else self._last_pass + max(report.due, 0.0)
                metrics.observe_pass(self.label, self.rig, report, time.monotonic() - self._last_pass)
                again = self.driver.passed(round, report)
                self._seen = None if again else (round.ledger.tip, key[1])
                self._working = again or report.acted or bool(report.refinery and report.refinery.phase != "Idle")
            busy = moved or self._working or bool(round.port.busy())
            self.wait = self.cadence.poll if busy else self.cadence.slower(self.wait)
            if time.monotonic() - self._last_patrol > self.cadence.deacon_seconds:
                self._last_patrol = time.monotonic()
                self._patrol(round)
            self.troubles.cleared(PASS)
        except GitStopped:
            raise
        except LedgerError as e:
            self.troubles.failed(PASS, f"the rig pass failed: {e}", now)
        return self._after(round, now, owed=self._owed())

    def _owed(self) -> float:
        """Seconds until the loop owes the Witness a look, the Deacon a patrol or a Dog its walk,
        whatever moves or not (the ``period``'s pass waits for a tick: an idle rig's are far apart)."""
        at = time.monotonic()
        times = [self._last_patrol + self.cadence.deacon_seconds]
        if self._due is not None:
            times.append(self._due)
        if self._timers and self._timers.next and not (self._walker and self._walker.is_alive()):
            times.append(at + (min(self._timers.next.values()) - self.clock()).total_seconds())
        return max(min(times) - at, 0.0) + OWED_MARGIN

    def _after(self, round: Round, now: datetime, owed: float | None = None) -> float:
        """Escalate what lasted, close what cleared, tell the driver; the seconds to wait (no more
        than ``owed``, when the loop owes something then)."""
        self._escalate(round, now)
        troubles = self.troubles.current()
        if troubles != self._told and not git_stopped():  # a stop's ended git is no trouble of the rig's
            self.driver.troubles(troubles)
            self._told = troubles
        wait, retry = self.wait, self.troubles.next_try(besides=(PASS,))  # the remote or an operation due again
        if owed is not None:
            wait = min(wait, owed)
        if retry is not None and retry != self._retried:  # ... is tried then, however idle the rig
            wait = min(wait, max(self.cadence.poll, (retry - now).total_seconds()))
        return max(wait, self.troubles.wait(PASS, now))

    def _escalate(self, round: Round, now: datetime) -> None:
        for trouble in self.troubles.to_escalate():
            raised = escalation.Raise("P1", f"rig {self.rig} blocked: {trouble.problem}", self.actor,
                                      reason=f"{trouble.attempts} attempts since {trouble.since.isoformat()} failed: "
                                             f"{trouble.problem}", source={"rig": self.rig},
                                      dedupe=f"blocked:{self.rig}:{trouble.key}")
            try:
                esc = round.ledger.apply(raised)
            except LedgerError:  # the ledger is out of reach (its remote is the problem): along the routes now
                esc = escalation.unrecorded(raised, now)
                for route in round.config.routes.pending(esc):
                    try:
                        deliver(round.port, esc, route)
                    except Exception as e:  # noqa: BLE001 (a route that fails must not stop the rig)
                        log.warning("rig %s: escalation via %s: %s", self.rig, route, e)
            recorded = esc.id != escalation.UNRECORDED
            log.warning("rig %s: escalated %s (P1): %s", self.rig,
                        esc.id if recorded else "(not recorded: the ledger is out of reach)", trouble.problem)
            self.troubles.escalated(trouble.key, esc.id if recorded else "")
        for trouble in self.troubles.take_cleared():
            if trouble.escalation:
                try:
                    round.ledger.apply(escalation.Close(trouble.escalation, self.actor, reason="cleared: it works again"))
                except LedgerError as e:
                    log.warning("rig %s: could not close %s: %s", self.rig, trouble.escalation, e)

    def _patrol(self, round: Round) -> None:
        heals = Deacon(round.ledger, self.actor, self.cadence.orphan_grace).patrol(
            round.port.deacon_scope(), round.port.busy(), round.config.target, fresh=False)  # the tick refreshed it
        done = round.port.after_patrol(heals)
        metrics.observe_heals(self.label, self.rig, [h.kind for h in heals] + done)

    def _walk_dogs(self, round: Round) -> None:
        if self._walker is not None and self._walker.is_alive():
            return
        due = self._timers.due(self.clock()) if self._timers else []
        if due:  # in the background: a git gc of a big repository must not stall the rig
            self._walker = threading.Thread(target=self._walk, args=(round.port, due), daemon=True,
                                            name=f"dogs-{self.label}-{self.rig}")
            self._walker.start()

    def _walk(self, port: DriverPort, dogs: list[str]) -> None:
        for name in dogs:
            try:
                port.run_dog(name)
                metrics.observe_dog(self.label, self.rig, name, True)
            except LedgerError as e:
                if git_stopped():
                    return  # the process is stopping: its git was ended, no fault of the Dog's
                log.warning("rig %s: the %s Dog: %s", self.rig, name, e)
                metrics.observe_dog(self.label, self.rig, name, False)
