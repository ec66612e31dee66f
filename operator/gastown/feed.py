"""The town's activity feed: what happened on each rig, read from its ledger's commit history.

Every ledger commit says, one line per change, ``bead <id>: <change> (<actor>)``: claims,
sessions started and ended, verification runs and rounds, merges, rejections, escalations,
convoys opened and done. A ``RigFeed`` reads those lines incrementally (only the commits after
the last tip it saw) and classifies each into a kind; a ``Feed`` merges the rigs, newest first.
Beads are read through the Ledger's snapshot only, never by path. Used by `gt feed`, the
dashboard and `gt tui`.
"""

from __future__ import annotations

import re
import threading
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from .ledger import Bead, BeadType, DepType, Ledger

KINDS = ("session", "verification", "merge", "rejection", "conflict", "escalation", "convoy", "scheduler",
         "bead", "ledger")
_LINE = re.compile(r"^bead (?P<bead>\S+): (?P<change>.*?)(?: \((?P<actor>[^()]*)\))?$")
_NOTE = re.compile(r"^(?P<change>.+?)(?: \((?P<actor>[^()]*)\))?$")
_POLECAT = re.compile(r"\bpolecat (?P<name>[a-z0-9][a-z0-9-]*)")
KEEP = 5000  # events kept per rig


@dataclass(frozen=True, kw_only=True)
class Event:
    at: str  # ISO 8601, the commit's date
    rig: str
    kind: str  # one of KINDS
    text: str  # the change, as the ledger says it
    actor: str
    commit: str
    bead: str | None = None
    title: str | None = None  # the bead's title (untrusted text)
    convoy: str | None = None  # the convoy's name
    polecat: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def classify(change: str, bead: Bead | None) -> str:
    """The kind of one change line (``bead``: the bead it is about, when the ledger still has it)."""
    kind_of_bead = bead.type if bead is not None else None
    if kind_of_bead == BeadType.ESCALATION or change.startswith("escalation "):
        return "escalation"
    if change.startswith(("run ", "round ")) or kind_of_bead == BeadType.MERGE_BATCH and "verif" in change:
        return "verification"
    if change.startswith("merged") or "-> closed: merged" in change:
        return "merge"
    if "rejected" in change:
        return "rejection"
    if "conflict with" in change or "merge conflict" in change:
        return "conflict"
    if "session" in change:
        return "session"
    if kind_of_bead == BeadType.CONVOY or change.startswith("convoy "):
        return "convoy"
    if change.startswith(("dispatch ", "rate limit")):
        return "scheduler"
    return "bead"


def _convoy_name(bead: Bead, snap: Any, depth: int = 0) -> str | None:
    """The name of the convoy ``bead`` belongs to (itself, its own convoy, or its parent's)."""
    if bead.type == BeadType.CONVOY:
        return bead.metadata.get("name") or bead.id
    cid = bead.metadata.get("convoy")
    if cid:
        convoy = snap.get(cid)
        return (convoy.metadata.get("name") or convoy.id) if convoy is not None else None
    # a merge request's convoy is its source bead's; a step's, its parent's
    source = bead.metadata.get("source")  # an escalation's is a dict: where it was raised
    up = (source if isinstance(source, str) else None) or next(iter(bead.deps(DepType.PARENT_CHILD)), None)
    if up and depth < 5:
        found = snap.get(up) or snap.get_archived(up)
        return _convoy_name(found, snap, depth + 1) if found is not None else None
    return None


def _polecat(change: str, bead: Bead | None) -> str | None:
    m = _POLECAT.search(change)
    if m:
        return m.group("name")
    if bead is None:
        return None
    if bead.type == BeadType.AGENT:
        return bead.metadata.get("name")
    return bead.assignee or bead.metadata.get("worker")


