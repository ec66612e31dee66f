"""A permission revoked while the operator runs (a ClusterRole edited, a binding deleted): the
operator keeps running, says which permission it misses, retries with backoff, shows the problem
on the Rigs it concerns, and carries on once the permission is back. The real `gt operator run`
process against the API double, whose RBAC refuses on demand."""

from __future__ import annotations

import time

import pytest

from conftest import wait_for
from rigs import make_rig

GROUP = "gastown.dev"


def apply_rig(kubeapi, name: str, remote) -> None:
    kubeapi.create({"apiVersion": f"{GROUP}/v1alpha1", "kind": "Rig", "metadata": {"name": name},
                    "spec": {"gitUrl": f"file://{remote}"}})


def rig(kubeapi, name: str) -> dict:
    return kubeapi.get("rigs", "default", name) or {}


def condition(obj: dict, kind: str) -> dict:
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == kind), {})


@pytest.mark.slow
def test_a_permission_revoked_while_running_is_a_clear_retrying_problem_and_not_an_exit(kubeapi, operator, tmp_path):
    op = operator("--server-timeout", "10")  # watches end every 10 s: a revoked list or watch shows soon
    apply_rig(kubeapi, "webapp", make_rig(tmp_path / "webapp").remote)
    wait_for(lambda: (rig(kubeapi, "webapp").get("status") or {}).get("phase") == "Ready", timeout=60,
             what=f"the Rig Ready\n{op.output()}")
    # the ClusterRole loses what the operator watches, and the rigs' agent accounts
    revoked = {("list", GROUP, "rigs"), ("watch", GROUP, "rigs"), ("create", "", "serviceaccounts"),
               ("patch", "", "serviceaccounts")}
    kubeapi.forbidden |= revoked
    apply_rig(kubeapi, "api", make_rig(tmp_path / "api").remote)
    wait_for(lambda: "forbidden: the operator may not watch rigs.gastown.dev in all namespaces" in op.output(), timeout=60,
             what=f"the log line naming the permission\n{op.output()[-5000:]}")
    assert "its ServiceAccount needs watch on rigs.gastown.dev in all namespaces" in op.output()
    # the Rig whose reconciliation was refused says so, in a condition and an Event
    wait_for(lambda: condition(rig(kubeapi, "api"), "Ready").get("reason") == "Forbidden", timeout=30,
             what=f"the Rig's condition\n{op.output()[-4000:]}")
    assert 'cannot create resource "serviceaccounts"' in condition(rig(kubeapi, "api"), "Ready")["message"]
    assert any(e.get("reason") == "Forbidden" for e in kubeapi.events("default", "api"))
    time.sleep(25)  # kopf gives up on a watch after a few refusals: the process must not
    assert op.proc.poll() is None, op.output()[-4000:]
    assert "Traceback" not in op.output(), op.output()[-4000:]
    assert op.output().count("may not watch rigs.gastown.dev") >= 2  # retried
    kubeapi.forbidden -= revoked  # the ClusterRole is fixed
    wait_for(lambda: (rig(kubeapi, "api").get("status") or {}).get("phase") == "Ready", timeout=90,
             what=f"the Rig made while forbidden, Ready once allowed\n{op.output()[-4000:]}")
    assert op.proc.poll() is None


def test_a_status_write_refused_in_the_rig_loop_leaves_the_rig_running_and_retrying(kubeapi, operator, tmp_path,
                                                                                    monkeypatch):
    """The rig loop writes the Rig's status (here GitReachable=False, its remote gone) while that
    write is refused: the loop says so and tries again with backoff. Before, the refusal ended
    kopf's daemon, which sat out a minute before the rig was driven again."""
    monkeypatch.setenv("GT_POLL_IDLE_SECONDS", "2")  # an idle rig looks at its remote soon
    op = operator()
    remote = make_rig(tmp_path / "webapp").remote
    apply_rig(kubeapi, "webapp", remote)
    wait_for(lambda: condition(rig(kubeapi, "webapp"), "GitReachable").get("status") == "True", timeout=60,
             what=f"GitReachable=True\n{op.output()}")
    kubeapi.forbidden.add(("patch", GROUP, "rigs/status"))
    remote.rename(remote.with_name("hidden.git"))
    wait_for(lambda: 'cannot patch resource "rigs/status"' in op.output() and "the rig loop tries again" in op.output(),
             timeout=30,
             what=lambda: f"the refused write said\n{op.output()[-4000:]}")
    kubeapi.forbidden.discard(("patch", GROUP, "rigs/status"))
    wait_for(lambda: condition(rig(kubeapi, "webapp"), "GitReachable").get("status") == "False", timeout=20,
             what=lambda: f"GitReachable=False once the write is allowed\n{op.output()[-4000:]}")
    assert "Daemon 'dispatch' failed" not in op.output()
