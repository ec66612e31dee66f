"""Convoy: a bundle of beads delivered together."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field, field_validator, model_validator

from ..graph import find_cycle
from .budget import ConvoyBudget, SpendStatus
from .common import Conditions, Model, ObjectName, SecretKeyRef

BEAD_KEY = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"


class ConvoyBead(Model):
    """One bead of an explicit list."""

    key: str = Field(pattern=BEAD_KEY, description="Short name of the bead inside this convoy; "
                                                   "other beads name it in needs.")
    title: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=20000)
    acceptance: str = Field(default="", max_length=20000, description="How to tell it is done.")
    priority: int = Field(default=2, ge=0, le=4, description="0 is the most urgent.")
    needs: list[str] = Field(default_factory=list, max_length=50,
                             description="Keys of beads that must be merged before this one starts.")
    rig: ObjectName | None = Field(default=None, description="Rig this bead goes to (default: the convoy's); "
                                                             "its needs must be on the same rig.")


def check_bead_list(beads: list[ConvoyBead]) -> list[ConvoyBead]:
    """Unique keys, needs that name known keys, no cycle (for explicit lists and Mayor plans)."""
    keys = [b.key for b in beads]
    dupes = sorted({k for k in keys if keys.count(k) > 1})
    if dupes:
        raise ValueError(f"duplicate key {', '.join(dupes)}")
    known = {b.key: b for b in beads}
    for b in beads:
        missing = [n for n in b.needs if n not in known]
        if missing:
            raise ValueError(f"bead {b.key!r} needs unknown key {', '.join(missing)}")
        elsewhere = [n for n in b.needs if known[n].rig != b.rig]
        if elsewhere:
            raise ValueError(f"bead {b.key!r} needs {', '.join(elsewhere)} on another rig: "
                             "needs across rigs are not supported")
    needs = {b.key: b.needs for b in beads}
    cycle = find_cycle(keys, lambda k: needs[k])
    if cycle:
        raise ValueError(f"dependency cycle {' -> '.join(cycle)}")
    return beads


class FormulaRef(Model):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    vars: dict[str, str] = Field(default_factory=dict)
    mode: Literal["root", "poured"] = Field(
        default="poured", description="root: one bead, the steps in its prompt; poured: a child bead "
                                      "per step as well, so a new session resumes at the first open step.")


class NotifyTarget(Model):
    """Where to say that the convoy finished."""

    model_config = Model.model_config | {
        "json_schema_extra": {"x-kubernetes-validations": [{
            "rule": "self.type != 'webhook' || has(self.secretRef)",
            "message": "a webhook target needs secretRef (the Secret key holding the URL)",
        }]},
    }

    type: Literal["event", "log", "webhook"]
    secret_ref: SecretKeyRef | None = Field(default=None, description="For webhook: the key holding the URL.")

    @model_validator(mode="after")
    def _webhook_needs_secret(self) -> NotifyTarget:
        if self.type == "webhook" and self.secret_ref is None:
            raise ValueError("a webhook target needs secretRef (the Secret key holding the URL)")
        return self


class ConvoySpec(Model):
    model_config = Model.model_config | {
        "json_schema_extra": {"x-kubernetes-validations": [{
            "rule": "[has(self.goal), has(self.beads), has(self.formula)].filter(x, x).size() == 1",
            "message": "set exactly one of goal, beads or formula",
        }]},
    }

    rig: ObjectName = Field(description="Rig the work is done on.")
    goal: str | None = Field(default=None, min_length=1, max_length=20000,
                             description="Free text that the Mayor decomposes into beads.")
    beads: list[ConvoyBead] | None = Field(
        default=None, min_length=1, max_length=500,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["key"]},
        description="Explicit list of beads, used as given.")
    formula: FormulaRef | None = Field(default=None, description="A Formula to instantiate.")
    max_parallel: int | None = Field(default=None, ge=1, le=100,
                                     description="Most beads of this convoy in progress at once.")
    merge_strategy: Literal["mr", "direct"] = Field(
        default="mr", description="mr: through the MergeQueue; direct: push to the branch.")
    labels: list[str] = Field(default_factory=list, max_length=20,
                              description="Labels such as mountain (skip beads that keep failing).")
    notify: list[NotifyTarget] = Field(default_factory=list, max_length=10)
    stall_after_seconds: int = Field(default=3600, ge=60, le=7 * 86400,
                                     description="No bead progressed for this long: Stalled.")
    budget: ConvoyBudget | None = Field(default=None, description="What the convoy's sessions may spend in all.")

    @field_validator("beads")
    @classmethod
    def _check_beads(cls, beads: list[ConvoyBead] | None) -> list[ConvoyBead] | None:
        return check_bead_list(beads) if beads else beads

    @model_validator(mode="after")
    def _exactly_one_source(self) -> ConvoySpec:
        given = [n for n in ("goal", "beads", "formula") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError(f"set exactly one of goal, beads or formula (got {', '.join(given) or 'none'})")
        return self


ConvoyPhase = Literal["Planning", "Running", "Stalled", "Done", "Failed", "Invalid"]


class ConvoyBeadStatus(Model):
    key: str
    id: str | None = None
    title: str = ""
    state: str = "pending"


class ConvoyStatus(Model):
    phase: ConvoyPhase | None = None
    observed_generation: int | None = None
    conditions: Conditions
    convoy_bead: str | None = Field(default=None, description="The convoy's own bead in the ledger.")
    progress: str = Field(default="0/0", description="Closed beads / all beads.")
    beads: list[ConvoyBeadStatus] = Field(default_factory=list)
    last_progress: datetime | None = None
    spend: SpendStatus | None = Field(default=None, description="What its sessions spent, against its budget.")
