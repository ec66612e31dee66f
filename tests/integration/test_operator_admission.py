"""`gt operator run` as a real process against the API double: status, conditions, Events."""

from __future__ import annotations

import pytest

from gastown.api import KINDS

from conftest import wait_for
from rigs import make_rig

GOOD = {
    "Rig": {"gitUrl": "https://example.com/a.git"},
    "Polecat": {"rig": "webapp"},
    "Convoy": {"rig": "webapp", "goal": "make it faster"},
    "MergeQueue": {"rig": "webapp"},
}
BAD = {
    "Rig": ({"gitUrl": "https://example.com/a.git", "maxPolecats": 500}, "spec.maxPolecats"),
    "Polecat": ({"rig": "Web App"}, "spec.rig"),
    "Convoy": ({"rig": "webapp", "beads": [{"key": "a", "title": "A", "needs": ["b"]}]}, "spec.beads"),
    "MergeQueue": ({"rig": "webapp", "batchSize": 0}, "spec.batchSize"),
}


def _obj(kind, name, spec):
    return {"apiVersion": "gastown.dev/v1alpha1", "kind": kind.kind,
            "metadata": {"name": name, "namespace": "default"}, "spec": spec}


def _condition(obj, type_):
    for c in ((obj or {}).get("status") or {}).get("conditions", []):
        if c["type"] == type_:
            return c
    return None


@pytest.fixture
def remote(tmp_path):
    return f"file://{make_rig(tmp_path).remote}"


@pytest.fixture
def running(kubeapi, operator):
    op = operator()
    yield op
    if op.proc.poll() is not None:
        print(op.output())


def test_every_kind_valid_and_invalid(kubeapi, running, remote):
    for kind in KINDS:
        good = {**GOOD[kind.kind], "gitUrl": remote} if kind.kind == "Rig" else GOOD[kind.kind]
        kubeapi.create(_obj(kind, "good", good))
        kubeapi.create(_obj(kind, "bad", BAD[kind.kind][0]))
    for kind in KINDS:
        good = wait_for(lambda k=kind: _condition(kubeapi.get(k.plural, "default", "good"), "Ready"),
                        what=f"{kind.kind}/good Ready")
        obj = kubeapi.get(kind.plural, "default", "good")
        assert good["status"] == "True"
        assert obj["status"]["observedGeneration"] == 1
        assert obj["status"]["phase"] in (kind.initial_phase, "Ready")
        assert _condition(obj, "Invalid")["status"] == "False"

        field = BAD[kind.kind][1]
        bad = wait_for(lambda k=kind: _condition(kubeapi.get(k.plural, "default", "bad"), "Invalid"),
                       what=f"{kind.kind}/bad Invalid")
        assert bad["status"] == "True" and bad["reason"] == "InvalidSpec"
        assert field in bad["message"]
        obj = kubeapi.get(kind.plural, "default", "bad")
        assert obj["status"]["phase"] == "Invalid"
        assert _condition(obj, "Ready")["status"] == "False"
        events = wait_for(lambda k=kind: [e for e in kubeapi.events("default", "bad")
                                          if e["involvedObject"]["kind"] == k.kind],
                          what=f"a Warning Event for {kind.kind}/bad")
        assert events[0]["type"] == "Warning"
        assert events[0]["reason"] == "InvalidSpec"
        assert field in events[0]["message"]
        assert events[0]["source"]["component"] == "gastown-operator"
    good_events = [e for e in kubeapi.events("default", "good") if e["reason"] == "InvalidSpec"]
    assert good_events == []


def test_fixing_an_invalid_object_clears_the_condition(kubeapi, running, remote):
    kubeapi.create(_obj(KINDS[0], "webapp", {"gitUrl": "nope"}))
    wait_for(lambda: (_condition(kubeapi.get("rigs", "default", "webapp"), "Invalid") or {}).get("status")
             == "True", what="Invalid=True")
    kubeapi.patch("rigs", "default", "webapp", {"spec": {"gitUrl": remote}})

    def fixed():
        obj = kubeapi.get("rigs", "default", "webapp")
        return obj["status"].get("phase") == "Ready" and obj
    obj = wait_for(fixed, what="the fixed Rig to be Ready")
    assert obj["status"]["observedGeneration"] == 2
    assert _condition(obj, "Invalid")["status"] == "False"
    assert _condition(obj, "Ready")["status"] == "True"


def test_operator_only_watches_the_namespaces_it_is_given(kubeapi, operator):
    kubeapi.namespace("team-a")
    kubeapi.namespace("team-b")
    operator("--namespace", "team-a")
    kubeapi.create({**_obj(KINDS[0], "a", GOOD["Rig"]), "metadata": {"name": "a", "namespace": "team-a"}})
    kubeapi.create({**_obj(KINDS[0], "b", GOOD["Rig"]), "metadata": {"name": "b", "namespace": "team-b"}})
    wait_for(lambda: _condition(kubeapi.get("rigs", "team-a", "a"), "Ready"), what="team-a rig handled")
    assert "status" not in kubeapi.get("rigs", "team-b", "b")
