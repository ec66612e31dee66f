"""Budgets and shared limits: whether a session may start under what was given. Engine: pure
decisions, plus the town's shared tally that a driver keeps for all its rigs.

Spend is what the ledger's session records add up to (spend.py): nothing is counted in memory
alone, so a restart or a reinstall never forgets it. A rig's budget is per UTC day and month
(``RigBudget``, from its spec), a convoy's is its whole life (``ConvoyBudget``, on its bead),
the town's per UTC day and month across all its rigs (``TownLimits``). At ``warnPercent`` (80 %
by default) a P2 escalation says so, at 100 % a P1, each once per budget and period; from 100 %
no new session starts under that budget (the rig's or the town's: the whole rig; a convoy's:
its beads), and the work waits where it is, ready or hooked. Raising the budget lets it go on at
the next pass. A session's spend is recorded when it ends (after its bead went on to review):
until then it is under way (``under_way``). With a ceiling in tokens (``sessionTokens``) nothing
new is hooked unless a whole session more fits beside every session under way, on every rig for
the town's budget and on all of a convoy's rigs for its own (``room``); money is judged on an
estimate (``session_cost``), and without a ceiling sessions under way when a budget runs out may
take it past 100 %.

Shared limits (``TownLimits.keys`` and ``.runtimes``) cap the sessions on one provider key or
of one runtime across all rigs, on top of each rig's ``maxPolecats``; free slots go round robin,
weighted by each rig's ``share``, between the rigs that want them, so no rig starves another.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from . import escalation, spend
from .api.budget import Amount, ConvoyBudget, RigBudget, SharedLimitStatus, SpendStatus, TownLimits
from .api.common import Condition
from .convoy import convoy_id, convoy_of, is_home, open_convoys, tracked
from .ledger import Bead, BeadType, InvalidOperation, query
from .ledger.ops import Tx, merged, revise
from .scheduler import flying

STALE = timedelta(minutes=5)  # a rig not heard of for this long no longer counts in a shared limit


def amount_text(amount: Amount | None) -> str:
    """"10,000 tokens, $5.00": a budget as people read it."""
    if amount is None:
        return "no budget"
    parts = ([f"{amount.tokens:,} tokens"] if amount.tokens else []) + ([f"${amount.usd:.2f}"] if amount.usd else [])
    return ", ".join(parts)


def period_start(period: str, now: datetime) -> datetime:
    """The start of the UTC day or month ``now`` is in."""
    now = now.astimezone(UTC)
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return day if period == "day" else day.replace(day=1)


def period_name(period: str, now: datetime) -> str:
    now = now.astimezone(UTC)
    return f"day {now:%Y-%m-%d}" if period == "day" else f"month {now:%Y-%m}"


@dataclass(frozen=True)
class Spent:
    tokens: int = 0
    usd: float = 0.0

    def __add__(self, other: Spent) -> Spent:
        return Spent(self.tokens + other.tokens, self.usd + other.usd)


def spent(beads: Iterable[Bead], since: datetime | None = None) -> Spent:
    """What the sessions recorded on ``beads`` spent (since ``since``, by when they were recorded)."""
    tokens, usd = 0, 0.0
    for _bead, _session, usage in spend.records(beads):
        if since is not None:
            try:
                if datetime.fromisoformat(str(usage.get("at"))) < since:
                    continue
            except ValueError:
                continue
        tokens += int(usage.get("input_tokens") or 0) + int(usage.get("output_tokens") or 0)
        usd += float(usage.get("cost_usd") or 0)
    return Spent(tokens, usd)


@dataclass(frozen=True)
class Standing:
    """One budget over one period: what was spent against what was given."""

    scope: str  # "rig", "convoy NAME", "town"
    period: str  # "day 2026-11-30", "month 2026-11", "total"
    spent: Spent
    _: KW_ONLY
    limit: Amount | None = None
    warn_percent: int = 80

    @property
    def percent(self) -> int | None:
        if self.limit is None:
            return None
        shares = [self.spent.tokens / self.limit.tokens if self.limit.tokens else 0.0,
                  self.spent.usd / self.limit.usd if self.limit.usd else 0.0]
        return int(max(shares) * 100)

    @property
    def state(self) -> str:
        percent = self.percent
        if percent is None:
            return "Unbudgeted"
        return "Exhausted" if percent >= 100 else "Warning" if percent >= self.warn_percent else "Ok"

    def status(self) -> dict[str, Any]:
        """As the Rig's and the Convoy's status show it (SpendStatus)."""
        limit = self.limit or Amount.model_construct(tokens=None, usd=None)
        return SpendStatus(period=self.period, tokens=self.spent.tokens, usd=round(self.spent.usd, 4),
                           token_budget=limit.tokens, usd_budget=limit.usd, used_percent=self.percent,
                           state=self.state).wire()

    def describe(self) -> str:
        """"12,400 of 10,000 tokens, $0.31 of $5.00 (124 %)"."""
        parts = [f"{self.spent.tokens:,}" + (f" of {self.limit.tokens:,}" if self.limit and self.limit.tokens else "")
                 + " tokens",
                 f"${self.spent.usd:.2f}" + (f" of ${self.limit.usd:.2f}" if self.limit and self.limit.usd else "")]
        return ", ".join(parts) + (f" ({self.percent} %)" if self.percent is not None else "")

    @property
    def dedupe(self) -> str:
        """Once per budget, period and amount: a budget raised and reached again escalates again."""
        severity = "P1" if self.state == "Exhausted" else "P2"
        return f"budget:{self.scope}:{self.period}:{severity}:{amount_text(self.limit)}"


def status_line(status: Mapping[str, Any]) -> str:
    """"day 2026-11-30: 1,200 of 10,000 tokens, $0.40 (12 %)  Ok": a SpendStatus as people read it."""
    given = Amount.model_construct(tokens=status.get("tokenBudget"), usd=status.get("usdBudget"))
    spent_ = Spent(int(status.get("tokens") or 0), float(status.get("usd") or 0))
    standing = Standing("", "", spent_, limit=given if (given.tokens or given.usd) else None)
    return f"{status['period']}: {standing.describe()}  {status['state']}"


def rig_standings(beads: Mapping[str, Bead], budget: RigBudget, now: datetime) -> list[Standing]:
    """The rig's UTC day and month, against its budget (or none)."""
    values = list(beads.values())
    return [Standing("rig", period_name(p, now), spent(values, period_start(p, now)), limit=limit,
                     warn_percent=budget.warn_percent)
            for p, limit in (("day", budget.daily), ("month", budget.monthly))]


