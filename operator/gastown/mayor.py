"""The Mayor: turns a goal into a plan of beads. Engine (prompt and plan) plus its one run.

The Mayor is a session of the rig's runtime in a checkout of the rig, asked to answer with a
JSON plan. The plan is validated like an explicit Convoy list (unique keys, known needs, no
cycle); an invalid plan is sent back once with the error, then the convoy is marked
PlanInvalid and a person is asked.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import KW_ONLY, dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .api.convoy import ConvoyBead, check_bead_list
from .runtimes import Runtime, output

PLAN_SCHEMA = {
    "type": "object",
    "required": ["beads"],
    "properties": {"beads": {"type": "array", "minItems": 1, "maxItems": 50, "items": {
        "type": "object", "required": ["key", "title"],
        "properties": {
            "key": {"type": "string", "pattern": "^[a-z0-9][-a-z0-9]*$"},
            "title": {"type": "string"}, "description": {"type": "string"},
            "acceptance": {"type": "string"}, "priority": {"type": "integer", "minimum": 0, "maximum": 4},
            "needs": {"type": "array", "items": {"type": "string"}}}}}},
}


class Plan(BaseModel):
    model_config = ConfigDict(extra="forbid")
    beads: list[ConvoyBead] = Field(min_length=1, max_length=50)

    @field_validator("beads")
    @classmethod
    def _beads(cls, beads: list[ConvoyBead]) -> list[ConvoyBead]:
        return check_bead_list(beads)


class PlanInvalid(ValueError):
    pass


def prompt(goal: str, rig: str, error: str | None = None) -> str:
    parts = [
        f"You are the Mayor of the rig {rig}. Read the repository in the current directory and split",
        "this goal into beads: small pieces of work that one engineer can finish and merge on their own.",
        "",
        "## Goal",
        goal.strip(),
        "",
        "## Answer",
        "Answer with one JSON object and nothing else, matching this JSON schema:",
        json.dumps(PLAN_SCHEMA, indent=2),
        "`key` is a short kebab-case name; `needs` lists the keys that must be merged first;",
        "priority 0 is the most urgent. Do not change any file.",
    ]
    if error:
        parts += ["", "## Your last answer was rejected", error, "Answer again, fixed."]
    return "\n".join(parts)


def parse(output: str) -> Plan:
    """The plan in ``output``: the last JSON object in it that holds `beads`."""
    candidates = re.findall(r"```(?:json)?\s*(\{.*?\})\s*```", output, re.DOTALL)
    candidates += [output[i:] for i, ch in enumerate(output) if ch == "{"]
    error = "no JSON object with a `beads` list was found in the answer"
    for text in reversed(candidates):
        try:
            data, _ = json.JSONDecoder().raw_decode(text.strip())
        except ValueError:
            continue
        if not isinstance(data, dict) or "beads" not in data:
            continue
        try:
            return Plan.model_validate(data)
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            error = f"{where}: {first['msg'].removeprefix('Value error, ')}"
            break
    raise PlanInvalid(error)


@dataclass
class MayorRun:
    runtime: Runtime
    workdir: Path
    session_dir: Path
    _: KW_ONLY
    model: str | None = None
    args: tuple[str, ...] = ()
    timeout: float = 900.0

    def ask(self, text: str) -> str:
        """Run the runtime once on ``text``; its answer (from its structured output when it has
        one: a stream of JSON events carries the answer inside its result event)."""
        self.session_dir.mkdir(parents=True, exist_ok=True)
        prompt_file = self.session_dir / "mayor-prompt.md"
        prompt_file.write_text(text)
        argv = self.runtime.argv(prompt=text, prompt_file=prompt_file, session_dir=self.session_dir,
                                 model=self.model, extra_args=list(self.args), as_root=os.geteuid() == 0)
        env = {**os.environ, **self.runtime.session_env(None), "GT_PROMPT_FILE": str(prompt_file), "GT_ROLE": "mayor",
               "PWD": str(self.workdir)}  # as for sessions: CLIs that trust $PWD work where they are
        try:
            proc = subprocess.run(argv, cwd=self.workdir, input=self.runtime.stdin(text), capture_output=True,
                                  timeout=self.timeout, env=env)
        except subprocess.TimeoutExpired:
            raise PlanInvalid(f"the Mayor ({self.runtime.name}) gave no answer within {self.timeout:g}s") from None
        out = proc.stdout.decode(errors="replace")
        (self.session_dir / "mayor.log").write_text(out + proc.stderr.decode(errors="replace"))
        report = output.read(self.runtime.output, out)
        if proc.returncode != 0:
            detail = report.error or proc.stderr.decode(errors="replace").strip()[-300:]
            raise PlanInvalid(f"the Mayor ({self.runtime.name}) exited with code {proc.returncode}: {detail}")
        return report.answer if report.answer is not None else out

    def plan(self, goal: str, rig: str) -> Plan:
        """Ask; on an invalid plan ask once more with the error; then give up with PlanInvalid."""
        try:
            return parse(self.ask(prompt(goal, rig)))
        except PlanInvalid as first:
            try:
                return parse(self.ask(prompt(goal, rig, str(first))))
            except PlanInvalid as second:
                raise PlanInvalid(f"{second} (after a retry; first answer: {first})") from None
