"""`gt apply -f`: the manifests `kubectl apply` takes (Rig, MergeQueue, Polecat, Convoy), for a town.

Every document is checked before any is applied: against the same models as the CRDs, and a
Rig as `gt rig add` checks one (its name, runtime and repository); a bad one is reported with
its place in the file and nothing is applied. Applying the same file twice changes nothing the
second time.
"""

from __future__ import annotations

import tempfile
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from .. import convoy as convoys
from ..api import GROUP, ConvoySpec, Invalid, MergeQueueSpec, PolecatSpec, RigSpec
from ..api.validation import parse_spec
from ..budget import SetConvoyBudget
from ..ledger import InvalidOperation, Ledger
from ..ledger.ops import Together, check_title
from ..polecats import EnsureAgent, agent_id
from ..telemetry import tracing
from .driver import RigConfig, town_holder
from .rigcheck import check_claim, check_name, check_rig
from .town import Town, TownError

KINDS = ("Rig", "MergeQueue", "Polecat", "Convoy")


@dataclass(frozen=True)
class Applied:
    kind: str
    name: str
    action: str  # created | configured | unchanged

    def __str__(self) -> str:
        return f"{self.kind.lower()}/{self.name} {self.action}"


def documents(text: str, source: str = "-") -> list[dict[str, Any]]:
    """The manifests in a (multi-document) YAML text: each a mapping with a kind and a name."""
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as e:
        raise TownError(f"{source}: not valid YAML: {e}") from None
    for i, doc in enumerate(docs, 1):
        where = f"{source}: document {i}"
        if not isinstance(doc, dict):
            raise TownError(f"{where}: expected a mapping with apiVersion, kind, metadata and spec")
        if str(doc.get("apiVersion", "")).split("/")[0] != GROUP or doc.get("kind") not in KINDS:
            raise TownError(f"{where}: {doc.get('apiVersion')}/{doc.get('kind')} is not one of gastown's kinds "
                            f"({GROUP}/v1alpha1: {', '.join(KINDS)})")
        if not isinstance(doc.get("metadata"), dict) or not doc["metadata"].get("name"):
            raise TownError(f"{where}: metadata.name is required")
    return docs


def _spec(doc: dict[str, Any]) -> Any:
    kind, name = doc["kind"], str(doc["metadata"]["name"])
    specs: dict[str, type[BaseModel]] = {
        "Rig": RigSpec, "MergeQueue": MergeQueueSpec, "Polecat": PolecatSpec, "Convoy": ConvoySpec}
    spec_of = specs[kind]
    try:
        return parse_spec(spec_of, doc.get("spec"))
    except Invalid as e:
        raise TownError(f"{kind.lower()}/{name}: {e}") from None


def check(town: Town, docs: list[dict[str, Any]]) -> None:
    """Check every document before any is applied: a bad one anywhere applies nothing."""
    known = dict(town.specs())
    rigs = set(known) | {str(d["metadata"]["name"]) for d in docs if d["kind"] == "Rig"}
    for doc in docs:
        kind, name = doc["kind"], str(doc["metadata"]["name"])
        spec = _spec(doc)
        try:
            check_name(name, kind.lower())
            if kind == "Rig":
                current = known.get(name, (None,))[0]
                same_repo = current is not None and (current.git_url, current.default_branch) == \
                    (spec.git_url, spec.default_branch)
                check_rig(name, spec, repository=not same_repo,
                          others={**{n: k[0] for n, k in known.items()},
                                  **{str(d["metadata"]["name"]): _spec(d) for d in docs if d["kind"] == "Rig"}})
                if not same_repo:
                    with Ledger(spec.git_url, cache_dir=town.ledger_cache(spec.git_url)) as ledger:
                        check_claim(ledger, town_holder(town.root, name))
            if kind == "Convoy":  # the titles its beads will have, checked as the ledger will
                for i, text in [(f"beads[{i}].title", b.title) for i, b in enumerate(spec.beads or [])] \
                        + ([("goal", spec.goal)] if spec.goal is not None else []):
                    try:
                        check_title(text)
                    except InvalidOperation as e:
                        raise TownError(f"spec.{i}: {e}") from None
        except TownError as e:
            raise TownError(f"{kind.lower()}/{name}: {e}") from None
        if kind != "Rig" and spec.rig not in rigs:
            raise TownError(f"{kind.lower()}/{name}: no rig {spec.rig!r} in {town.root} (apply the Rig first)")


