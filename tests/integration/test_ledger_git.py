"""The ledger on real git: bare remotes in temp dirs, real processes, nothing mocked."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from gastown.ledger import (
    LEDGER_BRANCH,
    CorruptRecord,
    InvalidOperation,
    Ledger,
    NotFound,
    Status,
    Unavailable,
)
from gastown.ledger.gitstore import PACK_LOOSE_OBJECTS
from gastown.ledger.layout import BEADS_DIR, record_path
from gastown.ledger.ops import Create, Together

HERE = Path(__file__).resolve().parent.parent


def git(*args, cwd=None) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def remote(tmp_path) -> Path:
    path = tmp_path / "rig.git"
    git("init", "--quiet", "--bare", "--initial-branch=main", str(path))
    return path


@pytest.fixture
def ledger(remote, tmp_path):
    with Ledger(str(remote), cache_dir=tmp_path / "cache", actor="user alice", prefix="wa") as lg:
        yield lg


def ledger_log(remote: Path) -> list[str]:
    return git("log", "--format=%s", LEDGER_BRANCH, cwd=remote).splitlines()


def test_first_write_creates_the_orphan_ledger_branch(ledger, remote):
    assert ledger.tip is None and ledger.beads() == {}
    b = ledger.create("First")
    assert b.id.startswith("wa-")
    assert git("rev-list", "--count", LEDGER_BRANCH, cwd=remote).strip() == "1"
    assert git("rev-list", "--max-parents=0", LEDGER_BRANCH, cwd=remote).strip() == ledger.tip
    files = git("ls-tree", "-r", "--name-only", LEDGER_BRANCH, cwd=remote).split()
    path = record_path(BEADS_DIR, b.id)
    assert files == [path, "ledger.json"] and path.count("/") == 3  # beads/<h0>/<h1>/<id>.json
    config = json.loads(git("show", f"{LEDGER_BRANCH}:ledger.json", cwd=remote))
    assert config["format"] == 2 and config["id_prefix"] == "wa" and "prefix" not in config
    record = json.loads(git("show", f"{LEDGER_BRANCH}:{path}", cwd=remote))
    assert record["title"] == "First" and record["status"] == "open"


def test_ensure_creates_an_empty_ledger_once(ledger, remote):
    tip = ledger.ensure()
    assert ledger_log(remote) == ["ledger: created with prefix wa (user alice)"]
    assert ledger.ensure() == tip


def test_every_operation_round_trips_through_git(ledger, remote, tmp_path):
    a = ledger.create("Build API", description="REST", acceptance="tests pass", priority=1,
                      labels=["api", "api"], assignee="furiosa", metadata={"k": 1})
    b = ledger.create("Write docs", deps=[(a.id, "blocks")])
    assert [x.id for x in ledger.ready()] == [a.id]
    ledger.update(a.id, status="in_progress", actor="polecat furiosa", notes="halfway",
                  add_labels=["backend"], metadata={"k": None, "branch": "polecat/furiosa"})
    ledger.comment(a.id, "pushed 3 commits", actor="polecat furiosa")
    ledger.close_bead(a.id, "merged in 1234abc")
    assert [x.id for x in ledger.ready()] == [b.id]
    child = ledger.create("Step 1", parent=b.id)
    assert child.id == f"{b.id}.1"
    ledger.remove_dep(b.id, a.id)
    ledger.reopen(a.id, "regression")

    # a second, independent reader sees exactly the same state from git alone
    with Ledger(str(remote), cache_dir=tmp_path / "other-cache") as fresh:
        got = fresh.get(a.id)
        assert got.status == Status.OPEN and got.labels == ["api", "backend"]
        assert got.metadata == {"branch": "polecat/furiosa"} and got.notes == "halfway"
        assert [c.text for c in got.comments] == ["pushed 3 commits", "reopened: regression"]
        assert fresh.get(b.id).dependencies == []
        assert fresh.get(child.id).deps() == [b.id]
        assert fresh.prefix == "wa"


def test_commit_messages_and_authors_say_what_changed(ledger, remote):
    a = ledger.create("Build API")
    ledger.update(a.id, status="in_progress", actor="polecat furiosa")
    log = git("log", "-1", "--format=%an|%s", LEDGER_BRANCH, cwd=remote).strip()
    assert log == f"polecat furiosa|bead {a.id}: open -> in_progress (polecat furiosa)"
    changes = [h.change for h in ledger.history(a.id)]
    assert changes == ['created task "Build API" (user alice)', "open -> in_progress (polecat furiosa)"]


def test_bad_input_is_refused_and_nothing_is_written(ledger, remote):
    a = ledger.create("A")
    b = ledger.create("B", deps=[(a.id, "blocks")])
    before = ledger.tip
    with pytest.raises(InvalidOperation, match="dependency cycle"):
        ledger.add_dep(a.id, b.id)
    with pytest.raises(NotFound, match="no bead wa-zzzz"):
        ledger.update("wa-zzzz", status="closed")
    ledger.close_bead(a.id)
    with pytest.raises(InvalidOperation, match="reopen it first"):
        ledger.update(a.id, status="in_progress")
    with pytest.raises(NotFound):
        ledger.history("wa-zzzz")
    assert ledger.refresh() == git("rev-parse", LEDGER_BRANCH, cwd=remote).strip()
    assert len(ledger_log(remote)) == 3 and ledger.tip != before


def test_unreachable_remote_is_one_clear_error(tmp_path):
    with Ledger(str(tmp_path / "missing.git"), cache_dir=tmp_path / "c") as lg:
        with pytest.raises(Unavailable, match="cannot reach the rig repository .*missing.git"):
            lg.beads()
        with pytest.raises(Unavailable):
            lg.create("x")


def test_corrupt_record_is_named_and_never_overwritten(ledger, remote, tmp_path):
    a = ledger.create("A")
    ok = ledger.create("B")
    work = tmp_path / "work"
    git("clone", "--quiet", "--branch", LEDGER_BRANCH, str(remote), str(work))
    path = record_path(BEADS_DIR, a.id)
    (work / path).write_text("{not json")
    git("-c", "user.name=vandal", "-c", "user.email=v@x", "commit", "--quiet", "-am", "oops", cwd=work)
    git("push", "--quiet", "origin", LEDGER_BRANCH, cwd=work)
    bad_commit = git("rev-parse", "HEAD", cwd=work).strip()

    with pytest.raises(CorruptRecord, match=rf"{path} at commit {bad_commit[:12]}"):
        ledger.get(a.id)
    with pytest.raises(CorruptRecord):
        ledger.update(a.id, status="closed")
    snap = ledger.snapshot()
    assert set(snap.beads()) == {ok.id} and snap.corrupt[0].path == path
    ledger.update(ok.id, status="closed")  # the rest of the ledger keeps working
    assert git("show", f"{LEDGER_BRANCH}:{path}", cwd=remote) == "{not json"


def test_reads_fetch_only_when_the_remote_moved(ledger, remote, tmp_path, monkeypatch):
    ledger.create("A")
    fetches = []
    real_fetch = ledger.store._fetch
    monkeypatch.setattr(ledger.store, "_fetch", lambda: fetches.append(1) or real_fetch())
    for _ in range(3):
        ledger.beads()
    assert fetches == []
    with Ledger(str(remote), cache_dir=tmp_path / "other") as other:
        other.create("B")
    assert len(ledger.beads()) == 2 and fetches == [1]
    ledger.beads()
    assert fetches == [1]


def test_group_commit_batches_concurrent_writes(ledger, remote):
    gate = threading.Barrier(40)

    def write(i):
        gate.wait()
        ledger.create(f"bead {i}")

    threads = [threading.Thread(target=write, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(ledger.beads()) == 40
    assert len(ledger_log(remote)) < 40
    assert any(s.startswith("ledger: ") and s.endswith(" changes") for s in ledger_log(remote))


def test_eight_processes_lose_and_duplicate_nothing(remote, tmp_path):
    Ledger(str(remote), cache_dir=tmp_path / "c0").ensure()
    procs = []
    for n in range(8):
        # half of the writers share one cache directory, the others have their own
        cache = tmp_path / ("shared-cache" if n % 2 else f"cache-{n}")
        procs.append(subprocess.Popen(
            [sys.executable, str(HERE / "ledger_worker.py"), str(remote), str(cache), f"p{n}", "6", "3", "2"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    created = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        created += out.split()
    assert len(created) == len(set(created)) == 48

    with Ledger(str(remote), cache_dir=tmp_path / "check") as lg:
        beads = lg.beads()
    assert set(beads) == set(created)
    assert sorted(b.title for b in beads.values()) == sorted(f"p{n}-{i}" for n in range(8) for i in range(6))
    for b in beads.values():
        assert [c.text for c in b.comments] == ["step 1", "step 2", "step 3"], b.id
        assert b.status == Status.CLOSED and b.close_reason == "done"
    # every write is one line in exactly one commit: 6 writes per bead, plus the creation
    lines = [ln for ln in git("log", "--format=%B", LEDGER_BRANCH, cwd=remote).splitlines()
             if ln.startswith("bead ")]
    assert len(lines) == 48 * 6
    assert git("fsck", "--strict", "--no-dangling", cwd=remote) == ""


def test_a_writer_packs_a_cache_full_of_loose_objects_in_the_background(ledger):
    ledger.create("A")
    store = ledger.store
    assert store.pack_if_loose() is False  # a handful of loose objects: nothing to do
    n = 0
    while len(list((store.cache / "objects" / "17").glob("*"))) * 256 <= PACK_LOOSE_OBJECTS:
        # what thousands of writes leave behind, pushed: never fetched back, yet kept by gc
        ledger.apply(Together(tuple(Create(title=f"t{n}-{i}", actor="t", seed=f"{n}-{i}") for i in range(300))))
        n += 1
    assert store.pack_if_loose() is True
    deadline = time.monotonic() + 60
    while loose_objects(store.cache) > 100 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert loose_objects(store.cache) <= 100  # packed by the detached `git gc --auto`
    assert ledger.beads(refresh=False) and ledger.create("B")  # the ledger reads and writes on


def loose_objects(repo: Path) -> int:
    return int(git("count-objects", cwd=repo).split()[0])


def test_a_writer_never_builds_on_an_older_tip_than_it_has_read(remote, tmp_path):
    shared = tmp_path / "shared"
    with Ledger(str(remote), cache_dir=shared) as a:
        a.create("X")  # the cache's last written tip
    with Ledger(str(remote), cache_dir=tmp_path / "elsewhere") as b:
        y = b.create("Y")  # another machine moves the ledger on
    with Ledger(str(remote), cache_dir=shared) as a2:
        assert y.id in a2.beads()
        assert a2.comment(y.id, "seen").comments[-1].text == "seen"  # built on what it read
