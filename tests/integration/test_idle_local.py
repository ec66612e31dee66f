"""An idle town is cheap: its daemon asks the remote less and less often, yet a `gt` command on this
machine wakes it at once, and another machine's write is seen within the idle interval.

The daemon's git is the real git behind a counting shim on its PATH (it logs each git command the
daemon itself runs), so the test counts remote polls and git processes, not CPU time.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time

import pytest

from gastown.ledger import Status

from conftest import GT, wait_for
from rigs import make_rig

pytestmark = pytest.mark.slow

SHIM = """#!/bin/sh
echo "$PPID $(date +%s.%N) $*" >> "{log}"
exec "{git}" "$@"
"""


def gt(town, *args, env=None):
    proc = subprocess.run([GT, *args, "--town", str(town)], capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.fixture
def town(tmp_path):
    rig = make_rig(tmp_path)
    town = tmp_path / "town"
    gt(town, "rig", "add", "webapp", str(rig.remote), "--runtime", "script", "--agent-arg", "true")
    config = json.loads((town / "town.json").read_text())
    config["settings"] = {"pollIdleSeconds": 4}  # the idle cap, short for the test
    (town / "town.json").write_text(json.dumps(config))
    shim, log = tmp_path / "shim", tmp_path / "git.log"
    shim.mkdir()
    (shim / "git").write_text(SHIM.format(log=log, git=shutil.which("git")))
    (shim / "git").chmod(0o755)
    env = {**os.environ, "PATH": f"{shim}{os.pathsep}{os.environ['PATH']}"}
    gt(town, "up", env=env)
    pid = int((town / "daemon.pid").read_text().split()[0])

    def gits(since: float = 0.0) -> list[list[str]]:
        """The git commands the daemon itself ran since ``since`` (time.time()), their arguments."""
        lines = [ln.split() for ln in (log.read_text().splitlines() if log.exists() else [])]
        return [ln[2:] for ln in lines if int(ln[0]) == pid and float(ln[1]) >= since]

    def polls(since: float = 0.0) -> int:
        """The daemon's own ls-remote runs since ``since``."""
        return sum(1 for args in gits(since) if "ls-remote" in args)

    yield town, rig, polls, gits
    gt(town, "down")


def hooked(rig, bead_id):
    with rig.ledger() as lg:
        bead = lg.get(bead_id)
    return bead.status != Status.OPEN or bead.assignee


def test_an_idle_daemon_backs_off_and_a_local_write_wakes_it_at_once(town, tmp_path):
    town, rig, polls, gits = town
    time.sleep(9)  # up: waits of 1, 2, 4, then the cap of 4 s (the old loop: one every 0.2 s, 45)
    t0 = time.time()
    time.sleep(8)
    quiet = polls(t0)
    assert 1 <= quiet <= 3, f"{quiet} remote polls in 8 idle seconds (the idle cap is 4 s)"
    # a poll that finds the tip it already has runs no other git (it used to check the cache with
    # a `git cat-file -e` every time)
    assert [args for args in gits(t0) if "ls-remote" not in args] == []

    time.sleep(1)  # well into a 4 s wait
    bead = gt(town, "bead", "--rig", "webapp", "create", "Write the guide").split()[0]
    created = time.monotonic()
    wait_for(lambda: hooked(rig, bead), timeout=20, what="the daemon to take the bead")
    assert time.monotonic() - created < 2.5, "a local write waited for the next remote poll"

    # another machine: its write leaves no marker under this machine's cache root; a poll sees it
    time.sleep(9)  # idle again: back at the cap
    far_env = {**os.environ, "GT_CACHE_DIR": str(tmp_path / "elsewhere")}
    far = gt(town, "bead", "--rig", f"file://{rig.remote}", "create", "Write the changelog", env=far_env).split()[0]
    written = time.monotonic()
    wait_for(lambda: hooked(rig, far), timeout=20, what="the daemon to see the remote write")
    assert time.monotonic() - written < 4 + 2.5, "a remote write was not seen within the idle interval"
