"""A SIGTERM while a rig loop is in the middle of a tick, or handlers in the middle of a push to the
ledger (their git commands running), ends the operator cleanly: exit 0, no error nor warning (in the
log or as an Event) for a stop that was asked for, its Lease released, and well within the chart's
terminationGracePeriodSeconds.

The real `gt operator run` (a replica with its Lease) against the API double; the rig's remote is
made slow: by a global git config whose ``uploadpack.packObjectsHook`` sleeps before each pack (the
loop's first clone of the ledger is still running when the signal comes), or by a pre-receive hook
that holds every push.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
import yaml
from test_operator_failover import LEASE, NS, Replica

from gastown.scheduler import SetPaused

from conftest import ROOT, wait_for
from rigs import make_rig

pytestmark = pytest.mark.slow

SLOW = 6  # seconds each pack of the remote takes
HOOK = """#!/bin/sh
touch "{marker}"
sleep {slow}
exec "$@"
"""


def grace_period() -> int:
    """The chart's terminationGracePeriodSeconds for the operator's pods (Kubernetes' default: 30)."""
    values = yaml.safe_load((ROOT / "charts" / "gastown" / "values.yaml").read_text())
    return int(values.get("terminationGracePeriodSeconds", 30))


def leader_with_a_rig(kubeapi, kubeconfig, tmp_path: Path, rig) -> Replica:
    """A replica (with its Lease) leading, and the Rig webapp on ``rig``'s remote applied."""
    kubeapi.namespace(NS)
    op = Replica(kubeconfig, tmp_path / "gastown-0.log", "gastown-0")
    try:
        wait_for(op.ready, what=f"the replica leading\n{op.output()[-2000:]}")
    except AssertionError:
        op.stop()
        raise
    kubeapi.create({"apiVersion": "gastown.dev/v1alpha1", "kind": "Rig",
                    "metadata": {"name": "webapp", "namespace": "default"},
                    "spec": {"gitUrl": f"file://{rig.remote}", "maxPolecats": 1}})
    # reconciled before anything refers to it: a Convoy applied in the same instant may find the
    # rig not yet known and retry (kopf logs that as an error, which these tests count as noise)
    try:
        wait_for(lambda: rig_condition(kubeapi, "Ready") == "True", what=lambda: f"the Rig reconciled\n{op.output()[-2000:]}")
    except AssertionError:
        op.stop()
        raise
    return op


def sigterm(op: Replica, when: str) -> float:
    """SIGTERM the replica: it exits 0 well within the grace period; the seconds it took."""
    asked = time.monotonic()
    op.proc.send_signal(signal.SIGTERM)
    try:
        code = op.proc.wait(grace_period())
    except Exception:
        op.proc.kill()
        raise AssertionError(f"still running {grace_period()} s after SIGTERM\n{op.output()[-3000:]}") from None
    took = time.monotonic() - asked
    print(f"SIGTERM {when}: exit {code} after {took:.1f} s")
    assert code == 0, op.output()[-3000:]
    assert took < grace_period() / 3, f"{took:.1f} s to stop\n{op.output()[-3000:]}"
    return took


def test_a_sigterm_in_the_middle_of_a_tick_ends_the_operator_cleanly_and_at_once(
        kubeapi, kubeconfig, tmp_path: Path, monkeypatch):
    marker, hook, config = tmp_path / "packing", tmp_path / "slow-pack", tmp_path / "gitconfig"
    hook.write_text(HOOK.format(marker=marker, slow=SLOW))
    hook.chmod(0o755)
    config.write_text(f"[uploadpack]\n\tpackObjectsHook = {hook}\n")
    rig = make_rig(tmp_path / "webapp")  # made before the slow config: only the operator's git is slowed
    with rig.ledger() as lg:
        lg.create("Write the guide")  # a ledger to clone: its pack is the slow one
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(config))
    op = leader_with_a_rig(kubeapi, kubeconfig, tmp_path, rig)
    try:
        wait_for(marker.exists, what=f"the rig loop's first clone packing\n{op.output()[-2000:]}")
        time.sleep(1)  # well into the tick: its clone has SLOW - 1 s to go

        sigterm(op, "mid-tick")
    finally:
        op.stop()
    assert "Traceback" not in op.output() and "WARNING" not in op.output(), op.output()[-3000:]
    assert kubeapi.get("leases", NS, LEASE, group="coordination.k8s.io") is None, "the Lease was not released"


PUSH_HOOK = """#!/bin/sh
cat >/dev/null
touch "{markers}/$$"
sleep 30
"""


