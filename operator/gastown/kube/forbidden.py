"""A permission that goes while the operator runs (a ClusterRole edited, a binding deleted).

kopf retries a refused request a few times and then gives up, which ends the operator when the
request was a watch. Here kopf retries every failed request for ever, waiting by the engine's
backoff rule (trouble.Backoff through leader.Backoff: 1 s doubling to 30 s), and each refusal
is logged as a line that names what the operator may not do and the permission it needs, in
the words the start-up check uses (access.py). A Rig whose reconciliation is refused says so
in its conditions and an Event (rig_handlers).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from urllib.parse import urlsplit

from .leader import Backoff, _reason, refusal

VERBS = {"GET": "get", "POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
ATTEMPT = re.compile(r"Request attempt #(\d+)(?:/\d+)? failed; will retry: (\w+) (\S+) -> APIForbiddenError\((.*)\)$",
                     re.DOTALL)


class Forever:
    """kopf's ``networking.error_backoffs``: endless, a fresh sequence for each request."""

    def __iter__(self) -> Iterator[float]:
        backoff = Backoff()
        while True:
            yield backoff()


def rbac_request(method: str, url: str) -> tuple[str, str, str | None]:
    """(verb, resource as RBAC names it, namespace or None) of a request to the API server."""
    parts = urlsplit(url)
    path = [p for p in parts.path.split("/") if p]
    group, rest = ("", path[2:]) if path[:1] == ["api"] else (path[1] if len(path) > 1 else "", path[3:])
    namespace = None
    if rest[:1] == ["namespaces"] and len(rest) > 2:
        namespace, rest = rest[1], rest[2:]
    plural, name, sub = (rest + [None, None, None])[:3]
    verb = VERBS.get(method.upper(), method.lower())
    if verb == "get" and name is None:
        verb = "watch" if "watch=true" in parts.query else "list"
    resource = f"{plural}/{sub}" if sub else str(plural)
    return verb, f"{resource}.{group}" if group else resource, namespace


def forbidden_line(message: str) -> str | None:
    """kopf's line for a refused request it will retry, said as the operator says a 403; None for others."""
    found = ATTEMPT.search(message)
    if not found:
        return None
    attempt, method, url, said = found.groups()
    verb, resource, namespace = rbac_request(method, url)
    where = f"in namespace {namespace}" if namespace else "in all namespaces"
    error = type("Refused", (Exception,), {"status": 403})(said)
    return refusal(verb, f"{resource} {where}", error, retry=retry_in(int(attempt)),
                   needs=f"{verb} on {resource} {where}")


def retry_in(attempt: int) -> float:
    """Seconds before trying again after ``attempt`` failed attempts in a row (1, 2, 4 ... 30)."""
    backoff = Backoff()
    for _ in range(attempt - 1):
        backoff()
    return backoff()


def refused(error: Exception) -> str:
    """A 403's reason, as the API server gives it (it names the verb, the resource, the namespace)."""
    return f"forbidden: {_reason(error)}."


class _Translate(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        line = forbidden_line(record.getMessage())
        if line is not None:
            record.msg, record.args = line, ()
        return True


def install(settings: object) -> None:
    """Retry every refused request for ever (kopf's settings), and say what a refusal misses."""
    settings.networking.error_backoffs = Forever()  # type: ignore[attr-defined]
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, _Translate) for f in handler.filters):
            handler.addFilter(_Translate())
