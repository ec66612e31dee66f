"""The logs of gastown's pods through the API: a polecat's session, a verification run (`gt peek`).

Read with the caller's own credentials (a user's kubeconfig): `get` and `list` on pods and
`get` on pods/log in the rig's namespace, what `kubectl logs` needs too.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..names import APP_COMPONENT, POLECAT_LABEL, RIG_LABEL, VERIFICATION_LABEL
from ..runtimes.kubernetes import COMPONENT, VERIFICATION


class NoPod(LookupError):
    """No pod holds what was asked for (the message says what was looked for)."""


def _core(api_client: Any) -> Any:
    from kubernetes import client

    return client.CoreV1Api(api_client)


def _newest(pods: list[Any]) -> Any:
    return max(pods, key=lambda p: (p.metadata.creation_timestamp or "", p.metadata.name))


def session_pod(api_client: Any, namespace: str, polecat: str, rig: str | None = None) -> Any:
    """The pod of the polecat's newest session."""
    selector = f"{APP_COMPONENT}={COMPONENT},{POLECAT_LABEL}={polecat}" + (f",{RIG_LABEL}={rig}" if rig else "")
    pods = _core(api_client).list_namespaced_pod(namespace, label_selector=selector).items
    if not pods:
        raise NoPod(f"no session pod of polecat {polecat!r} in namespace {namespace}"
                    + (f" (rig {rig})" if rig else "") + ": it has no session now, or its pod is gone")
    return _newest(pods)


def verification_pod(api_client: Any, namespace: str, run: str) -> Any:
    """The pod of the verification run ``run`` (its ID, with or without the ``-ATTEMPT`` suffix)."""
    pods = _core(api_client).list_namespaced_pod(namespace, label_selector=f"{APP_COMPONENT}={VERIFICATION}").items
    found = [p for p in pods if (label := (p.metadata.labels or {}).get(VERIFICATION_LABEL, ""))
             and (label == run or label.rsplit("-", 1)[0] == run)]
    if not found:
        raise NoPod(f"no verification pod of run {run!r} in namespace {namespace}")
    return _newest(found)


def read(api_client: Any, pod: Any, tail: int | None = None) -> str:
    kwargs = {"tail_lines": tail} if tail else {}
    return _core(api_client).read_namespaced_pod_log(pod.metadata.name, pod.metadata.namespace, **kwargs)


def follow(api_client: Any, pod: Any) -> Iterator[str]:
    """The pod's log as it is written, until its container ends."""
    from kubernetes import watch

    yield from watch.Watch().stream(_core(api_client).read_namespaced_pod_log, pod.metadata.name,
                                    pod.metadata.namespace, follow=True)
