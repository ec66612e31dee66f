"""The admission handlers: every gastown kind, judged on create, update and resume; its Invalid and
Ready conditions and a Warning Event when the spec is not valid."""

from __future__ import annotations

import kopf

from ..api import KINDS, Kind
from .admission import judge
from .client import update_conditions


def _admit(kind: Kind):
    def admit(name: str, namespace: str, body: kopf.Body, **_) -> None:
        verdict = judge(kind, body)
        update_conditions(namespace, kind.plural, name, verdict.conditions, fields=verdict.status)
        if verdict.warning:
            kopf.warn(body, reason="InvalidSpec", message=verdict.warning)

    admit.__name__ = f"admit_{kind.singular}"
    return admit


for _kind in KINDS:
    _handler = _admit(_kind)
    for _on in (kopf.on.create, kopf.on.update, kopf.on.resume):
        _on(_kind.group, _kind.version, _kind.plural, id="admit")(_handler)
