"""Start the operator: kopf with gastown's handlers and settings."""

from __future__ import annotations

import kopf

from ..settings import Settings
from .settings import OperatorOptions


def run(opts: OperatorOptions, settings: Settings, verbose: bool = False) -> None:
    from . import convoys, dispatch, handlers, mergequeues, rigs, sessions  # noqa: F401  (registers the handlers)

    kopf.configure(verbose=verbose)
    if opts.metrics_port:
        from ..telemetry.metrics import serve

        serve(opts.metrics_port)
    # The peering name is set in the startup handler: given to kopf.run, it would make
    # peering mandatory and pause every watch on clusters without kopf's peering CRDs.
    kopf.run(
        clusterwide=opts.clusterwide,
        namespaces=() if opts.clusterwide else opts.namespaces,
        standalone=opts.standalone,
        priority=opts.priority,
        liveness_endpoint=opts.liveness or None,
        memo=kopf.Memo(options=opts, settings=settings),
    )
