"""A local verifier's checkout reads the stack in place from the cache that built it (real git)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from gastown.refinery.verify import checkout_in_place


def git(cwd: Path, *args: str) -> str:
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@x",
           "PATH": "/usr/bin:/bin", "HOME": str(cwd)}
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True, env=env).stdout.strip()


def commit(repo: Path, files: dict[str, str]) -> str:
    for name, text in files.items():
        (repo / name).write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "c")
    return git(repo, "rev-parse", "HEAD")


def store(path: Path) -> Path:
    path.mkdir()
    git(path, "init", "-q")
    return path


def test_checkout_reads_the_commit_in_place_and_is_reused(tmp_path):
    cache = store(tmp_path / "cache")
    first = commit(cache, {"a.txt": "one\n"})
    second = commit(cache, {"a.txt": "two\n", "b.txt": "new\n"})
    work = tmp_path / "work"
    objects = cache / ".git" / "objects"

    assert checkout_in_place(work, objects, second) == second
    assert (work / "b.txt").read_text() == "new\n" and git(work, "rev-parse", "HEAD") == second
    (work / "left-over.o").write_text("from the last run's gates\n")
    assert checkout_in_place(work, objects, first) == first  # the same checkout, another stack
    assert sorted(p.name for p in work.iterdir()) == [".git", "a.txt"] and (work / "a.txt").read_text() == "one\n"
    assert not list((work / ".git" / "objects").glob("??/*"))  # nothing copied: every object read in place


def test_a_checkout_whose_cache_was_made_anew_is_made_anew(tmp_path):
    old = store(tmp_path / "old")
    work = tmp_path / "work"
    checkout_in_place(work, old / ".git" / "objects", commit(old, {"a.txt": "old\n"}))
    new = store(tmp_path / "new")
    tip = commit(new, {"a.txt": "new\n", "c.txt": "c\n"})
    subprocess.run(["rm", "-rf", str(old)], check=True)  # the cache is gone, with the objects of the checkout's HEAD

    assert checkout_in_place(work, new / ".git" / "objects", tip) == tip
    assert (work / "a.txt").read_text() == "new\n" and git(work, "rev-parse", "HEAD") == tip
