"""GitHub Copilot CLI, the real CLI, in its BYOK mode against a stand-in of the OpenAI Chat
Completions API (`COPILOT_PROVIDER_BASE_URL`; its default wire API is "completions")."""

from __future__ import annotations

import os
import re
import subprocess

import pytest

from gastown.runtimes.output import copilot as copilot_output
from gastown.standin import Turn, steps
from gastown.standin.openai_chat import OpenAIChat

from contract import (
    CALC,
    FINAL,
    SHELL_STEP,
    assert_done_in_its_shell,
    rate_limited_then_merged,
    standin_fixture,
    stopped_then_resumed,
)

KEY = "sk-contract-0001"
MODEL = "gpt-4.1"  # BYOK needs a model: the preset's --model


OTHER = "Another polecat's task, in another checkout"


def script():
    # its own tools: `edit` (a path relative to the working directory is accepted) and `bash`
    work = steps(
        Turn(tool="edit", input={"path": "calc.py", "old_str": "    raise NotImplementedError",
                                 "new_str": CALC.splitlines()[1]}),
        Turn(tool="bash", input={"command": SHELL_STEP, "description": "test, commit, gt done"}),
        Turn(text=FINAL))
    return lambda conv: Turn(text="Nothing to do.") if conv.says(OTHER) else work(conv)


@pytest.fixture(scope="module")
def pkg_cache(tmp_path_factory) -> str:
    """The CLI unpacks its 235 MB package under $HOME/.cache on a first run: once per module here."""
    return str(tmp_path_factory.mktemp("copilot-pkg"))


standin = standin_fixture(OpenAIChat, script)


@pytest.fixture
def copilot_town(agent_town, cli, standin, pkg_cache):
    def make():
        env = {"COPILOT_PROVIDER_BASE_URL": f"{standin.url}/v1", "COPILOT_PROVIDER_API_KEY": KEY,
               "COPILOT_PKG_CACHE_HOME": pkg_cache}
        return agent_town("copilot", standin, cli("copilot"), env=env, model=MODEL)
    return make


def user_message(seen) -> str:
    return next(m["content"] for m in seen.body["messages"] if m["role"] == "user")


def test_copilot_completes_a_bead_to_merged_main(copilot_town, standin):
    town = copilot_town().start()
    town.wait_merged()
    main = standin.main_requests()
    assert main, town.report()
    # the key reached the CLI in the variable BYOK reads, and the API as a bearer token
    assert {s.headers.get("authorization") for s in main} == {f"Bearer {KEY}"}
    assert {s.conversation.model for s in main} == {MODEL}
    # the prompt reached the model unaltered, after the CLI's own <current_datetime> line (it drops
    # the final newline)
    sent, prompt = user_message(main[0]), town.prompt(0).rstrip("\n")
    assert re.fullmatch(r"<current_datetime>[^<]+</current_datetime>\n\n", sent.removesuffix(prompt)), sent
    # it worked unattended: three turns, each tool result carried back, no question asked
    assert [s.conversation.tool_results for s in main] == [0, 1, 2]
    assert_done_in_its_shell(town, main)
    result = town.last_result()
    assert result["status"] == "completed", town.report()
    # the CLI's own per-call usage records (in its session store, under the polecat's COPILOT_HOME):
    # three calls of the stand-in's 1200 in / 80 out
    home = town.town / "rigs" / "calc" / "state" / town.polecat(0) / "copilot"
    reported = copilot_output.read(town.log(0), {"COPILOT_HOME": str(home)})
    assert reported.usage() == {"input_tokens": 3600, "output_tokens": 240}, town.report()
    assert reported.answer == FINAL
    assert result["usage"] == reported.usage()  # the session wrapper showed the reader the session's env


def test_copilot_rate_limit_is_classified_and_backed_off(copilot_town, standin):
    """Six 429s (its try and its five retries, each after the server's Retry-After: 1): the session
    is rate limited, spends no attempt, and the next one starts only after the backoff."""
    standin.rate_limit(count=6, retry_after=1)
    town = copilot_town().start()
    # what the CLI waited: the server's delay
    rate_limited_then_merged(town, retry_after=1, within=0.6)


def test_copilot_resume_continues_the_earlier_conversation(copilot_town, standin):
    standin.hold(1)  # the model never answers after the file is edited
    town = copilot_town().start()

    def elsewhere():
        # meanwhile another session of the same user, elsewhere: `--continue` takes the most recent
        # session of its COPILOT_HOME whatever its folder, so each polecat needs its own
        other = town.root / "elsewhere"
        other.mkdir()
        subprocess.run(["copilot", "--allow-all", "--output-format", "json", "--model", MODEL, "--prompt", OTHER],
                       cwd=other, env={**os.environ, **town.env}, capture_output=True, timeout=60, check=True)

    # under load copilot 1.0.102 sometimes ends a resumed run with "Cannot invoke native session
    # after disposal has started" after its work is done; the next session then finishes it (so
    # more sessions may follow). The second session's first request carries the first one's
    # conversation: its prompt and the edit it made, with the tool's result (it drops the final newline)
    second = stopped_then_resumed(town, standin, paused=True, while_stopped=elsewhere, more_sessions=True,
                                  trim=lambda prompt: prompt.rstrip("\n"))[0]
    users = [m["content"] for m in second.body["messages"] if m["role"] == "user"]
    assert users[0] == user_message(standin.main_requests()[0])  # the first session's turn, as it was
    assert users[-1].endswith(town.prompt(1).rstrip("\n")) and town.prompt(0) != town.prompt(1)
    assert not second.conversation.says(OTHER)
