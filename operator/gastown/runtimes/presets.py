"""Runtime presets: how to run each agent CLI unattended, as an argv list.

Flags were read from each CLI's own ``--help`` (installed from the npm registry) or, where a
CLI is not on npm (Cursor), from its documentation. Arguments are templates: ``{prompt}``,
``{prompt_file}``, ``{session_dir}`` and ``{model}`` are replaced whole, never through a shell,
so a bead title full of metacharacters reaches the agent verbatim.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

PromptMode = Literal["arg", "stdin", "file"]
_TEMPLATE = re.compile(r"\{(prompt|prompt_file|session_dir|model)\}")


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
    env: Mapping[str, str] = field(default_factory=dict)  # set for every session of this CLI
    # where the CLI keeps its conversations, inside the polecat's own state directory
    # ({state_dir}), so that a later session of the polecat can resume them
    state_env: Mapping[str, str] = field(default_factory=dict)
    # multi-provider CLIs: the model's provider (the part before "/") names the key's variable
    provider_keys: Mapping[str, str] = field(default_factory=dict)
    # as root, these arguments are replaced (some CLIs refuse their unattended mode as root)
    root_args: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    output: str = "text"  # how its output is read: a reader of runtimes/output
    package: str | None = None  # where the CLI comes from (npm)
    version: str | None = None  # the version the agent contract suite runs (tests/agents)
    needs: tuple[str, ...] = ()  # other npm packages it needs to run (omp: bun)
    verified: str = ""  # what the contract suite proves for it, or why it cannot
    description: str = ""

    def argv(self, *, prompt: str, prompt_file: Path, session_dir: Path, model: str | None = None,
             extra_args: Sequence[str] = (), resume: bool = False, as_root: bool = False) -> list[str]:
        """The command line for one session. Each template is one argument, substituted whole and
        once: a ``{model}`` inside the prompt stays as it is."""
        values = {"prompt": prompt, "prompt_file": str(prompt_file), "session_dir": str(session_dir),
                  "model": model or ""}

        def fill(items: Sequence[str]) -> list[str]:
            return [_TEMPLATE.sub(lambda m: values[m.group(1)], item) for item in items]

        if not self.command and not extra_args:
            raise ValueError(f"the {self.name} runtime needs args: the command to run")
        argv = list(self.command)
        if resume:
            argv += fill(self.resume_args)
        if model:
            argv += fill(self.model_args)
        argv += list(extra_args)
        for arg in fill(self.args):
            argv += self.root_args.get(arg, (arg,)) if as_root else (arg,)
        return argv

    def stdin(self, prompt: str) -> bytes | None:
        return prompt.encode() if self.prompt_mode == "stdin" else None

    def key_env(self, model: str | None = None) -> str | None:
        """The variable one API key goes into: the model's provider's, else the preferred one."""
        provider = (model or "").split("/", 1)[0] if model and "/" in model else None
        if provider and provider in self.provider_keys:
            return self.provider_keys[provider]
        return self.api_key_env[0] if self.api_key_env else None

    def key_identity(self, model: str | None, environ: Mapping[str, str]) -> str | None:
        """Which credential this runtime's sessions use, without holding it: rigs that share one
        share its rate limit. None for runtimes without a key (the script runtime)."""
        var = self.key_env(model)
        if var is None:
            return None
        value = environ.get(var)
        if not value:
            return f"{self.name}:login"  # the CLI's own stored login: one account for the machine
        return f"{var}:{hashlib.sha256(value.encode()).hexdigest()[:16]}"

    def session_env(self, state_dir: Path | None) -> dict[str, str]:
        """What this CLI's sessions get in their environment, besides the key."""
        env = dict(self.env)
        if state_dir is not None:
            env.update({k: v.replace("{state_dir}", str(state_dir)) for k, v in self.state_env.items()})
        return env


