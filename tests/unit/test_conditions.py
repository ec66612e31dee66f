"""Conditions of one object have several writers; none loses what another wrote."""

from __future__ import annotations

import pytest

from gastown.api import Condition
from gastown.kube import client as kube


@pytest.fixture
def rig(kubeapi, kubeconfig, monkeypatch):
    # the client reads $KUBECONFIG when it is imported: point it at the double's kubeconfig
    monkeypatch.setattr("kubernetes.config.kube_config.KUBE_CONFIG_DEFAULT_LOCATION", str(kubeconfig))
    kube.api_client.cache_clear()
    kubeapi.create({"apiVersion": "gastown.dev/v1alpha1", "kind": "Rig", "metadata": {"name": "r"},
                    "spec": {"gitUrl": "file:///nowhere"}})
    yield kubeapi
    kube.api_client.cache_clear()


def _types(kubeapi) -> dict[str, str]:
    return {c["type"]: c["reason"] for c in kubeapi.get("rigs", "default", "r")["status"]["conditions"]}


def _writes(kubeapi) -> int:
    return sum(1 for method, path in kubeapi.requests if method == "PATCH" and path.endswith("/r/status"))


def test_a_write_that_lands_in_between_is_kept(rig):
    calls = []

    def change(current):
        if not calls:  # another writer gets in between this writer's read and its write
            rig.patch("rigs", "default", "r", {"status": {"conditions": [Condition(
                type="Escalated", status="True", reason="EscalationP1", message="x").wire()]}}, subresource="status")
        calls.append([c.type for c in current])
        return [*current, Condition(type="Dispatching", status="True", reason="Dispatching")]

    kube.update_conditions("default", "rigs", "r", change)
    assert calls == [[], ["Escalated"]]  # the first try was refused (409) and tried again on what is there now
    assert _types(rig) == {"Escalated": "EscalationP1", "Dispatching": "Dispatching"}


def test_set_conditions_replaces_by_type_and_skips_a_write_that_changes_nothing(rig):
    kube.set_conditions("default", "rigs", "r", Condition(type="Ready", status="False", reason="GitError"),
                        Condition(type="GitReachable", status="False", reason="GitError"))
    kube.set_conditions("default", "rigs", "r", Condition(type="Ready", status="True", reason="Reconciled"))
    assert _types(rig) == {"Ready": "Reconciled", "GitReachable": "GitError"}
    writes = _writes(rig)
    kube.set_conditions("default", "rigs", "r", Condition(type="Ready", status="True", reason="Reconciled"))
    assert _writes(rig) == writes


def test_a_gone_object_is_ignored(rig):
    kube.set_conditions("default", "rigs", "gone", Condition(type="Ready", status="True", reason="Reconciled"))
    assert rig.get("rigs", "default", "gone") is None
