"""The API models: good input accepted with defaults, bad input refused naming the field."""

from __future__ import annotations

import pytest

from gastown.api import (
    KINDS,
    ConvoySpec,
    Invalid,
    MergeQueueSpec,
    PolecatSpec,
    RigSpec,
    kind_named,
    parse_object,
)
from gastown.api.validation import parse_spec
from gastown.local.town import rig_config
from gastown.witness import Thresholds

RIG = {"gitUrl": "https://example.com/a/b.git"}


def test_rig_defaults():
    spec = parse_spec(RigSpec, RIG)
    assert (spec.default_branch, spec.beads_prefix, spec.max_polecats) == ("main", "gt", 3)
    assert spec.runtime.preset == "claude"
    assert spec.wire()["gitUrl"] == RIG["gitUrl"]
    assert Thresholds.from_spec(spec.witness) == Thresholds()  # the spec's defaults are the Witness's
    assert [spec.dogs.prune.enabled, spec.dogs.gc.enabled, spec.dogs.compact.enabled] == [True] * 3


def test_a_town_rig_runs_with_its_spec():
    spec = parse_spec(RigSpec, {**RIG, "witness": {"hungAfterSeconds": 60, "startGraceSeconds": 600},
                                "dogs": {"compact": {"schedule": "@daily", "enabled": False}}})
    config = rig_config("webapp", spec)
    assert config.thresholds == Thresholds(start_grace=600.0, hung_after=60.0, linger=120.0)
    assert config.dogs.compact.enabled is False and config.dogs.compact.schedule == "@daily"


@pytest.mark.parametrize("url", [
    "https://github.com/a/b.git", "ssh://git@host/a/b", "git@github.com:a/b.git", "file:///srv/git/x",
])
def test_rig_accepts_git_urls(url):
    assert parse_spec(RigSpec, {"gitUrl": url}).git_url == url


