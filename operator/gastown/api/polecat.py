"""Polecat: a worker agent with a persistent identity and ephemeral sessions."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from .common import Conditions, Model, ObjectName, Resources, RuntimeSpec


class PolecatSpec(Model):
    rig: ObjectName = Field(description="Rig this polecat works on.")
    runtime: RuntimeSpec | None = Field(default=None, description="Overrides the rig's runtime.")
    resources: Resources = Field(default_factory=Resources)
    desired_state: Literal["idle", "working", "retired"] = Field(
        default="idle", description="idle: take work when given; working: keep the hooked bead "
                                    "going; retired: finish nothing new, keep the identity.")


PolecatPhase = Literal["Idle", "Spawning", "Working", "Done", "Stuck", "Stalled", "Retired"]


class SessionRef(Model):
    name: str
    started: datetime | None = None


class PolecatStatus(Model):
    phase: PolecatPhase | None = None
    observed_generation: int | None = None
    conditions: Conditions
    current_bead: str | None = None
    branch: str | None = None
    session: SessionRef | None = None
    last_heartbeat: datetime | None = None
    session_count: int = 0
    restart_count: int = 0
