"""Before acting: can the operator list what it watches? A missing permission is a log line that
names it, retried with backoff until it is granted (kopf would end the process on its 403)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

from ..api import GROUP, VERSION
from . import rbac
from .leader import Backoff, refusal

log = logging.getLogger("gastown.operator")

# what kopf lists and watches for gastown's handlers: the namespaced rules that grant list
WATCHED = tuple((rule.group, plural) for rule in rbac.NAMESPACED if "list" in rule.verbs for plural in rule.resources)


def _path(group: str, plural: str, namespace: str | None) -> str:
    base = f"/apis/{group}/{VERSION if group == GROUP else 'v1'}" if group else "/api/v1"
    return f"{base}/namespaces/{namespace}/{plural}" if namespace else f"{base}/{plural}"


def _checks(namespaces: tuple[str, ...]) -> Iterator[tuple[str, str, str | None]]:
    """(group, plural, namespace) to list; namespace None is every namespace. Globs (team-*) are
    left to kopf, which finds the namespaces they match."""
    exact = [ns for ns in namespaces if not any(c in ns for c in "*?[")]
    for group, plural in WATCHED:
        for ns in (exact if namespaces else [None]):
            yield group, plural, ns


def _list(path: str) -> None:
    """GET one item of a list; raises ApiException unless the API server answers 2xx."""
    from kubernetes.client.rest import ApiException

    from .client import api_client

    client = api_client()
    method, url, headers, _, _ = client.param_serialize("GET", path, query_params=[("limit", 1)],
                                                        auth_settings=["BearerToken"])
    response = client.call_api(method, url, header_params=headers, _request_timeout=(10, 30))
    response.read()
    if not 200 <= response.status < 300:
        raise ApiException(http_resp=response)


def wait_for_access(namespaces: tuple[str, ...], stopping: threading.Event) -> bool:
    """Block until every list the operator needs is allowed (True), or ``stopping`` is set (False)."""
    backoff = Backoff()
    pending = list(_checks(namespaces))
    while pending and not stopping.is_set():
        group, plural, ns = pending[0]
        try:
            _list(_path(group, plural, ns))
        except Exception as e:  # noqa: BLE001 (a 403, or no API server yet: both are retried)
            resource = f"{plural}.{group}" if group else plural
            where = f"in namespace {ns}" if ns else "in all namespaces"
            log.error("%s", refusal("list", f"{resource} {where}", e, retry=(wait := backoff()),
                                    needs=f"list and watch on {resource} {where}"))
            stopping.wait(wait)
            continue
        pending.pop(0)
        backoff.reset()
    return not pending
