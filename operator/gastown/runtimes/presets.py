"""Runtime presets: how to run each agent CLI unattended, as an argv list.

Flags were read from each CLI's own ``--help`` (installed from the npm registry) or, where a
CLI is not on npm (Cursor), from its documentation. Arguments are templates: ``{prompt}``,
``{prompt_file}``, ``{session_dir}`` and ``{model}`` are replaced whole, never through a shell,
so a bead title full of metacharacters reaches the agent verbatim.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

PromptMode = Literal["arg", "stdin", "file"]

# Words that agent CLIs and model APIs use when a quota or rate limit stops them.
RATE_LIMIT_PATTERNS = (
    r"\brate[ _-]?limit", r"\b429\b", r"too many requests", r"quota (exceeded|exhausted)",
    r"usage limit", r"resource[_ ]exhausted", r"overloaded_error",
)


@dataclass(frozen=True)
class Runtime:
    name: str
    command: tuple[str, ...]  # the binary and its subcommand; empty: the args are the command
    args: tuple[str, ...] = ()
    prompt_mode: PromptMode = "arg"
    model_args: tuple[str, ...] = ()  # added only when a model is chosen
    resume_args: tuple[str, ...] = ()  # added when a session continues earlier work
    api_key_env: tuple[str, ...] = ()  # variables that carry credentials, first is preferred
    files: Mapping[str, str] = field(default_factory=dict)  # written to the session dir first
    rate_limit_patterns: tuple[str, ...] = RATE_LIMIT_PATTERNS
    package: str | None = None  # where the CLI comes from
    description: str = ""

    def argv(self, *, prompt: str, prompt_file: Path, session_dir: Path, model: str | None = None,
             extra_args: Sequence[str] = (), resume: bool = False) -> list[str]:
        """The command line for one session. Each template is one argument, substituted whole."""
        values = {"{prompt}": prompt, "{prompt_file}": str(prompt_file),
                  "{session_dir}": str(session_dir), "{model}": model or ""}

        def fill(items: Sequence[str]) -> list[str]:
            out = []
            for item in items:
                for key, value in values.items():
                    if key in item:
                        item = value if item == key else item.replace(key, value)
                out.append(item)
            return out

        if not self.command and not extra_args:
            raise ValueError(f"the {self.name} runtime needs args: the command to run")
        argv = list(self.command)
        if resume:
            argv += fill(self.resume_args)
        if model:
            argv += fill(self.model_args)
        argv += list(extra_args)
        argv += fill(self.args)
        return argv

    def stdin(self, prompt: str) -> bytes | None:
        return prompt.encode() if self.prompt_mode == "stdin" else None

    def rate_limited(self, output: str) -> bool:
        return any(re.search(p, output, re.IGNORECASE) for p in self.rate_limit_patterns)


PRESETS: dict[str, Runtime] = {r.name: r for r in (
    Runtime(
        "claude", ("claude",),
        args=("--print", "--dangerously-skip-permissions", "--output-format", "stream-json",
              "--verbose", "{prompt}"),
        model_args=("--model", "{model}"), resume_args=("--continue",),
        api_key_env=("ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN"),
        package="@anthropic-ai/claude-code", description="Claude Code"),
    Runtime(
        "codex", ("codex", "exec"),
        # `codex exec -` reads the prompt from stdin. Its resume is a subcommand with options of
        # its own; a new session starts fresh on the branch, which holds the earlier work.
        args=("--dangerously-bypass-approvals-and-sandbox", "--skip-git-repo-check", "-"),
        prompt_mode="stdin", model_args=("--model", "{model}"),
        api_key_env=("OPENAI_API_KEY", "CODEX_API_KEY"),
        package="@openai/codex", description="OpenAI Codex CLI"),
    Runtime(
        "gemini", ("gemini",),
        args=("--yolo", "--prompt", "{prompt}"), model_args=("--model", "{model}"),
        resume_args=("--resume", "latest"), api_key_env=("GEMINI_API_KEY", "GOOGLE_API_KEY"),
        package="@google/gemini-cli", description="Gemini CLI"),
    Runtime(
        "cursor", ("cursor-agent",),
        args=("--print", "--force", "--output-format", "text", "{prompt}"),
        model_args=("--model", "{model}"), resume_args=("--continue",), api_key_env=("CURSOR_API_KEY",),
        package=None, description="Cursor CLI (installed by Cursor's installer, not from npm)"),
    Runtime(
        "auggie", ("auggie",),
        args=("--print", "--quiet", "--instruction-file", "{prompt_file}"), prompt_mode="file",
        model_args=("--model", "{model}"), resume_args=("--continue",),
        api_key_env=("AUGMENT_SESSION_AUTH",), package="@augmentcode/auggie", description="Augment Auggie"),
    Runtime(
        "amp", ("amp",),
        # execute mode reads the prompt from stdin; the settings file allows every tool
        args=("--execute", "--settings-file", "{session_dir}/amp-settings.json"), prompt_mode="stdin",
        model_args=("--mode", "{model}"), api_key_env=("AMP_API_KEY",),
        files={"amp-settings.json": '{"amp.dangerouslyAllowAll": true}\n'},
        package="@sourcegraph/amp", description="Sourcegraph Amp (model = its mode: low..ultra)"),
    Runtime(
        "opencode", ("opencode",),
        args=("run", "--auto", "{prompt}"), model_args=("--model", "{model}"),
        resume_args=("--continue",), api_key_env=("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "GEMINI_API_KEY"),
        package="opencode-ai", description="OpenCode (model as provider/model)"),
    Runtime(
        "copilot", ("copilot",),
        args=("--allow-all", "--prompt", "{prompt}"), model_args=("--model", "{model}"),
        resume_args=("--continue",), api_key_env=("COPILOT_GITHUB_TOKEN", "GH_TOKEN", "GITHUB_TOKEN"),
        package="@github/copilot", description="GitHub Copilot CLI"),
    Runtime(
        "pi", ("pi",),
        args=("--print", "{prompt}"), model_args=("--model", "{model}"), resume_args=("--continue",),
        api_key_env=("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "GEMINI_API_KEY"),
        package="@mariozechner/pi-coding-agent", description="pi coding agent (model as provider/id)"),
    Runtime(
        "omp", ("omp",),
        args=("--print", "{prompt}"), model_args=("--model", "{model}"), resume_args=("--continue",),
        api_key_env=("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "GEMINI_API_KEY"),
        package="@oh-my-pi/pi-coding-agent", description="oh-my-pi, a pi fork with pi's flags"),
    Runtime(
        "script", (), prompt_mode="file",
        description="Runs a given command with the prompt in $GT_PROMPT_FILE: deterministic, no LLM"),
)}

