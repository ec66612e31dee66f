"""``gt``: the Gas Town command line.

The commands are imported when they are used (see ``LazyGroup``), so `gt --help` and a
command's start-up load only what that command needs.
"""

from __future__ import annotations

import click

from .. import __version__
from .common import SETTINGS, load_settings, use_git_timeout
from .lazy import LazyGroup

# name -> where the command lives, and its short help (the first sentence of its own help)
COMMANDS = {
    "apply": ("gastown.cli.town:apply_", "Apply the manifests you would `kubectl apply` to the local town instead."),
    "bead": ("gastown.cli.bead:bead",
             "Beads: the tracked work items of a rig, stored as commits on its ledger branch."),
    "budget": ("gastown.cli.budget:budget", "Budgets and shared limits of the local town (on a cluster: the Rig's and "
                                            "the Convoy's spec.budget, and the operator's GT_TOWN_LIMITS)."),
    "config": ("gastown.cli.config:config", "Local configuration."),
    "convoy": ("gastown.cli.convoy:convoy",
               "Convoys: bundles of beads delivered together (locally; on a cluster, apply a Convoy)."),
    "dog": ("gastown.cli.dog:dog", "Maintenance: prune merged polecat branches and stale worktrees, git gc the "
                                   "caches, compact old closed records into the ledger's archive."),
    "done": ("gastown.cli.session:done",
             "Finish the work on a bead: commit leftovers, push the branch, record the result."),
    "down": ("gastown.cli.town:down", "Stop the town's daemon."),
    "escalate": ("gastown.cli.escalate:escalate",
                 'Escalations, P0 (critical) to P3 (low): `gt escalate -s P1 "reason" [--bead ID]` raises one.'),
    "feed": ("gastown.cli.feed:feed", "The town's activity: who did what to which bead, sessions, verification runs, "
                                      "merges, rejections, escalations; newest first."),
    "formula": ("gastown.cli.formula:formula",
                "Formulas: TOML workflow templates (the rig's own, the operator's, the built-in ones)."),
    "mayor": ("gastown.cli.mayor:mayor", "The Mayor: decomposes a convoy's goal into beads."),
    "mq": ("gastown.cli.mq:mq",
           "The merge queue: merge requests waiting, the batch being verified, retry and reject."),
    "operator": ("gastown.cli.operator:operator", "The Kubernetes operator."),
    "peek": ("gastown.cli.peek:peek", "Show what a polecat's current (or last) session is printing: `gt peek POLECAT`; "
                                      "or the output of a verification run: `gt peek --verify RUN`."),
    "rig": ("gastown.cli.town:rig", "The town's rigs: the repositories its agents work on."),
    "scheduler": ("gastown.cli.convoy:scheduler_group",
                  "The rig's dispatcher: see it, pause it, resume it (the same on a cluster and locally)."),
    "session": ("gastown.cli.session:session", "Agent sessions (what runs inside a Job's pod, or a local subprocess)."),
    "sling": ("gastown.cli.convoy:sling", "Hook BEAD to a polecat of RIG now, within the rig's limit."),
    "status": ("gastown.cli.town:status",
               "The town at a glance: the daemon, and per rig its polecats, convoys, merge queue, escalations."),
    "tui": ("gastown.cli.tui:tui", "The town in a terminal: agents, convoys, merge queue, problems, activity."),
    "up": ("gastown.cli.town:up", "Start the town's daemon: it drives every rig of the town until `gt down`."),
}


@click.group(cls=LazyGroup, lazy=COMMANDS,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
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
    ctx.meta[SETTINGS] = found = load_settings()
    # this runs before the subcommand reads its arguments: a lazy group (gt bead) applies the git
    # timeout itself when it runs, so that `gt bead --help` loads no git
    if not isinstance(cli.get_command(ctx, ctx.invoked_subcommand or ""), LazyGroup):
        use_git_timeout(found)


def main() -> None:
    cli(prog_name="gt")


if __name__ == "__main__":
    main()
