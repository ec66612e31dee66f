"""Create-or-update for the plain objects the operator owns, over the REST API."""

from __future__ import annotations

import json
from typing import Any

from ..api import API_VERSION
from .client import api_client

PLURALS = {
    ("v1", "ServiceAccount"): "serviceaccounts",
    ("v1", "ResourceQuota"): "resourcequotas",
    ("v1", "ConfigMap"): "configmaps",
    ("rbac.authorization.k8s.io/v1", "Role"): "roles",
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): "rolebindings",
    ("networking.k8s.io/v1", "NetworkPolicy"): "networkpolicies",
    ("batch/v1", "Job"): "jobs",
    ("batch/v1", "CronJob"): "cronjobs",
    (API_VERSION, "Polecat"): "polecats",
}


def path(obj: dict, named: bool = False) -> str:
    api_version, kind = obj["apiVersion"], obj["kind"]
    base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    out = f"{base}/namespaces/{obj['metadata']['namespace']}/{PLURALS[(api_version, kind)]}"
    return f"{out}/{obj['metadata']['name']}" if named else out


def _call(method: str, url: str, body: Any = None, content_type: str = "application/json", *,
          timeout: tuple[float, float] | None = None, missing_ok: bool = False) -> Any:
    """One REST call; ``timeout``: seconds to connect and to read; ``missing_ok``: a 404 is None."""
    from kubernetes.client.rest import ApiException

    client = api_client()
    headers = {"Content-Type": content_type, "Accept": "application/json"}
    method, full, headers, data, post = client.param_serialize(method, url, header_params=headers, body=body,
                                                               auth_settings=["BearerToken"])
    resp = client.call_api(method, full, header_params=headers, body=data, post_params=post, _request_timeout=timeout)
    raw = resp.read()
    if resp.status == 404 and missing_ok:
        return None
    if not 200 <= resp.status < 300:
        raise ApiException(status=resp.status, reason=resp.reason, http_resp=resp)
    return json.loads(raw) if raw else None


def create(obj: dict) -> bool:
    """Create ``obj`` unless an object of its name is there; False when one was."""
    from kubernetes.client.rest import ApiException

    try:
        _call("POST", path(obj), obj)
        return True
    except ApiException as e:
        if e.status != 409:
            raise
    return False


def ensure(obj: dict) -> str:
    """Create ``obj``, or bring the existing one in line with it. Returns created|updated."""
    if create(obj):
        return "created"
    _call("PATCH", path(obj, named=True), obj, "application/merge-patch+json")
    return "updated"


def remove(obj: dict) -> bool:
    """Delete ``obj`` (its name and kind are enough); False when it was not there."""
    from kubernetes.client.rest import ApiException

    try:
        _call("DELETE", path(obj, named=True), {"propagationPolicy": "Background"})
        return True
    except ApiException as e:
        if e.status != 404:
            raise
    return False
