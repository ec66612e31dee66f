"""Claude Code, the real CLI, against a stand-in of the Anthropic Messages API."""

from __future__ import annotations

import pytest

from gastown.standin import StandIn, Turn, steps
from gastown.standin.anthropic import Anthropic

from contract import CALC, FINAL, SHELL_STEP

KEY = "sk-ant-contract-0001"


def script(workdir_file: str = "calc.py"):
    return steps(
        Turn(tool="Write", input={"file_path": workdir_file, "content": CALC}),
        Turn(tool="Bash", input={"command": SHELL_STEP, "description": "test, commit, gt done"}),
        Turn(text=FINAL))


def env(standin: StandIn) -> dict[str, str]:
    return {"ANTHROPIC_BASE_URL": standin.url, "ANTHROPIC_API_KEY": KEY, "CLAUDE_CODE_MAX_RETRIES": "1",
            "DISABLE_TELEMETRY": "1", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1"}


@pytest.fixture
def standin():
    with StandIn([Anthropic()], script()) as s:
        yield s


def test_claude_completes_a_bead_to_merged_main(agent_town, cli, standin):
    town = agent_town("claude", standin, cli("claude"), env=env(standin)).start()
    town.wait_merged()
    main = standin.main_requests()
    assert main, town.report()
    # the key reached the CLI in the variable it reads, and the API in its header
    assert {s.headers.get("x-api-key") for s in main} == {KEY}
    # the prompt reached the model unaltered, as one text block
    assert main[0].conversation.says(town.prompt(0)), town.report()
    # it worked unattended: three turns, each tool result carried back, no question asked
    assert [s.conversation.tool_results for s in main] == [0, 1, 2]
    result = town.results()[-1]
    assert result["status"] == "completed", town.report()
