"""``gt convoy``, ``gt sling`` and ``gt scheduler``: work given to a rig."""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import yaml

from .. import budget as budgets
from .. import convoy as convoys
from .. import formulas, scheduler
from ..api import ConvoySpec, Invalid
from ..api.validation import parse_spec
from ..ledger import Ledger, LedgerError, default_actor, query
from ..local.apply import create_convoy
from ..local.town import Town, TownError
from ..spend import describe
from .budget import convoy_standing
from .common import emit, fail, json_option, rig_ledger, rig_option, town_option


@click.group()
def convoy() -> None:
    """Convoys: bundles of beads delivered together (locally; on a cluster, apply a Convoy)."""


@convoy.command()
@town_option
@rig_option
@click.option("--name", help="The convoy's name, unique in the rig (default: from the goal, file or formula).")
@click.option("--goal", help="Free text for the Mayor to decompose.")
@click.option("--beads", "beads_file", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="A YAML or JSON file: a list of beads (key, title, description, acceptance, priority, needs).")
@click.option("--formula", help="A formula to instantiate.")
@click.option("--var", "vars_", multiple=True, metavar="KEY=VALUE", help="A formula var (repeat).")
@click.option("--mode", type=click.Choice(["root", "poured"]), default="poured", show_default=True,
              help="Formula mode: one bead, or a child bead per step as well.")
@click.option("--label", "labels", multiple=True, help="A label, e.g. mountain (repeat).")
@click.option("--max-parallel", type=click.IntRange(1, 100), help="Most beads of this convoy in flight at once.")
@click.option("--strategy", type=click.Choice(["mr", "direct"]), default="mr", show_default=True,
              help="mr: through the merge queue; direct: merged as soon as each bead is done.")
@click.option("--stall-after", type=click.IntRange(60), default=3600, show_default=True,
              help="Seconds without progress before the convoy is Stalled.")
@json_option
def create(*, town: Path | None, rig: str, name: str | None, goal: str | None, beads_file: Path | None, formula: str | None,
           vars_: tuple[str, ...], mode: str, labels: tuple[str, ...], max_parallel: int | None, strategy: str,
           stall_after: int, as_json: bool) -> None:
    """Create a convoy from exactly one of --goal, --beads or --formula."""
    raw: dict[str, Any] = {"rig": "local", "labels": list(labels), "mergeStrategy": strategy,
                           "stallAfterSeconds": stall_after}
    if max_parallel:
        raw["maxParallel"] = max_parallel
    if goal is not None:
        raw["goal"] = goal
    if beads_file is not None:
        data = yaml.safe_load(beads_file.read_text())
        raw["beads"] = data.get("beads") if isinstance(data, dict) else data
    if formula is not None:
        raw["formula"] = {"name": formula, "mode": mode, "vars": dict(_pairs(vars_))}
    try:
        spec = parse_spec(ConvoySpec, raw)
    except Invalid as e:
        fail(str(e).replace("spec.", "--"))
    name = name or _default_name(goal, beads_file, formula)
    try:
        home = Town(town).rig(rig)
        if not create_convoy(Town(town), name, spec.model_copy(update={"rig": home.name}), default_actor(), home_rig=home):
            fail(f"rig {home.name} has a convoy {name} already: gt convoy show {name} --rig {rig}")
    except (TownError, LedgerError, formulas.FormulaError) as e:
        fail(e)
    with rig_ledger(town, rig) as (_config, ledger):
        _show(ledger, convoys.convoy_id(ledger.prefix, name), as_json, Town(town))


def _default_name(goal: str | None, beads_file: Path | None, formula: str | None) -> str:
    """A name from what the convoy is made of, unique enough: login-form-3f9a."""
    base = formula or (beads_file.stem if beads_file else " ".join((goal or "convoy").split()[:4]))
    slug = re.sub(r"[^a-z0-9]+", "-", base.lower()).strip("-")[:40].strip("-") or "convoy"
    return f"{slug}-{os.urandom(2).hex()}"


def _pairs(items: tuple[str, ...]) -> list[tuple[str, str]]:
    out = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            fail(f"--var {item!r}: use KEY=VALUE")
        out.append((key, value))
    return out


def _show(ledger: Ledger, convoy_id: str, as_json: bool, town: Town) -> None:
    beads = ledger.beads()
    prog = convoys.progress(beads[convoy_id], beads)
    meta = prog.convoy.metadata
    data = {"id": convoy_id, "name": meta["name"], "phase": prog.phase, "progress": prog.text,
            "source": meta.get("source"), "strategy": meta.get("strategy"), "labels": prog.convoy.labels,
            "planError": meta.get("plan_error"), "closeReason": prog.convoy.close_reason,
            "beads": [b.__dict__ for b in prog.beads], "spend": prog.spend,
            "budget": convoy_standing(town, prog.convoy, beads).status()}
    if as_json:
        emit(data)
        return
    click.echo(f"{meta['name']} ({convoy_id})  {prog.phase}  {prog.text}")
    if meta.get("plan_error"):
        click.echo(f"  plan invalid: {meta['plan_error']}")
    if prog.convoy.close_reason:
        click.echo(f"  {prog.convoy.close_reason}")
    if prog.spend:
        click.echo(f"  spent: {describe(prog.spend)}")
    if data["budget"]["state"] != "Unbudgeted":
        click.echo(f"  budget: {budgets.status_line(data['budget'])}")
    for b in prog.beads:
        click.echo(f"  {b.key:<16} {b.id:<14} {b.state:<9} {b.title}")


