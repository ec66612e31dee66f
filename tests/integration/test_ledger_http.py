"""The ledger over smart HTTP: real git against `git http-backend` behind a real HTTP server on
127.0.0.1 (tests/githttp.py), as a rig on a git host is reached. Nothing mocked."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from gastown.ledger import LEDGER_BRANCH, Ledger
from githttp import GitHTTP

from conftest import GT


def git(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def server(tmp_path):
    git("init", "--quiet", "--bare", str(tmp_path / "rig.git"))
    with GitHTTP(tmp_path) as s:
        yield s


def test_a_lost_race_over_http_is_applied_again_and_both_caches_read_every_write(server, tmp_path):
    url = server.url("rig.git")
    with Ledger(url, cache_dir=tmp_path / "a", actor="user a") as a, \
            Ledger(url, cache_dir=tmp_path / "b", actor="user b") as b:
        first = a.create("from a")
        assert b.get(first.id).title == "from a"  # b fetched a's commit over HTTP
        a.comment(first.id, "a again")  # b's tip is now stale: its next push is refused
        second = b.create("from b", parent=first.id)
        b.comment(first.id, "b's comment")
        assert [c.text for c in a.get(first.id).comments] == ["a again", "b's comment"]
        assert a.get(second.id).title == "from b"
    subjects = git("log", "--format=%s", LEDGER_BRANCH, cwd=tmp_path / "rig.git").splitlines()
    assert len(subjects) == 4 and len(git("rev-list", "--merges", LEDGER_BRANCH, cwd=tmp_path / "rig.git")) == 0
    assert server.requests > 0
    with Ledger(url, cache_dir=tmp_path / "fresh") as fresh:  # a new machine clones it over HTTP
        assert {bead.title for bead in fresh.beads().values()} == {"from a", "from b"}


def test_gt_bead_create_on_an_http_url_goes_through_the_committer(server, tmp_path):
    url = server.url("rig.git")
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "GT_TOWN": str(tmp_path / "town"),
           "GT_ACTOR": "user tester"}
    procs = [subprocess.Popen([GT, "bead", "create", "--rig", url, f"over http {i}"], env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for i in range(4)]
    ids = []
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        ids.append(out.strip())
    listed = subprocess.run([GT, "bead", "--rig", url, "list", "--all", "--json"], env=env, check=True,
                            capture_output=True, text=True).stdout
    assert sorted((b["id"], b["title"]) for b in json.loads(listed)) == \
        sorted(zip(ids, [f"over http {i}" for i in range(4)], strict=True))
    on_remote = git("ls-tree", "-r", "--name-only", LEDGER_BRANCH, cwd=tmp_path / "rig.git")
    assert all(f"{i}.json" in on_remote for i in ids)
