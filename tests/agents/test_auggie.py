"""Augment's auggie, the real CLI, against a stand-in of Augment's own API (its ``tenantURL``).

auggie has no model API of its own to point elsewhere: it talks to Augment's servers, whose
``chat-stream`` plays the model (see gastown.standin.augment). Its session JSON
(``AUGMENT_SESSION_AUTH``) names the server and carries the token.
"""

from __future__ import annotations

import json

from gastown.standin import StandIn, Turn, steps
from gastown.standin.augment import Augment

from contract import (
    CALC,
    FINAL,
    PROJECT,
    SHELL_STEP,
    assert_done_in_its_shell,
    rate_limited_then_merged,
    standin_fixture,
    stopped_then_resumed,
)

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


standin = standin_fixture(Augment, script)


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
    # its shell is a login shell (`bash -l -c`), whose /etc/profile resets PATH; the preset's
    # startup script restores the session's, or this `gt`, in a virtualenv, is not found
    assert_done_in_its_shell(town, main)
    result = town.last_result()
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
        # the server's Retry-After, as auggie printed it
        rate_limited_then_merged(town, retry_after=3, backoff=3, after_first=lambda: standin.rate_limit(count=0))
        assert any(s.status == 429 for s in chats(standin))
        assert "Rate limit reached. Retrying in 3s" in town.log(0)


def test_auggie_resume_continues_the_earlier_conversation(agent_town, cli, standin):
    standin.hold(1)  # the model never answers after the file is written
    town = agent_town("auggie", standin, cli("auggie"), env=env(standin)).start()
    # the second session's first request carries the first one's conversation: its prompt (auggie
    # trims the file's final newline), then the file edit it asked for (auggie saves an exchange
    # when the model's answer ends; the tool result still in flight when the session was stopped
    # is not kept, so the edit is asked again)
    second = stopped_then_resumed(town, standin, requests=lambda: chats(standin), trim=str.strip, tool_results=0)[0]
    history = second.body["chat_history"]
    assert history and history[0]["request_nodes"][0]["text_node"]["content"] == town.prompt(0).strip(), \
        town.report()
    calls = [n["tool_use"]["tool_name"] for n in history[0]["response_nodes"] if n.get("tool_use")]
    assert calls == ["str-replace-editor"]
