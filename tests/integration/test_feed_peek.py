"""`gt feed` and `gt peek` on a real local town (real git, the real daemon, scripted agents), and
`gt peek -n NS` reading a session pod's log through the API double."""

from __future__ import annotations

import json

import pytest

from conftest import wait_for
from kubeapi import KubeAPI
from support import write_kubeconfig
from towns import convoy_done, gt, ok, town_with_convoy


@pytest.mark.slow
def test_feed_and_peek_on_a_local_town(tmp_path):
    rig, town = town_with_convoy(tmp_path, ["Good one", "BAD one"], polecats=2, fill=2)
    ok(gt(town, "up"))
    try:
        beads = wait_for(lambda: convoy_done(rig), timeout=150, what="the convoy to be done")
    finally:
        ok(gt(town, "down"))

    events = json.loads(ok(gt(town, "feed", "--json", "-n", "1000")))
    assert events and [e["at"] for e in events] == sorted((e["at"] for e in events), reverse=True)  # newest first
    kinds = {e["kind"] for e in events}
    assert {"session", "verification", "merge", "rejection", "convoy"} <= kinds, kinds
    bad = next(b for b in beads.values() if b.title == "BAD one")
    mr = beads[bad.metadata["mr"]]
    rejected = [e for e in events if e["kind"] == "rejection" and e["bead"] == mr.id]
    assert rejected and "gate test failed" in rejected[0]["text"] and rejected[0]["convoy"] == "docs"
    assert rejected[0]["title"] == mr.title and rejected[0]["rig"] == "webapp"
    assert any(e["kind"] == "rejection" and e["bead"] == bad.id and e["title"] == "BAD one" for e in events)

    merges = json.loads(ok(gt(town, "feed", "--json", "--kind", "merge", "-n", "1000")))
    assert merges and {e["kind"] for e in merges} == {"merge"}
    assert {bead.id for bead in beads.values() if bead.title in ("Good one", "BAD one")} <= {e["bead"] for e in merges}
    polecat = bad.assignee or bad.metadata.get("worker")
    mine = json.loads(ok(gt(town, "feed", "--json", "--polecat", polecat, "-n", "1000")))
    assert mine and all(e["polecat"] == polecat for e in mine)
    assert any(e["kind"] == "session" and e["bead"] == bad.id for e in mine)
    assert json.loads(ok(gt(town, "feed", "--json", "--convoy", "nope"))) == []
    text = ok(gt(town, "feed", "--kind", "rejection"))
    assert "webapp" in text and "rejection" in text and bad.id in text
    nope = gt(town, "feed", "--rig", "ghost")
    assert nope.returncode == 1 and "no rig 'ghost'" in nope.stderr

    # peek: the polecat's last session's output, as the agent printed it (not escaped: a terminal)
    out = ok(gt(town, "peek", polecat))
    assert f"agent output for {bad.id} <b>untouched</b>" in out
    assert ok(gt(town, "peek", polecat, "--tail", "1")).count("\n") == 1
    gone = gt(town, "peek", "nobody")
    assert gone.returncode == 1 and "no session of polecat 'nobody'" in gone.stderr
    # peek --verify: the failing run's log, by the run ID the feed shows
    failed = next(e for e in events if e["kind"] == "verification" and e["text"].startswith("run ")
                  and e["text"].endswith("fail (test)"))
    run = failed["text"].split()[1].rstrip(":")
    assert "FAIL: bad line in" in ok(gt(town, "peek", "--verify", run))
    missing = gt(town, "peek", "--verify", "0000")
    assert missing.returncode == 1 and "no verification run '0000'" in missing.stderr


def test_peek_reads_the_session_pods_log_through_the_api(tmp_path):
    api = KubeAPI().start()  # as a user's kubeconfig: `gt peek` is not the operator (no chart RBAC check)
    try:
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", api.url)
        env = {"KUBECONFIG": str(kubeconfig)}
        labels = {"app.kubernetes.io/component": "agent-session", "gastown.dev/polecat": "toast",
                  "gastown.dev/rig": "webapp"}
        for name in ("gt-toast-gt-abc-1", "gt-other-gt-def-1"):
            api.create(_pod(name, {**labels, "gastown.dev/polecat": name.split("-")[1]}))
        api.create(_pod("gt-verify-b-1", {"app.kubernetes.io/component": "verification",
                                          "gastown.dev/verification": "0123abcd-0"}))
        api.logs[("default", "gt-toast-gt-abc-1")] = "line one\nline two\n"
        api.logs[("default", "gt-verify-b-1")] = "FAIL: bad line in m2.txt\n"

        out = gt(tmp_path, "peek", "toast", "-n", "default", env=env)
        assert out.returncode == 0, out.stderr
        assert out.stdout == "line one\nline two\n" and "gt-toast-gt-abc-1" in out.stderr
        assert ok(gt(tmp_path, "peek", "toast", "-n", "default", "--tail", "1", env=env)) == "line two\n"
        assert "FAIL: bad line" in ok(gt(tmp_path, "peek", "--verify", "0123abcd", "-n", "default", env=env))
        missing = gt(tmp_path, "peek", "ghost", "-n", "default", env=env)
        assert missing.returncode == 1 and "no session pod of polecat 'ghost' in namespace default" in missing.stderr
        assert ("get", "", "pods/log") in api.verbs()
    finally:
        api.stop()


def _pod(name: str, labels: dict) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default", "labels": labels},
            "spec": {"containers": [{"name": "agent", "image": "x"}]}}
