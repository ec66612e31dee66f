"""Building blocks shared by every custom resource model."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from ..names import GROUP, RUNTIME_NAME

VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
# A git branch name: letters, digits and ._/- (not first), checked further by _check_branch.
BRANCH = r"^[A-Za-z0-9_][A-Za-z0-9._/-]*$"
QUANTITY = r"^[0-9]+(\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti|E|Ei|P|Pi)?$"

ObjectName = Annotated[
    str,
    Field(min_length=1, max_length=63, pattern=DNS_LABEL,
          description="Name of an object in the same namespace (a DNS-1123 label)."),
]


def _check_branch(name: str) -> str:
    if ".." in name or "//" in name or name.endswith(("/", ".", ".lock")):
        raise ValueError(f"{name!r} is not a valid git branch name")
    return name


BranchName = Annotated[str, Field(min_length=1, max_length=200, pattern=BRANCH),
                       AfterValidator(_check_branch)]
Quantity = Annotated[str, Field(pattern=QUANTITY)]


class Model(BaseModel):
    """Base for every API model: camelCase on the wire, unknown fields rejected."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        validate_default=True,
    )

    def wire(self) -> dict:
        """The object as it is written to the Kubernetes API (camelCase, no unset fields)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(Model):
    """The standard Kubernetes condition (metav1.Condition)."""

    type: str = Field(pattern=r"^[A-Z][A-Za-z0-9]*$", max_length=316)
    status: ConditionStatus
    reason: str = Field(default="", max_length=1024,
                        description="CamelCase word that says why, for machines.")
    message: str = Field(default="", max_length=32768, description="What a person should know.")
    last_transition_time: datetime | None = None
    observed_generation: int | None = Field(default=None, ge=0)


Conditions = Annotated[
    list[Condition],
    Field(default_factory=list,
          json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]}),
]


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def set_condition(conditions: list[Condition], new: Condition) -> list[Condition]:
    """Return ``conditions`` with ``new`` replacing the one of the same type.

    The transition time only moves when the status changes, as Kubernetes expects.
    """
    out: list[Condition] = []
    replaced = False
    for c in conditions:
        if c.type == new.type:
            keep_time = c.status == new.status and c.last_transition_time
            stamped = new.model_copy(
                update={"last_transition_time": keep_time or new.last_transition_time or now()}
            )
            out.append(stamped)
            replaced = True
        else:
            out.append(c)
    if not replaced:
        out.append(new.model_copy(update={"last_transition_time": new.last_transition_time or now()}))
    return out


class SecretKeyRef(Model):
    """A key inside a Secret in the same namespace."""

    name: ObjectName
    key: str = Field(min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9]+$")


class SecretRef(Model):
    """A Secret in the same namespace."""

    name: ObjectName


class Resources(Model):
    """Compute requests and limits, as in a container spec."""

    requests: dict[str, Quantity] = Field(default_factory=dict)
    limits: dict[str, Quantity] = Field(default_factory=dict)


class RuntimeSpec(Model):
    """Which agent CLI a session runs, and how."""

    preset: str = Field(
        default="claude", pattern=RUNTIME_NAME,
        description="Runtime preset (claude, gemini, codex, cursor, auggie, amp, opencode, "
                    "copilot, pi, omp, script) or the name of a custom runtime.",
    )
    model: str | None = Field(default=None, max_length=200, description="Model to ask the runtime for.")
    image: str | None = Field(default=None, max_length=512, description="Container image for agent sessions.")
    api_key_secret: SecretKeyRef | None = Field(
        default=None, description="Secret key that holds the runtime's API key.")
    args: list[str] = Field(default_factory=list, description="Extra arguments for the runtime CLI.")
