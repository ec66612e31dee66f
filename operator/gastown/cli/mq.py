"""``gt mq``: the merge queue (the Refinery) of a rig: list, status, retry, reject, verify."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..ledger import BeadType, Status
from ..refinery import Reject, Requeue
from ..refinery import queue as q
from ..refinery.bisect import Run
from ..refinery.records import state_of
from .common import cache_option, emit, fail, json_option, rig_ledger, rig_option, town_option

if TYPE_CHECKING:
    from ..refinery.verify import GateResult, Verification

target_option = click.option("--target", envvar="GT_TARGET", default="main", show_default=True,
                             help="The target branch of the queue (env GT_TARGET).")


@click.group()
def mq() -> None:
    """The merge queue: merge requests waiting, the batch being verified, retry and reject."""


@mq.command("list")
@click.option("--all", "show_all", is_flag=True, help="Include merged merge requests.")
@town_option
@rig_option
@target_option
@json_option
def list_(*, show_all: bool, town: Path | None, rig: str, target: str, as_json: bool) -> None:
    """Merge requests in queue order: queued, verifying, then blocked (rejected or conflicting)."""
    with rig_ledger(town, rig) as (_config, ledger):
        beads = ledger.beads()
    order = {Status.IN_PROGRESS: 0, Status.OPEN: 1, Status.BLOCKED: 2, Status.CLOSED: 3}
    mrs = [b for b in q.merge_requests(beads, target) if show_all or b.status != Status.CLOSED]
    mrs.sort(key=lambda b: (order.get(b.status, 4), q.score(b, beads)))
    rows: list[dict[str, Any]] = [{"id": b.id, "status": str(b.status), "source": b.metadata.get("source"),
             "branch": b.metadata.get("branch"), "worker": b.metadata.get("worker"), "priority": b.priority,
             "batch": b.metadata.get("batch"), "rejections": int(b.metadata.get("rejections", 0)),
             "conflicts": int(b.metadata.get("conflict_rounds", 0)), "merged": b.metadata.get("merged_commit")}
            for b in mrs]
    if as_json:
        emit(rows)
        return
    if not rows:
        click.echo(f"no merge requests into {target}")
    for r in rows:
        extra = f" batch {r['batch']}" if r["batch"] else f" merged {r['merged'][:12]}" if r["merged"] else ""
        retries = f" rejected {r['rejections']}x" if r["rejections"] else ""
        retries += f" conflict {r['conflicts']}x" if r["conflicts"] else ""
        click.echo(f"{r['id']:<12} {r['status']:<12} P{r['priority']} {r['branch']} ({r['source']}, "
                   f"{r['worker']}){extra}{retries}")


@mq.command("status")
@town_option
@rig_option
@target_option
@json_option
def status(town: Path | None, rig: str, target: str, as_json: bool) -> None:
    """The queue's length, the batch under verification and its bisection, and the counters."""
    with rig_ledger(town, rig) as (_config, ledger):
        beads = ledger.beads()
    batch = q.active_batch(beads, target)
    out: dict = {"target": target, "queued": [b.id for b in q.queued(beads, target)],
                 "counters": q.counters(beads, target), "batch": None}
    if batch is not None:
        state = state_of(batch)
        out["batch"] = {"id": batch.id, "phase": batch.metadata.get("phase"), "base": batch.metadata.get("base"),
                        "mrs": state.mrs, "round": state.rounds, "runs": len(batch.metadata.get("runs", {})),
                        "accepted": state.accepted, "rejected": state.rejected, "pending": state.pending}
    if as_json:
        emit(out)
        return
    c = out["counters"]
    click.echo(f"queue into {target}: {len(out['queued'])} waiting; merged {c['merged']}, rejected {c['rejected']}, "
               f"conflicts {c['conflicts']}, verification runs {c['verification_runs']}")
    if batch is None:
        click.echo("no batch under verification")
        return
    b = out["batch"]
    click.echo(f"batch {b['id']} ({b['phase']}) on {b['base'][:12]}: {len(b['mrs'])} MRs, round {b['round']}, "
               f"{b['runs']} run(s) recorded")
    click.echo(f"  accepted: {', '.join(b['accepted']) or '-'}")
    click.echo(f"  rejected: {', '.join(f'{k} ({v})' for k, v in b['rejected'].items()) or '-'}")
    click.echo(f"  to verify: {'; '.join(', '.join(g) for g in b['pending']) or '-'}")


