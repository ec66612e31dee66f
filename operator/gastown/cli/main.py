"""``gt``: the Gas Town command line."""

from __future__ import annotations

import click

from .. import __version__
from .bead import bead
from .budget import budget
from .common import SETTINGS, load_settings
from .config import config
from .convoy import convoy, scheduler_group, sling
from .dog import dog
from .escalate import escalate
from .formula import formula
from .mayor import mayor
from .mq import mq
from .operator import operator
from .session import done, session
from .town import apply_, down, rig, status, up


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="gt")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Gas Town: run a town of AI coding agents, with git as the database.

    On one machine: `gt rig add`, `gt up`, then `gt convoy create` or `gt apply -f`
    (the manifests you would give kubectl); `gt status` shows the town. On a cluster,
    `gt operator run` reconciles Rig, Polecat, Convoy and MergeQueue resources. Every
    command that reads or writes beads works against a rig: a town rig by name, or a
    git repository by path or URL.
    """
    ctx.meta[SETTINGS] = load_settings()


for _command in (apply_, bead, budget, config, convoy, dog, done, down, escalate, formula, mayor, mq, operator, rig,
                 scheduler_group, session, sling, status, up):
    cli.add_command(_command)


def main() -> None:
    cli(prog_name="gt")


if __name__ == "__main__":
    main()
