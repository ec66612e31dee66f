"""The subcommands of ``gt bead`` (imported when one runs): read and write the beads of a rig's ledger."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from ..ledger import (
    Bead,
    BeadType,
    Comment,
    DepType,
    Ledger,
    LedgerError,
    Status,
    blockers,
    select,
)
from ..ledger.handoff import Change
from ..ledger.ledger import default_cache_dir
from .bead_create import checked_title, meta_values, rig_here_option, town_here_option
from .common import emit, fail, json_option, settings, use_git_timeout
from .entry import TYPES, bead_row, change_handed_off, changed_text, handed_off

STATUSES = [s.value for s in Status]
DEP_TYPES = [d.value for d in DepType]


def ledger_command(fn: Callable) -> Callable:
    """Open the rig's ledger for the command; turn ledger errors into one line on stderr."""

    @rig_here_option
    @town_here_option
    @functools.wraps(fn)
    @click.pass_context
    def wrapper(ctx: click.Context, *args: Any, rig_here: str | None = None, town_here: Path | None = None,
                **kwargs: Any) -> None:
        o = ctx.obj
        use_git_timeout(settings())
        remote, cache = _where(rig_here or o["rig"], town_here or o["town"], o["cache_dir"])
        try:
            ledger = Ledger(remote, cache_dir=cache, prefix=o["prefix"] or "gt", actor=o["actor"])
        except LedgerError as e:
            fail(e)
        try:
            if o["prefix"] and ledger.tip and ledger.prefix != o["prefix"]:
                fail(f"this ledger uses the prefix {ledger.prefix!r}, not {o['prefix']!r}")
            fn(ledger, *args, **kwargs)
        except LedgerError as e:
            fail(e)
        finally:
            ledger.close()

    return wrapper


def _where(rig: str, town: Path | None, cache_dir: Path | None) -> tuple[str, Path]:
    """The rig's remote and ledger cache: a town rig by name (under the town's cache root, unless
    a root is given), else a path or URL."""
    if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", rig):  # a name (a path would need a / to be a bare word)
        from ..local.town import Town, TownError

        try:
            t = Town(town)
            config = t.rig(rig)  # the town's rig of that name, else an existing directory of that name
        except TownError as e:
            if not Path(rig).exists():
                fail(e)
        else:
            if config.remote != rig:
                return config.remote, default_cache_dir(config.remote, cache_dir or t.cache_root)
    return rig, default_cache_dir(rig, cache_dir)


def _dump(b: Bead | Comment) -> dict:
    return b.model_dump(mode="json", exclude_none=True)


def _row(b: Bead) -> str:
    return bead_row({"id": b.id, "status": b.status, "priority": b.priority, "type": b.type, "assignee": b.assignee,
                     "title": b.title})


def _print_bead(b: Bead, as_json: bool, beads: dict[str, Bead] | None = None) -> None:
    if as_json:
        emit(_dump(b))
        return
    click.echo(f"{b.id}  {b.title}")
    click.echo(f"  status:   {b.status}    priority: P{b.priority}    type: {b.type}")
    for label, value in (("assignee", b.assignee), ("owner", b.owner), ("created", f"{b.created_at:%Y-%m-%d %H:%M:%S} by {b.created_by}"),
                         ("closed", b.closed_at and f"{b.closed_at:%Y-%m-%d %H:%M:%S} {b.close_reason or ''}".rstrip())):
        if value:
            click.echo(f"  {label + ':':<9} {value}")
    if b.labels:
        click.echo(f"  labels:   {', '.join(b.labels)}")
    for d in b.dependencies:
        click.echo(f"  needs:    {d.id} ({d.type})")
    if beads is not None and (waiting := blockers(b, beads)):
        click.echo(f"  blocked by: {', '.join(waiting)}")
    for title, text in (("description", b.description), ("acceptance", b.acceptance), ("notes", b.notes)):
        if text:
            click.echo(f"\n  {title}:\n" + "\n".join("    " + ln for ln in text.splitlines()))
    for c in b.comments:
        click.echo(f"\n  [{c.created:%Y-%m-%d %H:%M}] {c.author}:\n" + "\n".join("    " + ln for ln in c.text.splitlines()))
    if b.metadata:
        click.echo("\n  metadata: " + json.dumps(b.metadata, sort_keys=True))


@ledger_command
def create_in_ledger(ledger: Ledger, *, title: str, fields: dict[str, Any], as_json: bool) -> None:
    """`gt bead create` through a Ledger of this process (a rig of a town, a --prefix to check)."""
    bead = ledger.create(title, **fields)
    emit(_dump(bead)) if as_json else click.echo(bead.id)


