"""crds/ is generated from the models, structural, and it validates like the models do."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gastown.api import KINDS, Invalid, parse_object
from gastown.api.crdgen import crd, filename, files, main, render

from crdcheck import crd_errors

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
CRDS = {k.kind: crd(k) for k in KINDS}


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.kind)
@pytest.mark.parametrize("folder", ["crds", "charts/gastown/crds"])
def test_committed_crds_match_the_models_in_both_places(kind, folder):
    path = ROOT / folder / filename(kind)
    assert path.read_text() == render(kind), f"{folder}/ drifted from gastown.api: run `make crds`"


def test_no_kopf_peering_crds_ship_the_lease_elects_the_leader():
    assert not any("kopf" in name for name in files())
    for folder in ("crds", "charts/gastown/crds"):
        assert not list((ROOT / folder).glob("kopf.dev_*"))


def test_check_mode_detects_drift(tmp_path, capsys):
    assert main([str(tmp_path)]) == 0
    assert main([str(tmp_path), "--check"]) == 0
    victim = tmp_path / filename(KINDS[0])
    victim.write_text(victim.read_text().replace("maximum: 100", "maximum: 1000"))
    assert main([str(tmp_path), "--check"]) == 1
    assert filename(KINDS[0]) in capsys.readouterr().err


def _nodes(schema, path="$"):
    yield path, schema
    for name, sub in schema.get("properties", {}).items():
        yield from _nodes(sub, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        yield from _nodes(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from _nodes(schema["additionalProperties"], f"{path}{{}}")


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.kind)
def test_schema_is_structural(kind):
    version = CRDS[kind.kind]["spec"]["versions"][0]
    for path, node in _nodes(version["schema"]["openAPIV3Schema"]):
        assert "type" in node or node.get("x-kubernetes-preserve-unknown-fields"), path
        for banned in ("$ref", "anyOf", "oneOf", "allOf", "$defs", "title", "const"):
            assert banned not in node, f"{path} has {banned}"
        assert not ("properties" in node and "additionalProperties" in node), path
        if node.get("x-kubernetes-list-type") == "map":
            item = node["items"]
            for key in node["x-kubernetes-list-map-keys"]:
                assert key in item.get("required", []) or "default" in item["properties"][key], path


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.kind)
def test_crd_names_columns_and_status(kind):
    spec = CRDS[kind.kind]["spec"]
    assert spec["names"]["shortNames"] == [kind.short_name]
    assert spec["names"]["categories"] == ["gastown"]
    version = spec["versions"][0]
    assert version["subresources"] == {"status": {}}
    schema = version["schema"]["openAPIV3Schema"]
    for col in version["additionalPrinterColumns"]:
        if col["jsonPath"].startswith(".metadata."):  # the API server's own fields, in no CRD's schema
            continue
        node = schema
        for part in col["jsonPath"].lstrip(".").split("."):
            node = node.get("properties", {}).get(part, {"type": "object"} if part in (
                "metadata", "creationTimestamp") else None)
            assert node is not None, f"{col['jsonPath']} is not in the schema"


def _docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_pass_models_and_crds(path):
    for doc in _docs(path):
        kind, _ = parse_object(doc)
        assert crd_errors(CRDS[kind.kind], doc) == []


def test_every_kind_has_an_example():
    kinds = {doc["kind"] for p in EXAMPLES for doc in _docs(p)}
    assert kinds == {k.kind for k in KINDS}


def _convoy(**spec):
    return {"apiVersion": "gastown.dev/v1alpha1", "kind": "Convoy", "metadata": {"name": "c"},
            "spec": {"rig": "r", **spec}}


@pytest.mark.parametrize(("obj", "words"), [
    (_convoy(goal="g", beads=[{"key": "a", "title": "t"}]), "exactly one of goal, beads or formula"),
    (_convoy(), "exactly one of goal, beads or formula"),
    (_convoy(goal="g", notify=[{"type": "webhook"}]), "needs secretRef"),
    (_convoy(beads=[{"key": "a", "title": "t"}, {"key": "a", "title": "u"}]), "Duplicate value"),
    (_convoy(goal="g", maxParallel=0), "less than the minimum of 1"),
    (_convoy(goal="g", colour="red"), 'unknown field "colour"'),
])
def test_crd_and_models_refuse_the_same_convoys(obj, words):
    errors = crd_errors(CRDS["Convoy"], obj)
    assert any(words in e for e in errors), errors
    with pytest.raises(Invalid):
        parse_object(obj)


# The short names of Kubernetes' built-in resources, as `kubectl api-resources` lists them on
# Kubernetes 1.30 to 1.36 (the SHORTNAMES column; core, apps, autoscaling, batch, certificates,
# networking, policy, scheduling, storage and apiextensions groups). kubectl resolves a short name
# to a built-in resource before any custom one ("short name pc could also match lower priority
# resource polecats.gastown.dev"), so a gastown short name must not be one of these.
BUILTIN_SHORT_NAMES = {
    "cs", "cm", "ep", "ev", "limits", "ns", "no", "pvc", "pv", "po", "rc", "quota", "sa", "svc",  # core
    "crd", "crds",  # apiextensions.k8s.io
    "ds", "deploy", "rs", "sts",  # apps
    "hpa",  # autoscaling
    "cj",  # batch
    "csr",  # certificates.k8s.io
    "ing", "netpol", "ip",  # networking.k8s.io (ip: IPAddress)
    "pdb",  # policy
    "pc",  # scheduling.k8s.io: PriorityClass
    "sc", "vac",  # storage.k8s.io (vac: VolumeAttributesClass)
}
# ... and the resources' own names, which kubectl also matches
BUILTIN_NAMES = {
    "pod", "pods", "service", "services", "node", "nodes", "job", "jobs", "cronjob", "cronjobs",
    "deployment", "deployments", "event", "events", "lease", "leases", "secret", "secrets",
    "configmap", "configmaps", "namespace", "namespaces", "role", "roles", "priorityclass",
    "priorityclasses", "ingress", "ingresses", "endpoints", "endpointslice", "endpointslices",
}


def test_short_names_resolve_to_gastown_not_to_a_built_in_resource():
    names = [k.short_name for k in KINDS]
    assert len(set(names)) == len(names)
    for kind in KINDS:
        assert kind.short_name not in BUILTIN_SHORT_NAMES | BUILTIN_NAMES, kind.kind
        assert CRDS[kind.kind]["spec"]["names"]["shortNames"] == [kind.short_name]
