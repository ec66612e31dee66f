"""Leader election on a coordination.k8s.io/v1 Lease: one replica acts, the others wait.

The Lease names its holder (``holderIdentity``: the pod's name) and when it last renewed it.
Every write is an update carrying the resourceVersion last read (compare-and-swap): of two
replicas that try at once, the API server lets one through and answers 409 to the other.

- A standby reads the Lease every ``retry`` seconds. It takes it when nobody holds it (a leader
  that stopped cleanly released it), when the holder is itself (the same pod's previous
  container: it is dead, since its container was restarted), or when the Lease has not changed
  for ``lease_seconds`` as measured on its own clock (so the replicas' clocks need not agree).
- The leader renews every ``retry`` seconds. When it could not renew for ``renew_deadline``
  (two thirds of the lease), or finds that someone else wrote the Lease, it stops acting at once
  (``on_lost``: the operator exits, to come back as a standby) before any standby may take over.
- A clean stop releases the Lease: it deletes it (if nobody wrote it since: a resourceVersion
  precondition), as client-go's ReleaseOnCancel clears its holder. A standby finds no Lease and
  creates it within ``retry``; the last replica to stop (an uninstall) leaves no Lease behind.

Calls run on this module's own threads, never on kopf's executor or event loop, so busy
handlers cannot delay a renewal.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .. import trouble

log = logging.getLogger("gastown.leader")

IN_CLUSTER_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def own_namespace(given: str | None) -> str:
    """Where the Lease lives: ``given`` (the flag, or $POD_NAMESPACE from the downward API), else the
    pod's own namespace, else the kubeconfig context's, else ``default``."""
    if given:
        return given
    try:
        return IN_CLUSTER_NAMESPACE.read_text().strip() or "default"
    except OSError:
        pass
    try:
        from kubernetes import config

        _, current = config.list_kube_config_contexts()
        return (current or {}).get("context", {}).get("namespace") or "default"
    except Exception:  # noqa: BLE001 (no kubeconfig: the client says so on its first call)
        return "default"


def refusal(verb: str, what: str, error: Exception, *, retry: float, needs: str) -> str:
    """The log line for an API call that failed: a 403 names the permission that is missing."""
    status = getattr(error, "status", None)
    if status == 403:
        return (f"forbidden: the operator may not {verb} {what}; its ServiceAccount needs {needs} "
                f"(the chart's RBAC grants it). Retrying in {retry:.0f}s. The API server said: "
                f"{_reason(error)}")
    return f"cannot {verb} {what}: {_reason(error)}. Retrying in {retry:.0f}s"


def _reason(error: Exception) -> str:
    import json

    body = getattr(error, "body", None)
    if body:
        try:
            return json.loads(body).get("message") or str(body)
        except (ValueError, AttributeError):
            return str(body)
    return str(getattr(error, "reason", None) or error).splitlines()[0]


class Backoff:
    """Failed attempts in a row, waited out by the engine's rule (trouble.Backoff): 1, 2, 4 ...
    up to ``cap`` seconds; back to 1 after a success."""

    def __init__(self, cap: float = 30.0):
        self.rule, self.failed = trouble.Backoff(base=1.0, cap=cap), 0

    def __call__(self) -> float:
        self.failed += 1
        return self.rule.delay(self.failed)

    def reset(self) -> None:
        self.failed = 0


def _now() -> datetime:
    return datetime.now(UTC)


class Elector:
    """Takes and keeps the Lease ``namespace/name`` for ``identity``; see the module's text."""

    def __init__(self, name: str, namespace: str, identity: str, *, lease_seconds: float = 10.0,
                 on_lost: Callable[[str], None] | None = None, api: Any = None):
        self.name, self.namespace, self.identity = name, namespace, identity
        self.lease_seconds = lease_seconds
        self.renew_deadline = lease_seconds * 2 / 3
        self.retry = max(lease_seconds / 10, 0.2)
        self.on_lost = on_lost or (lambda why: None)
        self._api = api
        self.leading = threading.Event()
        self.stopping = threading.Event()
        self.lease: Any = None  # the V1Lease last written or read by this replica
        self.holder: str | None = None  # who holds it, as last seen
        self.problem: str | None = "not connected to the API server yet"
        self.reached_at: float | None = None  # monotonic time of the last answer from the API server
        self.renewed_at = 0.0  # monotonic time the last successful renewal was sent
        self._observed: tuple[str | None, float] = (None, 0.0)  # (resourceVersion, when first seen)
        self._sent: datetime | None = None  # the renewTime of our last write
        self._threads: list[threading.Thread] = []

    @property
    def what(self) -> str:
        return f"Lease {self.namespace}/{self.name}"

    # --- the API -------------------------------------------------------------------------

    def api(self) -> Any:
        if self._api is None:
            from kubernetes import client

            from .client import api_client

            self._api = client.CoordinationV1Api(api_client())
        return self._api

    def _timeout(self) -> tuple[float, float]:
        return (max(self.retry, 1.0), max(self.retry, 1.0))

    def _read(self) -> Any:
        from kubernetes.client.rest import ApiException

        try:
            return self.api().read_namespaced_lease(self.name, self.namespace, _request_timeout=self._timeout())
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    def _write(self, lease: Any, *, acquire: bool) -> Any:
        """Create the Lease (``lease`` None) or update it with our hold, conditional on its resourceVersion."""
        from kubernetes import client

        now = _now()
        self._sent = now
        if lease is None:
            body = client.V1Lease(metadata=client.V1ObjectMeta(name=self.name, namespace=self.namespace),
                                  spec=client.V1LeaseSpec(holder_identity=self.identity, acquire_time=now,
                                                          renew_time=now, lease_transitions=0,
                                                          lease_duration_seconds=round(self.lease_seconds)))
            return self.api().create_namespaced_lease(self.namespace, body, _request_timeout=self._timeout())
        spec = lease.spec or client.V1LeaseSpec()
        if acquire:
            if spec.holder_identity != self.identity:
                spec.lease_transitions = (spec.lease_transitions or 0) + 1
            spec.acquire_time = now
        spec.holder_identity, spec.renew_time = self.identity, now
        spec.lease_duration_seconds = round(self.lease_seconds)
        lease.spec = spec  # lease.metadata keeps the resourceVersion read: the server refuses a stale one
        return self.api().replace_namespaced_lease(self.name, self.namespace, lease, _request_timeout=self._timeout())

    def _reached(self) -> None:
        self.reached_at = time.monotonic()

    # --- standing by ---------------------------------------------------------------------

    def _expired(self, lease: Any) -> bool:
        rv = lease.metadata.resource_version
        now = time.monotonic()
        if rv != self._observed[0]:
            self._observed = (rv, now)
        duration = (lease.spec.lease_duration_seconds if lease.spec else None) or self.lease_seconds
        return now - self._observed[1] >= duration

    def try_acquire(self) -> bool:
        """One attempt: True when this replica now holds the Lease."""
        from kubernetes.client.rest import ApiException

        lease = self._read()
        self._reached()
        holder = lease.spec.holder_identity if lease is not None and lease.spec else None
        if lease is not None and holder and holder != self.identity and not self._expired(lease):
            if holder != self.holder:
                log.info("standing by: the %s is held by %s", self.what, holder)
            self.holder, self.problem = holder, None
            return False
        sent = time.monotonic()
        try:
            self.lease = self._write(lease, acquire=True)
        except ApiException as e:
            if e.status in (409, 404):  # another replica was quicker (or the Lease went away): read again
                self._observed = (None, 0.0)
                return False
            raise
        self.renewed_at = sent
        self.holder, self.problem = self.identity, None
        log.info("leading: took the %s%s", self.what, f" from {holder}" if holder and holder != self.identity else "")
        return True

    def _acquire(self) -> None:
        backoff = Backoff()
        while not self.stopping.is_set():
            try:
                if self.try_acquire():
                    self.leading.set()
                    return
                backoff.reset()
                wait = self.retry
            except Exception as e:  # noqa: BLE001 (every failure is retried; the log says which)
                wait = backoff()
                self.problem = refusal("get, create or update", f"the {self.what}", e, retry=wait,
                                       needs=f"get, create and update on leases.coordination.k8s.io in namespace "
                                       f"{self.namespace}")
                log.error("%s", self.problem)
            self.stopping.wait(wait)

    # --- leading -------------------------------------------------------------------------

    def renew(self) -> None:
        """One renewal; raises when the API server did not take it. Losing the Lease calls ``lose``."""
        from kubernetes.client.rest import ApiException

        sent = time.monotonic()
        try:
            self.lease = self._write(self.lease, acquire=False)
        except ApiException as e:
            if e.status not in (409, 404):
                raise
            current = self._read()  # our last write may have landed with its answer lost: is it ours?
            spec = current.spec if current is not None else None
            if spec is None or spec.holder_identity != self.identity or spec.renew_time != self._sent:
                who = spec.holder_identity if spec is not None else None
                self.lose(f"the {self.what} was written by someone else (now held by {who or 'nobody'}); "
                          f"two replicas with one identity ({self.identity}) would do this: each needs its own "
                          f"POD_NAME" if who == self.identity else
                          f"the {self.what} was taken over by {who or 'nobody'}")
                return
            self.lease = current
            return self.renew()
        self._reached()
        self.renewed_at, self.problem = sent, None

    def _keep(self) -> None:
        while not self.stopping.wait(self.retry) and self.leading.is_set():
            try:
                self.renew()
            except Exception as e:  # noqa: BLE001 (the watchdog ends the leadership at the deadline)
                self.problem = refusal("renew", f"the {self.what}", e, retry=self.retry,
                                       needs=f"update on leases.coordination.k8s.io in namespace {self.namespace}")
                log.warning("%s", self.problem)

    def _watchdog(self) -> None:
        while not self.stopping.wait(min(self.retry / 2, 0.5)):
            if self.leading.is_set() and time.monotonic() - self.renewed_at > self.renew_deadline:
                self.lose(f"could not renew the {self.what} for {self.renew_deadline:.1f}s "
                          f"({self.problem or 'no answer'})")

    def lose(self, why: str) -> None:
        if not self.leading.is_set():
            return
        self.leading.clear()
        self.holder = None
        self.problem = f"lost the Lease: {why}"
        log.error("stopping: %s; another replica may take over now", why)
        self.on_lost(why)

    # --- the whole life ------------------------------------------------------------------

    def start(self) -> None:
        def life() -> None:
            self._acquire()
            if self.leading.is_set():
                self._keep()

        for target, name in ((life, "lease"), (self._watchdog, "lease-watchdog")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def wait_leading(self, timeout: float | None = None) -> bool:
        """Block until this replica leads (True) or the elector stops (False)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.leading.wait(0.1):
            if self.stopping.is_set() or (deadline is not None and time.monotonic() > deadline):
                return False
        return True

    def release(self) -> None:
        """Stop, and give the Lease up if this replica holds it: a standby takes over at once."""
        self.stopping.set()
        for thread in self._threads:
            thread.join(5)
        if not self.leading.is_set():
            return
        self.leading.clear()
        from kubernetes import client
        from kubernetes.client.rest import ApiException

        lease = self.lease
        try:
            for _ in range(2):  # a renewal whose answer came late moved it on: read it once again
                if lease is None or lease.spec is None or lease.spec.holder_identity != self.identity:
                    return  # someone else's now
                try:  # only as last read (a precondition): a Lease someone else took stays theirs
                    self.api().delete_namespaced_lease(
                        self.name, self.namespace, _request_timeout=self._timeout(),
                        body=client.V1DeleteOptions(preconditions=client.V1Preconditions(
                            resource_version=lease.metadata.resource_version)))
                    log.info("released the %s (deleted it: a standby creates it anew)", self.what)
                    return
                except ApiException as e:
                    if e.status != 409:
                        raise
                lease = self._read()
            raise RuntimeError("it kept changing")
        except Exception as e:  # noqa: BLE001 (it expires on its own; the standby waits that out)
            log.warning("could not release the %s (%s): a standby takes over when it expires", self.what, _reason(e))

    def readiness(self) -> tuple[bool, str]:
        """Ready: the API server answered lately, and this replica leads with a fresh Lease, or
        stands by while a live leader holds it."""
        now = time.monotonic()
        if self.reached_at is None or now - self.reached_at > self.lease_seconds:
            return False, self.problem or "the API server has not answered lately"
        if self.leading.is_set():
            if now - self.renewed_at > self.retry * 3:
                return False, self.problem or "the Lease was not renewed lately"
            return True, f"leader: holds the {self.what}"
        if self.holder and self.holder != self.identity and not self.problem:
            return True, f"standby: {self.holder} holds the {self.what}"
        return False, self.problem or f"no live leader holds the {self.what}"
