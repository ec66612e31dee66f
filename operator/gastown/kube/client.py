"""The operator's own Kubernetes API client (kopf has its own for watching)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any, cast

from ..api import API_VERSION, GROUP, VERSION, Condition, set_condition
from ..names import MANAGED_BY
from .admission import current_conditions


@functools.cache
def api_client() -> Any:
    from kubernetes import client, config

    try:
        config.load_incluster_config()
        return client.ApiClient()
    except config.ConfigException:
        return config.new_client_from_config()


def patch_status(namespace: str, plural: str, name: str, status: dict) -> None:
    """Merge-patch the status subresource of one of gastown's objects; gone objects are ignored."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    api = client.CustomObjectsApi(api_client())
    try:
        api.patch_namespaced_custom_object_status(GROUP, VERSION, namespace, plural, name, {"status": status})
    except ApiException as e:
        if e.status != 404:
            raise


def put_status(namespace: str, plural: str, name: str, status: dict, *, last: dict[str, Any]) -> None:
    """``patch_status`` only when ``status`` differs from what was last written (``last`` remembers)."""
    if last.get(f"{plural}/{name}") != status:
        patch_status(namespace, plural, name, status)
        last[f"{plural}/{name}"] = status


def get_object(namespace: str, plural: str, name: str) -> dict | None:
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    try:
        return cast(dict, client.CustomObjectsApi(api_client()).get_namespaced_custom_object(
            GROUP, VERSION, namespace, plural, name))
    except ApiException as e:
        if e.status == 404:
            return None
        raise


CONFLICT_RETRIES = 8


def update_conditions(namespace: str, plural: str, name: str,
                      change: Callable[[list[Condition]], list[Condition]], *,
                      fields: Callable[[Mapping], dict] | None = None) -> None:
    """Rewrite the conditions of one of gastown's objects with ``change``, keeping what others wrote,
    and write the status ``fields`` that go with them (computed from the current status) in the
    same patch, so that a reader never sees a condition without its phase.

    Several writers own conditions of one object (admission, the controllers, the rig loop, the
    pod watcher) and a merge patch replaces the whole list, so each write is conditional on the
    resourceVersion it was computed from (the server answers 409 when it moved): on a conflict
    the object is read again and ``change`` applied to what is there now. Gone objects are ignored.
    """
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    api = client.CustomObjectsApi(api_client())
    for attempt in range(CONFLICT_RETRIES):
        obj = get_object(namespace, plural, name)
        if obj is None:
            return
        current = current_conditions(obj)
        wanted = change(current)
        have = obj.get("status") or {}
        more = fields(have) if fields else {}
        if wanted == current and all(have.get(k) == v for k, v in more.items()):
            return
        try:
            api.patch_namespaced_custom_object_status(GROUP, VERSION, namespace, plural, name, {
                "metadata": {"resourceVersion": obj["metadata"]["resourceVersion"]},
                "status": {**more, "conditions": [c.wire() for c in wanted]}})
            return
        except ApiException as e:
            if e.status == 404:
                return
            if e.status != 409 or attempt == CONFLICT_RETRIES - 1:
                raise


def set_conditions(namespace: str, plural: str, name: str, *conditions: Condition,
                   status: dict | Callable[[Mapping], dict] | None = None) -> None:
    """Set these conditions (and ``status`` fields: given, or computed from the current status) on
    one of gastown's objects, keeping the other conditions."""
    update_conditions(namespace, plural, name, lambda current: functools.reduce(set_condition, conditions, current),
                      fields=status if callable(status) else lambda _: status or {})


def post_event(namespace: str, kind: str, name: str, reason: str, *, message: str, type_: str = "Normal") -> None:
    """A core/v1 Event on one of gastown's objects, from the operator."""
    from datetime import UTC, datetime

    from kubernetes import client

    now = datetime.now(UTC)
    client.CoreV1Api(api_client()).create_namespaced_event(namespace, client.CoreV1Event(
        metadata=client.V1ObjectMeta(generate_name=f"{name}-", namespace=namespace),
        involved_object=client.V1ObjectReference(api_version=API_VERSION, kind=kind, name=name,
                                                 namespace=namespace),
        reason=reason, message=message[:1000], type=type_, first_timestamp=now, last_timestamp=now, count=1,
        source=client.V1EventSource(component=MANAGED_BY)))


def read_secret(namespace: str, name: str) -> dict[str, str]:
    """The decoded data of a Secret."""
    import base64

    from kubernetes import client

    secret = client.CoreV1Api(api_client()).read_namespaced_secret(name, namespace)
    return {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}