def convoy_budget(convoy: Bead) -> ConvoyBudget | None:
    raw = convoy.metadata.get("budget")
    return ConvoyBudget.model_validate(raw) if raw else None


Part = tuple[Bead, Mapping[str, Bead]]  # a convoy's part on another rig: its bead there, and that rig's beads


def convoy_standing(convoy: Bead, beads: Mapping[str, Bead], parts: Sequence[Part] = ()) -> Standing:
    """A convoy's budget is its total: what the sessions of its beads spent on every rig that holds
    a part of it (``parts``: the parts on the other rigs), against the budget its home part holds."""
    worked: list[Bead] = []
    for part, held in [(convoy, beads), *parts]:
        mine = tracked(part, held)
        worked += mine + [c for b in mine for c in query.children(held, b.id)]
    home = next((p for p, _ in [(convoy, beads), *parts] if is_home(p, p.metadata.get("rig", ""))), convoy)
    given = convoy_budget(home)  # its home part's (this part's own while the home rig cannot be read)
    return Standing(f"convoy {convoy.metadata.get('name', convoy.id)}", "total", spent(worked), limit=given,
                    warn_percent=given.warn_percent if given else 80)


def town_standings(by_period: Mapping[str, Spent], limits: TownLimits, now: datetime) -> list[Standing]:
    return [Standing("town", name, by_period.get(name, Spent()), limit=limit, warn_percent=limits.warn_percent)
            for p, limit in (("day", limits.daily), ("month", limits.monthly)) if (name := period_name(p, now))]


def raises(standings: Iterable[Standing], beads: Mapping[str, Bead], actor: str, *, rig: str,
           related: Mapping[str, str] | None = None) -> list[escalation.Raise]:
    """The escalations due: P2 at the warning threshold, P1 when exhausted, once per budget, period
    and amount (an escalation of that key closed meanwhile is not raised again)."""
    raised = {b.metadata.get("dedupe") for b in beads.values() if b.type == BeadType.ESCALATION}
    out = []
    for s in standings:
        if s.state not in ("Warning", "Exhausted") or s.dedupe in raised:
            continue
        severity = "P1" if s.state == "Exhausted" else "P2"
        what = (f"{s.scope} budget exhausted ({s.period}): no new session starts under it until it is raised"
                if severity == "P1" else f"{s.scope} budget at {s.percent} % ({s.period})")
        source = {"rig": rig, **({"convoy": s.scope.split(" ", 1)[1]} if s.scope.startswith("convoy ") else {})}
        out.append(escalation.Raise(severity, what, actor, reason=s.describe(),
                                    related=(related or {}).get(s.scope), source=source, dedupe=s.dedupe))
    return out