def _find(ledger: Ledger, name: str) -> str:
    beads = ledger.beads()
    cid = convoys.convoy_id(ledger.prefix, name)
    if cid in beads:
        return cid
    for b in beads.values():
        if b.type == "convoy" and name in (b.metadata.get("name"), b.id):
            return b.id
    fail(f"no convoy {name!r} in this rig")


@convoy.command("show")
@click.argument("name")
@town_option
@rig_option
@json_option
def show(name: str, town: Path | None, rig: str, as_json: bool) -> None:
    """Show a convoy: phase, progress, and each bead's state."""
    with rig_ledger(town, rig) as (_config, ledger):
        _show(ledger, _find(ledger, name), as_json, Town(town))


@convoy.command("list")
@town_option
@rig_option
@click.option("--all", "show_all", is_flag=True, help="Include finished convoys.")
@json_option
def list_(town: Path | None, rig: str, show_all: bool, as_json: bool) -> None:
    """List the rig's convoys."""
    with rig_ledger(town, rig) as (_config, ledger):
        beads = ledger.beads()
        rows = []
        for b in sorted((b for b in beads.values() if b.type == "convoy"), key=lambda b: b.created_at):
            if b.status == "closed" and not show_all:
                continue
            prog = convoys.progress(b, beads)
            rows.append({"id": b.id, "name": b.metadata["name"], "phase": prog.phase, "progress": prog.text})
    if as_json:
        emit(rows)
        return
    for r in rows:
        click.echo(f"{r['name']:<24} {r['id']:<14} {r['phase']:<9} {r['progress']}")


@click.command()
@click.argument("bead_id", metavar="BEAD")
@click.argument("rig", metavar="RIG")
@click.option("--polecat", help="Give it to this polecat (default: an idle one, or a new one).")
@town_option
def sling(bead_id: str, rig: str, polecat: str | None, town: Path | None) -> None:
    """Hook BEAD to a polecat of RIG now, within the rig's limit."""
    with rig_ledger(town, rig) as (config, ledger):
        snap = ledger.snapshot()
        beads = snap.beads()
        if bead_id not in beads:
            ledger.get(bead_id, refresh=False)
        state = scheduler.state_of(beads, snap.prefix)
        limit = state.limit or config.max_polecats
        flying = scheduler.in_flight(beads)
        if len(flying) >= limit:
            fail(f"rig {config.name} is at its limit ({len(flying)} of {limit} in flight); "
                 f"{bead_id} stays queued and goes when a slot frees")
        polecat = polecat or scheduler.free_polecat(beads)
        ledger.apply(scheduler.Assign(bead_id, polecat, config.name, ledger.actor))
        waits = f" (the rig is {state.held(datetime.now(UTC))}: its session starts after that)" \
            if state.held(datetime.now(UTC)) else ""
        click.echo(f"{bead_id} hooked to polecat {polecat} on rig {config.name}{waits}")


@click.group("scheduler")
def scheduler_group() -> None:
    """The rig's dispatcher: see it, pause it, resume it (the same on a cluster and locally)."""


@scheduler_group.command()
@town_option
@rig_option
@json_option
def status(town: Path | None, rig: str, as_json: bool) -> None:
    """What the scheduler holds, queues, and why it waits."""
    with rig_ledger(town, rig) as (config, ledger):
        snap = ledger.snapshot()
        beads = snap.beads()
        state = scheduler.state_of(beads, snap.prefix)
        limit = state.limit or config.max_polecats
        flying = scheduler.in_flight(beads)
        queued = [b for b in query.ready(beads) if scheduler.dispatchable(b, beads)]
        data = {"rig": config.name, "limit": limit, "inFlight": len(flying), "queued": len(queued),
                "paused": state.paused, "pausedBy": state.paused_by,
                "held": state.held(datetime.now(UTC)), "strikes": state.strikes,
                "working": [{"bead": b.id, "polecat": b.assignee, "status": str(b.status)} for b in flying]}
    if as_json:
        emit(data)
        return
    click.echo(f"rig {data['rig']}: {data['inFlight']} of {limit} in flight, {data['queued']} queued"
               + (f"; waiting: {data['held']}" if data["held"] else ""))
    for w in data["working"]:
        click.echo(f"  {w['polecat']:<12} {w['bead']:<14} {w['status']}")


@scheduler_group.command()
@town_option
@rig_option
def pause(town: Path | None, rig: str) -> None:
    """Stop dispatching new work on the rig (running sessions go on)."""
    with rig_ledger(town, rig) as (config, ledger):
        ledger.apply(scheduler.SetPaused(True, ledger.actor))
        click.echo(f"rig {config.name}: dispatch paused")


@scheduler_group.command()
@town_option
@rig_option
def resume(town: Path | None, rig: str) -> None:
    """Dispatch again."""
    with rig_ledger(town, rig) as (config, ledger):
        ledger.apply(scheduler.SetPaused(False, ledger.actor))
        click.echo(f"rig {config.name}: dispatch resumed")
