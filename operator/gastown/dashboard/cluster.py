"""The rigs of a cluster for the operator's dashboard: the Rig objects, read through the API, each
with a ledger of the dashboard's own (its cache beside the operator's, the rig's git credentials)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from ..api import GROUP, VERSION, Invalid, RigSpec
from ..api.validation import parse_spec
from ..kube.client import api_client
from ..kube.ledgers import RigLedgers
from ..refinery import QueueSettings
from .sources import RigView

TOKEN_FILE = Path("/etc/gastown/dashboard/token")  # a Secret mounted there turns actions on
LIST_EVERY = 10.0  # seconds between listings of the Rig objects


def cluster_rigs(cache_dir: Path) -> Callable[[], dict[str, RigView]]:
    """NAMESPACE/NAME -> the rig, from the Rig objects the operator can list."""
    from kubernetes import client

    ledgers = RigLedgers(cache_dir / "dashboard")
    listed: list[float | dict[str, RigView]] = [0.0, {}]

    def rigs() -> dict[str, RigView]:
        if time.monotonic() - listed[0] < LIST_EVERY:  # type: ignore[operator]
            return listed[1]  # type: ignore[return-value]
        found = client.CustomObjectsApi(api_client()).list_cluster_custom_object(GROUP, VERSION, "rigs")
        out = {}
        for obj in found.get("items", []):
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


def token() -> str | None:
    return TOKEN_FILE.read_text().strip() or None if TOKEN_FILE.exists() else None
