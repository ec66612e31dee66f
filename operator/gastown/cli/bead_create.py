"""``gt bead create``, light: a create handed to the machine's committer loads no ledger.

When the rig is a path or a URL and no ``--prefix`` is asked for, the create is handed off
(``ledger/handoff.py``): spooled in the ledger's cache, committed and pushed by the machine's
committer together with every other write spooled meanwhile, and its outcome read back. A rig
named in a town, or a ``--prefix`` to check, take the full way through a ``Ledger``
(``bead_commands``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import click

from .common import emit, fail, json_option, settings

# the kinds of bead a person creates (ledger.model.BeadType without merge-batch, which only the
# Refinery makes): spelled out so that this module loads no pydantic (tests/unit/test_cli_help.py)
TYPES = ["task", "bug", "feature", "epic", "merge-request", "escalation", "convoy", "agent", "message"]
_NAME = r"[A-Za-z0-9][A-Za-z0-9_-]*"  # a town's rig name (a path would need a / to be a bare word)


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
@click.option("-t", "--type", "type_", type=click.Choice(TYPES), default="task", show_default=True,
              help="Kind of bead.")
@click.option("-p", "--priority", type=click.IntRange(0, 4), default=2, show_default=True,
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
    fields = {"type": type_, "description": description, "acceptance": acceptance, "priority": priority,
              "labels": labels, "assignee": assignee or None, "owner": owner or None, "parent": parent,
              "deps": [(n, "blocks") for n in needs],
              "metadata": {k: v for k, v in meta_values(meta).items() if v is not None}}
    rig = rig_here or o["rig"]
    if o["prefix"] or re.fullmatch(_NAME, rig):  # a prefix to check, a town's rig: the full way
        from .bead_commands import create_in_ledger

        ctx.invoke(create_in_ledger, title=title, fields=fields, as_json=as_json, rig_here=rig_here,
                   town_here=town_here)
        return
    from ..ledger.errors import LedgerError
    from ..ledger.handoff import (
        Create,
        create_seed,
        default_actor,
        default_cache_dir,
        hand_off,
        normalise_remote,
    )

    actor = o["actor"] or default_actor()
    remote = normalise_remote(rig)
    cache = default_cache_dir(remote, o["cache_dir"])
    try:
        bead = hand_off(remote, cache, Create(actor, title, create_seed(title, description, actor), fields),
                        git_timeout=settings().git_timeout)
    except LedgerError as e:
        fail(e)
    emit(bead) if as_json else click.echo(bead["id"])
