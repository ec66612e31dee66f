"""The rigs of a cluster for the operator's dashboard: the Rig objects, read through the API, each
with a ledger of the dashboard's own (its cache beside the operator's, the rig's git credentials).

An operator that watches some namespaces (`--namespace`, the chart's watchNamespaces) has a Role in
each and no right to list Rigs cluster-wide: its dashboard lists them namespace by namespace (a glob
like team-* is matched against the namespaces, which the operator may always list)."""

from __future__ import annotations

import fnmatch
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from ..api import GROUP, VERSION, Invalid, RigSpec
from ..api.validation import parse_spec
from ..kube.client import api_client
from ..kube.ledgers import RigLedgers
from ..refinery import QueueSettings
from .sources import RigView

TOKEN_FILE = Path("/etc/gastown/dashboard/token")  # a Secret mounted there turns actions on
log = logging.getLogger("gastown.dashboard")
LIST_EVERY = 10.0  # seconds between listings of the Rig objects


def cluster_rigs(cache_dir: Path, namespaces: tuple[str, ...] = ()) -> Callable[[], dict[str, RigView]]:
    """NAMESPACE/NAME -> the rig, from the Rig objects of ``namespaces`` (names or globs, as the
    operator's --namespace; none: every namespace)."""
    from kubernetes import client

    ledgers = RigLedgers(cache_dir / "dashboard")
    listed: list[float | dict[str, RigView]] = [0.0, {}]

    def objects() -> list[dict]:
        api = client.CustomObjectsApi(api_client())
        if not namespaces:
            return cast(dict, api.list_cluster_custom_object(GROUP, VERSION, "rigs")).get("items", [])
        found: list[dict] = []
        for ns in watched(namespaces, client.CoreV1Api(api_client())):
            try:
                found += cast(dict, api.list_namespaced_custom_object(GROUP, VERSION, ns, "rigs")).get("items", [])
            except client.ApiException as e:  # one namespace's Role missing: the others are still shown
                log.warning("dashboard: cannot list the Rigs of namespace %s: %s %s", ns, e.status, e.reason)
        return found

    def rigs() -> dict[str, RigView]:
        if time.monotonic() - listed[0] < LIST_EVERY:  # type: ignore[operator]
            return listed[1]  # type: ignore[return-value]
        out = {}
        for obj in objects():
            ns, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
            try:
                spec = parse_spec(RigSpec, obj.get("spec"))
            except Invalid:
                continue  # its status says what is wrong
            out[f"{ns}/{name}"] = RigView(f"{ns}/{name}", ledgers.for_rig(ns, name, spec), spec.max_polecats,
                                          QueueSettings(target=spec.default_branch))
        listed[:] = [time.monotonic(), out]
        return out
    return rigs


def watched(patterns: tuple[str, ...], core: Any) -> list[str]:
    """The namespaces ``patterns`` name: each name as it is, each glob matched against those that exist."""
    names = {p for p in patterns if not any(c in p for c in "*?[")}
    if len(names) < len(patterns):
        existing = [n.metadata.name for n in core.list_namespace().items]
        names |= {n for n in existing for p in patterns if fnmatch.fnmatchcase(n, p)}
    return sorted(names)


def token() -> str | None:
    return TOKEN_FILE.read_text().strip() or None if TOKEN_FILE.exists() else None
