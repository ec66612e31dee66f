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
_TEMPLATE = re.compile(r"\{(prompt|prompt_file|session_dir|state_dir|model)\}")


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
             extra_args: Sequence[str] = (), resume: bool = False, as_root: bool = False,
             state_dir: Path | None = None) -> list[str]:
        """The command line for one session. Each template is one argument, substituted whole and
        once: a ``{model}`` inside the prompt stays as it is. ``{state_dir}`` is the polecat's own
        folder (the session's, for a run that keeps no state: the Mayor's)."""
        values = {"prompt": prompt, "prompt_file": str(prompt_file), "session_dir": str(session_dir),
                  "state_dir": str(state_dir or session_dir), "model": model or ""}

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
        import hashlib  # (OpenSSL: the daemon's, never a session wrapper's import)

        return f"{var}:{hashlib.sha256(value.encode()).hexdigest()[:16]}"

    def session_env(self, state_dir: Path | None) -> dict[str, str]:
        """What this CLI's sessions get in their environment, besides the key."""
        env = dict(self.env)
        if state_dir is not None:
            env.update({k: v.replace("{state_dir}", str(state_dir)) for k, v in self.state_env.items()})
        return env


# pi and omp: the model's provider (before the "/") names the key's variable
_PI_PROVIDER_KEYS = {"anthropic": "ANTHROPIC_API_KEY", "openai": "OPENAI_API_KEY", "google": "GEMINI_API_KEY"}
# a pi extension: in --mode json pi exits 0 whatever happened; this sets the exit code from the
# last model call of the run (retries included), 1 when it ended on an error
_PI_EXIT_CODE = """// gastown: exit 1 when the run ended on an API error (pi --mode json exits 0 otherwise)
module.exports = function (pi) {
  pi.on("agent_end", (event) => {
    const last = [...(event.messages || [])].reverse().find((m) => m.role === "assistant");
    process.exitCode = last && (last.stopReason === "error" || last.stopReason === "aborted") ? 1 : 0;
  });
};
"""


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
        verified="tests/agents/test_claude.py: the real CLI, as root, against an Anthropic Messages stand-in "
                 "completes a bead with its own Write and Bash tools (usage and cost from its result event), "
                 "a 429 ends rate limited with the server's delay, --continue resumes a stopped conversation, "
                 "the Mayor's plan is read from its stream-json, and the demo runs on it",
        description="Claude Code"),
    Runtime(
        "codex", ("codex", "exec"),
        # `codex exec -` reads the prompt from stdin; --json prints its events as JSON lines. Its
        # resume is the subcommand `exec resume --last`, which takes the same options and the
        # prompt after them; it picks the newest conversation of the working directory (the
        # polecat's own worktree; in a pod, its own HOME) and starts fresh when there is none.
        # Its shell tool runs `bash -lc` unless told not to: a login shell resets PATH from
        # /etc/profile, and the agent's `gt` (in a virtualenv, say) is then not found.
        args=("--dangerously-bypass-approvals-and-sandbox", "--skip-git-repo-check", "-c", "allow_login_shell=false",
              "--json", "-"),
        prompt_mode="stdin", model_args=("--model", "{model}"), resume_args=("resume", "--last"),
        # `codex exec` sends OPENAI_API_KEY nowhere: it authenticates with CODEX_API_KEY
        api_key_env=("CODEX_API_KEY",),
        # the retry log line says how long it waited: the server's Retry-After
        env={"RUST_LOG": "error,codex_core::responses_retry=warn"},
        output="codex", package="@openai/codex", version="0.171.0",
        verified="completes a bead with its own apply_patch and shell tools, reads the key from CODEX_API_KEY, "
                 "a 429 ends rate limited with the server's delay, and `exec resume --last` continues the "
                 "stopped conversation (against a stand-in of the Responses API over HTTPS)",
        description="OpenAI Codex CLI"),
    Runtime(
        "gemini", ("gemini",),
        # every fresh checkout is an untrusted folder to it (exit 55): --skip-trust trusts the
        # session's own. Its conversations are kept per project path (~/.gemini/tmp/<slug>), and
        # a polecat's worktree path is its own: `--resume latest` is that polecat's last one.
        # It reads `@path` in a prompt as "attach this file" (and spaces an `x@y` apart): there is
        # no way to pass a prompt it leaves alone.
        args=("--yolo", "--skip-trust", "--output-format", "stream-json", "--prompt", "{prompt}"),
        model_args=("--model", "{model}"), resume_args=("--resume", "latest"),
        # GOOGLE_API_KEY alone is refused (exit 41): it is read only together with Vertex AI
        api_key_env=("GEMINI_API_KEY",), output="gemini",
        package="@google/gemini-cli", version="0.61.0",
        verified="tests/agents/test_gemini.py: the real CLI against a Gemini API stand-in completes a "
                 "bead with its own write_file and run_shell_command tools, reports a 429 with the "
                 "API's retry delay, and resumes its killed conversation with --resume latest",
        description="Gemini CLI"),
    Runtime(
        "cursor", ("cursor-agent",),
        args=("--print", "--force", "--output-format", "text", "{prompt}"),
        model_args=("--model", "{model}"), resume_args=("--continue",), api_key_env=("CURSOR_API_KEY",),
        package=None, verified="unverified: Cursor's CLI is not on the npm registry (the npm package "
                               "cursor-agent is an unrelated library), so no test runs it",
        description="Cursor CLI (installed by Cursor's installer, not from npm)"),
    Runtime(
        "auggie", ("auggie",),
        # text mode: its retry lines ("Rate limit reached. Retrying in 3s…") stream to the log,
        # where its JSON mode prints nothing until the end (and nothing when it fails). It retries
        # a 429 until it is killed unless the rig's runtime args add `--retry-timeout <seconds>`.
        # Its --continue takes the newest session of its whole cache folder (~/.augment), not the
        # checkout's: each polecat gets a cache folder of its own (no variable sets it, a flag does).
        # It runs its commands in a login shell (`bash -l -c`), whose /etc/profile resets PATH: its
        # startup script, run before each command, restores the session's (GT_PATH), or `gt` may
        # not be found
        args=("--print", "--quiet", "--augment-cache-dir", "{state_dir}/augment", "--instruction-file",
              "{prompt_file}", "--startup-script", 'PATH="${GT_PATH:-$PATH}"'), prompt_mode="file",
        model_args=("--model", "{model}"), resume_args=("--continue",),
        api_key_env=("AUGMENT_SESSION_AUTH",), package="@augmentcode/auggie", version="0.36.0",
        output="auggie",
        verified="tests/agents/test_auggie.py, against a stand-in of Augment's API (get-models, the MCP "
                 "settings, chat-stream): a bead done with its own str-replace-editor and launch-process tools and "
                 "merged, the session token as its bearer, the prompt unaltered; a 429 ends the session "
                 "rate_limited with the server's Retry-After; --continue carries the earlier conversation "
                 "into the next session (each polecat has its own --augment-cache-dir: auggie's --continue "
                 "takes the newest session of the whole cache folder). "
                 "Not proven: Augment's real server (its chat-stream format was read from the CLI), token "
                 "usage (print mode reports none)",
        description="Augment Auggie (AUGMENT_SESSION_AUTH: its session JSON, accessToken and tenantURL)"),
    Runtime(
        "amp", ("amp",),
        # execute mode reads the prompt from stdin; the settings file allows every tool
        args=("--execute", "--settings-file", "{session_dir}/amp-settings.json"), prompt_mode="stdin",
        model_args=("--mode", "{model}"), api_key_env=("AMP_API_KEY",),
        files={"amp-settings.json": '{"amp.dangerouslyAllowAll": true}\n'},
        # without it a failed request to the Amp server prints only "Unexpected error inside Amp CLI"
        env={"AMP_DEBUG": "1"}, output="amp",
        package="@sourcegraph/amp", version="0.0.1790142911-g7618fb",
        verified="tests/agents/test_amp.py, against a stand-in of the Amp server's start-up (its internal "
                 "API) and thread creation: the flags are accepted, AMP_API_KEY reaches the server as its "
                 "bearer, and a 429 ends the session rate_limited with the delay of its body. Not proven: "
                 "a bead done, the prompt, usage and resume: the agent loop runs on Amp's server, reached "
                 "by a RivetKit WebSocket the stand-in does not play",
        description="Sourcegraph Amp (model = its mode: low..ultra)"),
    Runtime(
        "opencode", ("opencode", "run"),
        # `run` options come after the subcommand. The prompt goes on stdin: a message argument
        # with a space reaches the model wrapped in double quotes (and those inside escaped).
        # JSON events carry the usage and the errors; its ERROR log lines (on stderr) show a rate
        # limit it is still retrying when the deadline stops it.
        args=("--auto", "--format", "json", "--print-logs", "--log-level", "ERROR"), prompt_mode="stdin",
        model_args=("--model", "{model}"),
        # `--continue` takes the latest session of the working directory (its project is the
        # repository's first commit, shared by a rig's polecats, but the session list is the
        # directory's): a polecat's own worktree locally, its own HOME in a pod. So no state_env,
        # which would also hide the logins kept in its data folder (auth.json, the database).
        resume_args=("--continue",),
        api_key_env=("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "GEMINI_API_KEY"),
        provider_keys={"anthropic": "ANTHROPIC_API_KEY", "openai": "OPENAI_API_KEY", "google": "GEMINI_API_KEY"},
        # unattended: no self-update, no sharing, no shadow-git snapshot of the worktree per step
        # (merged over the user's opencode.json files; it replaces their own OPENCODE_CONFIG_CONTENT).
        # It works in $PWD rather than in its working directory: the session wrapper sets PWD.
        env={"OPENCODE_CONFIG_CONTENT": '{"autoupdate": false, "share": "disabled", "snapshot": false}',
             "OPENCODE_DISABLE_AUTOUPDATE": "1"},
        output="opencode", package="opencode-ai", version="1.18.33",
        verified="tests/agents/test_opencode.py: a bead to merged main with its own write and bash tools "
                 "(prompt on stdin, verbatim; key in x-api-key; usage and cost from its JSON events), a "
                 "429 with Retry-After classified and backed off, and --continue resuming the polecat's "
                 "own conversation, against a stand-in of the Anthropic Messages API",
        description="OpenCode (model as provider/model)"),
    Runtime(
        "copilot", ("copilot",),
        # JSON events (answer, structured 429s); the pinned version runs, never a downloaded one
        args=("--allow-all", "--no-auto-update", "--output-format", "json", "--prompt", "{prompt}"),
        model_args=("--model", "{model}"), resume_args=("--continue",),
        # a GitHub token; with COPILOT_PROVIDER_BASE_URL (its BYOK mode) the provider's key instead
        api_key_env=("COPILOT_GITHUB_TOKEN", "GH_TOKEN", "GITHUB_TOKEN", "COPILOT_PROVIDER_API_KEY"),
        # --continue takes the most recent session of COPILOT_HOME, whatever its folder: one per polecat
        state_env={"COPILOT_HOME": "{state_dir}/copilot"},
        output="copilot", package="@github/copilot", version="1.0.102",
        verified="BYOK mode against an OpenAI Chat Completions stand-in: key in COPILOT_PROVIDER_API_KEY "
                 "(Bearer), its edit and bash tools unattended with --allow-all (as root too), the prompt "
                 "verbatim, a 429 after its 5 retries, --continue resuming the polecat's conversation",
        description="GitHub Copilot CLI"),
    Runtime(
        "pi", ("pi",),
        # JSON events carry each call's tokens, cost and error, but in that mode pi exits 0 even
        # when the run ended on an API error: the extension (written to the session dir) makes it
        # exit 1 then, as plain --print does. Conversations are kept per working directory
        # (~/.pi/agent/sessions/<cwd>), and a polecat's worktree is its own: --continue is its last.
        args=("--print", "--mode", "json", "--extension", "{session_dir}/gastown-exit-code.js", "{prompt}"),
        model_args=("--model", "{model}"), resume_args=("--continue",),
        api_key_env=("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "GEMINI_API_KEY"),
        provider_keys=_PI_PROVIDER_KEYS, files={"gastown-exit-code.js": _PI_EXIT_CODE}, output="pi",
        package="@mariozechner/pi-coding-agent", version="0.73.1",
        verified="tests/agents/test_pi.py: the real CLI against an Anthropic Messages stand-in (base URL "
                 "from ~/.pi/agent/models.json) completes a bead with its own write and bash tools, ends "
                 "rate limited on a 429 (pi does not report the server's delay: default backoff), and "
                 "resumes its killed conversation with --continue",
        description="pi coding agent (model as provider/id)"),
    Runtime(
        "omp", ("omp",),
        # pi's JSON events (read by the same reader); omp exits 1 on an API error by itself.
        # Conversations are kept per working directory (~/.omp/agent/sessions/<cwd>).
        args=("--print", "--mode", "json", "--auto-approve", "{prompt}"),
        model_args=("--model", "{model}"), resume_args=("--continue",),
        api_key_env=("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "GEMINI_API_KEY"),
        provider_keys=_PI_PROVIDER_KEYS, output="pi",
        # its entry point is `#!/usr/bin/env bun` (bun >= 1.3.14): without bun it cannot start
        package="@oh-my-pi/pi-coding-agent", version="18.2.3", needs=("bun@1.4.5",),
        verified="tests/agents/test_omp.py: the real CLI (on bun) against an Anthropic Messages stand-in "
                 "(ANTHROPIC_BASE_URL) completes a bead with its own write and bash tools, ends rate "
                 "limited on a 429 with the server's Retry-After, and resumes its killed conversation "
                 "with --continue",
        description="oh-my-pi, a pi fork with pi's flags"),
    Runtime(
        "script", (), prompt_mode="file",
        description="Runs a given command with the prompt in $GT_PROMPT_FILE: deterministic, no LLM"),
)}

