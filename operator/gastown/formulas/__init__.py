"""Formulas: TOML workflow templates, and molecules, their instances. Engine: pure.

    formula = "bugfix"
    description = "..."
    version = 1
    [vars.bug]                       # description, required, default
    required = true
    [[steps]]                        # id, title, description, needs
    id = "fix"
    title = "Fix: {{bug}}"
    needs = ["reproduce"]

Resolution, first found wins: the rig repository's `.gastown/formulas/NAME.toml`, then the
operator's formulas directory (`$GT_FORMULAS_DIR`, a ConfigMap on a cluster), then these
built-ins.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..graph import find_cycle

VAR = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
NAME = r"^[a-z0-9][a-z0-9_-]{0,62}$"


class FormulaError(ValueError):
    pass


class Var(BaseModel):
    model_config = ConfigDict(extra="forbid")
    description: str = ""
    required: bool = False
    default: str | None = None


class Step(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    title: str = Field(min_length=1, max_length=300)
    description: str = ""
    needs: list[str] = Field(default_factory=list)


class Formula(BaseModel):
    model_config = ConfigDict(extra="forbid")
    formula: str = Field(pattern=NAME)
    description: str = ""
    version: int = 1
    vars: dict[str, Var] = Field(default_factory=dict)
    steps: list[Step] = Field(min_length=1)

    @field_validator("steps")
    @classmethod
    def _steps(cls, steps: list[Step]) -> list[Step]:
        ids = [s.id for s in steps]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"duplicate step id {', '.join(dupes)}")
        for s in steps:
            unknown = [n for n in s.needs if n not in ids]
            if unknown:
                raise ValueError(f"step {s.id!r} needs unknown step {', '.join(unknown)}")
        needs = {s.id: s.needs for s in steps}
        cycle = find_cycle(ids, lambda i: needs[i])
        if cycle:
            raise ValueError(f"steps form a cycle: {' -> '.join(cycle)}")
        return steps

    def check_templates(self) -> None:
        for s in self.steps:
            for text in (s.title, s.description):
                for name in VAR.findall(text):
                    if name not in self.vars:
                        raise FormulaError(f"{self.formula}: step {s.id!r} uses {{{{{name}}}}}, "
                                           f"which is not declared under [vars]")

    def resolve_vars(self, given: Mapping[str, str]) -> dict[str, str]:
        unknown = sorted(set(given) - set(self.vars))
        if unknown:
            raise FormulaError(f"{self.formula}: unknown var {', '.join(unknown)} "
                               f"(it takes {', '.join(sorted(self.vars)) or 'none'})")
        out = {}
        for name, var in self.vars.items():
            if name in given:
                out[name] = given[name]
            elif var.default is not None:
                out[name] = var.default
            elif var.required:
                raise FormulaError(f"{self.formula}: missing required var {name!r}"
                                   + (f" ({var.description})" if var.description else ""))
            else:
                out[name] = ""
        return out


@dataclass(frozen=True)
class StepInstance:
    id: str
    title: str
    description: str
    needs: tuple[str, ...]


@dataclass(frozen=True)
class Molecule:
    """One instance of a formula: its vars filled in."""

    formula: Formula
    vars: dict[str, str]
    steps: tuple[StepInstance, ...]

    @property
    def title(self) -> str:
        first = next(iter(self.vars.values()), "") if self.vars else ""
        return f"{self.formula.formula}: {first}"[:300] if first else self.formula.formula

    def description(self) -> str:
        lines = [self.formula.description, "", "Steps:"]
        for s in self.steps:
            needs = f" (after {', '.join(s.needs)})" if s.needs else ""
            lines.append(f"- {s.id}: {s.title}{needs}")
            if s.description:
                lines.append(f"  {s.description}")
        return "\n".join(lines).strip()


def substitute(text: str, values: Mapping[str, str]) -> str:
    return VAR.sub(lambda m: values[m.group(1)], text)


def instantiate(formula: Formula, given: Mapping[str, str]) -> Molecule:
    formula.check_templates()
    values = formula.resolve_vars(given)
    steps = tuple(StepInstance(s.id, substitute(s.title, values), substitute(s.description, values),
                               tuple(s.needs)) for s in formula.steps)
    return Molecule(formula, values, steps)


def parse(text: str, origin: str) -> Formula:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise FormulaError(f"{origin}: not valid TOML ({e})") from None
    try:
        formula = Formula.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "formula"
        raise FormulaError(f"{origin}: {where}: {first['msg'].removeprefix('Value error, ')}") from None
    formula.check_templates()
    return formula


# --- where formulas come from --------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """A place formulas come from: a directory of NAME.toml files, or the built-ins (None)."""

    origin: str
    directory: Path | None = None

    def names(self) -> list[str]:
        if self.directory is None:
            return sorted(p.name[:-5] for p in resources.files(__package__).iterdir() if p.name.endswith(".toml"))
        return sorted(p.stem for p in Path(self.directory).glob("*.toml"))

    def read(self, name: str) -> str | None:
        path = (resources.files(__package__) if self.directory is None else Path(self.directory)) / f"{name}.toml"
        return path.read_text() if path.is_file() else None


BUILTIN = Source("built-in")


def builtin_names() -> list[str]:
    return BUILTIN.names()


def default_sources(rig_dir: Path | None = None) -> list[Source]:
    """The rig's .gastown/formulas (when a checkout is at hand), $GT_FORMULAS_DIR, the built-ins."""
    out = []
    if rig_dir is not None:
        out.append(Source("rig", Path(rig_dir)))
    if os.environ.get("GT_FORMULAS_DIR"):
        out.append(Source(os.environ["GT_FORMULAS_DIR"], Path(os.environ["GT_FORMULAS_DIR"])))
    out.append(BUILTIN)
    return out


def find(name: str, sources: list[Source]) -> Formula:
    """The formula ``name`` from the first source that has it."""
    if not re.fullmatch(NAME, name):
        raise FormulaError(f"{name!r} is not a formula name")
    for source in sources:
        text = source.read(name)
        if text is not None:
            formula = parse(text, f"{source.origin}/{name}.toml")
            if formula.formula != name:
                raise FormulaError(f"{source.origin}/{name}.toml declares formula {formula.formula!r}, not {name!r}")
            return formula
    raise FormulaError(f"no formula {name!r} (looked in {', '.join(s.origin for s in sources)}); "
                       f"built-in ones: {', '.join(builtin_names())}")


def available(sources: list[Source]) -> dict[str, Source]:
    """Every formula name, with the source that wins for it."""
    out: dict[str, Source] = {}
    for source in sources:
        for name in source.names():
            out.setdefault(name, source)
    return dict(sorted(out.items()))
