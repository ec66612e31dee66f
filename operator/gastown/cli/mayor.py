"""``gt mayor plan``: the Mayor's one job, the same in a pod and on a laptop."""

from __future__ import annotations

from pathlib import Path

import click

from .. import convoy as convoys
from ..ledger import Ledger, LedgerError
from ..ledger.ledger import default_cache_dir
from ..mayor import MayorRun, PlanInvalid
from ..runtimes import ConfigError, resolve
from ..telemetry import tracing
from .common import cache_option, fail


@click.group()
def mayor() -> None:
    """The Mayor: decomposes a convoy's goal into beads."""


@mayor.command("plan", context_settings={"ignore_unknown_options": True})
@click.option("--convoy", "key", required=True, help="The convoy's key (namespace/name on a cluster).")
@click.option("--rig", envvar="GT_RIG", required=True, metavar="PATH|URL", help="The rig repository (env GT_RIG).")
@click.option("--runtime", envvar="GT_RUNTIME", default="claude", show_default=True, help="Runtime (env GT_RUNTIME).")
@click.option("--model", envvar="GT_MODEL", help="Model (env GT_MODEL).")
@click.option("--workdir", envvar="GT_WORKDIR", type=click.Path(path_type=Path, file_okay=False), default=".",
              show_default=True, help="A checkout of the rig for the Mayor to read (env GT_WORKDIR).")
@click.option("--session-dir", envvar="GT_SESSION_DIR", type=click.Path(path_type=Path), default=".gastown-mayor",
              show_default=True, help="Where the prompt and the answer are kept (env GT_SESSION_DIR).")
@cache_option
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def plan(*, key: str, rig: str, runtime: str, model: str | None, workdir: Path, session_dir: Path,
         cache_dir: Path | None, args: tuple[str, ...]) -> None:
    """Ask the runtime for a plan of the convoy's goal; write the beads, or say why not.

    An invalid plan is sent back once with the error; a second one marks the convoy
    PlanInvalid and raises an escalation. Planning a planned convoy changes nothing.
    """
    with tracing.carried_on("gastown-mayor"), Ledger(rig, cache_dir=default_cache_dir(rig, cache_dir), actor="mayor") as ledger:
        try:
            beads = ledger.beads()
            convoy = beads.get(convoys.convoy_id(ledger.prefix, key))
            if convoy is None:
                fail(f"no convoy {key!r} in the ledger of {rig}")
            if convoy.metadata.get("planned"):
                click.echo(f"convoy {key} is already planned")
                return
            run = MayorRun(runtime=resolve(runtime), workdir=workdir.resolve(), session_dir=session_dir.resolve(),
                           model=model, args=args)
            try:
                with tracing.planning_of(convoy, source="mayor"):  # under the convoy's root, as the operator's
                    result = run.plan(convoy.description, convoy.metadata.get("rig", ""))
            except (PlanInvalid, OSError) as e:
                ledger.apply(convoys.FailPlan(key, str(e), "mayor"))
                fail(f"convoy {key}: plan invalid: {e}")
            ledger.apply(convoys.PlanConvoy(key, tuple(convoys.planned_from_list(result.beads)), "mayor",
                                            planned_by="mayor"))
        except (LedgerError, ConfigError) as e:
            fail(e)
    click.echo(f"convoy {key}: planned {len(result.beads)} beads")
