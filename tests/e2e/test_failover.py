"""End to end on a real cluster: the operator's leader Lease (`make kind-up kind-load e2e`).

Each test installs the chart (two replicas, the default) watching one fresh namespace, as
test_kind.py does, and removes everything at the end in the README's order. Skipped, with the
reason, when no cluster answers (test_kind.py's ``api`` fixture).

- A restart: one replica, its pod deleted with no grace (a crash: nothing releases the Lease);
  the replacement pod takes the Lease once it expires and reconciles a new Rig.
- A failover: two replicas, the leader's pod deleted with no grace; the standby takes the Lease
  within 15 s and reconciles a new Rig, while the replacement pod stands by.
"""

from __future__ import annotations

import subprocess
import time

import pytest
from test_kind import (
    GROUP,
    HELM,
    ROOT,
    VERSION,
    _delete_gastown_objects,
    _delete_namespace_within_a_minute,
    _install,
    _uninstall,
    _wait,
    api,  # noqa: F401 (the fixture: skips without a cluster)
)

pytestmark = pytest.mark.e2e

SELECTOR = "app.kubernetes.io/component=operator"


def _holder(cluster, ns: str, lease: str) -> str | None:
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    try:
        return client.CoordinationV1Api(cluster).read_namespaced_lease(lease, ns).spec.holder_identity
    except ApiException as e:
        if e.status == 404:
            return None
        raise


def _ready_pods(cluster, ns: str, release: str) -> list[str]:
    from kubernetes import client

    pods = client.CoreV1Api(cluster).list_namespaced_pod(
        ns, label_selector=f"app.kubernetes.io/instance={release},{SELECTOR}").items
    return [p.metadata.name for p in pods if p.metadata.deletion_timestamp is None and any(
        c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])]


def _crash(cluster, ns: str, pod: str) -> None:
    """Delete the pod with no grace: its process gets no time to release the Lease."""
    from kubernetes import client

    client.CoreV1Api(cluster).delete_namespaced_pod(pod, ns, grace_period_seconds=0)


def _reconciled(cluster, ns: str, rig: str) -> bool:
    """The operator wrote the Rig's GitReachable condition (its remote does not exist: False)."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    try:
        obj = client.CustomObjectsApi(cluster).get_namespaced_custom_object(GROUP, VERSION, ns, "rigs", rig)
    except ApiException:
        return False
    return any(c["type"] == "GitReachable" for c in (obj.get("status") or {}).get("conditions") or [])


def _apply_rig(cluster, ns: str, name: str) -> None:
    from kubernetes import client

    client.CustomObjectsApi(cluster).create_namespaced_custom_object(GROUP, VERSION, ns, "rigs", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "Rig", "metadata": {"name": name},
        "spec": {"gitUrl": f"https://git.invalid/{name}.git"}})


@pytest.fixture
def release(api):  # noqa: F811 (the fixture imported above)
    name = "gastown-ha"
    ns = _install(api, name)  # the chart's default: two replicas
    yield name, ns
    try:
        _delete_gastown_objects(api, ns)
    finally:
        _uninstall(api, name, ns)
        _delete_namespace_within_a_minute(api, ns)


def test_a_crashed_single_replica_is_replaced_and_working_again(api, release):  # noqa: F811
    name, ns = release
    subprocess.run([HELM, "upgrade", name, str(ROOT / "charts" / "gastown"), "--namespace", ns, "--reuse-values",
                    "--set", "replicas=1", "--wait", "--timeout", "3m"], check=True)
    (pod,) = _wait(lambda: len(p := _ready_pods(api, ns, name)) == 1 and p, 120, "one ready replica")
    _wait(lambda: _holder(api, ns, name) == pod, 30, f"{pod} to hold the Lease")
    crashed = time.monotonic()
    _crash(api, ns, pod)
    (new,) = _wait(lambda: (p := [n for n in _ready_pods(api, ns, name) if n != pod]) and p, 180,
                   "the replacement pod to be ready")
    print(f"\nreplacement {new} leading {time.monotonic() - crashed:.1f}s after the crash")
    assert _holder(api, ns, name) == new  # ready means: it leads and its controllers run
    _apply_rig(api, ns, "after-restart")
    _wait(lambda: _reconciled(api, ns, "after-restart"), 60, "the restarted operator to reconcile a Rig")


def test_the_standby_takes_over_within_15_seconds_of_the_leaders_crash(api, release):  # noqa: F811
    name, ns = release
    pods = _wait(lambda: len(p := _ready_pods(api, ns, name)) == 2 and p, 180, "two ready replicas")
    leader = _wait(lambda: _holder(api, ns, name), 30, "a leader")
    (standby,) = [p for p in pods if p != leader]
    _apply_rig(api, ns, "before")
    _wait(lambda: _reconciled(api, ns, "before"), 60, "the leader to reconcile a Rig")

    crashed = time.monotonic()
    _crash(api, ns, leader)
    _wait(lambda: _holder(api, ns, name) == standby, 15, f"the standby {standby} to take the Lease within 15 s")
    print(f"\nthe standby took over {time.monotonic() - crashed:.1f}s after the leader's crash")
    _apply_rig(api, ns, "after")
    _wait(lambda: _reconciled(api, ns, "after"), 60, "the new leader to reconcile a Rig")
    # the replacement pod comes up as the new standby: ready, not leading
    _wait(lambda: len(_ready_pods(api, ns, name)) == 2, 180, "the replacement pod to stand by")
    assert _holder(api, ns, name) == standby
