"""How to play the model for one agent CLI: its provider's dialect, the names and arguments of
its own tools, and the settings that point it at the stand-in.

A scripted conversation is written once in terms of ``write(path, text)`` and ``run(command)``;
the profile turns each into the CLI's own tool call.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .anthropic import Anthropic
from .server import Dialect, Turn


@dataclass(frozen=True)
class Profile:
    preset: str
    dialects: Callable[[], list[Dialect]]
    write: Callable[[str, str], Turn]
    run: Callable[[str], Turn]  # its shell tool
    env: Callable[[str, str], dict[str, str]]  # (the stand-in's URL, a key) -> the CLI's settings
    api: str  # what is played, for people: "the Anthropic Messages API"


PROFILES: dict[str, Profile] = {p.preset: p for p in (
    Profile(
        "claude", lambda: [Anthropic()],
        write=lambda path, text: Turn(tool="Write", input={"file_path": path, "content": text}),
        run=lambda command: Turn(tool="Bash", input={"command": command, "description": "run"}),
        env=lambda url, key: {"ANTHROPIC_BASE_URL": url, "ANTHROPIC_API_KEY": key, "DISABLE_TELEMETRY": "1",
                              "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1"},
        api="the Anthropic Messages API"),
)}
