"""``gt bead``: read and write the beads of a rig's ledger.

The group is light: its subcommands live in ``bead_commands`` and are imported when one runs,
so `gt bead --help` loads neither the ledger nor git.
"""

from __future__ import annotations

import re
from pathlib import Path

import click

from .common import cache_option, fail, town_option
from .lazy import LazyGroup

# name -> where the command lives, and its short help (the first sentence of its own help)
COMMANDS = {
    "close": ("gastown.cli.bead_commands:close", "Close a bead."),
    "comment": ("gastown.cli.bead_commands:comment", "Add a comment to a bead."),
    "create": ("gastown.cli.bead_create:create", "Create a bead titled TITLE and print its ID."),
    "dep": ("gastown.cli.bead_commands:dep", "Dependencies between beads."),
    "history": ("gastown.cli.bead_commands:history",
                "What happened to a bead, oldest first, from the git log of the ledger."),
    "list": ("gastown.cli.bead_commands:list_", "List beads, most urgent first."),
    "migrate": ("gastown.cli.bead_commands:migrate", "Bring the ledger to this release's format now, in one commit."),
    "ready": ("gastown.cli.bead_commands:ready", "Open beads with nothing open blocking them, most urgent first."),
    "reopen": ("gastown.cli.bead_commands:reopen", "Reopen a closed bead."),
    "show": ("gastown.cli.bead_commands:show", "Show one bead."),
    "update": ("gastown.cli.bead_commands:update", "Change fields of a bead."),
}


def _check_prefix(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return value
    from ..ledger.model import PREFIX_PATTERN

    if not re.fullmatch(PREFIX_PATTERN, value):
        fail(f"malformed prefix {value!r}: use 2 to 10 lowercase letters, like gt")
    return value


@click.group(cls=LazyGroup, lazy=COMMANDS)
@click.option("--rig", envvar="GT_RIG", default=".", show_default=True, metavar="NAME|PATH|URL",
              help="A rig of the town by name, or the rig's git repository: a local path or a clone URL "
                   "(env GT_RIG).")
@town_option
@click.option("--actor", envvar="GT_ACTOR", metavar="WHO",
              help="Who is acting, recorded as the commit author (env GT_ACTOR; "
                   "default: user NAME@HOST).")
@click.option("--prefix", callback=_check_prefix, metavar="PREFIX",
              help="Bead ID prefix for a new ledger (default gt); must match an existing ledger's.")
@cache_option
@click.pass_context
def bead(ctx: click.Context, *, rig: str, town: Path | None, actor: str | None, prefix: str | None,
         cache_dir: Path | None) -> None:
    """Beads: the tracked work items of a rig, stored as commits on its ledger branch.

    Every write is one commit on the branch gastown/ledger of the rig's repository; the
    branch is created on the first write. Read commands take --json.
    """
    # `gt` left the git timeout to this group (see main.cli): each command that opens a ledger applies
    # it (bead_commands.ledger_command), so that a create handed off (bead_create) loads no git
    ctx.obj = {"rig": rig, "town": town, "actor": actor, "prefix": prefix, "cache_dir": cache_dir}
