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
    warning: str | None  # message of a Warning Event, None when valid
    generation: int | None
    initial_phase: str

    @property
    def valid(self) -> bool:
        return self.spec is not None

    def status(self, current: Mapping) -> dict:
        """The status fields that follow from the verdict (conditions apart), given the ``current``
        status: a valid spec gives the initial phase only to an object without one (or an invalid
        one); from there on the phase is the controller's."""
        if self.warning is not None:
            return {"phase": "Invalid", "observedGeneration": self.generation}
        if current.get("phase") in (None, "Invalid"):
            return {"phase": self.initial_phase, "observedGeneration": self.generation}
        return {"observedGeneration": self.generation}

    def conditions(self, current: list[Condition]) -> list[Condition]:
        """The Invalid and Ready conditions that follow from the verdict, set on ``current``."""
        g = self.generation
        if self.warning is not None:
            current = set_condition(current, Condition(type="Invalid", status="True", reason="InvalidSpec",
                                                       message=self.warning, observed_generation=g))
            return set_condition(current, Condition(type="Ready", status="False", reason="InvalidSpec",
                                                    message=self.warning, observed_generation=g))
        current = set_condition(current, Condition(type="Invalid", status="False", reason="SpecValid", message="",
                                                   observed_generation=g))
        if any(c.type == "Ready" and c.reason != "InvalidSpec" for c in current):
            return current  # the controller's to set from here on
        return set_condition(current, Condition(type="Ready", status="True", reason="Accepted",
                                                message="spec accepted", observed_generation=g))


def current_conditions(body: Mapping) -> list[Condition]:
    """The conditions an object has (those someone wrote badly are left out rather than fail)."""
    out = []
    for c in (body.get("status") or {}).get("conditions") or []:
        try:
            out.append(Condition.model_validate(c))
        except ValueError:
            continue
    return out


def judge(kind: Kind, body: Mapping) -> Verdict:
    """Validate ``body.spec``: the status fields and the conditions that follow."""
    generation = (body.get("metadata") or {}).get("generation")
    try:
        spec = parse_spec(kind.spec, body.get("spec"))
    except Invalid as err:
        return Verdict(None, f"{err}. Fix the field and apply the {kind.kind} again.", generation, kind.initial_phase)
    return Verdict(spec, None, generation, kind.initial_phase)