def test_a_sigterm_while_handlers_push_to_the_ledger_ends_them_quietly(kubeapi, kubeconfig, tmp_path: Path):
    """A Rig with a MergeQueue is driven; then every push to its remote hangs (a pre-receive hook that
    sleeps), and a Convoy and a Polecat are applied: their handlers (the plan, the polecat's agent bead)
    are pushing to the ledger when the SIGTERM comes. The operator exits 0 at once, with no ERROR, no
    traceback, no warning, and no Warning Event: a stop is no failure of the handlers it interrupted."""
    rig = make_rig(tmp_path / "webapp")
    op = leader_with_a_rig(kubeapi, kubeconfig, tmp_path, rig)
    try:
        kubeapi.create({"apiVersion": "gastown.dev/v1alpha1", "kind": "MergeQueue",
                        "metadata": {"name": "webapp", "namespace": "default"}, "spec": {"rig": "webapp"}})
        wait_for(lambda: rig_condition(kubeapi, "Ready") == "True" and rig_condition(kubeapi, "Driving") == "True",
                 timeout=30, what=f"the Rig reconciled and driven\n{op.output()[-2000:]}")
        markers = tmp_path / "pushes"
        markers.mkdir()
        hook = rig.remote / "hooks" / "pre-receive"
        hook.write_text(PUSH_HOOK.format(markers=markers))
        hook.chmod(0o755)
        kubeapi.create({"apiVersion": "gastown.dev/v1alpha1", "kind": "Convoy",
                        "metadata": {"name": "docs", "namespace": "default"},
                        "spec": {"rig": "webapp", "beads": [{"key": f"b{i}", "title": f"Bead {i}"} for i in range(3)]}})
        kubeapi.create({"apiVersion": "gastown.dev/v1alpha1", "kind": "Polecat",
                        "metadata": {"name": "nux", "namespace": "default"}, "spec": {"rig": "webapp"}})
        wait_for(lambda: any(markers.iterdir()), what=f"a handler's push hanging\n{op.output()[-2000:]}")
        time.sleep(1)  # both handlers in it: one pushing, the other waiting on that push
        before = {e["metadata"]["name"] for e in kubeapi.events("default")}

        sigterm(op, "mid-push of the handlers")
    finally:
        op.stop()
    assert_quiet(op, kubeapi, before)
    assert kubeapi.get("leases", NS, LEASE, group="coordination.k8s.io") is None, "the Lease was not released"


# Holds every push to the ledger branch but the test's own (LET_THROUGH in its environment).
HOLD_HOOK = """#!/bin/sh
[ -n "$LET_THROUGH" ] && exit 0
while read old new ref; do
  if [ "$ref" = refs/heads/gastown/ledger ]; then
    touch "{marker}"
    sleep 30
  fi
done
"""


def test_a_sigterm_while_the_rig_loop_dispatches_ends_it_quietly(kubeapi, kubeconfig, tmp_path: Path, monkeypatch):
    """The rig's dispatch paused, a Convoy planned; then every push of the operator's hangs and the
    dispatch is resumed: the rig loop's pass is pushing the beads' assignments when the SIGTERM comes."""
    rig = make_rig(tmp_path / "webapp")
    with rig.ledger() as lg:
        lg.apply(SetPaused(True, "user tester"))
    monkeypatch.setenv("GT_POLL_IDLE_SECONDS", "2")  # the resume is seen at the next poll
    op = leader_with_a_rig(kubeapi, kubeconfig, tmp_path, rig)
    try:
        kubeapi.create({"apiVersion": "gastown.dev/v1alpha1", "kind": "Convoy",
                        "metadata": {"name": "docs", "namespace": "default"},
                        "spec": {"rig": "webapp", "beads": [{"key": f"b{i}", "title": f"Bead {i}"} for i in range(3)]}})
        wait_for(lambda: ((kubeapi.get("convoys", "default", "docs") or {}).get("status") or {}).get("convoyBead")
                 and rig_condition(kubeapi, "Dispatching") == "False",
                 timeout=30, what=f"the Convoy planned, the rig paused\n{op.output()[-2000:]}")
        marker, hook = tmp_path / "dispatching", rig.remote / "hooks" / "pre-receive"
        hook.write_text(HOLD_HOOK.format(marker=marker))
        hook.chmod(0o755)
        monkeypatch.setenv("LET_THROUGH", "1")
        with rig.ledger() as lg:
            lg.apply(SetPaused(False, "user tester"))
        wait_for(marker.exists, timeout=30, what=f"the dispatch's push hanging\n{op.output()[-2000:]}")
        time.sleep(1)
        before = {e["metadata"]["name"] for e in kubeapi.events("default")}
        sigterm(op, "mid-dispatch")
    finally:
        op.stop()
    assert_quiet(op, kubeapi, before)


def assert_quiet(op: Replica, kubeapi, before: set[str]) -> None:
    """No ERROR, WARNING nor traceback in the stopped replica's log, and no Warning Event since ``before``."""
    noisy = [ln for ln in op.output().splitlines() if any(w in ln for w in ("ERROR", "Traceback", "WARNING"))]
    assert not noisy, "\n".join(noisy) + "\n---\n" + op.output()[-3000:]
    warned = [(e["reason"], e["message"]) for e in kubeapi.events("default")
              if e["metadata"]["name"] not in before and e.get("type") != "Normal"]
    assert not warned, warned


def rig_condition(kubeapi, type_: str) -> str | None:
    status = (kubeapi.get("rigs", "default", "webapp") or {}).get("status") or {}
    return next((c["status"] for c in status.get("conditions", []) if c["type"] == type_), None)
