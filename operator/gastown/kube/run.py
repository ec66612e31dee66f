"""Start the operator: wait for the permissions, win the leader Lease, then run kopf with gastown's
handlers and settings. The probes are served from the first moment, a standby's too."""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import signal
import sys
import threading

import kopf

from ..ledger import stop_git
from ..settings import Settings
from ..telemetry import tracing
from .access import wait_for_access
from .health import HealthServer
from .leader import Elector, own_namespace
from .options import OperatorOptions

log = logging.getLogger("gastown.operator")

# kopf runs an object's handlers in the order they were registered: a Polecat's identity (its
# agent bead) and a Convoy's plan come before their admission's status, and a Rig's admission
# before its reconciliation.
HANDLERS = ("polecat_handlers", "convoy_handlers", "mergequeue_handlers", "rigloop_daemon", "startup",
            "admission_handlers", "rig_handlers")

LOST_LEASE_EXIT = 3  # the exit status of a leader that lost its Lease (it restarts as a standby)


def run(opts: OperatorOptions, settings: Settings, verbose: bool = False) -> None:
    for module in HANDLERS:  # importing a module registers its handlers
        importlib.import_module(f"{__package__}.{module}")

    kopf.configure(verbose=verbose)
    if tracing.setup("gastown-operator"):  # OTEL_EXPORTER_OTLP_ENDPOINT set: spans go out over OTLP/HTTP
        tracing.log_ids()  # records carry trace_id and span_id
    if opts.metrics_port:
        from ..telemetry.metrics import serve

        serve(opts.metrics_port)
    asyncio.run(_operate(opts, settings))


def _stop_acting(why: str) -> None:
    """A leader that lost its Lease stops at once, whatever its handlers are doing: another
    replica may take over as soon as the Lease expires."""
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stderr.flush()
    os._exit(LOST_LEASE_EXIT)


async def _stop_on_signals(kopf_ready: asyncio.Event, stop: asyncio.Event) -> None:
    """Once kopf runs (its own handlers of SIGINT and SIGTERM are in place by then), a signal stops
    it through ``stop`` after ending the git commands under way (``stop_git``): a rig loop's tick
    or a handler in the middle of a fetch ends at once, and kopf's waits for its daemons and
    handlers end well within the pod's termination grace period."""
    await kopf_ready.wait()
    loop = asyncio.get_running_loop()

    def requested(sig: signal.Signals) -> None:
        log.info("%s: stopping (ending the git commands under way)", sig.name)
        stop_git()
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, requested, sig)


async def _operate(opts: OperatorOptions, settings: Settings) -> None:
    loop = asyncio.get_running_loop()
    elector = None if opts.standalone else Elector(
        opts.lease_name, own_namespace(opts.lease_namespace or settings.pod_namespace), settings.pod_name,
        lease_seconds=opts.lease_seconds, on_lost=_stop_acting)
    stopping = elector.stopping if elector else threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    access = threading.Event()
    kopf_ready = asyncio.Event()

    def ready() -> tuple[bool, str]:
        if not access.is_set():
            return False, "waiting for the API server, and for leave to list what the operator watches"
        why = "running standalone"
        if elector is not None:
            ok, why = elector.readiness()
            if not ok or not elector.leading.is_set():
                return ok, why
        return (True, why) if kopf_ready.is_set() else (False, "starting: kopf's start-up handlers run")

    health = HealthServer(opts.liveness, ready) if opts.liveness else None
    if health is not None:
        await health.start()
    try:
        if not await loop.run_in_executor(None, wait_for_access, () if opts.clusterwide else opts.namespaces,
                                          stopping):
            return
        access.set()
        if elector is not None:
            elector.start()
            if not await loop.run_in_executor(None, elector.wait_leading):
                return
        stop = asyncio.Event()
        signals = asyncio.create_task(_stop_on_signals(kopf_ready, stop))
        try:
            await kopf.operator(
                clusterwide=opts.clusterwide,
                namespaces=() if opts.clusterwide else opts.namespaces,
                standalone=True,
                ready_flag=kopf_ready,
                stop_flag=stop,
                memo=kopf.Memo(options=opts, settings=settings),
            )
        finally:
            signals.cancel()
    finally:
        if elector is not None:
            await loop.run_in_executor(None, elector.release)  # after kopf stopped acting
        if health is not None:
            await health.stop()