@mq.command("retry")
@click.argument("mr_id")
@town_option
@rig_option
def retry(mr_id: str, town: Path | None, rig: str) -> None:
    """Queue a rejected or conflicting merge request again, unchanged (for a flaky failure)."""
    with rig_ledger(town, rig) as (_config, ledger):
        mr = ledger.apply(Requeue(mr_id, ledger.actor))
    click.echo(f"{mr.id}: {mr.status}")


@mq.command("reject")
@click.argument("mr_id")
@click.option("-r", "--reason", required=True, help="Why: the polecat reads it.")
@town_option
@rig_option
def reject(mr_id: str, reason: str, town: Path | None, rig: str) -> None:
    """Reject a queued merge request by hand: its work goes back to its polecat with the reason."""
    with rig_ledger(town, rig) as (_config, ledger):
        mr = ledger.get(mr_id)
        if mr.type != BeadType.MERGE_REQUEST:
            fail(f"{mr_id} is not a merge request of this rig")
        if mr.status != Status.OPEN:
            fail(f"{mr_id} is {mr.status}: only a queued merge request can be rejected by hand")
        ledger.apply(Reject(mr_id=mr_id, reason=f"rejected by {ledger.actor}: {reason}", log="", actor=ledger.actor))
    click.echo(f"{mr_id}: rejected")


@mq.command("verify")
@click.option("--rig", envvar="GT_RIG", required=True, metavar="PATH|URL", help="The rig repository (env GT_RIG).")
@click.option("--batch", envvar="GT_BATCH", required=True, help="The batch (env GT_BATCH).")
@click.option("--run", "run_json", envvar="GT_RUN", required=True,
              help='The run, as JSON {"prefix": [...], "group": [...]} (env GT_RUN).')
@click.option("--ref", envvar="GT_VERIFY_REF", required=True, help="The ref of the stacked tip (env GT_VERIFY_REF).")
@click.option("--attempt", envvar="GT_ATTEMPT", type=click.IntRange(0), default=None,
              help="The batch's rebuilds when the run started: a result for an older base is dropped "
                   "(env GT_ATTEMPT).")
@click.option("--gates", "gates_json", envvar="GT_GATES", default="[]",
              help='The gates, as JSON [["name", ["argv", ...]], ...] (env GT_GATES).')
@click.option("--timeout", envvar="GT_VERIFY_TIMEOUT", type=click.FloatRange(1), default=1800, show_default=True,
              help="Seconds for all gates together (env GT_VERIFY_TIMEOUT).")
@click.option("--workdir", envvar="GT_WORKDIR", type=click.Path(path_type=Path, file_okay=False),
              default=".", show_default=True, help="Where to check the tip out (env GT_WORKDIR).")
@cache_option
def verify(*, rig: str, batch: str, run_json: str, ref: str, attempt: int | None, gates_json: str, timeout: float,
           workdir: Path, cache_dir: Path | None) -> None:
    """Verify one stacked tip and record the result (what runs in a verification Job).

    Exit code 0 when every gate passed, 1 when one failed, 2 when it could not run.
    """
    from ..refinery.verify import Verification
    from ..telemetry import tracing

    try:
        run = Run.from_dict(json.loads(run_json))
        gates = [(str(n), [str(a) for a in argv]) for n, argv in json.loads(gates_json)]
    except (ValueError, KeyError, TypeError) as e:
        fail(f"--run or --gates is not valid JSON of the expected shape: {e}")
    verification = Verification(batch, run, attempt or 0)
    with tracing.carried_on("gastown-verify"):
        result, took = _verify(verification, rig, gates=gates, timeout=timeout, workdir=workdir,
                               cache_dir=cache_dir, attempt=attempt)
    click.echo(f"run {verification.ident}: {'pass' if result.ok else f'fail ({result.gate})'} in {took:.1f}s",
               err=not result.ok)
    sys.exit(0 if result.ok else 1)


def _verify(verification: Verification, rig: str, *, gates: list[tuple[str, list[str]]], timeout: float,
            workdir: Path, cache_dir: Path | None, attempt: int | None) -> tuple[GateResult, float]:
    """Check the tip out, run the gates, record the run: (the gates' result, seconds taken)."""
    from ..ledger import Ledger, LedgerError
    from ..ledger.ledger import default_cache_dir
    from ..refinery.verify import verify_run

    with Ledger(rig, cache_dir=default_cache_dir(rig, cache_dir), actor="refinery verifier") as ledger:
        try:
            result, took = verify_run(verification, rig, gates, timeout, workdir=workdir, ledger=ledger,
                                      attempt=attempt)
        except LedgerError as e:
            fail(f"cannot check out {verification.ref}: {e}")
    click.echo(result.log)
    return result, took
