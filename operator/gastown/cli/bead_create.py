"""``gt bead create``, light: a create handed to the machine's committer loads no ledger.

When the rig is a path or a URL and no ``--prefix`` is asked for, the create is handed off
(``ledger/handoff.py``): spooled in the ledger's cache, committed and pushed by the machine's
committer together with every other write spooled meanwhile, and its outcome read back. A rig
named in a town, or a ``--prefix`` to check, take the full way through a ``Ledger``
(``bead_commands``). `gt`'s entry point reads most command lines of a create handed off
without click (``entry.py``); this command is the rest of them, and the help.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from .common import fail, json_option, settings
from .entry import (
    DEFAULT_PRIORITY,
    DEFAULT_TYPE,
    TYPES,
    create_fields,
    create_handed_off,
    handed_off,
)


def meta_values(values: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r}: use KEY=VALUE (an empty VALUE removes the key)",
                                     param_hint="--meta")
        out[key] = value or None
    return out


def checked_title(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    from ..ledger.errors import LedgerError
    from ..ledger.handoff import check_title

    try:
        return value if value is None else check_title(value)
    except LedgerError as e:
        fail(e)


rig_here_option = click.option("--rig", "rig_here", metavar="NAME|PATH|URL",
                               help="The rig, as `gt bead --rig` takes it (either place works).")
town_here_option = click.option("--town", "town_here", type=click.Path(path_type=Path, file_okay=False),
                                help="The town whose rig names --rig takes (as `gt bead --town`).")


@click.command()
@click.argument("title", callback=checked_title)
@click.option("-d", "--description", default="", help="What the work is.")
@click.option("-a", "--acceptance", default="", help="How to tell it is done.")
@click.option("-t", "--type", "type_", type=click.Choice(TYPES), default=DEFAULT_TYPE, show_default=True,
              help="Kind of bead.")
@click.option("-p", "--priority", type=click.IntRange(0, 4), default=DEFAULT_PRIORITY, show_default=True,
              help="0 is the most urgent, 4 the least.")
@click.option("-l", "--label", "labels", multiple=True, help="A label (repeat for more).")
@click.option("--assignee", help="Who works on it.")
@click.option("--owner", help="Who answers for it.")
@click.option("--parent", metavar="ID", help="Make it a child step PARENT.N of this bead.")
@click.option("--needs", multiple=True, metavar="ID",
              help="A bead that must be closed before this one is ready (repeat for more).")
@click.option("--meta", multiple=True, metavar="KEY=VALUE", help="Free metadata (repeat for more).")
@json_option
@rig_here_option
@town_here_option
@click.pass_context
def create(ctx: click.Context, *, title: str, description: str, acceptance: str, type_: str, priority: int,
           labels: tuple[str, ...], assignee: str | None, owner: str | None, parent: str | None,
           needs: tuple[str, ...], meta: tuple[str, ...], as_json: bool, rig_here: str | None,
           town_here: Path | None) -> None:
    """Create a bead titled TITLE and print its ID."""
    o = ctx.obj
    fields = create_fields(description=description, acceptance=acceptance, type_=type_, priority=priority,
                           labels=labels, assignee=assignee, owner=owner, parent=parent, needs=needs,
                           meta=meta_values(meta))
    rig = rig_here or o["rig"]
    if not handed_off(rig, prefix=o["prefix"]):
        from .bead_commands import create_in_ledger

        ctx.invoke(create_in_ledger, title=title, fields=fields, as_json=as_json, rig_here=rig_here,
                   town_here=town_here)
        return
    create_handed_off(rig=rig, cache_dir=o["cache_dir"], actor=o["actor"], title=title, fields=fields,
                      as_json=as_json, git_timeout=settings().git_timeout)
