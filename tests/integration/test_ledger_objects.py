"""The ledger reads and writes git objects itself (a `git cat-file --batch` it keeps, trees in git's
own format), so a writer process loads no GitPython: every `gt bead` and every writer of a machine
pays its import (~70 ms of CPU) once per process, which bounds how many writes a machine's
processes make per second. Real git checks every object both ways."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gastown.ledger import Ledger
from gastown.ledger.errors import Unavailable
from gastown.ledger.gitstore import GitStore
from gastown.ledger.layout import FILE, TREE, Trees


def git(*args: str, cwd: Path | None = None, input: bytes | None = None) -> bytes:
    return subprocess.run(["git", *args], cwd=cwd, input=input, check=True, capture_output=True).stdout


@pytest.fixture
def store(tmp_path):
    remote = tmp_path / "rig.git"
    git("init", "--quiet", "--bare", str(remote))
    s = GitStore(str(remote), tmp_path / "cache")
    yield s
    s.close()


def test_a_writer_process_loads_no_gitpython(tmp_path):
    remote = tmp_path / "rig.git"
    git("init", "--quiet", "--bare", str(remote))
    program = ("import json, sys\nfrom gastown.ledger import Ledger\n"
               f"with Ledger({str(remote)!r}, cache_dir={str(tmp_path / 'cache')!r}) as ledger:\n"
               "    bead = ledger.create('one')\n"
               "    assert ledger.get(bead.id, refresh=True).title == 'one'\n"
               "print(json.dumps(sorted(m for m in sys.modules if m == 'git' or m.startswith('git.'))))\n")
    out = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=True).stdout
    assert json.loads(out.splitlines()[-1]) == []


def test_trees_written_are_the_trees_git_writes(store, tmp_path):
    blob = store.write_object("blob", b"hello\n")
    sub = Trees(store.read_object, store.write_object).write({"x.json": (blob, FILE)})
    entries = {"b.json": (blob, FILE), "b": (sub, TREE), "b-c": (blob, FILE), "a": (sub, TREE)}
    ours = Trees(store.read_object, store.write_object).write(entries)
    listing = "".join(f"{mode:06o} {'tree' if mode == TREE else 'blob'} {sha.hex()}\t{name}\n"
                      for name, (sha, mode) in entries.items())
    theirs = git("mktree", cwd=store.cache, input=listing.encode()).decode().strip()
    assert ours.hex() == theirs
    # and read back, by a fresh reader, as git lists it
    assert Trees(store.read_object, store.write_object).entries(ours) == entries
    assert git("ls-tree", "--name-only", theirs, cwd=store.cache).decode().split() == ["a", "b-c", "b.json", "b"]  # a directory sorts as "b/"


def test_objects_read_loose_and_packed_and_missing(store):
    sha = store.write_object("blob", b"x" * 100_000)  # bigger than a pipe's buffer
    assert store.read_object(sha) == b"x" * 100_000
    git("pack-objects", "-q", "objects/pack/pack", cwd=store.cache, input=f"{sha.hex()}\n".encode())
    git("prune-packed", cwd=store.cache)
    assert not (store.cache / "objects" / sha.hex()[:2] / sha.hex()[2:]).exists()
    assert store.read_object(sha) == b"x" * 100_000
    with pytest.raises(Unavailable, match="missing"):
        store.read_object(bytes(20))


def test_a_commit_is_found_loose_packed_or_not_at_all_and_only_a_commit(store, tmp_path, monkeypatch):
    """``has`` reads a loose commit's header itself (the rig loop asks at each new tip); a packed
    one, a missing one and an object that is no commit are git's answer (`cat-file -e C^{commit}`)."""
    tree = Trees(store.read_object, store.write_object).write({})
    commit = store.write_object("commit", f"tree {tree.hex()}\nauthor a <a@a> 0 +0000\n"
                                          f"committer a <a@a> 0 +0000\n\none\n".encode()).hex()
    blob = store.write_object("blob", b"no commit\n").hex()
    log = tmp_path / "git.log"
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "git").write_text(f'#!/bin/sh\necho "$*" >> "{log}"\nexec "{shutil.which("git")}" "$@"\n')
    (shim / "git").chmod(0o755)
    monkeypatch.setenv("PATH", f"{shim}{os.pathsep}{os.environ['PATH']}")
    assert store.has(commit)
    assert not log.exists(), "a loose commit was asked of git"
    assert not store.has(blob) and not store.has(bytes(20).hex()) and not store.has("../../x")
    git("pack-objects", "-q", "objects/pack/pack", cwd=store.cache, input=f"{commit}\n".encode())
    git("prune-packed", cwd=store.cache)
    assert not (store.cache / "objects" / commit[:2] / commit[2:]).exists()
    assert store.has(commit)


def test_a_killed_reader_is_started_again(store):
    sha = store.write_object("blob", b"again\n")
    assert store.read_object(sha) == b"again\n"
    store._objects._proc.kill()  # the kept `git cat-file --batch` dies (an OOM kill, a signal)
    store._objects._proc.wait()
    assert store.read_object(sha) == b"again\n"


def test_many_writes_read_back_by_a_fresh_cache(tmp_path):
    remote = tmp_path / "rig.git"
    git("init", "--quiet", "--bare", str(remote))
    with Ledger(str(remote), cache_dir=tmp_path / "a") as ledger:
        made = {ledger.create(f"bead {i}").id for i in range(30)}
    with Ledger(str(remote), cache_dir=tmp_path / "b") as fresh:
        assert set(fresh.beads()) == made