@dataclass(frozen=True)
class SetConvoyBudget:
    """Give a convoy its budget (None: no budget); raising it lets its work go on at the next pass."""

    key: str
    budget: Mapping[str, Any] | None
    actor: str

    def apply(self, tx: Tx) -> Bead:
        convoy = tx.get(convoy_id(tx.prefix, self.key))
        if convoy is None:
            raise InvalidOperation(f"no convoy {self.key!r} in this rig's ledger")
        given = dict(self.budget) if self.budget else None
        if convoy.metadata.get("budget") == given:
            return convoy
        text = f"budget set to {amount_text(ConvoyBudget.model_validate(given))}" if given else "budget removed"
        return tx.put(revise(convoy, tx, metadata=merged(convoy.metadata, {"budget": given})), text, self.actor)


# --- the town's share: one per driver, for all its rigs ----------------------------------------


SETTLE = timedelta(seconds=5)  # after a group is first heard of, one slot a pass: every rig starting is heard


@dataclass
class _Flight:
    sessions: int  # under way, each counted at what one session may spend
    size: PerSession
    at: datetime


@dataclass
class _Entry:
    in_flight: int
    queued: int
    at: datetime
    weight: int = 1
    waiting_since: datetime | None = None  # its oldest queued work's (from its ledger: a restart keeps it)


