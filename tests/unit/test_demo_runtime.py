"""`DEMO_RUNTIME=<preset> make demo` says what is missing before it starts anything."""

from __future__ import annotations

import pytest

from gastown.demo import project
from gastown.demo.run import DemoError, agent_setup


def test_the_scripted_demo_needs_nothing():
    assert agent_setup("script") == ({}, None)


def test_a_real_agent_needs_its_cli_and_plays_its_model_without_a_key(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("GT_AGENTS_DIR", str(tmp_path / "none"))
    with pytest.raises(DemoError, match=r"`claude` is not installed \(make agents installs the pinned version\)"):
        agent_setup("claude")
    (tmp_path / "claude").write_text("#!/bin/sh\n")
    (tmp_path / "claude").chmod(0o755)
    for var in ("ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    env, profile = agent_setup("claude")  # no key: the stand-in plays the model
    assert env == {} and profile is not None and profile.api == "the Anthropic Messages API"
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test")
    assert agent_setup("claude") == ({}, None)  # a key: the real API


def test_an_unknown_runtime_is_named():
    with pytest.raises(DemoError, match="unknown runtime 'nope'"):
        agent_setup("nope")


def test_the_plan_is_a_valid_dag_and_one_change_is_broken_then_fixed():
    from gastown.mayor import Plan

    plan = Plan.model_validate(project.plan())
    assert len(plan.beads) == 8
    broken = project.change_keyed(project.BROKEN)
    assert broken is not None and broken.fixed and set(broken.fixed) <= set(broken.files)