def events_of(rig: str, entry: Mapping[str, str], snap: Any) -> list[Event]:
    """The events of one commit (a ``Ledger.log`` entry), in the order its lines say them."""
    out = []
    for line in entry["message"].splitlines():
        m = _LINE.match(line.strip())
        if m is None:  # a note of the ledger's own ("ledger: created ..."), not the "ledger: N changes" header
            note = _NOTE.match(line.strip())
            if note and not re.match(r"ledger: \d+ changes$", line.strip()):
                out.append(Event(at=entry["date"], rig=rig, kind="ledger", text=note.group("change"),
                                 actor=note.group("actor") or entry["author"], commit=entry["commit"]))
            continue
        bead_id = m.group("bead")
        bead = snap.get(bead_id) if snap is not None else None
        if bead is None and snap is not None:
            bead = snap.get_archived(bead_id)
        change = m.group("change")
        out.append(Event(at=entry["date"], rig=rig, kind=classify(change, bead), text=change,
                         actor=m.group("actor") or entry["author"], commit=entry["commit"], bead=bead_id,
                         title=bead.title if bead else None, convoy=_convoy_name(bead, snap) if bead else None,
                         polecat=_polecat(change, bead)))
    return out


@dataclass(frozen=True)
class Filter:
    rig: str | None = None
    convoy: str | None = None  # a convoy's name or ID
    polecat: str | None = None
    kinds: tuple[str, ...] = ()

    def __call__(self, e: Event) -> bool:
        return ((self.rig is None or e.rig == self.rig)
                and (self.convoy is None or self.convoy in (e.convoy, e.bead))
                and (self.polecat is None or e.polecat == self.polecat)
                and (not self.kinds or e.kind in self.kinds))


class RigFeed:
    """The events of one rig's ledger, newest first, read only from the commits not yet seen."""

    def __init__(self, rig: str, ledger: Ledger, keep: int = KEEP):
        self.rig, self.ledger = rig, ledger
        self.events: deque[Event] = deque(maxlen=keep)
        self.seen: str | None = None  # the last tip read

    def poll(self, refresh: bool = True) -> list[Event]:
        """Read the commits after the last tip seen; the new events, newest first."""
        tip = self.ledger.refresh() if refresh else self.ledger.tip
        if tip is None or tip == self.seen:
            return []
        since = f"{self.seen}..{tip}" if self.seen else tip
        entries = self.ledger.store.log(since)  # newest first; a commit message names beads, not paths
        if not self.seen and self.events.maxlen:
            entries = entries[: self.events.maxlen]
        snap = self.ledger.snapshot(refresh=False)
        new = [e for entry in entries for e in reversed(events_of(self.rig, entry, snap))]
        self.seen = tip
        self.events.extendleft(reversed(new))
        return new


class Feed:
    """The rigs' feeds merged, newest first. ``poll`` is safe from several threads."""

    def __init__(self, ledgers: Mapping[str, Ledger], keep: int = KEEP):
        self.rigs = {name: RigFeed(name, ledger, keep) for name, ledger in ledgers.items()}
        self._lock = threading.Lock()

    def poll(self, refresh: bool = True) -> list[Event]:
        with self._lock:
            new = [e for rig in self.rigs.values() for e in rig.poll(refresh)]
        return newest_first(new)

    def recent(self, match: Filter | None = None, limit: int | None = 200) -> list[Event]:
        match = match or Filter()
        with self._lock:
            found = newest_first(e for rig in self.rigs.values() if match.rig in (None, rig.rig)
                                 for e in rig.events if match(e))
        return found[:limit] if limit else found


def newest_first(events: Iterable[Event]) -> list[Event]:
    """Sorted by time, newest first (a stable sort: a commit's lines keep their order)."""
    return sorted(events, key=lambda e: e.at, reverse=True)


def describe(e: Event) -> str:
    """One line of text for a terminal."""
    what = f"{e.bead} " if e.bead else ""
    title = f" [{e.title[:60]}]" if e.title else ""
    return f"{e.at[:19].replace('T', ' ')} {e.rig:<12} {e.kind:<12} {what}{e.text}{title} ({e.actor})"
