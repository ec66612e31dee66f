"""``gt formula``: the workflow templates."""

from __future__ import annotations

from pathlib import Path

import click

from .. import formulas
from .common import emit, fail, json_option


def _sources(rig_dir: Path | None) -> list[formulas.Source]:
    return formulas.default_sources(rig_dir / ".gastown" / "formulas" if rig_dir else None)


rig_dir_option = click.option("--rig-dir", type=click.Path(path_type=Path, file_okay=False),
                              help="A checkout of the rig, for its own .gastown/formulas/.")


@click.group()
def formula() -> None:
    """Formulas: TOML workflow templates (the rig's own, the operator's, the built-in ones)."""


@formula.command("list")
@rig_dir_option
@json_option
def list_(rig_dir: Path | None, as_json: bool) -> None:
    """List the formulas that can be used, and where each comes from."""
    sources = _sources(rig_dir)
    rows = []
    for name, source in formulas.available(sources).items():
        try:
            desc = formulas.find(name, sources).description
        except formulas.FormulaError as e:
            desc = f"INVALID: {e}"
        rows.append({"name": name, "from": source.origin, "description": desc})
    if as_json:
        emit(rows)
        return
    for r in rows:
        click.echo(f"{r['name']:<14} {r['from']:<22} {r['description']}")


@formula.command()
@click.argument("name")
@rig_dir_option
@click.option("--var", "vars_", multiple=True, metavar="KEY=VALUE", help="Fill a var to see the steps as they would be.")
@json_option
def show(name: str, rig_dir: Path | None, vars_: tuple[str, ...], as_json: bool) -> None:
    """Show a formula: its vars and steps (filled in when --var is given)."""
    try:
        f = formulas.find(name, _sources(rig_dir))
        molecule = formulas.instantiate(f, _vars(vars_)) if vars_ else None
    except formulas.FormulaError as e:
        fail(e)
    if as_json:
        emit(f.model_dump())
        return
    click.echo(f"{f.formula} (version {f.version}): {f.description}")
    for vname, var in f.vars.items():
        how = "required" if var.required else f"default {var.default!r}" if var.default is not None else "optional"
        click.echo(f"  var {vname:<12} {how:<20} {var.description}")
    steps = molecule.steps if molecule else f.steps
    for s in steps:
        needs = f"  (after {', '.join(s.needs)})" if s.needs else ""
        click.echo(f"  step {s.id:<11} {s.title}{needs}")


@formula.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path, dir_okay=False, exists=True))
def validate(files: tuple[Path, ...]) -> None:
    """Check formula files: TOML, vars, steps, needs, cycles, templates."""
    bad = 0
    for path in files:
        try:
            f = formulas.parse(path.read_text(), str(path))
            click.echo(f"{path}: ok ({f.formula}, {len(f.steps)} steps)")
        except formulas.FormulaError as e:
            click.echo(f"gt: error: {e}", err=True)
            bad += 1
    if bad:
        raise SystemExit(1)


def _vars(items: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            fail(f"--var {item!r}: use KEY=VALUE")
        out[key] = value
    return out
