"""Formulas: parsing, validation with clear errors, substitution, resolution order."""

from __future__ import annotations

import pytest

from gastown import formulas as f
from gastown.convoy import planned_from_molecule

GOOD = """
formula = "deploy"
description = "Ship it"
[vars.service]
required = true
description = "Which service"
[vars.env]
default = "staging"
[[steps]]
id = "build"
title = "Build {{service}}"
[[steps]]
id = "ship"
title = "Ship {{ service }} to {{env}}"
needs = ["build"]
"""


def test_builtins_parse_and_instantiate():
    assert {"feature", "bugfix", "review"} <= set(f.builtin_names())
    for name in f.builtin_names():
        formula = f.find(name, f.default_sources())
        required = {k: "x" for k, v in formula.vars.items() if v.required}
        molecule = f.instantiate(formula, required)
        assert molecule.steps and "{{" not in molecule.description()


def test_substitution_and_defaults():
    m = f.instantiate(f.parse(GOOD, "t"), {"service": "api"})
    assert [s.title for s in m.steps] == ["Build api", "Ship api to staging"]
    assert m.steps[1].needs == ("build",) and m.title == "deploy: api"


@pytest.mark.parametrize(("text", "words"), [
    (GOOD.replace('needs = ["build"]', 'needs = ["nope"]'), "step 'ship' needs unknown step nope"),
    (GOOD.replace('[[steps]]\nid = "build"\ntitle = "Build {{service}}"',
                  '[[steps]]\nid = "build"\ntitle = "Build"\nneeds = ["ship"]'), "steps form a cycle"),
    (GOOD.replace("{{env}}", "{{region}}"), "uses {{region}}, which is not declared"),
    (GOOD.replace('id = "ship"', 'id = "build"'), "duplicate step id build"),
    ("formula = ", "not valid TOML"),
    (GOOD.replace('formula = "deploy"', 'formula = "Deploy!"'), "formula: String should match pattern"),
])
def test_bad_formulas_are_refused_with_the_reason(text, words):
    with pytest.raises(f.FormulaError, match=words.replace("{", r"\{").replace("}", r"\}")
                       .replace("(", r"\(").replace(")", r"\)")):
        f.parse(text, "x.toml")


def test_vars_are_checked():
    formula = f.parse(GOOD, "t")
    with pytest.raises(f.FormulaError, match="missing required var 'service' \\(Which service\\)"):
        f.instantiate(formula, {})
    with pytest.raises(f.FormulaError, match="unknown var colour"):
        f.instantiate(formula, {"service": "a", "colour": "red"})


def test_resolution_order(tmp_path, monkeypatch):
    rig_dir, op_dir = tmp_path / "rig", tmp_path / "op"
    rig_dir.mkdir()
    op_dir.mkdir()
    (op_dir / "deploy.toml").write_text(GOOD)
    (op_dir / "bugfix.toml").write_text(GOOD.replace('"deploy"', '"bugfix"').replace("Ship it", "ours"))
    monkeypatch.setenv("GT_FORMULAS_DIR", str(op_dir))
    assert f.find("bugfix", f.default_sources(rig_dir)).description == "ours"
    (rig_dir / "bugfix.toml").write_text(GOOD.replace('"deploy"', '"bugfix"').replace("Ship it", "the rig's"))
    assert f.find("bugfix", f.default_sources(rig_dir)).description == "the rig's"
    monkeypatch.delenv("GT_FORMULAS_DIR")
    assert f.find("review", f.default_sources()).formula == "review"
    with pytest.raises(f.FormulaError, match="no formula 'deploy'.*built-in ones: bugfix, feature, review"):
        f.find("deploy", f.default_sources())
    (rig_dir / "other.toml").write_text(GOOD)
    with pytest.raises(f.FormulaError, match="declares formula 'deploy', not 'other'"):
        f.find("other", f.default_sources(rig_dir))


def test_root_only_and_poured_molecules():
    m = f.instantiate(f.parse(GOOD, "t"), {"service": "api"})
    root = planned_from_molecule(m, poured=False)
    assert len(root) == 1 and "- build: Build api" in root[0].description
    poured = planned_from_molecule(m, poured=True)
    assert [p.key for p in poured] == ["molecule", "build", "ship"]
    assert poured[2].needs == ("build",) and poured[2].parent == "molecule"
