"""OpenCode, the real CLI, against a stand-in of the Anthropic Messages API.

opencode takes a provider's base URL from its configuration (``provider.<id>.options.baseURL``
in ``~/.config/opencode/opencode.json``, what a user behind a proxy writes) and the key of the
model's provider from that provider's variable (``anthropic/...``: ANTHROPIC_API_KEY). Its tools
are its own: ``write`` (``filePath``, ``content``) and ``bash`` (``command``, ``description``).
It also asks the provider's small model for a session title: a side request without tools.
"""

from __future__ import annotations

import json
import os
import signal

import pytest

from gastown.runtimes import PRESETS
from gastown.standin import StandIn, Turn, steps
from gastown.standin.anthropic import Anthropic

from contract import CALC, FINAL, SHELL_STEP, backoff_until, wrapper_pid

KEY = "sk-ant-contract-0001"
MODEL = "anthropic/claude-sonnet-4-5"  # $3 in, $15 out per million tokens in opencode's model list


def script():
    return steps(
        Turn(tool="write", input={"filePath": "calc.py", "content": CALC}),
        Turn(tool="bash", input={"command": SHELL_STEP, "description": "test, commit, gt done"}),
        Turn(text=FINAL))


def env() -> dict[str, str]:
    # the key goes where gastown puts it for the model's provider (a pod's secret, the daemon's
    # environment); there is no network to models.dev for the model list here: the bundled one.
    # (opencode works in $PWD when it has one: the town's decoy checkout, which `down` checks)
    return {PRESETS["opencode"].key_env(MODEL): KEY, "OPENCODE_DISABLE_MODELS_FETCH": "1"}


def provider_config(town, standin: StandIn) -> None:
    """The user's own opencode.json: the Anthropic provider at the stand-in."""
    config = town.home / ".config" / "opencode" / "opencode.json"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(json.dumps({"$schema": "https://opencode.ai/config.json",
                                  "provider": {"anthropic": {"options": {"baseURL": f"{standin.url}/v1"}}}}))


def opencode_town(agent_town, cli, standin: StandIn):
    town = agent_town("opencode", standin, cli("opencode"), env=env(), model=MODEL)
    provider_config(town, standin)
    return town.start()


@pytest.fixture
def standin():
    with StandIn([Anthropic()], script()) as s:
        yield s


def test_opencode_completes_a_bead_to_merged_main(agent_town, cli, standin):
    town = opencode_town(agent_town, cli, standin)
    town.wait_merged()
    main = standin.main_requests()
    assert main, town.report()
    # the key reached the CLI in its provider's variable, and the API in its header
    assert {s.headers.get("x-api-key") for s in standin.model_requests()} == {KEY}
    # the model chosen with --model after `run`
    assert {s.conversation.model for s in main} == {MODEL.split("/", 1)[1]}
    # the prompt reached the model unaltered (from stdin), as the whole text of the first message
    first = main[0].body["messages"][0]["content"]
    assert [b["text"] for b in first if b.get("type") == "text"] == [town.prompt(0)], town.report()
    # it worked unattended with its own tools: three turns, each tool result carried back
    assert [s.conversation.tool_results for s in main] == [0, 1, 2], town.report()
    assert {"write", "bash"} <= {t["name"] for t in main[0].body["tools"]}
    result = town.results()[-1]
    assert result["status"] == "completed", town.report()
    # what its step_finish events reported: three turns of the stand-in's 1200 in / 80 out, priced
    # by opencode (the title request is not in them)
    assert result["usage"] == {"input_tokens": 3600, "output_tokens": 240, "cost_usd": pytest.approx(0.0144)}


def test_opencode_rate_limit_is_classified_and_backed_off(agent_town, cli, standin):
    """Every request answers 429 with Retry-After: 1 until the first session gives up (opencode
    tries six times, each after the server's delay; it has no setting to try fewer); the session
    is rate limited, spends no attempt, and the next one starts only after that delay."""
    standin.rate_limit(retry_after=1)
    town = opencode_town(agent_town, cli, standin)
    town.wait(lambda: town.results(), 90, "the first session's result")
    standin.rate_limit(0)
    first = town.results()[0]
    assert first["status"] == "rate_limited", town.report()
    assert first["retry_after"] == pytest.approx(1)  # from the error event's response headers
    assert len([s for s in standin.main_requests() if s.status == 429]) == 6, town.report()
    until = backoff_until(town)
    assert until is not None and until.timestamp() == pytest.approx(first["ended_at"] + first["retry_after"], abs=2)
    town.wait_merged()
    sessions = [json.loads(p.read_text())["started"] for p in town.sessions()]
    assert len(sessions) == 2 and sessions[1] >= until.timestamp() - 0.5, town.report()
    assert int(town.bead_state().metadata.get("attempts", 0)) == 0  # a rate limit is not a failed attempt


def test_opencode_resume_continues_the_earlier_conversation(agent_town, cli, standin):
    standin.hold(1)  # the model never answers after calc.py is written
    town = opencode_town(agent_town, cli, standin)
    town.wait(standin.held.is_set, 90, "the first session to reach step 1")
    first = town.sessions()[0]
    os.kill(wrapper_pid(first), signal.SIGTERM)  # the Witness or a deleted pod stops it
    town.wait(lambda: town.results(), 30, "the stopped session's result")
    standin.hold(None)
    town.wait_merged()
    assert len(town.sessions()) == 2, town.report()
    request = json.loads((town.sessions()[1].parent / "request.json").read_text())
    assert request["request"]["polecat"] == json.loads(first.read_text())["request"]["polecat"]
    # the second session's first request carries the first one's conversation: its prompt and
    # the file it wrote, with the tool's result
    second = [s for s in standin.main_requests() if s.conversation.says(town.prompt(1))]
    assert second and second[0].conversation.says(town.prompt(0)), town.report()
    assert second[0].conversation.says(json.dumps({"filePath": "calc.py", "content": CALC}))
    assert second[0].conversation.tool_results >= 1
