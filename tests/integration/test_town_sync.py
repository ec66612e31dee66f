"""The daemon follows town.json: it reads it again only when it changed (a stat a second), and then
starts, restarts or stops rigs; a read that failed is tried again, changed or not."""

from __future__ import annotations

import json

import pytest

from gastown.api import RigSpec
from gastown.api.validation import parse_spec
from gastown.local.daemon import TownDaemon
from gastown.local.town import Town, TownError

from rigs import make_rig


def spec(remote, polecats: int = 2) -> RigSpec:
    return parse_spec(RigSpec, {"gitUrl": f"file://{remote}", "maxPolecats": polecats,
                                "runtime": {"preset": "script", "args": ["true"]}})


@pytest.fixture
def daemon(tmp_path):
    town = Town(tmp_path / "town")
    daemon = TownDaemon(town)
    yield town, daemon
    for name in list(daemon.rigs):
        daemon._stop(name)


def test_a_change_to_town_json_is_followed_and_an_unchanged_one_is_not_read_again(tmp_path, daemon):
    town, daemon = daemon
    rig = make_rig(tmp_path)
    town.put_rig("webapp", spec(rig.remote))
    daemon.sync()
    first = daemon.rigs["webapp"]

    reads = []
    load = town._load
    town._load = lambda: reads.append(1) or load()  # type: ignore[method-assign]
    daemon.sync()
    assert reads == [] and daemon.rigs["webapp"] is first  # unchanged: a stat, no parse, no restart

    town.put_rig("webapp", spec(rig.remote, polecats=3))
    daemon.sync()
    assert daemon.rigs["webapp"] is not first and daemon.rigs["webapp"].config.max_polecats == 3

    town.remove_rig("webapp")
    daemon.sync()
    assert daemon.rigs == {}


def test_a_broken_town_json_is_said_and_read_again_once_fixed(tmp_path, daemon):
    town, daemon = daemon
    rig = make_rig(tmp_path)
    town.put_rig("webapp", spec(rig.remote))
    good = town.config_path.read_text()
    town.config_path.write_text('{"rigs": {"webapp": ')
    with pytest.raises(TownError, match="not valid JSON"):
        daemon.sync()
    with pytest.raises(TownError, match="not valid JSON"):
        daemon.sync()  # unchanged, but it failed: read again
    town.config_path.write_text(json.dumps(json.loads(good)))
    daemon.sync()
    assert list(daemon.rigs) == ["webapp"]