BAD = [
    (RigSpec, {}, "spec.gitUrl", "Field required"),
    (RigSpec, {**RIG, "gitUrl": "not a url"}, "spec.gitUrl", "pattern"),
    (RigSpec, {**RIG, "beadsPrefix": "G"}, "spec.beadsPrefix", "pattern"),
    (RigSpec, {**RIG, "beadsPrefix": "waytoolongprefix"}, "spec.beadsPrefix", "pattern"),
    (RigSpec, {**RIG, "maxPolecats": 0}, "spec.maxPolecats", "greater than or equal to 1"),
    (RigSpec, {**RIG, "maxPolecats": 101}, "spec.maxPolecats", "less than or equal to 100"),
    (RigSpec, {**RIG, "defaultBranch": "a..b"}, "spec.defaultBranch", "not a valid git branch"),
    (RigSpec, {**RIG, "runtime": {"preset": "Claude Code"}}, "spec.runtime.preset", "pattern"),
    (RigSpec, {**RIG, "verification": {"gates": {"test": []}}}, "spec.verification.gates.test", "at least 1"),
    (RigSpec, {**RIG, "verification": {"gates": {"test": "pytest -q"}}}, "spec.verification.gates.test",
     "valid list"),
    (RigSpec, {**RIG, "credentialsSecret": {"name": "Bad_Name"}}, "spec.credentialsSecret.name", "pattern"),
    (RigSpec, {**RIG, "verification": {"resources": {"limits": {"memory": "lots"}}}},
     "spec.verification.resources.limits.memory", "pattern"),
    (RigSpec, {**RIG, "colour": "red"}, "spec.colour", "Extra inputs"),
    (PolecatSpec, {}, "spec.rig", "Field required"),
    (PolecatSpec, {"rig": "r", "desiredState": "sleeping"}, "spec.desiredState", "'idle', 'working'"),
    (PolecatSpec, {"rig": "r", "runtime": {"apiKeySecret": {"name": "k"}}}, "spec.runtime.apiKeySecret.key",
     "Field required"),
    (ConvoySpec, {"rig": "r"}, "spec", "exactly one of goal, beads or formula (got none)"),
    (ConvoySpec, {"rig": "r", "goal": "g", "formula": {"name": "f"}}, "spec", "(got goal, formula)"),
    (ConvoySpec, {"rig": "r", "goal": ""}, "spec.goal", "at least 1 character"),
    (ConvoySpec, {"rig": "r", "beads": []}, "spec.beads", "at least 1 item"),
    (ConvoySpec, {"rig": "r", "beads": [{"key": "a"}]}, "spec.beads[0].title", "Field required"),
    (ConvoySpec, {"rig": "r", "beads": [{"key": "a", "title": "t", "priority": 9}]}, "spec.beads[0].priority",
     "less than or equal to 4"),
    (ConvoySpec, {"rig": "r", "beads": [{"key": "a", "title": "t"}, {"key": "a", "title": "u"}]},
     "spec.beads", "duplicate key a"),
    (ConvoySpec, {"rig": "r", "beads": [{"key": "a", "title": "t", "needs": ["zz"]}]}, "spec.beads",
     "needs unknown key zz"),
    (ConvoySpec, {"rig": "r", "beads": [{"key": "a", "title": "t", "needs": ["a"]}]}, "spec.beads",
     "dependency cycle a -> a"),
    (ConvoySpec, {"rig": "r", "formula": {"name": "Bad Name"}}, "spec.formula.name", "pattern"),
    (ConvoySpec, {"rig": "r", "goal": "g", "mergeStrategy": "squash"}, "spec.mergeStrategy", "'mr' or 'direct'"),
    (ConvoySpec, {"rig": "r", "goal": "g", "notify": [{"type": "webhook"}]}, "spec.notify[0]",
     "needs secretRef"),
    (RigSpec, {**RIG, "witness": {"hungAfterSeconds": 5}}, "spec.witness.hungAfterSeconds",
     "greater than or equal to 10"),
    (RigSpec, {**RIG, "dogs": {"gc": {"schedule": "0 25 * * *"}}}, "spec.dogs.gc.schedule",
     "hour: 25 is outside 0-23"),
    (RigSpec, {**RIG, "dogs": {"retainDays": 0}}, "spec.dogs.retainDays", "greater than or equal to 1"),
    (MergeQueueSpec, {}, "spec.rig", "Field required"),
    (MergeQueueSpec, {"rig": "r", "batchSize": 0}, "spec.batchSize", "greater than or equal to 1"),
    (MergeQueueSpec, {"rig": "r", "parallelVerifications": 17}, "spec.parallelVerifications",
     "less than or equal to 16"),
    (MergeQueueSpec, {"rig": "r", "fillWindowSeconds": -1}, "spec.fillWindowSeconds",
     "greater than or equal to 0"),
    (MergeQueueSpec, {"rig": "r", "targetBranch": "-x"}, "spec.targetBranch", "pattern"),
]


@pytest.mark.parametrize(("model", "spec", "field", "words"), BAD,
                         ids=[f"{m.__name__}-{f}-{i}" for i, (m, _, f, _) in enumerate(BAD)])
def test_bad_input_names_the_field(model, spec, field, words):
    with pytest.raises(Invalid) as err:
        parse_spec(model, spec)
    assert field in err.value.fields, err.value
    assert words in str(err.value)


def test_every_kind_has_a_bad_case():
    assert {m for m, *_ in BAD} == {k.spec for k in KINDS}


def test_cycle_reported_with_its_path():
    spec = {"rig": "r", "beads": [
        {"key": "a", "title": "A", "needs": ["c"]},
        {"key": "b", "title": "B", "needs": ["a"]},
        {"key": "c", "title": "C", "needs": ["b"]},
    ]}
    with pytest.raises(Invalid, match=r"dependency cycle a -> c -> b -> a"):
        parse_spec(ConvoySpec, spec)


@pytest.mark.parametrize(("obj", "field"), [
    ([], ""),
    ({"apiVersion": "v1", "kind": "Rig"}, "apiVersion"),
    ({"apiVersion": "gastown.dev/v1alpha1", "kind": "Town", "metadata": {"name": "x"}}, "kind"),
    ({"apiVersion": "gastown.dev/v1alpha1", "kind": "Rig", "metadata": {}}, "metadata.name"),
])
def test_parse_object_checks_the_envelope(obj, field):
    with pytest.raises(Invalid) as err:
        parse_object(obj)
    assert err.value.fields == [field]


def test_kind_named_lists_the_known_kinds():
    with pytest.raises(KeyError, match="Rig, Polecat, Convoy, MergeQueue"):
        kind_named("Town")
