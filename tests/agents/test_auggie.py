"""Augment's auggie, the real CLI, against a stand-in of Augment's own API (its ``tenantURL``).

auggie has no model API of its own to point elsewhere: it talks to Augment's servers, whose
``chat-stream`` plays the model (see gastown.standin.augment). Its session JSON
(``AUGMENT_SESSION_AUTH``) names the server and carries the token.
"""

from __future__ import annotations

import json
import os
import signal

import pytest

from gastown.standin import StandIn, Turn, steps
from gastown.standin.augment import Augment

from contract import CALC, FINAL, PROJECT, SHELL_STEP, AgentTown, backoff_until, wrapper_pid

TOKEN = "aug-contract-0001"
OLD, NEW = PROJECT["calc.py"].splitlines()[1], CALC.splitlines()[1]  # line 2: the body of add()


def script():
    return steps(
        # its file tool for an existing file (save-file refuses to overwrite one)
        Turn(tool="str-replace-editor", input={"command": "str_replace", "path": "calc.py", "str_replace_entries": [
            {"old_str": OLD, "new_str": NEW, "old_str_start_line_number": 2, "old_str_end_line_number": 2}]}),
        Turn(tool="launch-process", input={"command": SHELL_STEP, "wait": True, "max_wait_seconds": 60, "cwd": "."}),
        Turn(text=FINAL))


def env(standin: StandIn) -> dict[str, str]:
    session = {"accessToken": TOKEN, "tenantURL": standin.url + "/", "scopes": ["email"]}
    return {"AUGMENT_SESSION_AUTH": json.dumps(session)}


def chats(standin: StandIn) -> list:
    return [s for s in standin.main_requests() if s.path.startswith("/chat-stream")]


@pytest.fixture
def standin():
    with StandIn([Augment()], script()) as s:
        yield s


def test_auggie_completes_a_bead_to_merged_main(agent_town, cli, standin):
    town = agent_town("auggie", standin, cli("auggie"), env=env(standin)).start()
    town.wait_merged()
    main = chats(standin)
    assert main, town.report()
    # the session's token reached Augment's API as a bearer token, on every call
    assert {s.headers.get("authorization") for s in standin.seen} == {f"Bearer {TOKEN}"}
    # start-up: the model list and the MCP settings, before the first chat
    paths = [s.path for s in standin.seen]
    assert {"/get-models", "/settings/get-mcp-tenant-configs", "/settings/get-mcp-user-configs"} <= set(paths)
    # the prompt reached the model unaltered, as a text node of its own (auggie trims the file's
    # final newline)
    assert main[0].body["nodes"][0]["text_node"]["content"] == town.prompt(0).strip(), town.report()
    # it worked unattended with its own tools: three turns, each tool result carried back
    assert [s.conversation.tool_results for s in main] == [0, 1, 2]
    result = town.results()[-1]
    assert result["status"] == "completed", town.report()
    # auggie prints no token usage in print mode: nothing is made up
    assert not {k: v for k, v in result.get("usage", {}).items() if k != "seconds"}


def test_auggie_rate_limit_is_classified_and_backed_off(agent_town, cli):
    """429s with Retry-After: 3 on its model calls; `--retry-timeout 2` (a rig's runtime args)
    makes it give up after its first wait instead of retrying until the deadline. The session
    is rate limited with the server's delay, spends no attempt, and the next one starts only
    after that delay."""
    work = script()
    armed: list[bool] = []

    def play(conv):
        # limit from the first start-up call on, so that the model list itself is answered
        # (without it auggie sends no prompt); the settings calls then get 429 too, and say so
        # only in warnings
        if getattr(conv, "endpoint", "") == "get-models" and not armed:
            armed.append(True)
            standin.rate_limit(retry_after=3)
        return work(conv)

    with StandIn([Augment()], play) as standin:
        town = agent_town("auggie", standin, cli("auggie"), env=env(standin),
                          args=("--retry-timeout", "2")).start()
        town.wait(lambda: town.results(), 60, "the first session's result")
        standin.rate_limit(count=0)
        first = town.results()[0]
        assert first["status"] == "rate_limited", town.report()
        assert any(s.status == 429 for s in chats(standin))
        assert "Rate limit reached. Retrying in 3s" in town.log(0)
        assert first["retry_after"] == pytest.approx(3)  # the server's Retry-After, as auggie printed it
        until = backoff_until(town)
        assert until is not None and until.timestamp() == pytest.approx(first["ended_at"] + 3, abs=2)
        town.wait_merged()
        sessions = [json.loads(p.read_text())["started"] for p in town.sessions()]
        assert len(sessions) == 2 and sessions[1] >= until.timestamp() - 0.5, town.report()
        assert int(town.bead_state().metadata.get("attempts", 0)) == 0  # a rate limit is not a failed attempt


def test_auggie_resume_continues_the_earlier_conversation(agent_town, cli, standin):
    standin.hold(1)  # the model never answers after the file is written
    town: AgentTown = agent_town("auggie", standin, cli("auggie"), env=env(standin)).start()
    town.wait(standin.held.is_set, 60, "the first session to reach step 1")
    first = town.sessions()[0]
    os.kill(wrapper_pid(first), signal.SIGTERM)  # the Witness or a deleted pod stops it
    town.wait(lambda: town.results(), 30, "the stopped session's result")
    standin.hold(None)
    town.wait_merged()
    assert len(town.sessions()) == 2, town.report()
    argv = json.loads((town.sessions()[1].parent / "request.json").read_text())
    assert argv["request"]["polecat"] == json.loads(first.read_text())["request"]["polecat"]
    # the second session's first request carries the first one's conversation: its prompt, then
    # the file edit it asked for (auggie saves an exchange when the model's answer ends; the tool
    # result still in flight when the session was stopped is not kept, so the edit is asked again)
    second = [s for s in chats(standin) if s.conversation.says(town.prompt(1).strip())]
    history = second[0].body["chat_history"] if second else []
    assert history and history[0]["request_nodes"][0]["text_node"]["content"] == town.prompt(0).strip(), \
        town.report()
    calls = [n["tool_use"]["tool_name"] for n in history[0]["response_nodes"] if n.get("tool_use")]
    assert calls == ["str-replace-editor"]
