"""The daemon follows town.json: it reads it again only when it changed (a stat a second), and then
starts, restarts or stops rigs; a read that failed is tried again, changed or not."""

from __future__ import annotations

import fcntl
import json
import subprocess
import sys
import time

import pytest

from gastown.api import RigSpec
from gastown.api.validation import parse_spec
from gastown.ledger import Ledger
from gastown.ledger.spool import Spool
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


DOOMED = """
import sys
from gastown.ledger import Ledger
with Ledger(sys.argv[1], cache_dir=sys.argv[2], actor="user tester") as ledger:
    ledger.create("left by a killed writer")
"""


def test_a_write_an_earlier_gastown_left_in_its_cache_of_the_rig_goes_out_when_the_rig_starts(tmp_path, daemon):
    """An earlier gastown kept a town's caches by rig name; every cache now follows one rule (so an
    agent's `gt` finds the daemon's). A write spooled in the old cache by a process killed before
    its turn is committed when the daemon starts the rig: nobody else takes a turn there."""
    town, daemon = daemon
    rig = make_rig(tmp_path)
    old = town.legacy_cache("webapp")
    with Ledger(f"file://{rig.remote}", cache_dir=old) as ledger:  # the cache made, as it was
        ledger.refresh()
        lock = open(old / "gastown.write.lock", "a+b")  # noqa: SIM115 (held across the kill)
        fcntl.flock(lock, fcntl.LOCK_EX)  # a turn under way: the doomed writer's create waits in the spool
        doomed = subprocess.Popen([sys.executable, "-c", DOOMED, f"file://{rig.remote}", str(old)])
        deadline = time.monotonic() + 30
        while not list((old / "spool").glob("*.op")) and time.monotonic() < deadline:
            time.sleep(0.02)
        doomed.kill()
        doomed.wait()
        lock.close()
    assert Spool.holds_writes(old)

    town.put_rig("webapp", spec(rig.remote))
    daemon.sync()
    assert not Spool.holds_writes(old)
    assert old != daemon.backend.ledger_cache(f"file://{rig.remote}")
    with rig.ledger() as lg:
        assert [b.title for b in lg.beads().values()].count("left by a killed writer") == 1
