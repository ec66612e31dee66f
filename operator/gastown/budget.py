"""Budgets and shared limits: whether a session may start under what was given. Engine: pure
decisions, plus the town's shared tally that a driver keeps for all its rigs.

Spend is what the ledger's session records add up to (spend.py): nothing is counted in memory
alone, so a restart or a reinstall never forgets it. A rig's budget is per UTC day and month
(``RigBudget``, from its spec), a convoy's is its whole life (``ConvoyBudget``, on its bead),
the town's per UTC day and month across all its rigs (``TownLimits``). At ``warnPercent`` (80 %
by default) a P2 escalation says so, at 100 % a P1, each once per budget and period; from 100 %
no new session starts under that budget (the rig's or the town's: the whole rig; a convoy's:
its beads), and the work waits where it is, ready or hooked. Raising the budget lets it go on at
the next pass. A session's spend is recorded when it ends, so sessions under way when a budget
runs out may take it past 100 %: a session ceiling (``sessionTokens``, ``sessionSeconds``)
bounds how far.

Shared limits (``TownLimits.keys`` and ``.runtimes``) cap the sessions on one provider key or
of one runtime across all rigs, on top of each rig's ``maxPolecats``; free slots go round robin
between the rigs that want them (the rig served least so far first), so no rig starves another.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from . import escalation, spend
from .api.budget import Amount, ConvoyBudget, RigBudget, SpendStatus, TownLimits
from .api.common import Condition
from .convoy import convoy_id, convoy_of, open_convoys, tracked
from .ledger import Bead, BeadType, InvalidOperation, query
from .ledger.ops import Tx, merged, revise

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
    standing = Standing("", "", spent_, given if (given.tokens or given.usd) else None)
    return f"{status['period']}: {standing.describe()}  {status['state']}"


def rig_standings(beads: Mapping[str, Bead], budget: RigBudget, now: datetime) -> list[Standing]:
    """The rig's UTC day and month, against its budget (or none)."""
    values = list(beads.values())
    return [Standing("rig", period_name(p, now), spent(values, period_start(p, now)), limit, budget.warn_percent)
            for p, limit in (("day", budget.daily), ("month", budget.monthly))]


def convoy_budget(convoy: Bead) -> ConvoyBudget | None:
    raw = convoy.metadata.get("budget")
    return ConvoyBudget.model_validate(raw) if raw else None


def convoy_standing(convoy: Bead, beads: Mapping[str, Bead]) -> Standing:
    worked = tracked(convoy, beads)
    worked += [c for b in list(worked) for c in query.children(beads, b.id)]
    given = convoy_budget(convoy)
    return Standing(f"convoy {convoy.metadata.get('name', convoy.id)}", "total", spent(worked), given,
                    given.warn_percent if given else 80)


def town_standings(by_period: Mapping[str, Spent], limits: TownLimits, now: datetime) -> list[Standing]:
    return [Standing("town", name, by_period.get(name, Spent()), limit, limits.warn_percent)
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


@dataclass
class _Entry:
    in_flight: int
    queued: int
    at: datetime


class SharedLimits:
    """The town's budget and its shared concurrency limits, as one driver (the daemon, the
    operator) sees them across its rigs. What it holds is each rig's latest word (its period spend
    and its work in flight, from its own ledger), so a restarted driver knows it again after one
    pass of each rig."""

    def __init__(self, limits: TownLimits | None = None) -> None:
        self.limits = limits or TownLimits()
        self._spend: dict[str, dict[str, Spent]] = {}  # rig -> period name -> spent
        self._entries: dict[str, dict[str, _Entry]] = {}  # group -> rig -> its word
        self._served: dict[str, dict[str, int]] = {}  # group -> rig -> slots granted so far
        self._last: dict[str, int] = {}  # group and rig -> when it was last granted a slot (a sequence)
        self._seq = 0
        self._raised: set[str] = set()
        self._owed: dict[str, int] = {}  # rig -> how often a free slot was set aside for it (its wake)
        self._lock = threading.Lock()

    def configure(self, limits: TownLimits) -> None:
        self.limits = limits

    def note_spend(self, rig: str, standings: Sequence[Standing]) -> None:
        with self._lock:
            self._spend[rig] = {s.period: s.spent for s in standings}

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
              now: datetime) -> int | None:
        """How many more sessions ``rig`` may start now under ``groups`` (None: no shared limit),
        reserved for it until ``took`` says how many it started."""
        if not groups:
            return None
        with self._lock:
            allowed = min(self._fair(group, limit, rig, entry=_Entry(in_flight, queued, now), now=now)
                          for group, limit in groups)
            self._seq += 1
            for group, _limit in groups:
                self._entries[group][rig].in_flight += allowed
                self._served[group][rig] += allowed
                if allowed:
                    self._last[f"{group}\0{rig}"] = self._seq
            return allowed

    def took(self, rig: str, groups: Sequence[tuple[str, int]], granted: int | None, used: int) -> None:
        """Give back what ``share`` reserved and the rig did not start."""
        if granted is None or used >= granted:
            return
        with self._lock:
            for group, _limit in groups:
                self._entries[group][rig].in_flight -= granted - used
                self._served[group][rig] -= granted - used

    def _fair(self, group: str, limit: int, rig: str, *, entry: _Entry, now: datetime) -> int:
        entries = self._entries.setdefault(group, {})
        served = self._served.setdefault(group, {})
        live = {r: e for r, e in entries.items() if r != rig and now - e.at < STALE}
        if rig not in served:  # a newcomer starts level with the others, not ahead of them
            served[rig] = min((served.get(r, 0) for r in live), default=0)
        entries[rig] = entry
        live[rig] = entry
        free = limit - sum(e.in_flight for e in live.values())
        wanting = sorted((r for r, e in live.items() if e.queued > 0), key=lambda r: (served.get(r, 0), self._last.get(f"{group}\0{r}", 0), r))
        left = {r: live[r].queued for r in wanting}
        given = dict.fromkeys(wanting, 0)
        while free > 0 and any(left.values()):  # round robin: least served first, then longest since served
            for r in wanting:
                if free > 0 and left[r] > 0:
                    left[r] -= 1
                    free -= 1
                    given[r] += 1
        for r in wanting:
            if r != rig and given[r]:  # set aside for a rig that is not passing now: wake it
                self._owed[r] = self._owed.get(r, 0) + 1
        return given.get(rig, 0)


