"""`DEMO_RUNTIME=<preset> make demo` says what is missing before it starts anything."""

from __future__ import annotations

import pytest

from gastown.demo import project
from gastown.demo.run import DemoError, check_runtime


def test_the_scripted_demo_needs_nothing():
    check_runtime("script")


def test_a_real_agent_needs_its_cli_and_its_key(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(DemoError, match=r"`claude` is not installed \(npm install -g @anthropic-ai/claude-code\)"):
        check_runtime("claude")
    (tmp_path / "claude").write_text("#!/bin/sh\n")
    (tmp_path / "claude").chmod(0o755)
    for var in ("ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(DemoError, match="set ANTHROPIC_API_KEY or CLAUDE_CODE_OAUTH_TOKEN"):
        check_runtime("claude")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test")
    check_runtime("claude")


def test_an_unknown_runtime_is_named():
    with pytest.raises(DemoError, match="unknown runtime 'nope'"):
        check_runtime("nope")


def test_the_plan_is_a_valid_dag_and_one_change_is_broken_then_fixed():
    from gastown.mayor import Plan

    plan = Plan.model_validate(project.plan())
    assert len(plan.beads) == 8
    broken = project.change_keyed(project.BROKEN)
    assert broken is not None and broken.fixed and set(broken.fixed) <= set(broken.files)
