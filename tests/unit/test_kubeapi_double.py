"""The API double behaves as the real server does where the controllers depend on it."""

from __future__ import annotations

import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from kubeapi import ApiError, KubeAPI, json_patch, merge_patch, selector_matches


@pytest.fixture
def kubeapi():
    """The double itself, without conftest's RBAC check: these tests make calls no operator makes."""
    api = KubeAPI().start()
    yield api
    api.stop()


@pytest.fixture
def api(kubeapi, kubeconfig):
    return config.new_client_from_config(config_file=str(kubeconfig))


def _cm(name, labels=None):
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "labels": labels or {}}, "data": {"k": "v"}}


def test_create_get_conflict_and_missing_namespace(api):
    core = client.CoreV1Api(api)
    made = core.create_namespaced_config_map("default", _cm("a"))
    assert made.metadata.uid and made.metadata.resource_version
    with pytest.raises(ApiException) as e:
        core.create_namespaced_config_map("default", _cm("a"))
    assert e.value.status == 409
    with pytest.raises(ApiException) as e:
        core.create_namespaced_config_map("nowhere", _cm("b"))
    assert e.value.status == 404


def test_replace_with_stale_resource_version_conflicts(api):
    core = client.CoreV1Api(api)
    first = core.create_namespaced_config_map("default", _cm("a"))
    first.data = {"k": "w"}
    second = core.replace_namespaced_config_map("a", "default", first)
    assert int(second.metadata.resource_version) > int(first.metadata.resource_version)
    first.data = {"k": "x"}
    with pytest.raises(ApiException) as e:
        core.replace_namespaced_config_map("a", "default", first)
    assert e.value.status == 409


def test_a_delete_with_a_stale_resource_version_precondition_conflicts(api):
    core = client.CoreV1Api(api)
    first = core.create_namespaced_config_map("default", _cm("a"))
    first.data = {"k": "w"}
    second = core.replace_namespaced_config_map("a", "default", first)
    stale = client.V1DeleteOptions(preconditions=client.V1Preconditions(resource_version=first.metadata.resource_version))
    with pytest.raises(ApiException) as e:
        core.delete_namespaced_config_map("a", "default", body=stale)
    assert e.value.status == 409 and core.read_namespaced_config_map("a", "default")
    core.delete_namespaced_config_map("a", "default", body=client.V1DeleteOptions(
        preconditions=client.V1Preconditions(resource_version=second.metadata.resource_version)))
    with pytest.raises(ApiException) as e:
        core.read_namespaced_config_map("a", "default")
    assert e.value.status == 404


def test_a_patch_carrying_a_stale_resource_version_conflicts(kubeapi):
    made = kubeapi.create(_cm("a"))
    rv = made["metadata"]["resourceVersion"]
    kubeapi.patch("configmaps", "default", "a", {"metadata": {"resourceVersion": rv}, "data": {"k": "w"}})
    with pytest.raises(ApiError) as e:
        kubeapi.patch("configmaps", "default", "a", {"metadata": {"resourceVersion": rv}, "data": {"k": "x"}})
    assert (e.value.code, e.value.reason) == (409, "Conflict")
    assert kubeapi.get("configmaps", "default", "a")["data"] == {"k": "w"}


def test_label_selectors(api):
    core = client.CoreV1Api(api)
    core.create_namespaced_config_map("default", _cm("a", {"rig": "x", "tier": "1"}))
    core.create_namespaced_config_map("default", _cm("b", {"rig": "y"}))
    names = lambda sel: sorted(i.metadata.name for i in  # noqa: E731
                               core.list_namespaced_config_map("default", label_selector=sel).items)
    assert names("rig=x") == ["a"]
    assert names("rig!=x") == ["b"]
    assert names("tier") == ["a"]
    assert names("rig in (x,y)") == ["a", "b"]
    assert names("!tier") == ["b"]


def test_status_subresource_is_isolated(kubeapi):
    kubeapi.create({"apiVersion": "gastown.dev/v1alpha1", "kind": "Rig", "metadata": {"name": "r"},
                    "spec": {"gitUrl": "x"}, "status": {"phase": "Ready"}})
    assert "status" not in kubeapi.get("rigs", "default", "r")
    kubeapi.patch("rigs", "default", "r", {"status": {"phase": "Ready"}})
    assert "status" not in kubeapi.get("rigs", "default", "r")
    obj = kubeapi.patch("rigs", "default", "r", {"spec": {"gitUrl": "y"}, "status": {"phase": "Nope"}},
                        subresource="status")
    assert obj["status"] == {"phase": "Nope"} and obj["spec"]["gitUrl"] == "x"
    assert obj["metadata"]["generation"] == 1
    obj = kubeapi.patch("rigs", "default", "r", {"spec": {"gitUrl": "y"}})
    assert obj["metadata"]["generation"] == 2 and obj["status"] == {"phase": "Nope"}


def test_delete_waits_for_finalizers_and_collects_dependents(kubeapi):
    owner = kubeapi.create({**_cm("owner"), "metadata": {"name": "owner", "finalizers": ["x/y"]}})
    ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner["metadata"]["uid"]}
    kubeapi.create({**_cm("child"), "metadata": {"name": "child", "ownerReferences": [ref]}})
    kubeapi.delete("configmaps", "default", "owner")
    assert kubeapi.get("configmaps", "default", "owner")["metadata"]["deletionTimestamp"]
    assert kubeapi.get("configmaps", "default", "child") is not None
    kubeapi.patch("configmaps", "default", "owner", {"metadata": {"finalizers": None}})
    assert kubeapi.get("configmaps", "default", "owner") is None
    assert kubeapi.get("configmaps", "default", "child") is None


def test_patch_helpers():
    assert merge_patch({"a": {"b": 1, "c": 2}}, {"a": {"b": None, "d": 3}}) == {"a": {"c": 2, "d": 3}}
    doc = json_patch({"m": {"f": ["a"]}}, [{"op": "add", "path": "/m/f/-", "value": "b"},
                                          {"op": "remove", "path": "/m/f/0"}])
    assert doc == {"m": {"f": ["b"]}}
    assert selector_matches("a=1,b notin (2,3)", {"a": "1", "b": "4"})
    assert not selector_matches("a=1,b notin (2,3)", {"a": "1", "b": "3"})
