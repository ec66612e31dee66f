"""Heartbeats: a session says it is alive, so a watchdog can tell hung from busy.

``file:PATH`` writes the time into a file (local mode); ``lease:NAMESPACE/NAME`` renews a
coordination.k8s.io Lease (in a pod, with the pod's service account).
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from pathlib import Path


class Heartbeat:
    def __init__(self, target: str | None, holder: str, interval: float = 10.0,
                 labels: dict[str, str] | None = None):
        self.target, self.holder, self.interval = target, holder, interval
        self.labels = labels or {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.beats = 0
        self.last_error: str | None = None

    def beat(self) -> None:
        if not self.target:
            return
        kind, _, where = self.target.partition(":")
        if kind == "file":
            path = Path(where)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(datetime.now(UTC).isoformat() + "\n")
            tmp.replace(path)
        elif kind == "lease":
            renew_lease(where, self.holder, int(self.interval * 3), self.labels)
        else:
            raise ValueError(f"unknown heartbeat target {self.target!r}: use file:PATH or lease:NS/NAME")
        self.beats += 1

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.beat()
                self.last_error = None
            except Exception as e:  # noqa: BLE001 (a missed beat must not kill the session)
                self.last_error = str(e)

    def __enter__(self) -> Heartbeat:
        self.beat()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(5)


def file_age(path: Path) -> float | None:
    """Seconds since the file heartbeat was written, None when it never was."""
    try:
        return time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return None


def renew_lease(where: str, holder: str, duration: int, labels: dict[str, str]) -> None:
    from kubernetes import client, config
    from kubernetes.client.rest import ApiException

    namespace, _, name = where.partition("/")
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    api = client.CoordinationV1Api()
    now = datetime.now(UTC)
    spec = client.V1LeaseSpec(holder_identity=holder, lease_duration_seconds=duration, renew_time=now)
    try:
        lease = api.read_namespaced_lease(name, namespace)
    except ApiException as e:
        if e.status != 404:
            raise
        spec.acquire_time = now
        api.create_namespaced_lease(namespace, client.V1Lease(
            metadata=client.V1ObjectMeta(name=name, labels={"app.kubernetes.io/managed-by": "gastown",
                                                            "app.kubernetes.io/component": "heartbeat",
                                                            **labels}),
            spec=spec))
        return
    lease.spec = lease.spec or spec  # (a Lease made without a spec gets ours)
    lease.spec.holder_identity, lease.spec.renew_time = holder, now
    lease.spec.lease_duration_seconds = duration
    api.replace_namespaced_lease(name, namespace, lease)
