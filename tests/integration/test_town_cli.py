"""Local mode through the CLI: rigs, `gt apply -f` with the manifests kubectl takes, up/down/status."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from gastown.ledger import BeadType, Ledger, Status

from conftest import GT, free_port, scrape, wait_for
from rigs import make_rig


@pytest.fixture
def town(tmp_path):
    return tmp_path / "town"


def gt(town, *args, input=None):
    return subprocess.run([GT, *args, "--town", str(town)], capture_output=True, text=True, timeout=60, input=input)


def ok(proc):
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


MANIFESTS = """\
apiVersion: gastown.dev/v1alpha1
kind: Rig
metadata: {{name: webapp}}
spec:
  gitUrl: file://{remote}
  maxPolecats: 2
  runtime: {{preset: script, args: ["{python}", "-c", "open('DONE.md', 'w').write('done')"]}}
  verification:
    gates: {{test: ["{python}", "-c", "import pathlib; assert pathlib.Path('README.md').exists()"]}}
---
apiVersion: gastown.dev/v1alpha1
kind: MergeQueue
metadata: {{name: webapp}}
spec: {{rig: webapp, fillWindowSeconds: 0}}
---
apiVersion: gastown.dev/v1alpha1
kind: Polecat
metadata: {{name: toast}}
spec: {{rig: webapp}}
---
apiVersion: gastown.dev/v1alpha1
kind: Convoy
metadata: {{name: docs}}
spec:
  rig: webapp
  beads:
    - {{key: readme, title: Write the readme}}
    - {{key: guide, title: Write the guide, needs: [readme]}}
"""


def test_apply_is_idempotent_and_the_daemon_finishes_the_convoy(tmp_path, town):
    rig = make_rig(tmp_path)
    path = tmp_path / "town.yaml"
    path.write_text(MANIFESTS.format(remote=rig.remote, python=sys.executable))
    assert ok(gt(town, "apply", "-f", str(path))).splitlines() == [
        "rig/webapp created", "mergequeue/webapp created", "polecat/toast created", "convoy/docs created"]
    assert ok(gt(town, "apply", "-f", str(path))).splitlines() == [
        "rig/webapp unchanged", "mergequeue/webapp unchanged", "polecat/toast unchanged", "convoy/docs unchanged"]
    listed = json.loads(ok(gt(town, "rig", "list", "--json")))
    assert listed["webapp"]["spec"]["maxPolecats"] == 2 and listed["webapp"]["mergeQueue"]["fillWindowSeconds"] == 0

    port = free_port()
    assert "daemon up" in ok(gt(town, "up", "--metrics-port", str(port)))
    assert "already running" in ok(gt(town, "up"))
    try:
        def done():
            with rig.ledger() as lg:
                beads = lg.beads()
            convoy = next(b for b in beads.values() if b.type == BeadType.CONVOY)
            return beads if convoy.status == Status.CLOSED else None
        beads = wait_for(done, timeout=90, what="the convoy to be merged by the daemon")
        # the daemon's metrics, as the operator's, with namespace "local"
        labels = (("namespace", "local"), ("rig", "webapp"))
        wait_for(lambda: scrape(port).get(("gastown_merges_total", labels)) == 2.0, timeout=30,
                 what="gastown_merges_total == 2 at the daemon's /metrics")
        assert scrape(port)[("gastown_sessions_started_total", labels)] == 2.0
    finally:
        assert "stopped" in ok(gt(town, "down"))
    mrs = [b for b in beads.values() if b.type == BeadType.MERGE_REQUEST]
    assert len(mrs) == 2 and all(b.metadata.get("merged_commit") for b in mrs)
    status = ok(gt(town, "status"))
    assert "daemon not running" in status and "merged 2, rejected 0" in status
    assert "was not running" in ok(gt(town, "down"))


@pytest.mark.parametrize("doc,error", [
    ("kind: Rig\napiVersion: v1\nmetadata: {name: x}\n", "not one of gastown's kinds"),
    ("apiVersion: gastown.dev/v1alpha1\nkind: Rig\nmetadata: {name: x}\nspec: {gitUrl: nope}\n",
     "rig/x: spec.gitUrl"),
    ("apiVersion: gastown.dev/v1alpha1\nkind: Convoy\nmetadata: {name: c}\nspec: {rig: ghost, goal: g}\n",
     "no rig 'ghost'"),
    ("apiVersion: gastown.dev/v1alpha1\nkind: Rig\nspec: {}\n", "metadata.name is required"),
    ("a: [b\n", "not valid YAML"),
])
def test_apply_says_what_is_wrong_and_writes_nothing(town, doc, error):
    proc = gt(town, "apply", "-f", "-", input=doc)
    assert proc.returncode == 1 and error in proc.stderr and proc.stderr.startswith("gt: error:")
    assert not (town / "town.json").exists() or "ghost" not in (town / "town.json").read_text()


def test_rig_add_list_rm_and_convoy_create_without_a_name(tmp_path, town):
    rig = make_rig(tmp_path)
    out = ok(gt(town, "rig", "add", "webapp", str(rig.remote), "--runtime", "script", "--agent-arg", "true",
                "--gate", "test=python3 -m unittest"))
    assert "rig webapp added: file://" in out and "gt up" in out
    assert "webapp" in ok(gt(town, "rig", "list")) and "test" in ok(gt(town, "rig", "list"))
    bad = gt(town, "rig", "add", "other", str(rig.remote), "--gate", "deploy=make deploy")
    assert bad.returncode == 1 and "NAME one of setup, lint, typecheck, build, test" in bad.stderr
    created = ok(gt(town, "convoy", "create", "--rig", "webapp", "--goal", "Make the login page work"))
    assert created.startswith("make-the-login-page-")
    with Ledger(str(rig.remote), cache_dir=tmp_path / "check") as lg:
        assert any(b.type == BeadType.CONVOY for b in lg.beads().values())
    assert "removed" in ok(gt(town, "rig", "rm", "webapp"))
    gone = gt(town, "rig", "rm", "webapp")
    assert gone.returncode == 1 and "no rig 'webapp'" in gone.stderr
