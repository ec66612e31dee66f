"""``gt budget``: what the town, its rigs and their convoys may spend, and the limits rigs share."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from .. import budget as budgets
from .. import convoy as convoys
from ..api import Invalid, RigSpec
from ..api.budget import ConvoyBudget, TownLimits
from ..api.validation import parse_spec
from ..ledger import Bead, Ledger, LedgerError, default_actor
from ..local.town import Town, TownError
from ..rigpass import parts_of
from .common import emit, fail, json_option, town_option

EPILOG = """Budgets count tokens (in and out together) and US dollars where the runtime reports cost, per
UTC day and month (a rig, the town) or in all (a convoy). At the warning threshold (80 % unless
--warn-percent) a P2 escalation; at 100 % a P1, and no new session starts under that budget: the
work waits, hooked or ready, and goes on once the budget is raised. A figure of 0 removes it."""


@click.group()
def budget() -> None:
    """Budgets and shared limits of the local town (on a cluster: the Rig's and the Convoy's
    spec.budget, and the operator's GT_TOWN_LIMITS)."""


def convoy_standing(t: Town, convoy: Bead, beads: Mapping[str, Bead]) -> budgets.Standing:
    """A convoy's spend on every rig of the town that holds a part of it, against its one budget."""
    def peer(rig: str) -> Ledger | None:
        try:
            config = t.rig(rig)
            return stack.enter_context(Ledger(config.remote, cache_dir=t.ledger_cache(config.remote)))
        except (TownError, LedgerError):
            return None  # a rig gone from the town, or out of reach: its part is not counted

    with ExitStack() as stack:
        return budgets.convoy_standing(convoy, beads, parts_of(peer, convoy, convoy.metadata.get("rig", "")))


def _standings(t: Town, now: datetime) -> dict[str, Any]:
    limits = t.limits()
    out: dict[str, Any] = {"town": {"limits": limits.wire()}, "rigs": {}}
    by_period: dict[str, budgets.Spent] = {}
    for name, config in sorted(t.rigs().items()):
        try:
            with Ledger(config.remote, cache_dir=t.ledger_cache(config.remote)) as ledger:
                beads = ledger.beads()
        except LedgerError as e:
            out["rigs"][name] = {"error": str(e)}
            continue
        rig = budgets.rig_standings(beads, config.budget, now)
        for s in rig:
            by_period[s.period] = by_period.get(s.period, budgets.Spent()) + s.spent
        out["rigs"][name] = {"spend": [s.status() for s in rig], "convoys": {
            c.metadata["name"]: convoy_standing(t, c, beads).status() for c in convoys.open_convoys(beads)}}
    out["town"]["spend"] = [s.status() for s in budgets.town_standings(by_period, limits, now)]
    return out


@budget.command("show")
@town_option
@json_option
def show(town: Path | None, as_json: bool) -> None:
    """Spend against budget: the town's, each rig's (this UTC day and month) and each open convoy's."""
    try:
        data = _standings(Town(town), datetime.now(UTC))
    except TownError as e:
        fail(e)
    if as_json:
        emit(data)
        return
    limits = data["town"]["limits"]
    click.echo("town")
    for s in data["town"]["spend"]:
        click.echo(f"  {budgets.status_line(s)}")
    for what in ("keys", "runtimes"):
        for name, n in sorted(limits.get(what, {}).items()):
            click.echo(f"  at most {n} sessions at once on {what[:-1]} {name}, across rigs")
    for name, rig in data["rigs"].items():
        click.echo(f"rig {name}")
        if "error" in rig:
            click.echo(f"  error: {rig['error']}")
            continue
        for s in rig["spend"]:
            click.echo(f"  {budgets.status_line(s)}")
        for convoy, s in rig["convoys"].items():
            click.echo(f"  convoy {convoy}: {budgets.status_line(s).removeprefix('total: ')}")


def _amount(raw: dict[str, Any], key: str, tokens: int | None, usd: float | None) -> None:
    """Set (or with 0 remove) one figure of ``raw[key]``; the entry goes when it has none left."""
    entry = dict(raw.get(key) or {})
    for field, value in (("tokens", tokens), ("usd", usd)):
        if value is not None:
            entry.pop(field, None)
            entry.update({field: value} if value else {})
    if entry:
        raw[key] = entry
    else:
        raw.pop(key, None)


def _limits(items: tuple[str, ...], option: str) -> dict[str, int]:
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name or not value.isdigit():
            fail(f"{option} {item!r}: use NAME=SESSIONS (0 removes the limit)")
        out[name] = int(value)
    return out


def _checked(parse: Callable[[], Any]) -> Any:
    """Parse, or fail naming the option: spec.budget.sessionSeconds is --session-seconds."""
    try:
        return parse()
    except Invalid as e:
        fail(re.sub(r"\b(?:spec\.budget|limits|budget)\.([A-Za-z.]+)",
                    lambda m: "--" + re.sub(r"([A-Z])", r"-\1", m.group(1)).replace(".", "-").lower(), str(e)))


@budget.command("set", epilog=EPILOG)
@town_option
@click.option("--rig", help="The rig whose budget to set (default: the town's).")
@click.option("--convoy", help="With --rig: the convoy whose budget to set (its whole life: --tokens, --usd).")
@click.option("--daily-tokens", type=click.IntRange(0), help="Tokens per UTC day.")
@click.option("--daily-usd", type=click.FloatRange(0), help="US dollars per UTC day.")
@click.option("--monthly-tokens", type=click.IntRange(0), help="Tokens per UTC month.")
@click.option("--monthly-usd", type=click.FloatRange(0), help="US dollars per UTC month.")
@click.option("--tokens", type=click.IntRange(0), help="A convoy's tokens in all.")
@click.option("--usd", type=click.FloatRange(0), help="A convoy's US dollars in all.")
@click.option("--warn-percent", type=click.IntRange(1, 100), help="The warning threshold (default 80).")
@click.option("--session-tokens", type=click.IntRange(0), help="A rig's ceiling for one session, in tokens.")
@click.option("--session-seconds", type=click.IntRange(0), help="A rig's ceiling for one session, in seconds.")
@click.option("--share", type=int, help="A rig's weight in the town's shared limits (default 1): rigs competing "
                                        "for one key or runtime get free slots in proportion.")
@click.option("--key", "keys", multiple=True, metavar="NAME=SESSIONS",
              help="Town: most sessions at once on the provider key NAME (its environment variable), across "
                   "rigs (repeat).")
@click.option("--runtime", "runtimes", multiple=True, metavar="NAME=SESSIONS",
              help="Town: most sessions at once of the runtime NAME, across rigs (repeat).")
def set_(*, town: Path | None, rig: str | None, convoy: str | None, daily_tokens: int | None, daily_usd: float | None,
         monthly_tokens: int | None, monthly_usd: float | None, tokens: int | None, usd: float | None,
         warn_percent: int | None, session_tokens: int | None, session_seconds: int | None, share: int | None,
         keys: tuple[str, ...], runtimes: tuple[str, ...]) -> None:
    """Set the town's, a rig's or a convoy's budget (only the figures given change); the town daemon
    applies it at the next pass of each rig."""
    t = Town(town)
    periodic = (daily_tokens, daily_usd, monthly_tokens, monthly_usd)
    if convoy is not None:
        if rig is None:
            fail("--convoy needs --rig (the convoy's rig)")
        if any(v is not None for v in (*periodic, session_tokens, session_seconds, share)) or keys or runtimes:
            fail("a convoy's budget is for its whole life: give --tokens, --usd or --warn-percent")
        _set_convoy(t, rig, convoy, tokens=tokens, usd=usd, warn=warn_percent)
        return
    if tokens is not None or usd is not None:
        fail("--tokens and --usd are a convoy's budget (with --convoy); a rig's and the town's are --daily-* "
             "and --monthly-*")
    try:
        if rig is None:
            if session_tokens is not None or session_seconds is not None or share is not None:
                fail("--session-tokens, --session-seconds and --share are a rig's (with --rig)")
            raw = t.limits().wire()
            _periodic(raw, periodic, warn_percent)
            for field, given in (("keys", _limits(keys, "--key")), ("runtimes", _limits(runtimes, "--runtime"))):
                merged = {**raw.get(field, {}), **given}
                raw[field] = {k: v for k, v in merged.items() if v}
            limits = _checked(lambda: parse_spec(TownLimits, raw, prefix="limits"))
            t.put_limits(limits)
            click.echo(f"town budget: {_describe(limits)}")
            return
        if keys or runtimes:
            fail("--key and --runtime are the town's shared limits (without --rig)")
        specs = t.specs()
        if rig not in specs:
            fail(f"no rig {rig!r} in {t.root}; rigs: {', '.join(sorted(specs)) or 'none yet'}")
        raw = specs[rig][0].wire()
        given = dict(raw.get("budget") or {})
        _periodic(given, periodic, warn_percent)
        for field, value in (("sessionTokens", session_tokens), ("sessionSeconds", session_seconds)):
            if value is not None:
                given.pop(field, None)
                given.update({field: value} if value else {})
        if share is not None:
            given["share"] = share
        raw["budget"] = given
        spec = _checked(lambda: parse_spec(RigSpec, raw))
        t.put_rig(rig, spec)
        click.echo(f"rig {rig} budget: {_describe(spec.budget)}")
    except TownError as e:
        fail(e)


def _periodic(raw: dict[str, Any], periodic: tuple[Any, ...], warn_percent: int | None) -> None:
    daily_tokens, daily_usd, monthly_tokens, monthly_usd = periodic
    _amount(raw, "daily", daily_tokens, daily_usd)
    _amount(raw, "monthly", monthly_tokens, monthly_usd)
    if warn_percent is not None:
        raw["warnPercent"] = warn_percent


def _describe(given: Any) -> str:
    parts = [f"{p} {budgets.amount_text(a)}" for p in ("daily", "monthly") if (a := getattr(given, p))]
    parts += [f"{n} sessions at once on key {k}" for k, n in sorted(getattr(given, "keys", {}).items())]
    parts += [f"{n} sessions at once of runtime {k}" for k, n in sorted(getattr(given, "runtimes", {}).items())]
    if getattr(given, "session_tokens", None):
        parts.append(f"{given.session_tokens:,} tokens a session")
    if getattr(given, "session_seconds", None):
        parts.append(f"{given.session_seconds} s a session")
    if getattr(given, "share", 1) != 1:
        parts.append(f"share {given.share} in shared limits")
    return (", ".join(parts) or "none") + f" (warning at {given.warn_percent} %)"


def _set_convoy(t: Town, rig: str, name: str, *, tokens: int | None, usd: float | None, warn: int | None) -> None:
    try:
        config = t.rig(rig)
        with Ledger(config.remote, cache_dir=t.ledger_cache(config.remote), actor=default_actor()) as ledger:
            beads = ledger.beads()
            convoy = beads.get(convoys.convoy_id(ledger.prefix, name))
            if convoy is None:
                fail(f"no convoy {name!r} in rig {config.name}")
            raw = dict(convoy.metadata.get("budget") or {})
            for field, value in (("tokens", tokens), ("usd", usd)):
                if value is not None:
                    raw.pop(field, None)
                    raw.update({field: value} if value else {})
            if warn is not None:
                raw["warnPercent"] = warn
            given = None if not (raw.get("tokens") or raw.get("usd")) else \
                _checked(lambda: parse_spec(ConvoyBudget, raw, prefix="budget"))
            ledger.apply(budgets.SetConvoyBudget(convoy.metadata["key"], given.wire() if given else None,
                                                 default_actor()))
    except (TownError, LedgerError) as e:
        fail(e)
    click.echo(f"convoy {name} budget: {budgets.amount_text(given) if given else 'none'}")