PRESETS: dict[str, Runtime] = {r.name: r for r in (
    Runtime(
        "claude", ("claude",),
        args=("--print", "--dangerously-skip-permissions", "--output-format", "stream-json",
              "--verbose", "{prompt}"),
        # it refuses to skip permissions as root: there, its own tools are allowed by name instead
        root_args={"--dangerously-skip-permissions": (
            "--allowedTools", "Bash,Edit,MultiEdit,Write,Read,Glob,Grep,LS,NotebookEdit,TodoWrite")},
        model_args=("--model", "{model}"), resume_args=("--continue",),
        api_key_env=("ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN"),
        package="@anthropic-ai/claude-code", version="2.1.332", output="claude",
        description="Claude Code"),
    Runtime(
        "codex", ("codex", "exec"),
        # `codex exec -` reads the prompt from stdin. Its resume is a subcommand with options of
        # its own; a new session starts fresh on the branch, which holds the earlier work.
        args=("--dangerously-bypass-approvals-and-sandbox", "--skip-git-repo-check", "-"),
        prompt_mode="stdin", model_args=("--model", "{model}"),
        api_key_env=("OPENAI_API_KEY", "CODEX_API_KEY"),
        package="@openai/codex", version="0.171.0", description="OpenAI Codex CLI"),
    Runtime(
        "gemini", ("gemini",),
        args=("--yolo", "--prompt", "{prompt}"), model_args=("--model", "{model}"),
        resume_args=("--resume", "latest"), api_key_env=("GEMINI_API_KEY", "GOOGLE_API_KEY"),
        package="@google/gemini-cli", version="0.61.0", description="Gemini CLI"),
    Runtime(
        "cursor", ("cursor-agent",),
        args=("--print", "--force", "--output-format", "text", "{prompt}"),
        model_args=("--model", "{model}"), resume_args=("--continue",), api_key_env=("CURSOR_API_KEY",),
        package=None, description="Cursor CLI (installed by Cursor's installer, not from npm)"),
    Runtime(
        "auggie", ("auggie",),
        args=("--print", "--quiet", "--instruction-file", "{prompt_file}"), prompt_mode="file",
        model_args=("--model", "{model}"), resume_args=("--continue",),
        api_key_env=("AUGMENT_SESSION_AUTH",), package="@augmentcode/auggie", version="0.36.0",
        description="Augment Auggie"),
    Runtime(
        "amp", ("amp",),
        # execute mode reads the prompt from stdin; the settings file allows every tool
        args=("--execute", "--settings-file", "{session_dir}/amp-settings.json"), prompt_mode="stdin",
        model_args=("--mode", "{model}"), api_key_env=("AMP_API_KEY",),
        files={"amp-settings.json": '{"amp.dangerouslyAllowAll": true}\n'},
        package="@sourcegraph/amp", version="0.0.1790142911-g7618fb", description="Sourcegraph Amp (model = its mode: low..ultra)"),
    Runtime(
        "opencode", ("opencode",),
        args=("run", "--auto", "{prompt}"), model_args=("--model", "{model}"),
        resume_args=("--continue",), api_key_env=("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "GEMINI_API_KEY"),
        package="opencode-ai", version="1.18.33", description="OpenCode (model as provider/model)"),
    Runtime(
        "copilot", ("copilot",),
        args=("--allow-all", "--prompt", "{prompt}"), model_args=("--model", "{model}"),
        resume_args=("--continue",), api_key_env=("COPILOT_GITHUB_TOKEN", "GH_TOKEN", "GITHUB_TOKEN"),
        package="@github/copilot", version="1.0.102", description="GitHub Copilot CLI"),
    Runtime(
        "pi", ("pi",),
        args=("--print", "{prompt}"), model_args=("--model", "{model}"), resume_args=("--continue",),
        api_key_env=("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "GEMINI_API_KEY"),
        package="@mariozechner/pi-coding-agent", version="0.73.1", description="pi coding agent (model as provider/id)"),
    Runtime(
        "omp", ("omp",),
        args=("--print", "{prompt}"), model_args=("--model", "{model}"), resume_args=("--continue",),
        api_key_env=("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "GEMINI_API_KEY"),
        package="@oh-my-pi/pi-coding-agent", version="18.2.3", needs=("bun@1.4.5",),
        description="oh-my-pi, a pi fork with pi's flags"),
    Runtime(
        "script", (), prompt_mode="file",
        description="Runs a given command with the prompt in $GT_PROMPT_FILE: deterministic, no LLM"),
)}

