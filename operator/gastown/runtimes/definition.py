"""A custom runtime's definition, as the runtimes file (``config.py``) spells it.

Its own module: pydantic is loaded only by a process that reads or writes a runtimes file, not
by every session's wrapper that resolves a preset.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from .presets import PRESETS, Runtime


class RuntimeDef(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    command: list[str] = Field(min_length=1)
    args: list[str] = Field(default_factory=list)
    prompt_mode: Literal["arg", "stdin", "file"] = "arg"
    model_args: list[str] = Field(default_factory=list)
    resume_args: list[str] = Field(default_factory=list)
    api_key_env: list[str] = Field(default_factory=list)
    description: str = ""

    def runtime(self, name: str) -> Runtime:
        base = PRESETS.get(name)
        fields: dict[str, Any] = {"command": tuple(self.command), "args": tuple(self.args), "prompt_mode": self.prompt_mode,
                  "model_args": tuple(self.model_args), "resume_args": tuple(self.resume_args),
                  "api_key_env": tuple(self.api_key_env),
                  "description": self.description or f"custom runtime {name}"}
        if base is not None:
            return replace(base, **fields, files={})
        return Runtime(name=name, **fields)
