"""Turn a manifest into validated models, with errors that name the field."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from .common import API_VERSION
from .kinds import Kind, kind_named

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class Problem:
    field: str  # dotted path as written in the manifest, e.g. spec.beads[2].title
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


class Invalid(ValueError):
    """A manifest or spec that the models reject. ``problems`` name each bad field."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))

    @property
    def fields(self) -> list[str]:
        return [p.field for p in self.problems]


def _path(prefix: str, loc: tuple) -> str:
    out = prefix
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def problems_of(err: ValidationError, prefix: str = "") -> list[Problem]:
    out = []
    for e in err.errors():
        msg = e["msg"].removeprefix("Value error, ")
        # Pydantic reports a model-level rule at the model's own location; keep it there.
        out.append(Problem(_path(prefix, tuple(e["loc"])), msg))
    return out


def parse_spec(model: type[M], spec: object, prefix: str = "spec") -> M:
    try:
        return model.model_validate(spec if spec is not None else {})
    except ValidationError as err:
        raise Invalid(problems_of(err, prefix)) from None


def parse_object(obj: dict) -> tuple[Kind, BaseModel]:
    """Validate a whole manifest of one of gastown's kinds; return its kind and spec model."""
    if not isinstance(obj, dict):
        raise Invalid([Problem("", "a manifest must be a mapping")])
    if obj.get("apiVersion") != API_VERSION:
        raise Invalid([Problem("apiVersion", f"must be {API_VERSION}, got {obj.get('apiVersion')!r}")])
    try:
        kind = kind_named(obj.get("kind", ""))
    except KeyError as e:
        raise Invalid([Problem("kind", e.args[0])]) from None
    if not (obj.get("metadata") or {}).get("name"):
        raise Invalid([Problem("metadata.name", "is required")])
    return kind, parse_spec(kind.spec, obj.get("spec"))
