"""A town refuses what it cannot drive, before saving it: rigs, titles, manifests, the daemon's start.

Real `gt` processes, real git repositories (bare ones, a checkout, an empty one), a real daemon.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from gastown.ledger import InvalidOperation, Ledger

from conftest import GT, wait_for
from rigs import git, make_rig


@pytest.fixture
def town(tmp_path):
    return tmp_path / "town"


def gt(town, *args, input=None, env=None):
    return subprocess.run([GT, *args, "--town", str(town)], capture_output=True, text=True, timeout=60, input=input,
                          env={**os.environ, **(env or {})})


def bead(town, *args):
    return subprocess.run([GT, "bead", *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "GT_TOWN": str(town), "GT_ACTOR": "user tester"})


def ok(proc):
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def refused(proc, *words):
    """Exit 1 with one clear line: gt: error: ..., never a traceback."""
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert proc.stderr.startswith("gt: error: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for w in words:
        assert w in proc.stderr, proc.stderr
    return proc.stderr


def saved(town) -> dict:
    path = town / "town.json"
    return json.loads(path.read_text())["rigs"] if path.exists() else {}


# --- 3: gt rig add checks before it saves; gt rig set changes only what is given ----------------


def test_rig_add_refuses_what_it_cannot_drive_and_saves_nothing(tmp_path, town):
    rig = make_rig(tmp_path)
    script = ["--runtime", "script", "--agent-arg", "true"]
    refused(gt(town, "rig", "add", "ghost", str(tmp_path / "nowhere.git"), *script), "cannot reach")
    refused(gt(town, "rig", "add", "webapp", str(rig.remote), *script, "--branch", "trunk"), "no branch 'trunk'")
    refused(gt(town, "rig", "add", "webapp", str(rig.remote), *script, "--gate", 'test=python -c "print(1)'),
            "--gate", "quote")
    refused(gt(town, "rig", "add", "webapp", str(rig.remote), "--runtime", "no-such-agent"),
            "unknown runtime 'no-such-agent'")
    refused(gt(town, "rig", "add", "webapp", str(rig.remote), "--runtime", "script"), "--agent-arg")
    refused(gt(town, "rig", "add", "Bad Name!", str(rig.remote), *script), "not a valid rig name")
    empty = tmp_path / "empty.git"
    git("init", "-q", "--bare", str(empty))
    refused(gt(town, "rig", "add", "empty", str(empty), *script), "has no commits", "push a first commit")
    assert saved(town) == {}
    assert not git("for-each-ref", cwd=empty)  # nothing was written to it either


def test_a_checkout_with_the_branch_checked_out_is_refused_with_the_fix(tmp_path, town):
    checkout = tmp_path / "project"
    git("init", "-q", "--initial-branch=main", str(checkout))
    (checkout / "README.md").write_text("# project\n")
    git("add", "-A", cwd=checkout)
    git("-c", "user.name=a", "-c", "user.email=a@x", "commit", "-qm", "first", cwd=checkout)
    args = ("rig", "add", "project", str(checkout), "--runtime", "script", "--agent-arg", "true")
    refused(gt(town, *args), "refuses the merge queue's pushes", "bare repository",
            "receive.denyCurrentBranch updateInstead")
    assert saved(town) == {}
    git("config", "receive.denyCurrentBranch", "updateInstead", cwd=checkout)
    assert "rig project added" in ok(gt(town, *args))
    assert "project" in saved(town)


def test_rig_add_on_an_existing_name_refuses_and_rig_set_changes_only_what_is_given(tmp_path, town):
    rig = make_rig(tmp_path)
    ok(gt(town, "rig", "add", "webapp", str(rig.remote), "--runtime", "script", "--agent-arg", "./agent.sh",
          "--max-polecats", "2", "--gate", "test=python3 -m pytest -q", "--gate", "lint=ruff check"))
    before = saved(town)["webapp"]
    refused(gt(town, "rig", "add", "webapp", str(rig.remote)), "exists already", "gt rig set webapp")
    assert saved(town)["webapp"] == before

    assert "rig webapp updated" in ok(gt(town, "rig", "set", "webapp", "--max-polecats", "5",
                                         "--remove-gate", "lint"))
    spec = saved(town)["webapp"]["spec"]
    assert spec["maxPolecats"] == 5 and spec["verification"]["gates"] == {"test": ["python3", "-m", "pytest", "-q"]}
    assert spec["runtime"] == {"preset": "script", "args": ["./agent.sh"]}
    assert spec["gitUrl"] == before["spec"]["gitUrl"]
    refused(gt(town, "rig", "set", "webapp", "--runtime", "nope"), "unknown runtime")
    refused(gt(town, "rig", "set", "webapp", "--url", str(tmp_path / "gone.git")), "cannot reach")
    refused(gt(town, "rig", "set", "ghost", "--max-polecats", "1"), "no rig 'ghost'")
    assert saved(town)["webapp"]["spec"] == spec


# --- 3: titles, and gt apply -f checks every document before it applies any --------------------


def test_titles_that_no_session_could_use_are_refused_at_every_door(tmp_path, town):
    rig = make_rig(tmp_path)
    with Ledger(str(rig.remote), cache_dir=tmp_path / "cache", actor="user tester") as lg:
        for title in ("bad\0title", "   ", "\n\t"):
            with pytest.raises(InvalidOperation, match="title"):
                lg.create(title)
        b = lg.create("fine")
        with pytest.raises(InvalidOperation, match="blank"):
            lg.update(b.id, title=" ")
    env = {"GT_RIG": str(rig.remote)}
    refused(subprocess.run([GT, "bead", "create", "  "], capture_output=True, text=True,
                           env={**os.environ, **env, "GT_CACHE_DIR": str(tmp_path / "c")}), "blank")


def test_apply_checks_every_document_before_applying_any(tmp_path, town):
    rig = make_rig(tmp_path)
    head = (f"apiVersion: gastown.dev/v1alpha1\nkind: Rig\nmetadata: {{name: webapp}}\n"
            f"spec: {{gitUrl: 'file://{rig.remote}', runtime: {{preset: script, args: ['true']}}}}\n---\n")
    bad_docs = [
        ("apiVersion: gastown.dev/v1alpha1\nkind: Convoy\nmetadata: {name: c}\n"
         "spec: {rig: webapp, beads: [{key: a, title: \"x\\0y\"}]}\n", "NUL"),
        ("apiVersion: gastown.dev/v1alpha1\nkind: MergeQueue\nmetadata: {name: q}\nspec: {rig: ghost}\n",
         "no rig 'ghost'"),
        ("apiVersion: gastown.dev/v1alpha1\nkind: Polecat\nmetadata: {name: Bad Name!}\nspec: {rig: webapp}\n",
         "not a valid polecat name"),
        ("apiVersion: gastown.dev/v1alpha1\nkind: Rig\nmetadata: {name: other}\n"
         f"spec: {{gitUrl: 'file://{tmp_path}/nowhere.git'}}\n", "cannot reach"),
    ]
    for doc, error in bad_docs:
        refused(gt(town, "apply", "-f", "-", input=head + doc), error)
        assert saved(town) == {}
    assert not git("for-each-ref", "refs/heads/gastown", cwd=rig.remote)  # no ledger made for it either


# --- 5: gt up knows its daemon by pid and start time; a failed start leaves nothing running ------


def daemons(town) -> list[int]:
    """The processes serving this town (whatever the pid file says)."""
    out = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().split(b"\0")
            state = (cmdline.parent / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if b"--foreground" in argv and str(town).encode() in argv and state != "Z":
            out.append(int(cmdline.parent.name))
    return out


def test_up_with_a_corrupted_town_json_says_so_and_starts_nothing(town):
    town.mkdir()
    (town / "town.json").write_text('{"rigs": {"webapp": ')
    err = refused(gt(town, "up"), "town.json is not valid JSON")
    assert "Traceback" not in err
    time.sleep(0.5)
    assert daemons(town) == [] and not (town / "daemon.pid").exists()
    (town / "town.json").write_text('{"rigs": {"webapp": {"spec": {"gitUrl": "nope"}}}}')
    refused(gt(town, "up"), "rig webapp")
    assert daemons(town) == []


def test_up_after_the_daemon_was_killed_starts_a_new_one(tmp_path, town):
    # the daemon as this process's child, killed -9 and not reaped: a zombie with its pid file left
    child = subprocess.Popen([GT, "up", "--foreground", "--town", str(town)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for(lambda: (town / "daemon.pid").exists(), timeout=30, what="the daemon's pid file")
        os.kill(child.pid, signal.SIGKILL)
        wait_for(lambda: Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z",
                 what="the killed daemon to be a zombie")
        out = ok(gt(town, "up"))
        assert "daemon up" in out and f"pid {child.pid}" not in out
        assert len(daemons(town)) == 1 and "stopped" in ok(gt(town, "down"))
    finally:
        child.kill()
        child.wait()

    # a pid file whose pid now belongs to another process (started at another time)
    other = subprocess.Popen(["sleep", "60"])
    try:
        (town / "daemon.pid").write_text(f"{other.pid} start=1 {time.time():.0f}\n")
        assert "daemon up" in ok(gt(town, "up"))
        assert "running" in ok(gt(town, "status")) and str(other.pid) not in ok(gt(town, "status"))
        assert "stopped" in ok(gt(town, "down"))
        assert other.poll() is None  # never signalled
    finally:
        other.kill()
        other.wait()
    assert daemons(town) == []


# --- 7: gt bead --rig takes a town rig's name --------------------------------------------------


def test_bead_takes_a_town_rig_by_name(tmp_path, town):
    rig = make_rig(tmp_path)
    ok(gt(town, "rig", "add", "stats", str(rig.remote), "--runtime", "script", "--agent-arg", "true"))
    created = ok(bead(town, "--rig", "stats", "create", "Count the things")).strip()
    listed = ok(bead(town, "--rig", "stats", "list"))
    assert created in listed and "Count the things" in listed
    with Ledger(str(rig.remote), cache_dir=tmp_path / "check") as lg:
        assert lg.get(created).title == "Count the things"
    refused(bead(town, "--rig", "nope", "list"), "no rig 'nope'", "stats")
    # the demo's closing hint
    hint = subprocess.run([GT, "bead", "list", "--rig", "stats"], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "GT_TOWN": str(town)}, cwd=tmp_path)
    assert hint.returncode == 0 and created in hint.stdout, hint.stderr
