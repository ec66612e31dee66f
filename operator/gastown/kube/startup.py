"""The operator's start-up and clean-up: kopf's settings, the rig ledgers in kopf's memo."""

from __future__ import annotations

import logging

import kopf

from ..budget import SharedLimits
from ..scheduler import SharedBackoffs
from .forbidden import install as retry_refusals
from .ledgers import RigLedgers
from .memo import settings as gastown_settings
from .memo import share
from .options import OperatorOptions, configure

log = logging.getLogger("gastown.operator")


@kopf.on.cleanup()
def cleanup(memo: kopf.Memo, **_) -> None:
    if "ledgers" in memo:
        memo["ledgers"].close()


@kopf.on.startup()
def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_) -> None:
    opts = memo.get("options") or OperatorOptions()
    configure(settings, opts, gastown_settings(memo).pod_name)
    retry_refusals(settings)  # a permission revoked while running: a clear line and a retry, never an exit
    memo["ledgers"] = RigLedgers(gastown_settings(memo).cache_dir)
    memo["backoffs"] = SharedBackoffs()  # one per operator: every rig loop sees the same
    memo["shared"] = SharedLimits(gastown_settings(memo).limits())  # the town's budget and shared limits
    share(memo)  # the rig loops' threads and rests
    log.info("gastown operator starting (%s)",
             "all namespaces" if opts.clusterwide else "namespaces " + ",".join(opts.namespaces))
