"""A local town for tests: a rig whose merge queue gates on GATE_CHECK, a convoy applied with `gt apply`,
and scripted agents whose change is bad when the bead's title says BAD (until it is rejected once)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from gastown.ledger import BeadType, Status

from conftest import GT
from rigs import GATE_CHECK, make_rig

# prints a line naming its bead, then writes mods/BEAD.txt: BAD when the title says BAD and no
# rejection came back yet (the merge queue's gate, GATE_CHECK, fails on it)
AGENT = """\
import os, pathlib
prompt = pathlib.Path(os.environ["GT_PROMPT_FILE"]).read_text()
bead = os.environ["GT_BEAD"]
print("agent output for", bead, "<b>untouched</b>", flush=True)
bad = "BAD" in prompt.splitlines()[0] and "rejected by the merge queue" not in prompt
pathlib.Path("mods").mkdir(exist_ok=True)
pathlib.Path("mods", bead + ".txt").write_text("BAD\\n" if bad else "fine\\n")
"""

MANIFESTS = """\
apiVersion: gastown.dev/v1alpha1
kind: Rig
metadata: {{name: webapp}}
spec:
  gitUrl: file://{remote}
  maxPolecats: {polecats}
  runtime: {{preset: script, args: ["{python}", "-c", {agent}]}}
  verification:
    gates: {{test: ["{python}", "check.py", "{gate_seconds}"]}}
---
apiVersion: gastown.dev/v1alpha1
kind: MergeQueue
metadata: {{name: webapp}}
spec: {{rig: webapp, fillWindowSeconds: {fill}}}
---
apiVersion: gastown.dev/v1alpha1
kind: Convoy
metadata: {{name: docs}}
spec:
  rig: webapp
  mergeStrategy: {strategy}
  beads:
{beads}
"""


def gt(town, *args, env=None):
    return subprocess.run([GT, *args, "--town", str(town)], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})


def ok(proc):
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def town_with_convoy(tmp_path, titles, *, polecats=2, gate_seconds=0, fill=0, strategy="mr"):
    """A town whose rig has GATE_CHECK as its test gate, and a convoy of ``titles`` applied."""
    rig = make_rig(tmp_path, {"README.md": "# tiny\n", "check.py": GATE_CHECK, "mods/.keep": ""})
    beads = "\n".join(f"    - {{key: b{i}, title: {json.dumps(t)}}}" for i, t in enumerate(titles))
    path = tmp_path / "town.yaml"
    path.write_text(MANIFESTS.format(remote=rig.remote, python=sys.executable, agent=json.dumps(AGENT),
                                     polecats=polecats, gate_seconds=gate_seconds, fill=fill, beads=beads,
                                     strategy=strategy))
    town = tmp_path / "town"
    ok(gt(town, "apply", "-f", str(path)))
    return rig, town


def convoy_done(rig):
    with rig.ledger() as lg:
        beads = lg.beads()
    convoy = next(b for b in beads.values() if b.type == BeadType.CONVOY)
    return beads if convoy.status == Status.CLOSED else None
