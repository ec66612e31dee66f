"""Operator-wide kopf settings: who we are, how we watch; which Lease elects the acting replica."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..api import GROUP
from ..names import MANAGED_BY

if TYPE_CHECKING:
    import kopf


@dataclass(frozen=True)
class OperatorOptions:
    namespaces: tuple[str, ...] = ()
    all_namespaces: bool = False
    standalone: bool = False  # no leader election: act at once (one replica only)
    lease_name: str = "gastown"
    lease_namespace: str | None = None  # None: the pod's own ($POD_NAMESPACE), see leader.own_namespace
    lease_seconds: int = 10
    liveness: str | None = "http://0.0.0.0:8080/healthz"
    metrics_port: int = 9090  # 0: no metrics endpoint
    server_timeout: int = 270
    client_timeout: int = 300
    connect_timeout: int = 10
    workers: int = 16

    @property
    def clusterwide(self) -> bool:
        return self.all_namespaces or not self.namespaces


FINALIZER = f"{GROUP}/finalizer"


def configure(settings: kopf.OperatorSettings, opts: OperatorOptions, instance: str) -> None:
    """Apply ``opts`` to kopf's settings (called from the startup handler)."""
    import kopf  # here, so that `gt` commands that are not the operator start fast

    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration", ignored_fields=["status"])
    settings.posting.reporting_component = MANAGED_BY
    settings.posting.reporting_instance = instance  # Settings.pod_name
    settings.posting.level = 20  # INFO and above become Events
    # The API server ends each watch after server_timeout; the client gives up a bit later,
    # so a silently dropped connection (a load balancer, a NAT) is noticed and re-opened.
    settings.watching.server_timeout = opts.server_timeout
    settings.watching.client_timeout = opts.client_timeout
    settings.watching.connect_timeout = opts.connect_timeout
    settings.networking.connect_timeout = opts.connect_timeout
    # The Lease (kube/leader.py) decides which replica runs kopf at all. kopf's own peering would
    # also switch itself on where an older release left its kopf.dev CRDs, and then pause every
    # replica for as long as a crashed process's record stays fresh: it is always off.
    settings.peering.standalone = True
    settings.peering.mandatory = False
    settings.execution.max_workers = opts.workers
