"""pi, the real CLI, against a stand-in of the Anthropic Messages API."""

from __future__ import annotations

import json

import pytest

from gastown.standin import StandIn
from gastown.standin.anthropic import Anthropic

from contract import (
    AgentTown,
    assert_key_goes_to_the_models_provider,
    merged_unattended,
    rate_limited_then_merged,
    session_id,
    standin_fixture,
    stopped_then_resumed,
    write_then_shell,
)

KEY = "sk-ant-contract-0001"
MODEL = "anthropic/claude-sonnet-4-5"  # provider/id, as pi takes it
# pi reads no base-URL variable: a user's models.json routes its built-in anthropic provider.
# No retries of its own (3 by default, 2 s apart, plus the SDK's 2): a 429 ends the run at once.
SETTINGS = {"retry": {"enabled": False, "provider": {"maxRetries": 0}}}


def script():
    return write_then_shell("write", "path", "bash", description=False)


def started(town: AgentTown, standin: StandIn) -> AgentTown:
    agent = town.home / ".pi" / "agent"
    agent.mkdir(parents=True, exist_ok=True)
    (agent / "models.json").write_text(json.dumps({"providers": {"anthropic": {"baseUrl": standin.url}}}))
    (agent / "settings.json").write_text(json.dumps(SETTINGS))
    return town.start()


standin = standin_fixture(Anthropic, script)


def test_pi_key_goes_to_the_models_provider():
    assert_key_goes_to_the_models_provider("pi")


def test_pi_completes_a_bead_to_merged_main(agent_town, cli, standin):
    town = started(agent_town("pi", standin, cli("pi"), env={"ANTHROPIC_API_KEY": KEY}, model=MODEL),
                   standin)
    # merged; the prompt reached the model unaltered, as the first user text; it worked
    # unattended with its own tools: three turns, each tool result carried back
    main, result = merged_unattended(town, standin)
    # the key reached the CLI in the variable of the model's provider, and the API in its header
    assert {s.headers.get("x-api-key") for s in standin.model_requests()} == {KEY}
    assert {s.conversation.model for s in main} == {"claude-sonnet-4-5"}
    assert len(standin.model_requests()) == 3 and all(s.status == 200 for s in standin.seen)
    # what pi reported per call (three of the stand-in's 1200 in / 80 out), priced by pi
    assert result["usage"]["input_tokens"] == 3600 and result["usage"]["output_tokens"] == 240
    assert result["usage"]["cost_usd"] == pytest.approx(3 * (1200 * 3 + 80 * 15) / 1e6)


def test_pi_rate_limit_is_classified_and_backed_off(agent_town, cli, standin):
    """A 429 ends pi's run with an error (exit 1 through the preset's extension: --mode json alone
    exits 0). pi does not pass on the server's Retry-After, so the rig backs off by its default;
    no second session starts before that, and the bead then completes."""
    standin.rate_limit(count=1, retry_after=3)
    town = started(agent_town("pi", standin, cli("pi"), env={"ANTHROPIC_API_KEY": KEY}), standin)
    # pi's events do not carry the server's delay: the rig's default backoff of 30 s applies
    first = rate_limited_then_merged(town, retry_after=None, backoff=30, backoff_within=3, merge_timeout=90)
    assert first["exit_code"] == 1 and "rate_limit_error" in first["reason"]


def test_pi_resume_continues_the_earlier_conversation(agent_town, cli, standin):
    standin.hold(1)  # the model never answers after the file is written
    town = started(agent_town("pi", standin, cli("pi"), env={"ANTHROPIC_API_KEY": KEY}), standin)
    # the second session's first request carries the first one's conversation: its prompt and
    # the file it wrote, with the tool's result
    stopped_then_resumed(town, standin)
    # --continue reopened the same conversation: the JSON header names the first session's
    assert session_id(town.log(1)) == session_id(town.log(0)) is not None