def key_name(identity: str) -> str:
    """How a shared limit names a key: the Secret (namespace/name) of ``secret:NS/NAME/KEY`` on a
    cluster; the environment variable of ``VAR:hash`` (or ``preset:login``) locally."""
    if identity.startswith("secret:"):
        return identity.removeprefix("secret:").rsplit("/", 1)[0]
    return identity.split(":", 1)[0]


# --- the gate a rig pass goes through before it dispatches --------------------------------------


@dataclass
class Gate:
    """What the budgets and shared limits say before a rig dispatches."""

    held: str | None = None  # why the whole rig waits (its budget, the town's)
    convoys: frozenset[str] = frozenset()  # convoys whose own budget is exhausted: their beads wait
    raises: list[escalation.Raise] = field(default_factory=list)
    rig: list[Standing] = field(default_factory=list)
    convoy: dict[str, Standing] = field(default_factory=dict)  # by convoy bead id
    town: list[Standing] = field(default_factory=list)

    @property
    def exhausted(self) -> list[Standing]:
        return [s for s in [*self.rig, *self.town, *self.convoy.values()] if s.state == "Exhausted"]


def gate(beads: Mapping[str, Bead], *, rig: str, budget: RigBudget, now: datetime, actor: str,
         shared: SharedLimits | None = None, ident: str | None = None) -> Gate:
    """Judge the rig's, its open convoys' and the town's budgets from the ledger. ``ident`` names
    the rig in ``shared`` (its repository: rig names repeat across namespaces)."""
    out = Gate(rig=rig_standings(beads, budget, now))
    for convoy in open_convoys(beads):
        out.convoy[convoy.id] = convoy_standing(convoy, beads)
    out.convoys = frozenset(i for i, s in out.convoy.items() if s.state == "Exhausted")
    if shared is not None:
        shared.note_spend(ident or rig, out.rig)
        out.town = shared.town_standings(now)
    related = {s.scope: i for i, s in out.convoy.items()}
    out.raises = raises([*out.rig, *out.convoy.values()], beads, actor, rig=rig, related=related)
    if shared is not None:
        out.raises += [r for r in raises(out.town, beads, actor, rig=rig) if shared.first_raise(r.dedupe or "")]
    whole = [s for s in [*out.rig, *out.town] if s.state == "Exhausted"]
    if whole:
        out.held = "; ".join(f"{s.scope} budget exhausted ({s.period}: {s.describe()})" for s in whole)
    return out


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


def waits(bead: Bead, beads: Mapping[str, Bead], held_convoys: frozenset[str]) -> bool:
    """The bead belongs to a convoy whose budget is exhausted."""
    if not held_convoys:
        return False
    convoy = convoy_of(bead, beads)
    return convoy is not None and convoy.id in held_convoys
