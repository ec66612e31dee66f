"""``gt escalate``: raise a problem to people, and list, acknowledge and close escalations."""

from __future__ import annotations

from pathlib import Path

import click

from .. import escalation
from .common import emit, json_option, rig_ledger, rig_option, town_option


class RaiseByDefault(click.Group):
    """`gt escalate -s P1 "reason"` raises; `gt escalate list|ack|close` are subcommands."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not any(a in self.commands for a in args[:1]) and args[:1] not in (["--help"], ["-h"]):
            args = ["raise", *args]
        return super().parse_args(ctx, args)


@click.group(cls=RaiseByDefault)
def escalate() -> None:
    """Escalations, P0 (critical) to P3 (low): `gt escalate -s P1 "reason" [--bead ID]` raises one."""


@escalate.command("raise")
@click.argument("reason")
@click.option("-s", "--severity", type=click.Choice(list(escalation.SEVERITIES)), default="P2", show_default=True,
              help="P0 critical, P1 high, P2 medium, P3 low.")
@click.option("--bead", help="The bead it is about.")
@click.option("--polecat", envvar="GT_POLECAT", help="The polecat it is about (env GT_POLECAT).")
@town_option
@rig_option
def raise_(*, reason: str, severity: str, bead: str | None, polecat: str | None, town: Path | None, rig: str) -> None:
    """Raise an escalation."""
    with rig_ledger(town, rig) as (config, ledger):
        source = {k: v for k, v in (("rig", config.name), ("bead", bead), ("polecat", polecat)) if v}
        esc = ledger.apply(escalation.Raise(severity, reason.splitlines()[0][:200], ledger.actor, reason=reason,
                                            related=bead, source=source))
        click.echo(f"{esc.id} {severity}: {esc.title}")


@escalate.command("list")
@click.option("--all", "show_all", is_flag=True, help="Include closed escalations.")
@town_option
@rig_option
@json_option
def list_(show_all: bool, town: Path | None, rig: str, as_json: bool) -> None:
    """List escalations, most severe first."""
    with rig_ledger(town, rig) as (_config, ledger):
        beads = ledger.beads().values()
        found = [b for b in beads if b.type == "escalation"] if show_all else escalation.open_escalations(beads)
        rows = [{"id": b.id, "severity": b.metadata.get("severity"), "status": str(b.status),
                 "acked_by": b.metadata.get("acked_by"), "bumps": b.metadata.get("bumps", 0), "title": b.title}
                for b in sorted(found, key=lambda b: (b.priority, b.created_at))]
    if as_json:
        emit(rows)
        return
    for r in rows:
        ack = f"acked by {r['acked_by']}" if r["acked_by"] else "unacknowledged"
        click.echo(f"{r['id']:<14} {r['severity']}  {r['status']:<11} {ack:<28} {r['title']}")


@escalate.command()
@click.argument("esc_id", metavar="ID")
@town_option
@rig_option
def ack(esc_id: str, town: Path | None, rig: str) -> None:
    """Acknowledge an escalation: someone is on it (no more bumps)."""
    with rig_ledger(town, rig) as (_config, ledger):
        esc = ledger.apply(escalation.Ack(esc_id, ledger.actor))
        click.echo(f"{esc.id} acknowledged by {esc.metadata['acked_by']}")


@escalate.command()
@click.argument("esc_id", metavar="ID")
@click.option("-r", "--reason", default="", help="How it was resolved.")
@town_option
@rig_option
def close(esc_id: str, reason: str, town: Path | None, rig: str) -> None:
    """Close an escalation."""
    with rig_ledger(town, rig) as (_config, ledger):
        esc = ledger.apply(escalation.Close(esc_id, ledger.actor, reason))
        click.echo(f"{esc.id} closed")
