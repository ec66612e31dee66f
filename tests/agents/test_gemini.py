"""Gemini CLI, the real CLI, against a stand-in of the Gemini API (generateContent, streamed)."""

from __future__ import annotations

import json
import os
import signal

import pytest

from gastown.standin import StandIn, Turn, steps
from gastown.standin.gemini import Gemini

from contract import CALC, FINAL, SHELL_STEP, AgentTown, backoff_until, wrapper_pid

KEY = "gk-contract-0001"
MODEL = "gemini-2.5-pro"  # a chosen model skips the CLI's router (a side request per prompt)
# With GOOGLE_GEMINI_BASE_URL set, the CLI picks its "gateway" auth, which non-interactive mode
# refuses ("Invalid auth method selected", exit 41): a user's settings choose the API key.
# maxAttempts 1: no retry of its own after a 429 (it waits at least 5 s before each).
SETTINGS = {"security": {"auth": {"selectedType": "gemini-api-key"}}, "general": {"maxAttempts": 1},
            "privacy": {"usageStatisticsEnabled": False}}


def script():
    return steps(
        Turn(tool="write_file", input={"file_path": "calc.py", "content": CALC}),
        Turn(tool="run_shell_command", input={"command": SHELL_STEP, "description": "test, commit, gt done"}),
        Turn(text=FINAL))


def env(standin: StandIn) -> dict[str, str]:
    return {"GOOGLE_GEMINI_BASE_URL": standin.url, "GEMINI_API_KEY": KEY}


def started(town: AgentTown) -> AgentTown:
    settings = town.home / ".gemini" / "settings.json"
    settings.parent.mkdir(parents=True, exist_ok=True)
    settings.write_text(json.dumps(SETTINGS))
    # it leaves a report of every API error in the temporary folder: the town's, not /tmp
    (town.root / "tmp").mkdir()
    town.env["TMPDIR"] = str(town.root / "tmp")
    return town.start()


@pytest.fixture
def standin():
    with StandIn([Gemini(retry_delay=3)], script()) as s:
        yield s


def test_gemini_completes_a_bead_to_merged_main(agent_town, cli, standin):
    town = started(agent_town("gemini", standin, cli("gemini"), env=env(standin)))
    town.wait_merged()
    main = standin.main_requests()
    assert main, town.report()
    # the key reached the CLI in the variable it reads, and the API in its header
    assert {s.headers.get("x-goog-api-key") for s in standin.model_requests()} == {KEY}
    # the prompt reached the model unaltered, as a text part of its own
    assert main[0].conversation.says(town.prompt(0)), town.report()
    # it worked unattended with its own tools: three turns, each tool result carried back
    assert [s.conversation.tool_results for s in main] == [0, 1, 2]
    # its model router asked first (a side request for JSON, without tools), and was answered
    assert len(standin.model_requests()) == 4 and all(s.status == 200 for s in standin.seen)
    result = town.results()[-1]
    assert result["status"] == "completed", town.report()
    # what the CLI reported in its result event: four calls of the stand-in's 1200 in / 80 out
    assert result["usage"] == {"input_tokens": 4800, "output_tokens": 320}


def test_gemini_rate_limit_is_classified_and_backed_off(agent_town, cli, standin):
    """A Google 429 (RESOURCE_EXHAUSTED, its delay of 3 s in a RetryInfo detail); the session is
    rate limited, spends no attempt, and the next one starts only after that delay."""
    standin.rate_limit(count=1, retry_after=3)
    town = started(agent_town("gemini", standin, cli("gemini"), env=env(standin), model=MODEL))
    town.wait(lambda: town.results(), 60, "the first session's result")
    first = town.results()[0]
    assert first["status"] == "rate_limited", town.report()
    assert first["retry_after"] == pytest.approx(3)  # the API's delay, as the CLI reported it
    until = backoff_until(town)
    assert until is not None and until.timestamp() == pytest.approx(first["ended_at"] + 3, abs=2)
    town.wait_merged()
    sessions = [json.loads(p.read_text())["started"] for p in town.sessions()]
    assert len(sessions) == 2 and sessions[1] >= until.timestamp() - 0.5, town.report()
    assert int(town.bead_state().metadata.get("attempts", 0)) == 0  # a rate limit is not a failed attempt
    assert {s.conversation.model for s in standin.model_requests()} == {MODEL}


def test_gemini_resume_continues_the_earlier_conversation(agent_town, cli, standin):
    standin.hold(1)  # the model never answers after the file is written
    town = started(agent_town("gemini", standin, cli("gemini"), env=env(standin), model=MODEL))
    town.wait(standin.held.is_set, 60, "the first session to reach step 1")
    first = town.sessions()[0]
    os.kill(wrapper_pid(first), signal.SIGTERM)  # the Witness or a deleted pod stops it
    town.wait(lambda: town.results(), 30, "the stopped session's result")
    standin.hold(None)
    town.wait_merged()
    assert len(town.sessions()) == 2, town.report()
    second_request = json.loads((town.sessions()[1].parent / "request.json").read_text())
    assert second_request["request"]["polecat"] == json.loads(first.read_text())["request"]["polecat"]
    # `--resume latest` found the polecat's conversation (kept per worktree path): the second
    # session's first request carries the first one's prompt, the file it wrote and its result
    second = [s for s in standin.main_requests() if s.conversation.says(town.prompt(1))]
    assert second and second[0].conversation.says(town.prompt(0)), town.report()
    assert second[0].conversation.tool_results == 1
    assert second[0].conversation.says(json.dumps(CALC))  # the write_file call, as it was made
    # and it went on from there: the shell step, then the answer
    assert [s.conversation.tool_results for s in second] == [1, 2]
