"""The operator's own Kubernetes API client (kopf has its own for watching)."""

from __future__ import annotations

import functools
from typing import Any


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

    from ..api import GROUP, VERSION

    api = client.CustomObjectsApi(api_client())
    try:
        api.patch_namespaced_custom_object_status(GROUP, VERSION, namespace, plural, name, {"status": status})
    except ApiException as e:
        if e.status != 404:
            raise