def apply(town: Town, doc: dict[str, Any], actor: str) -> Applied:
    kind, name = doc["kind"], str(doc["metadata"]["name"])
    spec = _spec(doc)
    if kind == "Rig":
        existed = name in town.specs()
        with Ledger(spec.git_url, cache_dir=town.ledger_cache(spec.git_url), actor=actor) as ledger:
            ledger.ensure()  # before it is saved: a rig whose ledger cannot be written is not kept
        changed = town.put_rig(name, spec)
        return Applied(kind, name, "configured" if existed and changed else "created" if not existed else "unchanged")
    if kind == "MergeQueue":
        new = spec.rig in town.specs() and town.specs()[spec.rig][1] is None
        changed = town.put_queue(spec.rig, spec)
        return Applied(kind, name, "created" if new else "configured" if changed else "unchanged")
    config = town.rig(spec.rig) if spec.rig in town.specs() else None
    if config is None:
        raise TownError(f"{kind.lower()}/{name}: no rig {spec.rig!r} in {town.root} (apply the Rig first)")
    if kind == "Polecat":
        with Ledger(config.remote, cache_dir=town.ledger_cache(config.remote), actor=actor) as ledger:
            existed = agent_id(ledger.prefix, name) in ledger.beads()
            ledger.apply(EnsureAgent(name, config.name, actor, (spec.runtime or config.runtime).preset))
        return Applied(kind, name, "unchanged" if existed else "created")
    created = create_convoy(town, name, spec, actor)
    return Applied(kind, name, "created" if created else "unchanged")


def create_convoy(town: Town, name: str, spec: ConvoySpec, actor: str, *, home_rig: RigConfig | None = None) -> bool:
    """Open (and, for explicit beads or a formula, plan) the convoy on its rigs; False when it
    was there already. ``home_rig``: the rig when it is not the town's (given by path or URL)."""
    config = home_rig or town.rig(spec.rig)
    with ExitStack() as stack, tempfile.TemporaryDirectory() as tmp:
        def ledger_of(rig: str) -> Ledger:
            c = town.rig(rig)
            return stack.enter_context(Ledger(c.remote, cache_dir=town.ledger_cache(c.remote), actor=actor))

        home = stack.enter_context(Ledger(config.remote, cache_dir=town.ledger_cache(config.remote), actor=actor))
        if convoys.convoy_id(home.prefix, name) in home.beads():
            return False
        info = convoys.info_from_spec(name, name, spec.model_copy(update={"rig": config.name}))
        plan = convoys.plan_from_spec(spec, convoys.rig_formula_sources(home, config.target, Path(tmp)))
        parts = convoys.split(info, plan)
        ledgers = {config.name: home} | {r: ledger_of(r) for r in parts if r != config.name}  # all known first
        tracing.setup("gastown-cli")
        with tracing.planning(config.name, name, source=info.source, beads=len(plan) if plan is not None else None):
            for rig, (part_info, part_plan) in parts.items():
                ops: list[Any] = [convoys.OpenConvoy(part_info, actor)]
                if part_plan is not None:
                    ops.append(convoys.PlanConvoy(name, tuple(part_plan), actor, planned_by=info.source))
                if spec.budget is not None:
                    ops.append(SetConvoyBudget(name, spec.budget.wire(), actor))
                ledgers[rig].apply(Together(tuple(ops), actor))
    return True
