"""`gt bead` as a user runs it: real processes, a real bare remote, JSON and text output."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from conftest import GT


@pytest.fixture
def gt(tmp_path):
    remote = tmp_path / "rig.git"
    subprocess.run(["git", "init", "--quiet", "--bare", str(remote)], check=True)
    env = {**os.environ, "GT_RIG": str(remote), "GT_CACHE_DIR": str(tmp_path / "cache"),
           "GT_ACTOR": "user tester"}

    def run(*args, ok=True):
        proc = subprocess.run([GT, "bead", *args], capture_output=True, text=True, env=env)
        if ok:
            assert proc.returncode == 0, proc.stderr
        return proc

    run.remote = remote
    return run


def js(proc):
    return json.loads(proc.stdout)


def test_the_whole_command_set(gt):
    title = "Fix `login`; rm -rf / && echo $HOME | tee x"
    a = gt("--prefix", "wa", "create", title, "-p", "1", "-l", "auth", "-d", "desc").stdout.strip()
    assert a.startswith("wa-")
    b = js(gt("create", "Docs", "--needs", a, "--json"))
    assert b["dependencies"] == [{"id": a, "type": "blocks"}]
    shown = js(gt("show", a, "--json"))
    assert shown["title"] == title and shown["labels"] == ["auth"] and shown["priority"] == 1
    assert [x["id"] for x in js(gt("ready", "--json"))] == [a]
    assert "blocked by: " + a in gt("show", b["id"]).stdout

    gt("update", a, "--status", "in_progress", "--assignee", "furiosa", "--meta", "branch=polecat/furiosa/x")
    assert [x["id"] for x in js(gt("list", "--assignee", "furiosa", "--json"))] == [a]
    comment = js(gt("comment", a, "halfway there", "--json"))
    assert comment["text"] == "halfway there" and comment["author"] == "user tester"
    gt("close", a, "--reason", "merged")
    assert [x["id"] for x in js(gt("ready", "--json"))] == [b["id"]]
    assert a not in gt("list").stdout and a in gt("list", "--all").stdout
    assert [x["id"] for x in js(gt("list", "-s", "closed", "--json"))] == [a]
    gt("reopen", a, "-r", "flaky")
    gt("dep", "rm", b["id"], a)
    gt("dep", "add", b["id"], a, "--type", "discovered-from")
    assert js(gt("show", b["id"], "--json"))["dependencies"] == [{"id": a, "type": "discovered-from"}]
    history = js(gt("history", a, "--json"))
    assert [h["change"].split(" (")[0] for h in history] == [
        f'created task "{title}"', "open -> in_progress; set assignee, metadata", "comment",
        "in_progress -> closed: merged", "closed -> open"]
    assert all(h["author"] == "user tester" for h in history)
    text = gt("history", a).stdout.splitlines()
    assert len(text) == 5 and "closed -> open" in text[-1]


@pytest.mark.parametrize(("args", "words"), [
    (("show", "gt-zzzz"), "no bead gt-zzzz"),
    (("update", "gt-zzzz", "-s", "closed"), "no bead gt-zzzz"),
    (("--prefix", "G1", "list"), "malformed prefix 'G1'"),
    (("--rig", "/nonexistent/repo", "list"), "cannot reach the rig repository /nonexistent/repo"),
    (("update", "not-an-id!", "-p", "1"), "no bead not-an-id!"),
])
def test_bad_input_is_one_line_on_stderr(gt, args, words):
    gt("create", "something")
    before = subprocess.run(["git", "rev-parse", "gastown/ledger"], cwd=gt.remote, capture_output=True,
                            text=True).stdout
    proc = gt(*args, ok=False)
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and words in proc.stderr and proc.stderr.startswith("gt: error: ")
    after = subprocess.run(["git", "rev-parse", "gastown/ledger"], cwd=gt.remote, capture_output=True,
                           text=True).stdout
    assert before == after


def test_bad_transition_and_cycle(gt):
    a = gt("create", "A").stdout.strip()
    b = gt("create", "B", "--needs", a).stdout.strip()
    proc = gt("dep", "add", a, b, ok=False)
    assert proc.returncode == 1 and f"dependency cycle {a} -> {b} -> {a}" in proc.stderr
    gt("close", a)
    proc = gt("update", a, "-s", "hooked", ok=False)
    assert proc.returncode == 1 and "reopen it first" in proc.stderr


def test_prefix_must_match_an_existing_ledger(gt):
    gt("--prefix", "wa", "create", "A")
    proc = gt("--prefix", "gt", "list", ok=False)
    assert "this ledger uses the prefix 'wa'" in proc.stderr


def test_rig_given_as_a_working_clone_path(gt, tmp_path):
    work = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(gt.remote), str(work)], check=True, capture_output=True)
    a = gt("--rig", str(work), "create", "in the clone").stdout.strip()
    assert js(gt("show", a, "--rig", str(work), "--json"))["title"] == "in the clone"  # either place, as gt mq
    assert js(gt("--rig", str(work), "show", a, "--json"))["title"] == "in the clone"