@click.command()
@click.argument("bead_id", metavar="ID")
@json_option
@ledger_command
def show(ledger: Ledger, bead_id: str, as_json: bool) -> None:
    """Show one bead."""
    beads = ledger.beads()
    if bead_id not in beads:
        ledger.get(bead_id, refresh=False)  # raises the clear error (not found, or corrupt)
    _print_bead(beads[bead_id], as_json, beads)


@click.command("list")
@click.option("-s", "--status", "statuses", multiple=True, type=click.Choice(STATUSES),
              help="Only beads in this status (repeat for more). Default: all but closed.")
@click.option("--all", "show_all", is_flag=True, help="Include closed beads.")
@click.option("-l", "--label", help="Only beads with this label.")
@click.option("--assignee", help="Only beads assigned to this worker.")
@click.option("-t", "--type", "type_", type=click.Choice(TYPES), help="Only beads of this type.")
@json_option
@ledger_command
def list_(ledger: Ledger, *, statuses: tuple[str, ...], show_all: bool, label: str | None,
          assignee: str | None, type_: str | None, as_json: bool) -> None:
    """List beads, most urgent first."""
    snap = ledger.snapshot()
    beads = snap.beads()
    for bad in snap.corrupt:
        click.echo(f"gt: warning: {bad}", err=True)
    wanted = [Status(s) for s in statuses] if statuses else (
        None if show_all else [s for s in Status if s != Status.CLOSED])
    found = select(beads.values(), status=wanted, label=label, assignee=assignee,
                   type=BeadType(type_) if type_ else None)
    if as_json:
        emit([_dump(b) for b in found])
    else:
        for b in found:
            click.echo(_row(b))


@click.command()
@click.argument("bead_id", metavar="ID")
@click.option("--title", callback=checked_title, help="New title.")
@click.option("-d", "--description", help="New description.")
@click.option("-a", "--acceptance", help="New acceptance criteria.")
@click.option("--notes", help="New notes.")
@click.option("-t", "--type", "type_", type=click.Choice(TYPES), help="New type.")
@click.option("-p", "--priority", type=click.IntRange(0, 4), help="New priority.")
@click.option("-s", "--status", type=click.Choice(STATUSES), help="New status (closed -> open: use reopen).")
@click.option("--assignee", help="New assignee (empty to clear).")
@click.option("--owner", help="New owner (empty to clear).")
@click.option("--add-label", multiple=True, help="Add a label (repeat for more).")
@click.option("--remove-label", multiple=True, help="Remove a label (repeat for more).")
@click.option("--meta", multiple=True, metavar="KEY=VALUE", help="Set metadata; KEY= removes it.")
@json_option
@ledger_command
def update(ledger: Ledger, *, bead_id: str, title: str | None, description: str | None,
           acceptance: str | None, notes: str | None, type_: str | None, priority: int | None,
           status: str | None, assignee: str | None, owner: str | None, add_label: tuple[str, ...],
           remove_label: tuple[str, ...], meta: tuple[str, ...], as_json: bool) -> None:
    """Change fields of a bead."""
    fields: dict[str, Any] = {k: v for k, v in (("title", title), ("description", description),
                                ("acceptance", acceptance), ("notes", notes), ("priority", priority),
                                ("type", BeadType(type_) if type_ else None)) if v is not None}
    for name, value in (("assignee", assignee), ("owner", owner)):
        if value is not None:
            fields[name] = value or None
    b = ledger.update(bead_id, status=status, add_labels=add_label, remove_labels=remove_label,
                      metadata=meta_values(meta), **fields)
    emit(_dump(b)) if as_json else click.echo(_row(b))


def _with_reason(kind: str, summary: str, reason: str) -> click.Command:
    """`gt bead close` and `gt bead reopen`: ID and a reason."""

    @click.command(kind, help=summary)
    @click.argument("bead_id", metavar="ID")
    @click.option("-r", "--reason", default="", help=reason)
    @json_option
    @rig_here_option
    @town_here_option
    @click.pass_context
    def command(ctx: click.Context, *, bead_id: str, reason: str, as_json: bool, rig_here: str | None,
                town_here: Path | None) -> None:
        _change(ctx, kind, bead_id=bead_id, text=reason, as_json=as_json, rig_here=rig_here, town_here=town_here)

    return command


close = _with_reason("close", "Close a bead.", "Why (recorded in the bead and the commit).")
reopen = _with_reason("reopen", "Reopen a closed bead.", "Why (added as a comment).")


