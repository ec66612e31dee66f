"""Gemini CLI, the real CLI, against a stand-in of the Gemini API (generateContent, streamed)."""

from __future__ import annotations

import json

from gastown.standin import StandIn
from gastown.standin.gemini import Gemini

from contract import (
    CALC,
    AgentTown,
    merged_unattended,
    rate_limited_then_merged,
    standin_fixture,
    stopped_then_resumed,
    write_then_shell,
)

KEY = "gk-contract-0001"
MODEL = "gemini-2.5-pro"  # a chosen model skips the CLI's router (a side request per prompt)
# With GOOGLE_GEMINI_BASE_URL set, the CLI picks its "gateway" auth, which non-interactive mode
# refuses ("Invalid auth method selected", exit 41): a user's settings choose the API key.
# maxAttempts 1: no retry of its own after a 429 (it waits at least 5 s before each).
SETTINGS = {"security": {"auth": {"selectedType": "gemini-api-key"}}, "general": {"maxAttempts": 1},
            "privacy": {"usageStatisticsEnabled": False}}


def script():
    return write_then_shell("write_file", "file_path", "run_shell_command")


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


standin = standin_fixture(lambda: Gemini(retry_delay=3), script)


def test_gemini_completes_a_bead_to_merged_main(agent_town, cli, standin):
    town = started(agent_town("gemini", standin, cli("gemini"), env=env(standin)))
    # merged; the prompt reached the model unaltered, as a text part of its own; it worked
    # unattended with its own tools: three turns, each tool result carried back
    main, result = merged_unattended(town, standin)
    # the key reached the CLI in the variable it reads, and the API in its header
    assert {s.headers.get("x-goog-api-key") for s in standin.model_requests()} == {KEY}
    # its model router asked first (a side request for JSON, without tools), and was answered
    assert len(standin.model_requests()) == 4 and all(s.status == 200 for s in standin.seen)
    # what the CLI reported in its result event: four calls of the stand-in's 1200 in / 80 out
    assert result["usage"] == {"input_tokens": 4800, "output_tokens": 320}


def test_gemini_rate_limit_is_classified_and_backed_off(agent_town, cli, standin):
    """A Google 429 (RESOURCE_EXHAUSTED, its delay of 3 s in a RetryInfo detail); the session is
    rate limited, spends no attempt, and the next one starts only after that delay."""
    standin.rate_limit(count=1, retry_after=3)
    town = started(agent_town("gemini", standin, cli("gemini"), env=env(standin), model=MODEL))
    rate_limited_then_merged(town, retry_after=3, backoff=3)  # the API's delay, as the CLI reported it
    assert {s.conversation.model for s in standin.model_requests()} == {MODEL}


def test_gemini_resume_continues_the_earlier_conversation(agent_town, cli, standin):
    standin.hold(1)  # the model never answers after the file is written
    town = started(agent_town("gemini", standin, cli("gemini"), env=env(standin), model=MODEL))
    # `--resume latest` found the polecat's conversation (kept per worktree path): the second
    # session's first request carries the first one's prompt, the file it wrote and its result
    second = stopped_then_resumed(town, standin)
    assert second[0].conversation.tool_results == 1
    assert second[0].conversation.says(json.dumps(CALC))  # the write_file call, as it was made
    # and it went on from there: the shell step, then the answer
    assert [s.conversation.tool_results for s in second] == [1, 2]
