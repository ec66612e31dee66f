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


def test_status_fields_go_in_the_same_write_as_their_conditions(rig):
    kube.set_conditions("default", "rigs", "r", Condition(type="Ready", status="False", reason="GitError"),
                        status={"phase": "Error"})
    status = rig.get("rigs", "default", "r")["status"]
    assert status["phase"] == "Error" and _types(rig) == {"Ready": "GitError"}
    writes = _writes(rig)
    kube.set_conditions("default", "rigs", "r", Condition(type="Ready", status="False", reason="GitError"),
                        status={"phase": "Ready"})  # the conditions are there already: the field alone differs
    assert _writes(rig) == writes + 1 and rig.get("rigs", "default", "r")["status"]["phase"] == "Ready"
    kube.set_conditions("default", "rigs", "r", Condition(type="Ready", status="False", reason="GitError"),
                        status={"phase": "Ready"})
    assert _writes(rig) == writes + 1


def test_admission_sets_the_initial_phase_only_where_the_controller_has_not_set_one(rig):
    from gastown.api import KINDS
    from gastown.kube.admission import judge

    kind = next(k for k in KINDS if k.kind == "Rig")
    stale = rig.get("rigs", "default", "r")  # the event's body: no phase yet
    rig.patch("rigs", "default", "r", {"status": {"phase": "Ready"}}, subresource="status")  # the controller was first
    verdict = judge(kind, stale)
    kube.update_conditions("default", "rigs", "r", verdict.conditions, fields=verdict.status)
    assert rig.get("rigs", "default", "r")["status"]["phase"] == "Ready"
    assert rig.get("rigs", "default", "r")["status"]["observedGeneration"] == stale["metadata"]["generation"]
    bad = judge(kind, {**stale, "spec": {"gitUrl": "file:///nowhere", "maxPolecats": 0}})
    kube.update_conditions("default", "rigs", "r", bad.conditions, fields=bad.status)
    assert rig.get("rigs", "default", "r")["status"]["phase"] == "Invalid"
    kube.update_conditions("default", "rigs", "r", verdict.conditions, fields=verdict.status)  # fixed again
    assert rig.get("rigs", "default", "r")["status"]["phase"] == kind.initial_phase
