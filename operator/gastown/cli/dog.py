"""``gt dog``: a rig's maintenance Dogs (prune, gc, compact): when they run, and running one now."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import click

from ..dogs import NAMES, Timers
from .common import emit, fail, json_option, rig_ledger, rig_option, town_option


@click.group()
def dog() -> None:
    """Maintenance: prune merged polecat branches and stale worktrees, git gc the caches,
    compact old closed records into the ledger's archive. A town's daemon runs them on the
    schedules of the rig's spec (spec.dogs); on a cluster they are CronJobs of the Rig."""


@dog.command("run")
@click.argument("name", type=click.Choice(NAMES))
@town_option
@rig_option
@click.option("--target", envvar="GT_TARGET", default=None,
              help="Branch work is merged into (default: the town rig's, else main; env GT_TARGET).")
@click.option("--retain-days", type=click.IntRange(1, 3650), default=None,
              help="compact: closed records younger than this stay live (default: the rig's spec, else 14).")
@json_option
def run(*, name: str, town: Path | None, rig: str, target: str | None, retain_days: int | None, as_json: bool) -> None:
    """Run the Dog NAME once against a rig, now. With a rig of the town, prune also removes
    its stale worktrees and gc also packs its clone."""
    from ..local.driver import LocalPort
    from ..local.town import Town
    from ..runtimes.local import LocalBackend

    with rig_ledger(town, rig, actor="dogs") as (config, ledger):
        if target:
            config.target = target
        if retain_days:
            config.dogs = config.dogs.model_copy(update={"retain_days": retain_days})
        home = Town(town).root
        backend = LocalBackend(home)
        report = LocalPort(config, backend, ledger).run_dog(name)
    if as_json:
        emit({"dog": report.dog, "done": report.done})
    else:
        click.echo(str(report))


@dog.command("list")
@town_option
@rig_option
@json_option
def list_(town: Path | None, rig: str, as_json: bool) -> None:
    """The rig's Dogs: schedule (UTC), enabled, and when each runs next."""
    from ..local.town import Town, TownError

    try:
        config = Town(town).rig(rig)
    except TownError as e:
        fail(e)
    now = datetime.now(UTC)
    timers = Timers(config.dogs, now)
    rows = [{"dog": n, "schedule": getattr(config.dogs, n).schedule, "enabled": getattr(config.dogs, n).enabled,
             "next": timers.next[n].isoformat() if n in timers.next else None} for n in NAMES]
    if as_json:
        emit({"rig": config.name, "retainDays": config.dogs.retain_days, "dogs": rows})
        return
    for r in rows:
        when = f"next {r['next']}" if r["enabled"] else "disabled"
        click.echo(f"{r['dog']:<8} {r['schedule']:<16} {when}")
    click.echo(f"compact keeps closed records for {config.dogs.retain_days} days")
