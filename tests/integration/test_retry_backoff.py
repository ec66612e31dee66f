"""Every retry loop backs off and escalates: the local daemon (`gt up`) on rigs that cannot work.

Each case is a real daemon process on real git: a remote that goes away, a non-bare checkout that
refuses the merge push, a repository with no commits, a gate that cannot start. The daemon's log
must hold a bounded number of warnings, `gt status` must name the problem, an escalation must
go out within a minute, once, and the rig must carry on when the problem is fixed. The backoff is
shortened through the settings (GT_RETRY_*), never by sleeping long.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gastown.ledger import BeadType

from conftest import GT, wait_for
from rigs import Rig, git, make_rig, push_mr


def condition(obj, type_):
    return next((c for c in ((obj or {}).get("status") or {}).get("conditions", []) if c["type"] == type_), None)

AGENT = str(Path(__file__).resolve().parent.parent / "agent_script.py")
FAST = {"GT_RETRY_BASE_SECONDS": "0.5", "GT_RETRY_MAX_SECONDS": "4", "GT_ESCALATE_AFTER_ATTEMPTS": "4"}

pytestmark = pytest.mark.slow


def gt(town, *args, input=None):
    env = {**os.environ, **FAST, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "AGENT_SECONDS": "0"}
    return subprocess.run([GT, *args, "--town", str(town)], capture_output=True, text=True, timeout=60,
                          input=input, env=env)


def ok(proc):
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def add_rig(town, rig, *gates: str) -> None:
    ok(gt(town, "rig", "add", "webapp", str(rig.remote), "--runtime", "script", "--agent-arg", sys.executable,
          "--agent-arg", AGENT, "--agent-arg", "convoy", *[a for g in gates for a in ("--gate", g)]))
    ok(gt(town, "apply", "-f", "-", input="apiVersion: gastown.dev/v1alpha1\nkind: MergeQueue\n"
                                          "metadata: {name: webapp}\nspec: {rig: webapp, fillWindowSeconds: 0}\n"))


def point_at(town, url: str) -> None:
    """town.json edited by hand: the rig's URL changed behind `gt rig add`'s checks."""
    path = town / "town.json"
    data = json.loads(path.read_text())
    data["rigs"]["webapp"]["spec"]["gitUrl"] = url
    path.write_text(json.dumps(data))


def blocked(town, problem: str) -> list[str]:
    """The daemon's warnings that the rig is blocked by ``problem`` (one per attempt that was made)."""
    return warnings(town, f"webapp: blocked: {problem}")


def warnings(town, text: str) -> list[str]:
    log = (town / "daemon.log").read_text() if (town / "daemon.log").exists() else ""
    return [ln for ln in log.splitlines() if "WARNING" in ln and text in ln]


def status(town) -> str:
    return ok(gt(town, "status"))


def escalations(town) -> list[dict]:
    return json.loads(ok(gt(town, "status", "--json")))["rigs"][0].get("escalations", [])


def bead(town, title: str) -> str:
    return ok(gt(town, "bead", "--rig", "webapp", "create", title)).split()[0]


@pytest.fixture
def town(tmp_path):
    town = tmp_path / "town"
    yield town
    gt(town, "down")


def test_a_remote_that_goes_away_backs_off_escalates_and_comes_back(tmp_path, town):
    rig = make_rig(tmp_path)
    add_rig(town, rig)
    ok(gt(town, "up"))
    wait_for(lambda: (town / "daemon.log").exists() and "driving" in (town / "daemon.log").read_text(),
             what="the daemon to drive the rig")
    hidden = rig.remote.with_name("hidden.git")
    rig.remote.rename(hidden)
    started = time.monotonic()
    wait_for(lambda: "blocked: cannot reach" in status(town), timeout=15, what="gt status to say the rig is blocked")
    wait_for(lambda: warnings(town, ": escalated "), timeout=60 - (time.monotonic() - started),
             what="an escalation within a minute")
    time.sleep(max(0.0, 20 - (time.monotonic() - started)))
    said = blocked(town, "cannot reach")
    # 1 per backoff step: 0.5, 1, 2, 4 s, then every 4 s: about 8 in 20 s, never one a second
    assert 2 <= len(said) <= 10, said
    assert len(warnings(town, ": escalated ")) == 1  # once per problem, not once per attempt
    text = status(town)
    assert "blocked: cannot reach" in text and "hidden" not in text and "escalated" in text

    hidden.rename(rig.remote)
    wait_for(lambda: "blocked" not in status(town), timeout=15, what="the block to clear")
    bead_id = bead(town, "Write the notes")
    wait_for(lambda: bead_id in git("log", "--format=%s", "main", cwd=rig.remote), timeout=60,
             what="work to be merged again")


def test_a_non_bare_checkout_refuses_the_push_once_escalated_and_bounded(tmp_path, town):
    rig = make_rig(tmp_path)
    add_rig(town, rig)
    checkout = tmp_path / "checkout"
    git("clone", "--quiet", str(rig.remote), str(checkout))  # main is checked out there
    point_at(town, checkout.as_uri())
    ok(gt(town, "up"))
    bead(town, "Write the notes")
    text = wait_for(lambda: (s := status(town)) and "blocked: push refused" in s and s, timeout=60,
                    what="gt status to say the push is refused")
    assert "checked out" in text  # git's own words, and the fix
    first = time.monotonic()
    wait_for(lambda: any("push refused" in e["title"] for e in escalations(town)), timeout=60,
             what="a push refused escalation")
    time.sleep(max(0.0, 12 - (time.monotonic() - first)))
    assert 2 <= len(blocked(town, "push refused")) <= 8, blocked(town, "push refused")
    assert len([e for e in escalations(town) if "push refused" in e["title"]]) == 1


