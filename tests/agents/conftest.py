"""The agent contract suite: each preset's real CLI, pinned, against a stand-in of its provider.

The CLIs come from the npm registry (`make agents`, which `make test` runs, installs them into
$GT_AGENTS_DIR or ~/.cache/gastown/agents); without npm the whole suite is skipped, once, with
the reason. Every test here runs a real local town: a rig repository, `gt up`, the Refinery
verifying with the project's own tests.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from contract import AgentTown, cli_path  # noqa: E402


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).parent
    if shutil.which("npm") is None:
        skip = pytest.mark.skip(reason="npm is not installed: the agent CLIs cannot be had, so the agent "
                                       "contract suite is skipped")
        for item in items:
            if Path(item.fspath).is_relative_to(here):
                item.add_marker(skip)
    for item in items:
        if Path(item.fspath).is_relative_to(here):
            item.add_marker(pytest.mark.agents)


@pytest.fixture
def agent_town(tmp_path: Path) -> Iterator[type[AgentTown]]:
    """``agent_town(preset, standin, ...)``: a started local town (see contract.AgentTown)."""
    towns: list[AgentTown] = []

    def make(*args, **kwargs) -> AgentTown:
        town = AgentTown(tmp_path / f"t{len(towns)}", *args, **kwargs)
        towns.append(town)
        return town

    yield make  # type: ignore[misc]
    for town in towns:
        town.down()


@pytest.fixture
def cli():
    """``cli(preset)``: the folder with the preset's installed binary (and what it needs)."""

    def find(preset: str) -> list[Path]:
        dirs = cli_path(preset)
        if dirs is None:
            pytest.skip(f"the {preset} CLI is not installed: run `make agents`")
        return dirs

    return find


def pytest_configure(config):
    os.environ.setdefault("GT_AGENTS_DIR", str(Path.home() / ".cache" / "gastown" / "agents"))
