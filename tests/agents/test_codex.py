"""OpenAI Codex, the real CLI, against a stand-in of the OpenAI Responses API.

codex reads its base URL from ``openai_base_url`` in ``$HOME/.codex/config.toml`` (or a ``-c``
override on its command line; the OPENAI_BASE_URL variable is not read) and its key from
CODEX_API_KEY. It first tries the API over a WebSocket, which the stand-in declines (426), and
then speaks HTTPS (streamed server-sent events).

Its tools depend on the model: the default model gets "code mode", one ``exec`` tool whose
JavaScript calls codex's own tools (``tools.apply_patch``, ``tools.exec_command``); a model
like gpt-5.5 gets those tools directly (``apply_patch`` freeform, ``exec_command`` a function).
The script plays whichever the CLI declared.
"""

from __future__ import annotations

import json

from gastown.runtimes import PRESETS
from gastown.standin import StandIn, Turn
from gastown.standin.openai_responses import OpenAIResponses

from contract import (
    FINAL,
    SHELL_STEP,
    merged_unattended,
    rate_limited_then_merged,
    standin_fixture,
    stopped_then_resumed,
)

KEY = "sk-contract-0001"
PATCH = ("*** Begin Patch\n*** Update File: calc.py\n@@\n def add(a, b):\n-    raise NotImplementedError\n"
         "+    return a + b\n*** End Patch\n")


def play(conv) -> Turn:
    """Step N after N tool results: patch calc.py, run SHELL_STEP, answer FINAL."""
    kinds = getattr(conv, "tool_kinds", {})
    if not conv.has_tools:
        return Turn(text="ok")
    step = min(conv.tool_results, 2)
    if step == 2:
        return Turn(text=FINAL)
    if "apply_patch" in kinds:  # the tools themselves
        if step == 0:
            return Turn(tool="apply_patch", input={"input": PATCH})
        return Turn(tool="exec_command", input={"cmd": SHELL_STEP, "yield_time_ms": 30000})
    if step == 0:  # code mode: JavaScript that calls them (a JSON string is a JavaScript string)
        code = f"text(JSON.stringify(await tools.apply_patch({json.dumps(PATCH)})));"
    else:
        code = (f"const r = await tools.exec_command({json.dumps({'cmd': SHELL_STEP, 'yield_time_ms': 30000})});\n"
                "text(JSON.stringify(r));")
    return Turn(tool="exec", input={"input": code})


def env() -> dict[str, str]:
    # the key goes where gastown puts it for this preset (a pod's secret, the daemon's environment)
    return {PRESETS["codex"].key_env(): KEY}


def base_url(town, standin: StandIn) -> None:
    """What a user behind a proxy writes: the base URL in codex's own config file."""
    config = town.home / ".codex" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(f'openai_base_url = "{standin.url}/v1"\n')


standin = standin_fixture(OpenAIResponses, lambda: play)


def test_codex_completes_a_bead_to_merged_main(agent_town, cli, standin):
    town = agent_town("codex", standin, cli("codex"), env=env())
    base_url(town, standin)
    town.start()
    # merged; the prompt reached the model unaltered, as one text part of the user's message; it
    # worked unattended with its own tools: three turns, each tool result carried back
    main, result = merged_unattended(town, standin)
    # the key reached the CLI in the variable the preset names, and the API as a bearer token
    assert {s.headers.get("authorization") for s in standin.seen} == {f"Bearer {KEY}"}
    assert "exec" in main[0].conversation.tool_kinds  # the default model's code mode
    # the usage codex reported (the stand-in's 1200 in / 80 out per response, three responses)
    assert result["usage"] == {"input_tokens": 3600, "output_tokens": 240}, town.report()


def test_codex_rate_limit_is_classified_and_backed_off(agent_town, cli, standin):
    """Every request answers 429 with Retry-After: 1 until the first session gives up (codex
    retries each request five times, over its WebSocket and then over HTTPS, waiting the
    server's delay); the session is rate limited, spends no attempt, and the next one starts
    only after that delay."""
    standin.rate_limit(retry_after=1)
    town = agent_town("codex", standin, cli("codex"), env=env())
    base_url(town, standin)
    town.start()
    # what the CLI waited: the server's delay; the limit is lifted once the first session gave up
    rate_limited_then_merged(town, retry_after=1, within=0.5, after_first=lambda: standin.rate_limit(0))


def test_codex_resume_continues_the_earlier_conversation(agent_town, cli, standin):
    """`codex exec resume --last` with the rig's model and extra args after it; here the base URL
    comes as a `-c` override among those args, and gpt-5.5 gets apply_patch and exec_command
    as tools of their own."""
    standin.hold(1)  # the model never answers after calc.py is patched
    town = agent_town("codex", standin, cli("codex"), env=env(), model="gpt-5.5",
                      args=("-c", f'openai_base_url="{standin.url}/v1"')).start()
    # the second session's first request carries the first one's conversation: its prompt and
    # the patch it applied, with the tool's result
    second = stopped_then_resumed(town, standin)[0].conversation
    assert second.says(PATCH)
    assert "apply_patch" in second.tool_kinds and second.model == "gpt-5.5"
