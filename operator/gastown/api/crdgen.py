"""Generate apiextensions.k8s.io/v1 CustomResourceDefinitions from the API models.

Usage: ``python -m gastown.api.crdgen DIR...`` writes one YAML file per kind into each DIR
(crds/ and the Helm chart's crds/) (the operator's replicas elect their leader on a Lease:
kopf's peering CRDs are not needed);
``--check`` exits 1 and names the files that differ instead of writing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from .kinds import KINDS, Kind

# OpenAPI v3 keywords a structural schema may carry; pydantic's other output is dropped.
_KEEP = {
    "type", "description", "properties", "required", "items", "additionalProperties", "enum",
    "default", "minimum", "maximum", "minLength", "maxLength", "minItems", "maxItems",
    "pattern", "format", "nullable",
}
_FORMATS = {"date-time", "date", "int32", "int64", "byte", "duration"}


def _resolve(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, dict) and "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        extra = {k: v for k, v in node.items() if k != "$ref"}
        return _resolve({**target, **extra}, defs)
    return node


def structural(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """Rewrite one pydantic JSON-schema node as a Kubernetes structural schema node."""
    node = _resolve(node, defs)
    variants = node.get("anyOf")
    if variants:
        kept = [v for v in variants if v.get("type") != "null"]
        if len(kept) != 1:
            raise ValueError(f"unions other than Optional[X] cannot be expressed structurally: {node}")
        merged = {**_resolve(kept[0], defs), **{k: v for k, v in node.items() if k != "anyOf"}}
        if merged.get("default", ...) is None:
            del merged["default"]
        return structural(merged, defs)
    if "const" in node:
        node = {**node, "enum": [node["const"]]}
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key.startswith("x-kubernetes-"):
            out[key] = value
        elif key not in _KEEP:
            continue
        elif key == "properties":
            out[key] = {name: structural(sub, defs) for name, sub in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            out[key] = structural(value, defs)
        elif key == "format" and value not in _FORMATS:
            continue
        elif key == "additionalProperties" and isinstance(value, bool):
            continue  # extra="forbid": the API server prunes unknown fields; strict kubectl rejects them
        else:
            out[key] = value
    if node.get("type") == "object" and "properties" not in out and "additionalProperties" not in out:
        out["x-kubernetes-preserve-unknown-fields"] = True
    if "type" not in out and not out.get("x-kubernetes-preserve-unknown-fields"):
        raise ValueError(f"schema node without a type: {node}")
    if out.get("required") == []:
        del out["required"]
    return out


def model_schema(model: type[BaseModel]) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    return structural(raw, raw.get("$defs", {}))


def crd(kind: Kind) -> dict[str, Any]:
    spec = model_schema(kind.spec)
    spec["description"] = f"What the user wants of this {kind.kind}."
    status = model_schema(kind.status)
    status["description"] = "What gastown observed; a projection of the ledger and the sessions."
    schema = {
        "type": "object",
        "description": kind.description,
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": status,
        },
    }
    columns = []
    for c in kind.columns:
        col: dict[str, Any] = {"name": c.name, "type": c.type, "jsonPath": c.json_path}
        if c.priority:
            col["priority"] = c.priority
        if c.description:
            col["description"] = c.description
        columns.append(col)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": kind.crd_name,
            "labels": {"app.kubernetes.io/name": "gastown", "app.kubernetes.io/part-of": "gastown"},
        },
        "spec": {
            "group": kind.group,
            "scope": "Namespaced",
            "names": {
                "kind": kind.kind,
                "listKind": f"{kind.kind}List",
                "plural": kind.plural,
                "singular": kind.singular,
                "shortNames": [kind.short_name],
                "categories": ["gastown"],
            },
            "versions": [{
                "name": kind.version,
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "additionalPrinterColumns": columns,
                "schema": {"openAPIV3Schema": schema},
            }],
        },
    }


HEADER = "# Generated from gastown.api by `make crds`. Do not edit by hand.\n"


def render(kind: Kind) -> str:
    return HEADER + yaml.safe_dump(crd(kind), sort_keys=False, width=100)


def filename(kind: Kind) -> str:
    return f"{kind.group}_{kind.plural}.yaml"


def files() -> dict[str, str]:
    return {filename(kind): render(kind) for kind in KINDS}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m gastown.api.crdgen", description=__doc__.split("\n")[0])
    ap.add_argument("dirs", type=Path, nargs="+", metavar="DIR",
                    help="folders for the CRD files (crds/, charts/gastown/crds/)")
    ap.add_argument("--check", action="store_true", help="do not write; exit 1 when files differ")
    args = ap.parse_args(argv)
    stale = []
    for folder in args.dirs:
        for name, text in files().items():
            path = folder / name
            if path.exists() and path.read_text() == text:
                continue
            stale.append(path)
            if not args.check:
                folder.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
    if args.check and stale:
        print("out of date (run `make crds`): " + ", ".join(map(str, stale)), file=sys.stderr)
        return 1
    for p in stale:
        print(f"wrote {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
