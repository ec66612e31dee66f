"""What the TUI shows of a local town, read as `gt status` and the dashboard read it: each rig's
ledger (through the dashboard's ``sources``, the feed incrementally), the sessions on disk, the
daemon's trouble file, and the Witness's judgement of every polecat that holds work.

``TownModel.read`` takes one ``Snapshot``; it blocks on git, so the app calls it off its loop.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .. import convoy as convoys
from .. import overview, scheduler, spend, witness
from ..dashboard.sources import local_town
from ..escalation import open_escalations
from ..feed import Event, Feed
from ..ledger import LedgerError
from ..ledger.worktree import last_commit_age
from ..local import daemon
from ..local.driver import read_troubles
from ..local.town import Town
from ..refinery import queue as mq
from ..runtimes.local import LocalBackend, LocalSession

EVENTS = 200  # events shown
PEEK_LINES = 2000  # the last lines of a session's log shown by a peek
RECENT = 5  # the newest merges and rejections shown of each rig's queue
TROUBLE = ("hung", "stalled", "stuck", "done-not-cleaned")  # the Witness's verdicts that are problems


@dataclass(frozen=True, kw_only=True)
class Polecat:
    rig: str
    name: str
    state: str  # the agent bead's state (idle, working, ...)
    bead: str | None = None  # the bead it holds
    title: str | None = None
    verdict: str | None = None  # the Witness's, when it holds work
    reason: str = ""
    session: str | None = None  # its newest session, and whether that still runs
    running: bool = False


@dataclass(frozen=True, kw_only=True)
class ConvoyRow:
    rig: str
    id: str
    name: str
    phase: str
    done: int
    total: int
    spend: str = ""


@dataclass(frozen=True, kw_only=True)
class QueueView:
    rig: str
    target: str
    waiting: list[tuple[str, str]]  # (MR id, title)
    batch: str | None = None
    phase: str = ""
    mrs: list[str] = field(default_factory=list)
    rounds: list[list[dict[str, Any]]] = field(default_factory=list)
    merged: int = 0
    rejected: int = 0
    length: int | None = None  # how many wait, when only that is known (a cluster's MergeQueue status)
    ended: bool = False  # the batch shown has ended (a cluster's status keeps the last one)
    recent: list[dict[str, str]] = field(default_factory=list)  # the last merges and rejections (overview.outcomes)

    @property
    def waiting_count(self) -> int:
        return len(self.waiting) if self.length is None else self.length


@dataclass(frozen=True)
class Problem:
    rig: str
    kind: str  # blocked, escalation, rate-limited, paused, or a Witness verdict (hung, stalled, stuck, ...)
    subject: str  # the polecat, bead or escalation it is about ("" for the rig)
    text: str


@dataclass(frozen=True, kw_only=True)
class RigRow:
    name: str
    limit: int
    working: int  # sessions running now
    in_flight: int  # beads hooked or in progress
    scheduler: str  # "dispatching", or why dispatch waits
    error: str | None = None


@dataclass
class Snapshot:
    town: Path | str  # the local town's directory, or the cluster's namespace
    daemon: int | None
    title: str = ""  # what the header says of where it was read from (a cluster); "" for a local town
    rigs: list[RigRow] = field(default_factory=list)
    polecats: list[Polecat] = field(default_factory=list)
    convoys: list[ConvoyRow] = field(default_factory=list)
    queues: list[QueueView] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)


def newest_sessions(sessions: Iterable[LocalSession]) -> dict[tuple[str, str], LocalSession]:
    """(rig, polecat) -> its newest session (``sessions`` oldest first, as LocalBackend lists them)."""
    return {(s.request.rig, s.request.polecat): s for s in sessions}


class TownModel:
    """The local town at ``root`` (only rig ``rig`` when given), read again on every ``read``."""

    def __init__(self, root: Path | None = None, rig: str | None = None):
        self.town = Town(root)
        self.only = rig
        self.rig_views, self.ledgers = local_town(self.town.root)
        self.backend = LocalBackend(self.town.root)
        self.feed = Feed({})

    def close(self) -> None:
        self.ledgers.close()

    def read(self) -> Snapshot:
        now = datetime.now(UTC)
        configs = self.town.rigs()
        views = {n: v for n, v in self.rig_views().items() if self.only in (None, n)}
        if {n: v.ledger for n, v in views.items()} != {n: r.ledger for n, r in self.feed.rigs.items()}:
            self.feed = Feed({n: v.ledger for n, v in views.items()})
        pid = daemon.running(self.town)
        snap = Snapshot(self.town.root, pid)
        sessions = newest_sessions(self.backend.sessions())
        for name, view in views.items():
            if pid:  # what the daemon last said keeps the rig from working (as `gt status` says it)
                snap.problems += [Problem(name, "blocked", tr.key, tr.line(now)) for tr in read_troubles(self.town.root,
                                                                                                         name)]
            try:
                self.feed.rigs[name].poll()  # refreshes the ledger and reads its new commits
                beads = view.ledger.beads(refresh=False)
            except LedgerError as e:
                snap.rigs.append(RigRow(name=name, limit=view.limit, working=0, in_flight=0, scheduler="",
                                        error=str(e)))
                continue
            running = {p: s for (r, p), s in sessions.items() if r == name and s.running()}
            held = scheduler.state_of(beads, overview.prefix(beads)).held(now)
            snap.rigs.append(RigRow(name=name, limit=view.limit, working=len(running),
                                    in_flight=len(scheduler.in_flight(beads)), scheduler=held or "dispatching"))
            if held:
                snap.problems.append(Problem(name, "paused" if held.startswith("paused") else "rate-limited", "", held))
            signals = {p: witness.SessionSignal(name=s.name, running=s.running(), age=time.time() - s.started,
                                                heartbeat_age=s.heartbeat_age(),
                                                commit_age=last_commit_age(self.backend.checkout(name, p)))
                       for (r, p), s in sessions.items() if r == name}
            thresholds = configs[name].thresholds if name in configs else witness.Thresholds()
            verdicts = {j.polecat: j for j in witness.patrol(beads, signals, thresholds, now)}
            for agent, bead in overview.polecats(beads):
                p = agent.metadata["name"]
                j = verdicts.get(p)
                s = sessions.get((name, p))
                snap.polecats.append(Polecat(rig=name, name=p, state=agent.metadata.get("state", ""),
                                             bead=bead.id if bead else None, title=bead.title if bead else None,
                                             verdict=j.verdict if j else None, reason=j.reason if j else "",
                                             session=s.name if s else None, running=p in running))
                if j is not None and j.verdict in TROUBLE:
                    snap.problems.append(Problem(name, j.verdict, p, f"{j.bead}: {j.reason}"))
            for c in overview.convoys_shown(beads):
                pr = convoys.progress(c, beads)
                snap.convoys.append(ConvoyRow(rig=name, id=c.id, name=c.metadata.get("name", c.id), phase=pr.phase,
                                              done=pr.done, total=pr.total,
                                              spend=spend.describe(pr.spend) if pr.spend else ""))
            snap.queues.append(self._queue(name, view, beads))
            snap.problems += [Problem(name, "escalation", e.id, f"{e.metadata.get('severity', '')} {e.title}"
                                      + (f" (acked by {e.metadata['acked_by']})" if e.metadata.get("acked_by") else ""))
                              for e in open_escalations(beads.values())]
        snap.events = self.feed.recent(limit=EVENTS)
        return snap

    def _queue(self, name: str, view: Any, beads: dict) -> QueueView:
        target = view.queue.target
        counts = mq.counters(beads, target)
        waiting = [(m.id, m.title) for m in mq.queued(beads, target)]
        recent = overview.outcomes(mq.merge_requests(beads, target), keep=RECENT)
        batch = mq.active_batch(beads, target)
        if batch is None:
            return QueueView(rig=name, target=target, waiting=waiting, merged=counts["merged"],
                             rejected=counts["rejected"], recent=recent)
        rounds = overview.rounds_of(batch, view.ledger.history(batch.id), view.queue.parallel)
        return QueueView(rig=name, target=target, waiting=waiting, batch=batch.id,
                         phase=batch.metadata.get("phase", ""), mrs=list(batch.metadata.get("mrs", [])),
                         rounds=rounds, merged=counts["merged"], rejected=counts["rejected"], recent=recent)

    def peek(self, rig: str, polecat: str, lines: int = PEEK_LINES) -> tuple[str, str]:
        """What the polecat's newest session printed (its last ``lines``), with a line saying which session."""
        s = newest_sessions(self.backend.sessions()).get((rig, polecat))
        if s is None:
            return f"polecat {polecat} (rig {rig}): no session yet", ""
        head = (f"polecat {polecat}: session {s.name} on bead {s.request.bead} (rig {rig}), "
                f"{'running' if s.running() else 'ended'}")
        try:
            text = (s.dir / "session.log").read_bytes().decode(errors="replace")
        except FileNotFoundError:
            return head, "(no output yet)"
        return head, "".join(text.splitlines(keepends=True)[-lines:])