class SharedLimits:
    """The town's budget and its shared concurrency limits, as one driver (the daemon, the
    operator) sees them across its rigs. What it holds is each rig's latest word (its period spend
    and its work in flight, from its own ledger), so a restarted driver knows it again after one
    pass of each rig."""

    def __init__(self, limits: TownLimits | None = None) -> None:
        self.limits = limits or TownLimits()
        self._spend: dict[str, dict[str, Spent]] = {}  # rig -> period name -> spent
        self._entries: dict[str, dict[str, _Entry]] = {}  # group -> rig -> its word
        self._served: dict[str, dict[str, int]] = {}  # group -> rig -> its turns (a newcomer starts level)
        self._given: dict[str, dict[str, int]] = {}  # group -> rig -> slots it took (its status shows them)
        self._last: dict[str, int] = {}  # group and rig -> when it was last granted a slot (a sequence)
        self._seq = 0
        self._raised: set[str] = set()
        self._owed: dict[str, int] = {}  # rig -> how often a free slot was set aside for it (its wake)
        self._heard: dict[str, datetime] = {}  # group -> when this driver first heard of it
        self._flights: dict[str, _Flight] = {}  # rig -> its sessions under way (and those it may hook now)
        self._lock = threading.Lock()

    def configure(self, limits: TownLimits) -> None:
        self.limits = limits

    def note_spend(self, rig: str, standings: Sequence[Standing]) -> None:
        with self._lock:
            self._spend[rig] = {s.period: s.spent for s in standings}

    def town_room(self, rig: str, standings: Sequence[Standing], *, under_way: int, size: PerSession,
                  now: datetime) -> int | None:
        """How many more sessions the town's budgets have room for from ``rig``, counting every rig's
        sessions under way at what one of its sessions may spend (a rig that cannot tell: at
        ``rig``'s ``size``); reserved for it until ``took`` says how many it hooked, so that two rigs
        passing at once do not both take the last room. None: nothing bounds it."""
        with self._lock:
            others = [(f.sessions, f.size) for r, f in self._flights.items() if r != rig and now - f.at < STALE]
            reserved = Spent(sum(n * (z.tokens or size.tokens or 0) for n, z in others),
                             sum(n * (z.usd or size.usd or 0) for n, z in others))
            rooms = [n for s in standings if s.state != "Exhausted"
                     and (n := room(s, size, under_way, reserved=reserved)) is not None]
            allowed = min(rooms, default=None)
            self._flights[rig] = _Flight(under_way + (allowed or 0), size, now)
            return allowed

    def town_standings(self, now: datetime) -> list[Standing]:
        with self._lock:
            total: dict[str, Spent] = {}
            for periods in self._spend.values():
                for name, value in periods.items():
                    total[name] = total.get(name, Spent()) + value
        return town_standings(total, self.limits, now)

    def first_raise(self, dedupe: str) -> bool:
        """True once per process for each town escalation: one rig's ledger records it."""
        with self._lock:
            if dedupe in self._raised:
                return False
            self._raised.add(dedupe)
            return True

    def owed(self, rig: str) -> int:
        """Changes when a free slot waits for ``rig``: its driver passes it then (a wake key)."""
        with self._lock:
            return self._owed.get(rig, 0)

    def groups(self, key: str | None, runtime: str) -> list[tuple[str, int]]:
        """The shared limits a rig on ``key`` with ``runtime`` is under: (group, limit)."""
        out = []
        name = key_name(key) if key else None
        if name and name in self.limits.keys:
            out.append((f"key {name}", self.limits.keys[name]))
        if runtime in self.limits.runtimes:
            out.append((f"runtime {runtime}", self.limits.runtimes[runtime]))
        return out

    def share(self, rig: str, groups: Sequence[tuple[str, int]], *, in_flight: int, queued: int,
              now: datetime, weight: int = 1, waiting_since: datetime | None = None) -> int | None:
        """How many more sessions ``rig`` may start now under ``groups`` (None: no shared limit),
        reserved for it until ``took`` says how many it started. ``weight``: its share (the Rig's
        budget.share); ``waiting_since``: when its oldest queued work became ready."""
        if not groups:
            return None
        entry = _Entry(in_flight, queued, now, weight=weight, waiting_since=waiting_since)
        with self._lock:
            allowed = min(self._fair(group, limit, rig, entry=entry, now=now) for group, limit in groups)
            self._seq += 1
            for group, _limit in groups:
                self._entries[group][rig].in_flight += allowed
                self._served[group][rig] += allowed
                given = self._given.setdefault(group, {})
                given[rig] = given.get(rig, 0) + allowed
                if allowed:
                    self._last[f"{group}\0{rig}"] = self._seq
            return allowed

    def turns(self, rig: str, groups: Sequence[tuple[str, int]], now: datetime) -> list[dict[str, Any]]:
        """``rig``'s turns under ``groups``, as its status shows them (SharedLimitStatus)."""
        with self._lock:
            out = []
            for group, limit in groups:
                entries = self._entries.get(group, {})
                mine = entries.get(rig)
                out.append(SharedLimitStatus(
                    name=group, limit=limit, sessions=mine.in_flight if mine else 0, share=mine.weight if mine else 1,
                    in_use=sum(e.in_flight for r, e in entries.items() if r == rig or now - e.at < STALE),
                    served=self._given.get(group, {}).get(rig, 0)).wire())
            return out

    def took(self, rig: str, groups: Sequence[tuple[str, int]], granted: int | None, used: int, *,
             under_way: int = 0) -> None:
        """Give back what ``share`` and ``town_room`` reserved and the rig did not start
        (``under_way``: its sessions under way before it hooked ``used`` more)."""
        with self._lock:
            if rig in self._flights:
                self._flights[rig].sessions = under_way + used
            if granted is None or used >= granted:
                return
            for group, _limit in groups:
                self._entries[group][rig].in_flight -= granted - used
                self._served[group][rig] -= granted - used
                self._given[group][rig] -= granted - used

    def _fair(self, group: str, limit: int, rig: str, *, entry: _Entry, now: datetime) -> int:
        """Weighted round robin: each free slot to the wanting rig least served for its weight, then
        the one served longest ago, then the one whose work has waited longest (never the first
        named: after a restart nobody is ahead). Until ``SETTLE`` has passed since the group was
        first heard of, a rig takes one slot a pass, so rigs starting together share from the first."""
        entries = self._entries.setdefault(group, {})
        served = self._served.setdefault(group, {})
        live = {r: e for r, e in entries.items() if r != rig and now - e.at < STALE}
        if rig not in served:  # a newcomer starts level with the others (for its weight), not ahead of them
            served[rig] = min((served.get(r, 0) * entry.weight // e.weight for r, e in live.items()), default=0)
        entries[rig] = entry
        live[rig] = entry
        free = limit - sum(e.in_flight for e in live.values())
        left = {r: e.queued for r, e in live.items() if e.queued > 0}
        given = dict.fromkeys(left, 0)

        def turn(r: str) -> tuple[float, int, datetime, str]:
            waited = live[r].waiting_since or now
            return (served.get(r, 0) + given[r]) / live[r].weight, self._last.get(f"{group}\0{r}", 0), waited, r

        while free > 0 and (wanting := [r for r in left if left[r] > given[r]]):
            given[min(wanting, key=turn)] += 1
            free -= 1
        for r, n in given.items():
            if r != rig and n:  # set aside for a rig that is not passing now: wake it
                self._owed[r] = self._owed.get(r, 0) + 1
        if now - self._heard.setdefault(group, now) < SETTLE:
            return min(given.get(rig, 0), 1)
        return given.get(rig, 0)


def key_name(identity: str) -> str:
    """How a shared limit names a key: the Secret (namespace/name) of ``secret:NS/NAME/KEY`` on a
    cluster; the environment variable of ``VAR:hash`` (or ``preset:login``) locally."""
    if identity.startswith("secret:"):
        return identity.removeprefix("secret:").rsplit("/", 1)[0]
    return identity.split(":", 1)[0]


# --- the gate a rig pass goes through before it dispatches --------------------------------------


USAGE_GRACE = timedelta(minutes=10)  # the longest an ended session's spend is awaited (its wrapper died first)


def under_way(bead: Bead, now: datetime) -> int:
    """The sessions of ``bead`` that may still spend what the ledger does not show yet: one that
    runs (or is hooked, to start), and one that ended with its spend not recorded yet (for
    ``USAGE_GRACE`` at most since the bead last changed: a wrapper that died first never will)."""
    return int(bool(flying(bead))) + int(spend.unrecorded(bead) is not None and now - bead.updated_at < USAGE_GRACE)


@dataclass(frozen=True)
class PerSession:
    """What one session of a rig may spend: ``tokens`` its ceiling (sessionTokens: a bound the
    session wrapper enforces), ``usd`` an estimate (the most one of its recent sessions cost:
    runtimes report cost only when a session ends, so nothing bounds it)."""

    tokens: int | None = None
    usd: float | None = None


RECENT = 20  # the sessions a rig's money estimate is taken from


def session_cost(beads: Iterable[Bead]) -> float | None:
    """The most one of the last ``RECENT`` sessions recorded on ``beads`` cost (None: none reported a cost)."""
    recorded = sorted((str(u.get("at")), float(u.get("cost_usd") or 0)) for _b, _s, u in spend.records(beads))
    return max((usd for _at, usd in recorded[-RECENT:] if usd > 0), default=None)


def room(standing: Standing, size: PerSession, under_way: int, reserved: Spent = Spent()) -> int | None:
    """How many more sessions a budget has room for when each may spend ``size`` and the
    ``under_way`` ones are counted at it too (``reserved``: what is held for the sessions under
    way elsewhere, the other rigs'). In tokens, with a ceiling, the budget is never overshot; in
    money the size is an estimate. None: nothing bounds it (no size known, or no such budget)."""
    limit, spent_ = standing.limit, standing.spent
    rooms = []
    if limit is not None and limit.tokens and size.tokens:
        rooms.append((limit.tokens - spent_.tokens - under_way * size.tokens - reserved.tokens) // size.tokens)
    if limit is not None and limit.usd and size.usd:
        rooms.append(int((limit.usd - spent_.usd - under_way * size.usd - reserved.usd) // size.usd))
    return max(0, min(rooms)) if rooms else None


@dataclass
class Gate:
    """What the budgets and shared limits say before a rig dispatches."""

    held: str | None = None  # why the whole rig waits (its budget, the town's)
    convoys: frozenset[str] = frozenset()  # convoys whose beads wait, hooked ones too (their budget exhausted)
    convoy_room: dict[str, int] = field(default_factory=dict)  # by convoy bead id: how many more it may hook
    room: int | None = None  # the most new sessions the rig's and the town's budgets have room for (None: any)
    under_way: int = 0  # the rig's sessions that may still spend what the ledger does not show yet
    turns: list[dict[str, Any]] = field(default_factory=list)  # under the town's shared limits (SharedLimitStatus)
    raises: list[escalation.Raise] = field(default_factory=list)
    rig: list[Standing] = field(default_factory=list)
    convoy: dict[str, Standing] = field(default_factory=dict)  # by convoy bead id
    town: list[Standing] = field(default_factory=list)

    @property
    def bounded(self) -> bool:
        """A budget bounds what the rig spends (its own, a convoy's, the town's): a session's spend
        must be booked before its slot goes to another, or the next would start on a stale figure."""
        return any(s.limit is not None for s in [*self.rig, *self.town, *self.convoy.values()])

    @property
    def exhausted(self) -> list[Standing]:
        return [s for s in [*self.rig, *self.town, *self.convoy.values()] if s.state == "Exhausted"]

    def waits(self, bead: Bead, beads: Mapping[str, Bead], *, hooked: bool = False) -> bool:
        """The bead's convoy has no room left for it: its budget is exhausted, or (a bead not yet
        ``hooked``: hooked ones count in the room already) too little is left for a session more."""
        convoy = convoy_of(bead, beads)
        return convoy is not None and (convoy.id in self.convoys
                                       or not hooked and self.convoy_room.get(convoy.id) == 0)

    def admits(self, beads: Mapping[str, Bead]) -> Callable[[Bead], bool]:
        """For one dispatch: which ready beads wait, each convoy's room taken by its beads hooked
        before (the scheduler asks just before it hooks one)."""
        left = dict(self.convoy_room)

        def waiting(bead: Bead) -> bool:
            convoy = convoy_of(bead, beads)
            if convoy is None or convoy.id not in left and convoy.id not in self.convoys:
                return False
            if convoy.id in self.convoys or left[convoy.id] <= 0:
                return True
            left[convoy.id] -= 1
            return False
        return waiting


def gate(beads: Mapping[str, Bead], *, rig: str, budget: RigBudget, now: datetime, actor: str,
         shared: SharedLimits | None = None, ident: str | None = None,
         parts: Callable[[Bead], Sequence[Part]] = lambda convoy: ()) -> Gate:
    """Judge the rig's, its open convoys' and the town's budgets from the ledger. ``ident`` names
    the rig in ``shared`` (its repository: rig names repeat across namespaces); ``parts`` gives a
    convoy's parts on the other rigs, whose spend and sessions count against its one budget. A
    convoy's escalations are its home rig's to raise, once (the other parts only wait)."""
    out = Gate(rig=rig_standings(beads, budget, now))
    size = PerSession(budget.session_tokens, session_cost(beads.values()))
    for convoy in open_convoys(beads):
        held = parts(convoy)
        out.convoy[convoy.id] = standing = convoy_standing(convoy, beads, held)
        more = room(standing, size, sum(_under_way(p, b, now) for p, b in [(convoy, beads), *held]))
        if more is not None:
            out.convoy_room[convoy.id] = more
    out.convoys = frozenset(i for i, s in out.convoy.items() if s.state == "Exhausted")
    out.under_way = sum(under_way(b, now) for b in beads.values())
    rooms = [n for s in out.rig if s.state != "Exhausted" and (n := room(s, size, out.under_way)) is not None]
    if shared is not None:
        shared.note_spend(ident or rig, out.rig)
        out.town = shared.town_standings(now)
        town = shared.town_room(ident or rig, out.town, under_way=out.under_way, size=size, now=now)
        rooms += [town] if town is not None else []
    out.room = min(rooms, default=None)  # new hooks only: what is hooked already starts
    related = {s.scope: i for i, s in out.convoy.items()}
    homes = [s for i, s in out.convoy.items() if is_home(beads[i], rig)]
    out.raises = raises([*out.rig, *homes], beads, actor, rig=rig, related=related)
    if shared is not None:
        out.raises += [r for r in raises(out.town, beads, actor, rig=rig) if shared.first_raise(r.dedupe or "")]
    whole = [s for s in [*out.rig, *out.town] if s.state == "Exhausted"]
    if whole:
        out.held = "; ".join(f"{s.scope} budget exhausted ({s.period}: {s.describe()})" for s in whole)
    return out


def _under_way(convoy: Bead, beads: Mapping[str, Bead], now: datetime) -> int:
    """The convoy's sessions under way (or hooked, to start) on the rig whose ``beads`` hold this part."""
    mine = tracked(convoy, beads)
    return sum(under_way(b, now) for b in [*mine, *(c for m in mine for c in query.children(beads, m.id))])


def budget_condition(standings: Sequence[Standing]) -> Condition:
    """The ``BudgetExhausted`` condition of a Rig (its budgets and the town's) or a Convoy (its own)."""
    out = [s for s in standings if s.state == "Exhausted"]
    if out:
        return Condition(type="BudgetExhausted", status="True",
                         reason="".join(w.title() for w in out[0].scope.split()[:1]) + "Budget",
                         message="; ".join(f"{s.scope} budget exhausted ({s.period}: {s.describe()})" for s in out)
                         + ": no new session starts under it until it is raised; the work waits")
    given = [s for s in standings if s.state != "Unbudgeted"]
    return Condition(type="BudgetExhausted", status="False", reason="WithinBudget" if given else "NoBudget",
                     message="; ".join(f"{s.scope} {s.period}: {s.describe()}" for s in given))
