"""What the operator knows of each Rig without asking the API (kopf keeps the index from its
watch), and the lookups the other handlers make in it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kopf

from ..api import GROUP, VERSION, Invalid, RigSpec
from ..api.validation import parse_spec


@kopf.index(GROUP, VERSION, "rigs")
def rigs_by_name(namespace: str | None, name: str, spec: Mapping, **_: Any) -> dict:
    return {(namespace, name): dict(spec)}


def require_rig(rigs_by_name: kopf.Index, namespace: str, rig: str, body: kopf.Body) -> RigSpec:
    """The spec of the rig ``body`` names; until it exists: a Warning Event and a retry."""
    spec = rig_spec(rigs_by_name, namespace, rig)
    if spec is None:
        message = f"rig {rig} does not exist (yet) in {namespace}; retrying until it does"
        kopf.warn(body, reason="RigNotFound", message=message)
        raise kopf.TemporaryError(message, delay=10)
    return spec


def rig_spec(rigs_by_name: kopf.Index, namespace: str, rig: str) -> RigSpec | None:
    for spec in rigs_by_name.get((namespace, rig), []):
        try:
            return parse_spec(RigSpec, spec)
        except Invalid:
            return None
    return None
