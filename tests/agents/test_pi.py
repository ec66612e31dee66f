"""pi, the real CLI, against a stand-in of the Anthropic Messages API."""

from __future__ import annotations

import json
import os
import signal

import pytest

from gastown.runtimes import PRESETS
from gastown.standin import StandIn, Turn, steps
from gastown.standin.anthropic import Anthropic

from contract import CALC, FINAL, SHELL_STEP, AgentTown, backoff_until, wrapper_pid

KEY = "sk-ant-contract-0001"
MODEL = "anthropic/claude-sonnet-4-5"  # provider/id, as pi takes it
# pi reads no base-URL variable: a user's models.json routes its built-in anthropic provider.
# No retries of its own (3 by default, 2 s apart, plus the SDK's 2): a 429 ends the run at once.
SETTINGS = {"retry": {"enabled": False, "provider": {"maxRetries": 0}}}


def script():
    return steps(
        Turn(tool="write", input={"path": "calc.py", "content": CALC}),
        Turn(tool="bash", input={"command": SHELL_STEP}),
        Turn(text=FINAL))


def started(town: AgentTown, standin: StandIn) -> AgentTown:
    agent = town.home / ".pi" / "agent"
    agent.mkdir(parents=True, exist_ok=True)
    (agent / "models.json").write_text(json.dumps({"providers": {"anthropic": {"baseUrl": standin.url}}}))
    (agent / "settings.json").write_text(json.dumps(SETTINGS))
    return town.start()


def session_id(log: str) -> str | None:
    """The CLI's own session id, from the header its --mode json prints first."""
    for line in log.splitlines():
        if line.startswith('{"type":"session"'):
            return json.loads(line).get("id")
    return None


@pytest.fixture
def standin():
    with StandIn([Anthropic()], script()) as s:
        yield s


def test_pi_key_goes_to_the_models_provider():
    pi = PRESETS["pi"]
    assert pi.key_env(MODEL) == "ANTHROPIC_API_KEY"
    assert pi.key_env("openai/gpt-5.1") == "OPENAI_API_KEY"
    assert pi.key_env("google/gemini-2.5-pro") == "GEMINI_API_KEY"


def test_pi_completes_a_bead_to_merged_main(agent_town, cli, standin):
    town = started(agent_town("pi", standin, cli("pi"), env={"ANTHROPIC_API_KEY": KEY}, model=MODEL),
                   standin)
    town.wait_merged()
    main = standin.main_requests()
    assert main, town.report()
    # the key reached the CLI in the variable of the model's provider, and the API in its header
    assert {s.headers.get("x-api-key") for s in standin.model_requests()} == {KEY}
    assert {s.conversation.model for s in main} == {"claude-sonnet-4-5"}
    # the prompt reached the model unaltered, as the first user text
    assert main[0].conversation.says(town.prompt(0)), town.report()
    # it worked unattended with its own tools: three turns, each tool result carried back
    assert [s.conversation.tool_results for s in main] == [0, 1, 2]
    assert len(standin.model_requests()) == 3 and all(s.status == 200 for s in standin.seen)
    result = town.results()[-1]
    assert result["status"] == "completed", town.report()
    # what pi reported per call (three of the stand-in's 1200 in / 80 out), priced by pi
    assert result["usage"]["input_tokens"] == 3600 and result["usage"]["output_tokens"] == 240
    assert result["usage"]["cost_usd"] == pytest.approx(3 * (1200 * 3 + 80 * 15) / 1e6)


def test_pi_rate_limit_is_classified_and_backed_off(agent_town, cli, standin):
    """A 429 ends pi's run with an error (exit 1 through the preset's extension: --mode json alone
    exits 0). pi does not pass on the server's Retry-After, so the rig backs off by its default;
    no second session starts before that, and the bead then completes."""
    standin.rate_limit(count=1, retry_after=3)
    town = started(agent_town("pi", standin, cli("pi"), env={"ANTHROPIC_API_KEY": KEY}), standin)
    town.wait(lambda: town.results(), 60, "the first session's result")
    first = town.results()[0]
    assert first["status"] == "rate_limited", town.report()
    assert first["exit_code"] == 1 and "rate_limit_error" in first["reason"]
    assert first["retry_after"] is None  # pi's events do not carry the server's delay
    until = backoff_until(town)
    assert until is not None and until.timestamp() == pytest.approx(first["ended_at"] + 30, abs=3)
    town.wait_merged(timeout=90)
    sessions = [json.loads(p.read_text())["started"] for p in town.sessions()]
    assert len(sessions) == 2 and sessions[1] >= until.timestamp() - 0.5, town.report()
    assert int(town.bead_state().metadata.get("attempts", 0)) == 0  # a rate limit is no failed attempt


def test_pi_resume_continues_the_earlier_conversation(agent_town, cli, standin):
    standin.hold(1)  # the model never answers after the file is written
    town = started(agent_town("pi", standin, cli("pi"), env={"ANTHROPIC_API_KEY": KEY}), standin)
    town.wait(standin.held.is_set, 60, "the first session to reach step 1")
    first = town.sessions()[0]
    os.kill(wrapper_pid(first), signal.SIGTERM)  # the Witness or a deleted pod stops it
    town.wait(lambda: town.results(), 30, "the stopped session's result")
    standin.hold(None)
    town.wait_merged()
    assert len(town.sessions()) == 2, town.report()
    second_argv = json.loads((town.sessions()[1].parent / "request.json").read_text())
    assert second_argv["request"]["polecat"] == json.loads(first.read_text())["request"]["polecat"]
    # the second session's first request carries the first one's conversation: its prompt and
    # the file it wrote, with the tool's result
    second = [s for s in standin.main_requests() if s.conversation.says(town.prompt(1))]
    assert second and second[0].conversation.says(town.prompt(0)), town.report()
    assert second[0].conversation.tool_results >= 1
    # --continue reopened the same conversation: the JSON header names the first session's
    assert session_id(town.log(1)) == session_id(town.log(0)) is not None
