"""kopf handlers. Thin: read the object, ask the engine, carry out what it says."""

from __future__ import annotations

import logging

import kopf

from ..api import KINDS, Kind
from ..scheduler import SharedBackoffs
from .admission import judge
from .client import update_conditions
from .ledgers import RigLedgers
from .sessions import settings as gastown_settings
from .settings import OperatorOptions, configure

log = logging.getLogger("gastown.operator")


@kopf.on.cleanup()
def cleanup(memo: kopf.Memo, **_) -> None:
    if "ledgers" in memo:
        memo["ledgers"].close()


@kopf.on.startup()
def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_) -> None:
    opts = memo.get("options") or OperatorOptions()
    configure(settings, opts, gastown_settings(memo).pod_name)
    memo["ledgers"] = RigLedgers(gastown_settings(memo).cache_dir)
    memo["backoffs"] = SharedBackoffs()  # one per operator: every rig loop sees the same
    log.info("gastown operator starting (%s)",
             "all namespaces" if opts.clusterwide else "namespaces " + ",".join(opts.namespaces))


def _admit(kind: Kind):
    def admit(name: str, namespace: str, body: kopf.Body, **_) -> None:
        verdict = judge(kind, body)
        update_conditions(namespace, kind.plural, name, verdict.conditions, verdict.status)
        if verdict.warning:
            kopf.warn(body, reason="InvalidSpec", message=verdict.warning)

    admit.__name__ = f"admit_{kind.singular}"
    return admit


for _kind in KINDS:
    _handler = _admit(_kind)
    for _on in (kopf.on.create, kopf.on.update, kopf.on.resume):
        _on(_kind.group, _kind.version, _kind.plural, id="admit")(_handler)