@click.command()
@click.argument("bead_id", metavar="ID")
@click.argument("text")
@json_option
@rig_here_option
@town_here_option
@click.pass_context
def comment(ctx: click.Context, *, bead_id: str, text: str, as_json: bool, rig_here: str | None,
            town_here: Path | None) -> None:
    """Add a comment to a bead."""
    _change(ctx, "comment", bead_id=bead_id, text=text, as_json=as_json, rig_here=rig_here, town_here=town_here)


def _change(ctx: click.Context, kind: str, *, bead_id: str, text: str, as_json: bool, rig_here: str | None,
            town_here: Path | None) -> None:
    """A close, a reopen or a comment: handed to the machine's committer on a rig by path or URL
    (as `gt`'s entry point does, cli/entry.py), else through a Ledger of this process."""
    o = ctx.obj
    rig = rig_here or o["rig"]
    if handed_off(rig, prefix=o["prefix"]):
        change_handed_off(kind=kind, rig=rig, cache_dir=o["cache_dir"], actor=o["actor"], bead_id=bead_id, text=text,
                          as_json=as_json, git_timeout=settings().git_timeout)
    else:
        ctx.invoke(change_in_ledger, kind=kind, bead_id=bead_id, text=text, as_json=as_json, rig_here=rig_here,
                   town_here=town_here)


@ledger_command
def change_in_ledger(ledger: Ledger, *, kind: str, bead_id: str, text: str, as_json: bool) -> None:
    """A close, a reopen or a comment through a Ledger of this process (a rig of a town, a --prefix
    to check): the same change the committer makes for a handed-off one."""
    bead = ledger.apply(Change(kind, ledger.actor, bead_id, text))
    click.echo(changed_text(kind, bead, as_json=as_json))


@click.group()
def dep() -> None:
    """Dependencies between beads."""


dep_type_option = click.option("-t", "--type", "type_", type=click.Choice(DEP_TYPES), default="blocks",
                               show_default=True, help="blocks: DEPENDS_ON must close first; "
                               "parent-child: DEPENDS_ON is the parent; tracks; discovered-from.")


@dep.command("add")
@click.argument("bead_id", metavar="ID")
@click.argument("depends_on")
@dep_type_option
@json_option
@ledger_command
def dep_add(ledger: Ledger, *, bead_id: str, depends_on: str, type_: str, as_json: bool) -> None:
    """Make ID depend on DEPENDS_ON. A dependency cycle is refused."""
    b = ledger.add_dep(bead_id, depends_on, type_)
    emit(_dump(b)) if as_json else click.echo(f"{b.id} depends on {depends_on} ({type_})")


@dep.command("rm")
@click.argument("bead_id", metavar="ID")
@click.argument("depends_on")
@click.option("-t", "--type", "type_", type=click.Choice(DEP_TYPES),
              help="Only the dependency of this type (default: any).")
@json_option
@ledger_command
def dep_rm(ledger: Ledger, *, bead_id: str, depends_on: str, type_: str | None, as_json: bool) -> None:
    """Remove the dependency of ID on DEPENDS_ON."""
    b = ledger.remove_dep(bead_id, depends_on, type_)
    emit(_dump(b)) if as_json else click.echo(f"{b.id} no longer depends on {depends_on}")


@click.command()
@click.option("--assignee", help="Only work assigned to this worker.")
@json_option
@ledger_command
def ready(ledger: Ledger, assignee: str | None, as_json: bool) -> None:
    """Open beads with nothing open blocking them, most urgent first."""
    found = ledger.ready(assignee)
    if as_json:
        emit([_dump(b) for b in found])
    else:
        for b in found:
            click.echo(_row(b))


@click.command()
@click.argument("bead_id", metavar="ID")
@json_option
@ledger_command
def history(ledger: Ledger, bead_id: str, as_json: bool) -> None:
    """What happened to a bead, oldest first, from the git log of the ledger."""
    entries = ledger.history(bead_id)
    if as_json:
        emit([e.__dict__ for e in entries])
    else:
        for e in entries:
            click.echo(f"{e.date}  {e.commit[:10]}  {e.change}")


@click.command()
@ledger_command
def migrate(ledger: Ledger) -> None:
    """Bring the ledger to this release's format now, in one commit.

    The first write of this release migrates an older ledger anyway; releases that read only
    the older format then refuse the ledger (with an error naming ledger.json), so upgrade
    every gt that writes to this rig first."""
    if ledger.migrate():
        click.echo(f"migrated the ledger of {ledger.remote} to format {ledger.snapshot().format}")
    else:
        click.echo("the ledger is already in this release's format (or does not exist yet): nothing to do")
