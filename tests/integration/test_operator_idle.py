"""An idle rig is cheap on a cluster too: the operator's rig loop asks the remote less and less often
(the rig loop's one Cadence, GT_POLL_IDLE_SECONDS its cap), makes no API requests while it waits,
and what the operator sees (here: a new Convoy, written to the ledger by its handler) wakes it at once.

The real `gt operator run` against the API double; its git is the real git behind a counting shim on
its PATH (each `ls-remote` the operator itself runs is logged), so the test counts remote polls and
API requests over a window.
"""

from __future__ import annotations

import os
import shutil
import time

import pytest

from conftest import wait_for
from rigs import make_rig

pytestmark = pytest.mark.slow

IDLE = 12  # GT_POLL_IDLE_SECONDS for the test: waits of 2, 4, 8, then 12 s
SESSION = "app.kubernetes.io/component=agent-session"
SHIM = """#!/bin/sh
for a in "$@"; do
  if [ "$a" = ls-remote ]; then echo "$PPID $(date +%s.%N)" >> "{log}"; break; fi
done
exec "{git}" "$@"
"""


def test_an_idle_rig_backs_off_and_a_new_convoy_wakes_it_at_once(kubeapi, operator, tmp_path, monkeypatch):
    shim, log = tmp_path / "shim", tmp_path / "ls-remote.log"
    shim.mkdir()
    (shim / "git").write_text(SHIM.format(log=log, git=shutil.which("git")))
    (shim / "git").chmod(0o755)
    monkeypatch.setenv("PATH", f"{shim}:{os.environ['PATH']}")
    monkeypatch.setenv("GT_POLL_IDLE_SECONDS", str(IDLE))
    op = operator()

    def polls(since: float = 0.0) -> list[float]:
        """When the operator itself ran `git ls-remote` since ``since`` (time.time())."""
        lines = log.read_text().splitlines() if log.exists() else []
        return [float(t) for pid, t in (ln.split() for ln in lines) if int(pid) == op.proc.pid and float(t) >= since]

    rig = make_rig(tmp_path / "webapp")
    kubeapi.create({"apiVersion": "gastown.dev/v1alpha1", "kind": "Rig",
                    "metadata": {"name": "webapp", "namespace": "default"},
                    "spec": {"gitUrl": f"file://{rig.remote}", "maxPolecats": 1}})
    wait_for(lambda: polls(), what=f"the rig loop's first remote poll\n{op.output()[-2000:]}")
    time.sleep(2 + 4 + 8 + 4)  # the waits grow to the cap (the old loop: a poll every 2 s)

    t0, requests = time.time(), len(kubeapi.requests)
    time.sleep(2 * IDLE)
    quiet, asked = len(polls(t0)), kubeapi.requests[requests:]
    assert 1 <= quiet <= 3, f"{quiet} remote polls in {2 * IDLE} idle seconds (the idle cap is {IDLE} s)"
    # the watches stay open; nothing else is asked of the API server while the rig is idle
    assert [r for r in asked if "watch=true" not in r[1]] == [], asked

    # a Convoy created just after a poll: the next poll is IDLE seconds away, the watch wakes the loop
    last = polls()[-1]
    wait_for(lambda: polls(last + 1e-6), timeout=IDLE + 5, what="the next idle poll")
    created = time.monotonic()
    kubeapi.create({"apiVersion": "gastown.dev/v1alpha1", "kind": "Convoy",
                    "metadata": {"name": "docs", "namespace": "default"},
                    "spec": {"rig": "webapp", "beads": [{"key": "guide", "title": "Write the guide"}]}})
    wait_for(lambda: kubeapi.list("jobs", "default", selector=SESSION), timeout=IDLE - 4,
             what=f"the convoy's session Job before the next idle poll\n{op.output()[-3000:]}")
    assert time.monotonic() - created < IDLE - 4


def test_an_idle_rig_never_sleeps_through_the_deacons_patrol(kubeapi, operator, tmp_path, monkeypatch):
    """The idle cadence caps the wait between polls, but a wait never passes what the loop owes: here
    the Deacon's patrol every 3 s, which deletes a pod of gastown's that lost its owner (nothing the
    operator watches wakes the loop for it)."""
    shim, log = tmp_path / "shim", tmp_path / "ls-remote.log"
    shim.mkdir()
    (shim / "git").write_text(SHIM.format(log=log, git=shutil.which("git")))
    (shim / "git").chmod(0o755)
    monkeypatch.setenv("PATH", f"{shim}:{os.environ['PATH']}")
    monkeypatch.setenv("GT_POLL_IDLE_SECONDS", "16")
    monkeypatch.setenv("GT_DEACON_SECONDS", "3")
    op = operator()
    rig = make_rig(tmp_path / "webapp")
    kubeapi.create({"apiVersion": "gastown.dev/v1alpha1", "kind": "Rig",
                    "metadata": {"name": "webapp", "namespace": "default"},
                    "spec": {"gitUrl": f"file://{rig.remote}", "maxPolecats": 1}})
    wait_for(lambda: log.exists(), what=f"the rig loop's first remote poll\n{op.output()[-2000:]}")
    time.sleep(2 + 4 + 8)  # an idle loop's waits have grown to the cap (16 s) by now, but for the Deacon
    polled = len(log.read_text().splitlines())
    wait_for(lambda: len(log.read_text().splitlines()) > polled, timeout=17, what="the next poll")
    labels = {"app.kubernetes.io/component": "agent-session", "app.kubernetes.io/managed-by": "gastown-operator",
              "gastown.dev/rig": "webapp", "gastown.dev/polecat": "furiosa", "gastown.dev/session": "gt-stray-1"}
    kubeapi.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "gt-stray-pod", "labels": labels},
                    "spec": {"containers": [{"name": "agent", "image": "x"}], "restartPolicy": "Never"}})
    created = time.monotonic()
    wait_for(lambda: kubeapi.get("pods", "default", "gt-stray-pod") is None, timeout=16,
             what=f"the stray pod deleted\n{op.output()[-2000:]}")
    assert time.monotonic() - created < 8, "the Deacon's patrol waited for the next idle poll (16 s)"
