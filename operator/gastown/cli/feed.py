"""``gt feed``: what happened across the town's rigs, newest first, from the ledgers' history."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import click

from ..feed import KINDS, Event, Feed, Filter, describe
from ..ledger import Ledger, LedgerError
from ..local.town import Town, TownError
from .common import emit, fail, json_option, town_option


def town_rigs(town: Path | None, rig: str | None = None) -> tuple[Town, dict[str, Any]]:
    """The town and its rigs' configs, ``rig`` among them when given; errors become one line."""
    t = Town(town)
    try:
        rigs = t.rigs()
    except TownError as e:
        fail(e)
    if rig is not None and rig not in rigs:
        fail(f"no rig {rig!r} in {t.root}; rigs: {', '.join(sorted(rigs)) or 'none yet (gt rig add NAME URL)'}")
    return t, rigs


@contextmanager
def town_feed(town: Path | None, rig: str | None = None) -> Iterator[Feed]:
    """A feed of the town's rigs (or of ``rig`` alone); errors become one line."""
    t, rigs = town_rigs(town, rig)
    with ExitStack() as stack:
        ledgers = {name: stack.enter_context(Ledger(c.remote, cache_dir=t.ledger_cache(c.remote)))
                   for name, c in sorted(rigs.items()) if rig in (None, name)}
        yield Feed(ledgers)


@click.command()
@town_option
@click.option("--rig", help="Only this rig of the town.")
@click.option("--convoy", help="Only this convoy (its name or ID).")
@click.option("--polecat", help="Only what this polecat did or had done to its beads.")
@click.option("--kind", "kinds", multiple=True, type=click.Choice(KINDS), help="Only events of this kind (repeat).")
@click.option("-n", "--limit", type=click.IntRange(1), default=50, show_default=True,
              help="How many events to show (before following).")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new events as they happen (Ctrl-C stops).")
@click.option("--interval", type=click.FloatRange(0.1), default=1.0, show_default=True,
              help="Seconds between looks at the ledgers, with --follow.")
@json_option
def feed(*, town: Path | None, rig: str | None, convoy: str | None, polecat: str | None, kinds: tuple[str, ...],
         limit: int, follow: bool, interval: float, as_json: bool) -> None:
    """The town's activity: who did what to which bead, sessions, verification runs, merges,
    rejections, escalations; newest first.

    With --follow, the last events are printed oldest first and new ones below them as they
    happen (with --json, one JSON object per line).
    """
    match = Filter(rig, convoy, polecat, kinds)
    with town_feed(town, rig) as f:
        try:
            f.poll()
        except LedgerError as e:
            fail(e)
        recent = f.recent(match, limit)
        if not follow:
            if as_json:
                emit([ev.to_dict() for ev in recent])
            else:
                for ev in recent:
                    click.echo(describe(ev))
            return
        for ev in reversed(recent):
            _print(ev, as_json)
        try:
            while True:
                time.sleep(interval)
                try:
                    new = f.poll()
                except LedgerError as e:
                    click.echo(f"gt: warning: {e}", err=True)
                    continue
                for ev in reversed([e for e in new if match(e)]):
                    _print(ev, as_json)
        except KeyboardInterrupt:
            return


def _print(e: Event, as_json: bool) -> None:
    click.echo(json.dumps(e.to_dict(), ensure_ascii=False) if as_json else describe(e))
