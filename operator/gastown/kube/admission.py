"""Judge a custom resource against its model: the status and Event that follow. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pydantic import BaseModel

from ..api import Condition, Invalid, Kind, set_condition
from ..api.validation import parse_spec


@dataclass(frozen=True)
class Verdict:
    spec: BaseModel | None  # the parsed spec, None when invalid
    status: dict  # a merge patch for .status
    warning: str | None  # message of a Warning Event, None when valid

    @property
    def valid(self) -> bool:
        return self.spec is not None


def current_conditions(body: Mapping, patch: Mapping | None = None) -> list[Condition]:
    """The conditions as they stand: those patched earlier in this handling cycle, else the body's."""
    patched = ((patch or {}).get("status") or {}).get("conditions")
    raw = patched if patched is not None else (body.get("status") or {}).get("conditions") or []
    out = []
    for c in raw:
        try:
            out.append(Condition.model_validate(c))
        except ValueError:
            continue  # a condition someone else wrote badly: drop it rather than fail
    return out


def judge(kind: Kind, body: Mapping) -> Verdict:
    """Validate ``body.spec``; set observedGeneration and the Ready/Invalid conditions."""
    generation = (body.get("metadata") or {}).get("generation")
    conditions = current_conditions(body)
    try:
        spec = parse_spec(kind.spec, body.get("spec"))
    except Invalid as err:
        message = f"{err}. Fix the field and apply the {kind.kind} again."
        conditions = set_condition(conditions, Condition(
            type="Invalid", status="True", reason="InvalidSpec", message=message,
            observed_generation=generation))
        conditions = set_condition(conditions, Condition(
            type="Ready", status="False", reason="InvalidSpec", message=message,
            observed_generation=generation))
        status = {"phase": "Invalid", "observedGeneration": generation,
                  "conditions": [c.wire() for c in conditions]}
        return Verdict(None, status, message)
    conditions = set_condition(conditions, Condition(
        type="Invalid", status="False", reason="SpecValid", message="",
        observed_generation=generation))
    if not any(c.type == "Ready" and c.reason != "InvalidSpec" for c in conditions):  # the controller's to set
        conditions = set_condition(conditions, Condition(
            type="Ready", status="True", reason="Accepted", message="spec accepted",
            observed_generation=generation))
    status = {"observedGeneration": generation, "conditions": [c.wire() for c in conditions]}
    if (body.get("status") or {}).get("phase") in (None, "Invalid"):
        status["phase"] = kind.initial_phase
    return Verdict(spec, status, None)
