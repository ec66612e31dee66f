"""OpenCode, the real CLI, against a stand-in of the Anthropic Messages API.

opencode takes a provider's base URL from its configuration (``provider.<id>.options.baseURL``
in ``~/.config/opencode/opencode.json``, what a user behind a proxy writes) and the key of the
model's provider from that provider's variable (``anthropic/...``: ANTHROPIC_API_KEY). Its tools
are its own: ``write`` (``filePath``, ``content``) and ``bash`` (``command``, ``description``).
It also asks the provider's small model for a session title: a side request without tools.
"""

from __future__ import annotations

import json

import pytest

from gastown.runtimes import PRESETS
from gastown.standin import StandIn
from gastown.standin.anthropic import Anthropic

from contract import (
    CALC,
    assert_done_in_its_shell,
    rate_limited_then_merged,
    standin_fixture,
    stopped_then_resumed,
    write_then_shell,
)

KEY = "sk-ant-contract-0001"
MODEL = "anthropic/claude-sonnet-4-5"  # $3 in, $15 out per million tokens in opencode's model list


def script():
    return write_then_shell("write", "filePath", "bash")


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


standin = standin_fixture(Anthropic, script)


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
    assert_done_in_its_shell(town, main)
    assert {"write", "bash"} <= {t["name"] for t in main[0].body["tools"]}
    result = town.last_result()
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
    # the delay from the error event's response headers; the limit is lifted once the first
    # session gave up
    rate_limited_then_merged(town, retry_after=1, timeout=90, after_first=lambda: standin.rate_limit(0))
    assert len([s for s in standin.main_requests() if s.status == 429]) == 6, town.report()


def test_opencode_resume_continues_the_earlier_conversation(agent_town, cli, standin):
    standin.hold(1)  # the model never answers after calc.py is written
    town = opencode_town(agent_town, cli, standin)
    # the second session's first request carries the first one's conversation: its prompt and
    # the file it wrote, with the tool's result
    second = stopped_then_resumed(town, standin, hold_timeout=90)[0]
    assert second.conversation.says(json.dumps({"filePath": "calc.py", "content": CALC}))
