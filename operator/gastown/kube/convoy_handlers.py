"""The Convoy controller: the convoy's bead and plan in the ledger; status from the ledger."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import kopf

from .. import convoy as convoys
from .. import formulas
from ..api import GROUP, VERSION, Condition, ConvoySpec, Invalid
from ..api.validation import parse_spec
from ..budget import SetConvoyBudget, budget_condition, convoy_standing
from ..ledger import Bead
from ..ledger.ops import Together
from ..names import OPERATOR_ACTOR
from ..telemetry import tracing
from .client import set_conditions
from .ledger_calls import ledger_handler
from .memo import ledgers
from .rig_index import require_rig


def convoy_key(namespace: str, name: str) -> str:
    return f"{namespace}/{name}"


@kopf.index(GROUP, VERSION, "convoys")  # type: ignore[arg-type]  # kopf's Protocol: namespace str | None
def convoys_by_rig(namespace: str, name: str, uid: str, spec: Mapping, **_: Any) -> dict:
    return {(namespace, spec.get("rig")): {"key": convoy_key(namespace, name), "name": name, "uid": uid}}


@kopf.on.create(GROUP, VERSION, "convoys", id="plan")
@kopf.on.resume(GROUP, VERSION, "convoys", id="plan")
@kopf.on.update(GROUP, VERSION, "convoys", id="plan")  # type: ignore[arg-type]  # kopf's Protocol has no index kwargs
@ledger_handler
def plan_convoy(*, name: str, namespace: str, spec: Mapping, body: kopf.Body, memo: kopf.Memo,
                rigs_by_name: kopf.Index, **_: Any) -> None:
    try:
        convoy = parse_spec(ConvoySpec, spec)
    except Invalid:
        return  # admission reports it
    rig = require_rig(rigs_by_name, namespace, convoy.rig, body)
    generation = body["metadata"].get("generation")
    ledger = ledgers(memo).for_rig(namespace, convoy.rig, rig)
    key = convoy_key(namespace, name)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            plan = convoys.plan_from_spec(convoy, convoys.rig_formula_sources(ledger, rig.default_branch, Path(tmp)))
    except formulas.FormulaError as e:
        message = f"spec.formula: {e}. Fix the formula or its vars and apply the Convoy again."
        set_conditions(namespace, "convoys", name, Condition(type="PlanInvalid", status="True", reason="FormulaInvalid",
                                                             message=message, observed_generation=generation),
                       status={"phase": "Failed"})
        kopf.warn(body, reason="FormulaInvalid", message=message)
        return
    info = convoys.info_from_spec(key, name, convoy)
    parts = convoys.split(info, plan)  # one per rig: every rig must exist before any part is written
    specs = {r: rig if r == convoy.rig else require_rig(rigs_by_name, namespace, r, body) for r in parts}
    written = {}
    with tracing.planning(convoy.rig, key, source=info.source, beads=len(plan) if plan is not None else None):
        for part_rig, (part_info, part_plan) in parts.items():
            ops: list[Any] = [convoys.OpenConvoy(part_info, OPERATOR_ACTOR)]
            if part_plan is not None:
                ops.append(convoys.PlanConvoy(key, tuple(part_plan), OPERATOR_ACTOR, planned_by=info.source))
            if part_rig == convoy.rig:  # its budget, set or changed (raised: its work goes on at the next pass)
                ops.append(SetConvoyBudget(key, convoy.budget.wire() if convoy.budget else None, OPERATOR_ACTOR))
            ledger = ledgers(memo).for_rig(namespace, part_rig, specs[part_rig])
            written[part_rig] = ledger.apply(Together(tuple(ops), OPERATOR_ACTOR))
    bead = written[convoy.rig]
    # the phase the ledger gives (on a restart the convoy may be long Done), never one assumed from the plan
    set_conditions(namespace, "convoys", name, Condition(
        type="PlanInvalid", status="False", reason="Planned" if plan is not None else "MayorPlanning",
        observed_generation=generation),
        status={"convoyBead": bead.id, "phase": convoys.ConvoyProgress(bead).phase})


def convoy_status(convoy: Bead, beads: Mapping[str, Bead],
                  parts: Sequence[tuple[Bead, Mapping[str, Bead]]] = ()) -> tuple[dict, tuple[Condition, ...]]:
    """The Convoy's status as the ledgers say it is, and its conditions: its home rig's part and
    the ``parts`` on other rigs. Pure."""
    progs = [convoys.progress(convoy, beads)] + [convoys.progress(p, b) for p, b in parts]
    prog = progs[0]
    meta = convoy.metadata
    # transition times come from the ledger, so the same ledger always gives the same status
    when = convoy.updated_at.replace(microsecond=0)
    stalled = meta.get("stalled_since")
    conditions = [Condition(
        type="Stalled", status="True" if stalled else "False", reason="NoProgress" if stalled else "Moving",
        message=f"no bead progressed since {stalled}; escalation {meta.get('escalation')}" if stalled else "",
        last_transition_time=when)]
    if meta.get("plan_error"):
        conditions.append(Condition(type="PlanInvalid", status="True", reason="MayorPlanInvalid",
                                    message=meta["plan_error"], last_transition_time=when))
    done = convoy.status == "closed"
    total, merged = sum(p.total for p in progs), sum(p.done for p in progs)
    conditions.append(Condition(type="Done", status="True" if done else "False",
                                reason="AllMerged" if done else "InProgress",
                                message=convoy.close_reason or f"{merged}/{total}", last_transition_time=when))
    standing = convoy_standing(convoy, beads, parts)  # the sessions on all its rigs, against its one budget
    conditions.append(budget_condition([standing]).model_copy(update={"last_transition_time": when}))
    rigs = [meta.get("rig", "")] + [p.metadata.get("rig", "") for p, _ in parts]
    listed = [{"key": b.key, "id": b.id, "title": b.title[:200], "state": b.state,
               **({"rig": rig} if len(rigs) > 1 else {})} for rig, p in zip(rigs, progs, strict=True) for b in p.beads]
    status = {"phase": prog.phase, "progress": f"{merged}/{total}", "convoyBead": convoy.id, "beads": listed,
              "lastProgress": max(p.last_progress for p in progs if p.last_progress).isoformat(),
              "spend": standing.status()}
    return status, tuple(conditions)
