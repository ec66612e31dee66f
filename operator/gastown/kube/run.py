"""Start the operator: kopf with gastown's handlers and settings."""

from __future__ import annotations

import importlib

import kopf

from ..settings import Settings
from .options import OperatorOptions

# kopf runs an object's handlers in the order they were registered: a Polecat's identity (its
# agent bead) and a Convoy's plan come before their admission's status, and a Rig's admission
# before its reconciliation.
HANDLERS = ("polecat_handlers", "convoy_handlers", "mergequeue_handlers", "rigloop_daemon", "startup",
            "admission_handlers", "rig_handlers")


def run(opts: OperatorOptions, settings: Settings, verbose: bool = False) -> None:
    for module in HANDLERS:  # importing a module registers its handlers
        importlib.import_module(f"{__package__}.{module}")

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
