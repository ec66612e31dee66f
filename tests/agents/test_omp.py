"""oh-my-pi (omp), the real CLI on bun, against a stand-in of the Anthropic Messages API."""

from __future__ import annotations

import os
import subprocess

import pytest

from gastown.runtimes import PRESETS
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
MODEL = "anthropic/claude-sonnet-4-5"
# No retries of its own after a failed call (10 by default), and no wait for a server's delay
# longer than 1 s: a 429 with Retry-After 3 ends the run at once, the delay in its message.
CONFIG = "retry:\n  enabled: false\n  maxDelayMs: 1000\n"


def script():
    return write_then_shell("write", "path", "bash", description=False)


def env(standin: StandIn) -> dict[str, str]:
    return {"ANTHROPIC_BASE_URL": standin.url, "ANTHROPIC_API_KEY": KEY}


def started(town: AgentTown) -> AgentTown:
    config = town.home / ".omp" / "agent" / "config.yml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(CONFIG)
    return town.start()


standin = standin_fixture(Anthropic, script)


def test_omp_needs_bun_on_its_path(cli, tmp_path):
    """Its entry point is `#!/usr/bin/env bun`: without bun it cannot start (127, which the session
    wrapper reports as a missing binary); with the preset's pinned bun it runs."""
    omp, bun = cli("omp")
    base = {"HOME": str(tmp_path), "PATH": os.pathsep.join([str(omp), "/usr/bin", "/bin"])}
    proc = subprocess.run(["omp", "--version"], env=base, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 127, proc.stderr
    base["PATH"] = os.pathsep.join([str(bun), base["PATH"]])
    proc = subprocess.run(["omp", "--version"], env=base, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and PRESETS["omp"].version in proc.stdout, proc.stderr


def test_omp_key_goes_to_the_models_provider():
    assert_key_goes_to_the_models_provider("omp")


def test_omp_completes_a_bead_to_merged_main(agent_town, cli, standin):
    town = started(agent_town("omp", standin, cli("omp"), env=env(standin), model=MODEL))
    # merged; the prompt reached the model unaltered, as a text block of its own (omp puts a
    # <system-reminder> block with the date and folder before it); it worked unattended with its
    # own tools: three turns, each tool result carried back
    main, result = merged_unattended(town, standin)
    # the key reached the CLI in the variable it reads, and the API in its header
    assert {s.headers.get("x-api-key") for s in standin.model_requests()} == {KEY}
    assert {s.conversation.model for s in main} == {"claude-sonnet-4-5"}
    assert all(s.status == 200 for s in standin.seen)
    # what omp reported per call (three of the stand-in's 1200 in / 80 out), priced by omp
    assert result["usage"]["input_tokens"] == 3600 and result["usage"]["output_tokens"] == 240
    assert result["usage"]["cost_usd"] == pytest.approx(3 * (1200 * 3 + 80 * 15) / 1e6)


def test_omp_rate_limit_is_classified_and_backed_off(agent_town, cli, standin):
    """A 429 with Retry-After: 3; omp gives up (exit 1) and reports the server's delay, the session
    is rate limited, spends no attempt, and the next one starts only after that delay."""
    standin.rate_limit(count=1, retry_after=3)
    town = started(agent_town("omp", standin, cli("omp"), env=env(standin)))
    rate_limited_then_merged(town, retry_after=3, backoff=3)  # the server's delay, as omp reported it


def test_omp_resume_continues_the_earlier_conversation(agent_town, cli, standin):
    standin.hold(1)  # the model never answers after the file is written
    town = started(agent_town("omp", standin, cli("omp"), env=env(standin)))
    # the second session's first request carries the first one's conversation: its prompt and
    # the file it wrote, with the tool's result
    stopped_then_resumed(town, standin)
    # --continue reopened the same conversation: the JSON header names the first session's
    assert session_id(town.log(1)) == session_id(town.log(0)) is not None
