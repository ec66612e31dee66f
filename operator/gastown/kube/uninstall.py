"""Take gastown off a cluster's namespaces: its finalizers, and what the operator made there.

Every call has a timeout and nothing waits for a deletion to finish (the garbage collector does
the rest in the background), so an uninstall never hangs, with the operator running or gone.
What it leaves: the ledgers in git (every bead, convoy, merge request and agent identity), the
custom resources themselves (without gastown's finalizer, so they and their namespace can be
deleted at once), the CRDs, and the polecats' HOME claims unless asked.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import NamedTuple
from urllib.parse import quote

from ..api import GROUP, KINDS, VERSION
from ..names import APP_COMPONENT, APP_MANAGED_BY, MANAGED_BY
from ..runtimes.kubernetes import HOME_COMPONENT
from .objects import _call as call
from .options import FINALIZER

TIMEOUT = (5, 15)  # seconds to connect, to read: per call


class Made(NamedTuple):
    """A kind of object the operator makes in a rig's namespace, and how to find them."""

    api: str  # /api/v1 or /apis/<group>/<version>
    plural: str
    selector: str


MANAGED = f"{APP_MANAGED_BY}={MANAGED_BY}"
MADE = (
    Made("/apis/batch/v1", "cronjobs", MANAGED),  # first: no Dog starts a Job while the Jobs go
    Made("/apis/batch/v1", "jobs", MANAGED),  # sessions, verifications, Mayors (their pods go with them)
    Made("/api/v1", "serviceaccounts", MANAGED),
    Made("/apis/rbac.authorization.k8s.io/v1", "roles", MANAGED),
    Made("/apis/rbac.authorization.k8s.io/v1", "rolebindings", MANAGED),
    Made("/api/v1", "resourcequotas", MANAGED),
    Made("/api/v1", "configmaps", MANAGED),  # the runtimes copy (the release's own is Helm's)
    Made("/apis/networking.k8s.io/v1", "networkpolicies", MANAGED),
    Made("/apis/coordination.k8s.io/v1", "leases", f"{APP_COMPONENT}=heartbeat"),  # the sessions' heartbeats
)
HOME_CLAIMS = Made("/api/v1", "persistentvolumeclaims", f"{MANAGED},{APP_COMPONENT}={HOME_COMPONENT}")
LEFT = ("the ledgers in git: every bead, convoy, merge request and agent identity, on each rig's remote "
        "(refs/gastown/ledger); a reinstall reads them back",
        "the Rigs, Convoys, MergeQueues and Polecats themselves, without gastown's finalizer: delete them "
        "(or their namespace) and they go at once",
        "the CRDs (kubectl delete -f crds/ deletes them and every gastown object left)")


@dataclass
class Report:
    finalizers: list[str]
    deleted: list[str]
    left: list[str]


def _path(api: str, plural: str, namespace: str | None, name: str | None = None) -> str:
    where = f"/namespaces/{namespace}" if namespace else ""
    return f"{api}{where}/{plural}" + (f"/{name}" if name else "")


def _items(api: str, plural: str, namespace: str | None, selector: str | None = None) -> list[dict]:
    query = f"?labelSelector={quote(selector)}" if selector else ""
    return (call("GET", _path(api, plural, namespace) + query, timeout=TIMEOUT) or {}).get("items") or []


CRS = f"/apis/{GROUP}/{VERSION}"


def gastown_namespaces() -> list[str]:
    """Every namespace with a gastown object in it (for --all-namespaces)."""
    found = {o["metadata"]["namespace"] for k in KINDS for o in _items(CRS, k.plural, None)}
    found |= {o["metadata"]["namespace"] for m in (*MADE, HOME_CLAIMS) for o in _items(m.api, m.plural, None, m.selector)}
    return sorted(found)


def _ours(namespace: str, claims: bool) -> Iterator[tuple[Made, dict]]:
    for made in (*MADE, HOME_CLAIMS) if claims else MADE:
        for obj in _items(made.api, made.plural, namespace, made.selector):
            yield made, obj


def uninstall(namespaces: Iterable[str], *, claims: bool = False, dry_run: bool = False) -> Report:
    """Remove gastown's finalizer from its custom resources in ``namespaces`` and delete what the
    operator made there (the HOME claims too with ``claims``); with ``dry_run`` say what it would."""
    report = Report([], [], list(LEFT))
    for ns in namespaces:
        for kind in KINDS:
            for obj in _items(CRS, kind.plural, ns):
                meta = obj["metadata"]
                if FINALIZER not in (meta.get("finalizers") or []):
                    continue
                report.finalizers.append(f"{ns}/{kind.plural}/{meta['name']}")
                if not dry_run:  # others' finalizers stay; a changed object (409) is theirs to finish
                    keep = [f for f in meta["finalizers"] if f != FINALIZER]
                    call("PATCH", _path(CRS, kind.plural, ns, meta["name"]),
                         {"metadata": {"finalizers": keep or None, "resourceVersion": meta["resourceVersion"]}},
                         "application/merge-patch+json", timeout=TIMEOUT)
        for made, obj in _ours(ns, claims):
            name = obj["metadata"]["name"]
            report.deleted.append(f"{ns}/{made.plural}/{name}")
            if not dry_run:
                call("DELETE", _path(made.api, made.plural, ns, name), {"propagationPolicy": "Background"},
                     timeout=TIMEOUT, missing_ok=True)
        if not claims:
            report.left += [f"{ns}/persistentvolumeclaims/{o['metadata']['name']} (a polecat's HOME: "
                            "--delete-home-claims deletes it)"
                            for o in _items(HOME_CLAIMS.api, HOME_CLAIMS.plural, ns, HOME_CLAIMS.selector)]
    return report
