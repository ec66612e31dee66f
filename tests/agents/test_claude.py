"""Claude Code, the real CLI, against a stand-in of the Anthropic Messages API."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from gastown.runtimes.install import agents_dir
from gastown.standin import StandIn, Turn
from gastown.standin.anthropic import Anthropic

from contract import (
    CALC,
    free_port,
    merged_unattended,
    rate_limited_then_merged,
    scrape,
    standin_fixture,
    stopped_then_resumed,
    write_then_shell,
)
from contract import git as contract_git

KEY = "sk-ant-contract-0001"


def script():
    return write_then_shell("Write", "file_path", "Bash")


def env(standin: StandIn) -> dict[str, str]:
    return {"ANTHROPIC_BASE_URL": standin.url, "ANTHROPIC_API_KEY": KEY, "CLAUDE_CODE_MAX_RETRIES": "1",
            "DISABLE_TELEMETRY": "1", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1"}


standin = standin_fixture(Anthropic, script)


def test_claude_completes_a_bead_to_merged_main(agent_town, cli, standin):
    town = agent_town("claude", standin, cli("claude"), env=env(standin)).start()
    # merged; the prompt reached the model unaltered, as one text block; three turns, each tool
    # result carried back, no question asked
    main, result = merged_unattended(town, standin)
    # the key reached the CLI in the variable it reads, and the API in its header
    assert {s.headers.get("x-api-key") for s in main} == {KEY}
    # what the CLI reported in its result event: three turns of the stand-in's 1200 in / 80 out
    assert result["usage"] == {"input_tokens": 3600, "output_tokens": 240, "cost_usd": pytest.approx(0.0192)}


def test_claude_rate_limit_is_classified_and_backed_off(agent_town, cli, standin):
    """Two 429s (the CLI's try and its one retry) with Retry-After: 3; the session is rate limited,
    spends no attempt, and the next one starts only after the delay the server asked for."""
    standin.rate_limit(count=2, retry_after=3)
    town = agent_town("claude", standin, cli("claude"), env=env(standin)).start()
    # what the CLI waited: the server's delay
    rate_limited_then_merged(town, retry_after=3, within=2)


def test_claude_resume_continues_the_earlier_conversation(agent_town, cli, standin):
    standin.hold(1)  # the model never answers after the file is written
    town = agent_town("claude", standin, cli("claude"), env=env(standin)).start()
    # the second session's first request carries the first one's conversation: its prompt and
    # the file it wrote, with the tool's result
    stopped_then_resumed(town, standin)


def test_claude_as_the_mayor_plans_a_goal_that_then_merges(agent_town, cli):
    """The default runtime plans a goal convoy: the plan is read from inside claude's stream-json
    events, its bead is dispatched, worked by claude and merged."""
    plan = {"beads": [{"key": "add", "title": "Make add() in calc.py return the sum"}]}
    work = script()

    def play(conv):
        return Turn(text=json.dumps(plan)) if conv.says("You are the Mayor") else work(conv)

    port = free_port()
    with StandIn([Anthropic()], play) as standin:
        town = agent_town("claude", standin, cli("claude"), env=env(standin), title=None)
        town.start("--metrics-port", str(port))
        town.ok("convoy", "create", "--rig", "calc", "--name", "sum", "--goal", "calc.add should add")
        town.wait(lambda: "Done  1/1" in town.ok("convoy", "show", "sum", "--rig", "calc"), 120, "the convoy")
        assert contract_git("show", "main:calc.py", cwd=town.remote) == CALC.strip()
        # the convoy's spend, from the ledger: the work's session (the Mayor's is the town's own)
        assert "spent: 3,600 tokens in, 240 out, $0.02" in town.ok("convoy", "show", "sum", "--rig", "calc")
        labels = (("namespace", "local"), ("rig", "calc"), ("runtime", "claude"))
        tokens = town.wait(lambda: scrape(port).get(("gastown_tokens_total", tuple(sorted((*labels, ("kind", "input")))))),
                           30, "the token counter")
        assert tokens == 3600
        assert scrape(port)[("gastown_cost_usd_total", labels)] == pytest.approx(0.0192)


@pytest.mark.slow
def test_the_demo_with_claude_and_no_key_runs_the_real_cli_against_the_stand_in(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN")}
    env.update(DEMO_DIR=str(tmp_path / "demo"), DEMO_RUNTIME="claude", HOME=str(tmp_path / "home"),
               GT_AGENTS_DIR=str(agents_dir()))
    (tmp_path / "home").mkdir()
    proc = subprocess.run([sys.executable, "-m", "gastown.demo"], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "8 of 8 beads merged" in proc.stdout
    assert "Agents: the real claude CLI against a local stand-in of the Anthropic Messages API" in proc.stdout
    assert "(rejected 1x first)" in proc.stdout  # the broken change was fixed in its resumed conversation