def test_a_repository_with_no_commits_blocks_sessions_bounded_and_escalated(tmp_path, town):
    rig = make_rig(tmp_path)
    add_rig(town, rig)
    empty = tmp_path / "empty.git"
    git("init", "--quiet", "--bare", "--initial-branch=main", str(empty))
    point_at(town, empty.as_uri())
    ok(gt(town, "up"))
    bead(town, "Write the notes")
    text = wait_for(lambda: (s := status(town)) and "blocked: cannot start a session" in s and s, timeout=60,
                    what="gt status to say sessions cannot start")
    assert "invalid reference" in text or "HEAD" in text, text
    first = time.monotonic()
    wait_for(lambda: any("cannot start a session" in e["title"] for e in escalations(town)), timeout=60,
             what="a session escalation")
    time.sleep(max(0.0, 12 - (time.monotonic() - first)))
    assert 2 <= len(blocked(town, "cannot start a session")) <= 8, blocked(town, "cannot start a session")
    assert "0 of 3 working" in status(town)


def test_a_verification_that_cannot_start_waits_and_escalates_and_rejects_nothing(tmp_path, town):
    """A verifier the town cannot start (here its directory cannot be made) is the rig's problem:
    the merge request is not rejected for it, and it merges once the verifier can start."""
    rig = make_rig(tmp_path)
    add_rig(town, rig, f"test={sys.executable} -c pass")
    town.mkdir(parents=True, exist_ok=True)
    (town / "verify").write_text("not a directory")
    ok(gt(town, "up"))
    bead_id = bead(town, "Write the notes")
    text = wait_for(lambda: (s := status(town)) and "blocked: verification cannot start" in s and s, timeout=60,
                    what="gt status to say verification cannot start")
    assert "verify" in text and "blocked" in text.split("merge queue:")[1], text
    first = time.monotonic()
    wait_for(lambda: any("verification cannot start" in e["title"] for e in escalations(town)), timeout=60,
             what="a verification escalation")
    time.sleep(max(0.0, 10 - (time.monotonic() - first)))
    assert 2 <= len(blocked(town, "verification cannot start")) <= 8, blocked(town, "verification cannot start")
    (town / "verify").unlink()
    wait_for(lambda: bead_id in git("log", "--format=%s", "main", cwd=rig.remote), timeout=60,
             what="the merge once the verifier can start")
    wait_for(lambda: not any("verification cannot start" in e["title"] for e in escalations(town)), timeout=20,
             what="the escalation to be closed when the problem clears")


def test_on_a_cluster_a_refused_push_is_a_blocked_condition_an_event_and_one_escalation(
        kubeapi, operator, tmp_path, monkeypatch):
    from test_refinery_operator import play  # the test plays the kubelet for verification Jobs

    for name, value in FAST.items():
        monkeypatch.setenv(name, value)
    make_rig(tmp_path, {"README.md": "# tiny\n", "mods/.keep": ""})
    checkout = tmp_path / "checkout"
    git("clone", "--quiet", str(tmp_path / "webapp.git"), str(checkout))  # main is checked out there
    rig = Rig(checkout, tmp_path / "ledger-cache")
    op = operator()
    kubeapi.create({"apiVersion": "gastown.dev/v1alpha1", "kind": "Rig", "metadata": {"name": "webapp"},
                    "spec": {"gitUrl": checkout.as_uri(),
                             "verification": {"gates": {"test": [sys.executable, "-c", "pass"]}}}})
    kubeapi.create({"apiVersion": "gastown.dev/v1alpha1", "kind": "MergeQueue", "metadata": {"name": "webapp"},
                    "spec": {"rig": "webapp", "fillWindowSeconds": 0}})
    wait_for(lambda: (kubeapi.get("rigs", "default", "webapp").get("status") or {}).get("phase") == "Ready",
             what="the Rig to be Ready")
    push_mr(rig, tmp_path, "m0", "fine\n")
    played: dict[str, int] = {}

    def blocked_condition():
        play(kubeapi, tmp_path, played)
        found = condition(kubeapi.get("rigs", "default", "webapp"), "Blocked")
        return found if found and found["status"] == "True" and "escalated" in found["message"] else None

    cond = wait_for(blocked_condition, timeout=90, what=f"a Blocked condition, escalated\n{op.output()}")
    assert cond["reason"] == "Blocked" and "push refused" in cond["message"] and "checked out" in cond["message"]
    events = [e for e in kubeapi.events("default", "webapp") if e["reason"] == "Blocked"]
    assert len(events) == 1 and events[0]["type"] == "Warning"
    with rig.ledger() as lg:
        escalated = [b for b in lg.beads().values() if b.type == BeadType.ESCALATION and "push refused" in b.title]
    assert len(escalated) == 1 and escalated[0].metadata["severity"] == "P1"
    assert op.output().count("webapp: blocked: push refused") <= 8  # backed off, not once per tick
