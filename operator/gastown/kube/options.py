"""Operator-wide kopf settings: who we are, how we watch, how we peer."""

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
    standalone: bool = False
    priority: int = 0
    peering_name: str = "gastown"
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
    settings.peering.name = opts.peering_name
    settings.peering.priority = opts.priority
    # Peering is used when its resources exist (the Helm chart installs them), so a standby
    # operator with a lower priority waits while the active one runs.
    settings.peering.standalone = opts.standalone
    settings.peering.clusterwide = opts.clusterwide
    settings.execution.max_workers = opts.workers
