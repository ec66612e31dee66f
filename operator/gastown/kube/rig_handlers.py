"""The Rig controller: the ledger, and the namespaced objects a rig's pods need."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import kopf
from kubernetes.client.rest import ApiException

from ..api import API_VERSION, GROUP, VERSION, Condition, Invalid, RigSpec
from ..api.validation import parse_spec
from ..ledger import LedgerError
from ..names import APP_COMPONENT, APP_MANAGED_BY, APP_NAME, MANAGED_BY, RIG_LABEL
from ..runtimes.config import config_file
from ..runtimes.kubernetes import COMPONENT, DOG, VERIFICATION, agent_service_account, dog_cronjob
from .client import set_conditions
from .memo import ledgers, settings
from .objects import ensure, remove

log = logging.getLogger("gastown.rigs")
MANAGED = {APP_NAME: "gastown", APP_MANAGED_BY: MANAGED_BY}
HEADROOM = 7  # per rig, besides its polecats: the default 4 parallel verification runs, the Mayor, 2 Dogs
QUOTA_PODS, QUOTA_JOBS = "gastown-agent-pods", "gastown-jobs"
CRON_DOGS = ("prune", "compact")  # the gc Dog runs in the operator: the caches it cleans are its own


def _owner(name: str, uid: str) -> list[dict]:
    return [{"apiVersion": API_VERSION, "kind": "Rig", "name": name, "uid": uid,
             "controller": True, "blockOwnerDeletion": True}]


def runtimes_configmap(namespace: str, configmap: str | None, runtimes_file: Path) -> dict | None:
    """The custom runtimes file, copied into a rig's namespace for its session pods to mount (a
    pod mounts ConfigMaps of its own namespace only). Pure but for reading the file."""
    if not configmap or not runtimes_file.is_file():
        return None
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": configmap, "namespace": namespace, "labels": MANAGED},
            "data": {"runtimes.yaml": runtimes_file.read_text()}}


def rig_objects(namespace: str, name: str, uid: str, spec: RigSpec) -> list[dict]:
    """The ServiceAccount, Role and RoleBinding of the rig's pods, and their NetworkPolicy. Pure."""
    sa = agent_service_account(name)
    labels = {**MANAGED, RIG_LABEL: name}
    meta = {"name": sa, "namespace": namespace, "labels": labels, "ownerReferences": _owner(name, uid)}
    out: list[dict] = [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta, "automountServiceAccountToken": False},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": meta,
         "rules": [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                    "verbs": ["get", "create", "update"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": meta,
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": sa},
         "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": namespace}]},
    ]
    if spec.network.policy:
        egress: list[dict] = [{"to": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
                               "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}]
        for rule in spec.network.egress:
            block: dict[str, Any] = {"cidr": rule.cidr}
            if rule.except_:
                block["except"] = list(rule.except_)
            egress.append({"to": [{"ipBlock": block}], "ports": [{"protocol": "TCP", "port": p} for p in rule.ports]})
        out.append({
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {**meta, "name": f"gastown-{name}"},
            "spec": {"podSelector": {"matchLabels": {RIG_LABEL: name},
                                     "matchExpressions": [{"key": APP_COMPONENT, "operator": "In",
                                                           "values": [COMPONENT, VERIFICATION, "mayor", DOG]}]},
                     "policyTypes": ["Ingress", "Egress"], "ingress": [], "egress": egress},
        })
    return out


def quotas(namespace: str, limits: Iterable[int]) -> list[dict]:
    """The namespace's backstop for all its rigs: agent pods (those with a deadline, which is every
    session, verification and Mayor pod) and Jobs. The controller enforces each rig's limit first."""
    limits = list(limits)
    pods = sum(limits) + HEADROOM * len(limits)
    meta = {"namespace": namespace, "labels": MANAGED}
    return [
        {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {**meta, "name": QUOTA_PODS},
         "spec": {"hard": {"pods": str(pods)}, "scopes": ["Terminating"]}},
        # finished Jobs count until their TTL removes them: room for a few rounds of each
        {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {**meta, "name": QUOTA_JOBS},
         "spec": {"hard": {"count/jobs.batch": str(pods * 4)}}},
    ]


def _condition(type_: str, ok: bool, reason: str, message: str, *, generation: int | None) -> Condition:
    return Condition(type=type_, status="True" if ok else "False", reason=reason, message=message,
                     observed_generation=generation)


@kopf.on.create(GROUP, VERSION, "rigs", id="reconcile")
@kopf.on.resume(GROUP, VERSION, "rigs", id="reconcile")
@kopf.on.update(GROUP, VERSION, "rigs", id="reconcile")
def reconcile_rig(*, name: str, namespace: str, uid: str, spec: Mapping, body: kopf.Body,
                  memo: kopf.Memo, retry: int, rigs_by_name: kopf.Index, **_: Any) -> None:
    try:
        rig = parse_spec(RigSpec, spec)
    except Invalid:
        return  # admission reports it
    generation = body["metadata"].get("generation")
    try:
        head = ledgers(memo).for_rig(namespace, name, rig).ensure()
    except (LedgerError, ApiException) as e:
        what = f"Secret {rig.credentials_secret.name}: {e.reason}" if isinstance(e, ApiException) else str(e)
        message = f"{what}. Check spec.gitUrl and the credentials Secret; retrying."
        set_conditions(namespace, "rigs", name, *(_condition(t, False, "GitError", message, generation=generation)
                                                   for t in ("GitReachable", "LedgerReady", "Ready")),
                       status={"phase": "Error"})
        kopf.warn(body, reason="GitUnreachable", message=message)
        raise kopf.TemporaryError(message, delay=min(10 * 2 ** retry, 300)) from e
    reachable = [_condition("GitReachable", True, "Reachable", rig.git_url, generation=generation),
                 _condition("LedgerReady", True, "Ready", f"gastown/ledger at {head[:12]}", generation=generation)]
    runtimes = runtimes_configmap(namespace, settings(memo).runtimes_configmap, config_file())
    for obj in [*rig_objects(namespace, name, uid, rig), *([runtimes] if runtimes else [])]:
        ensure(obj)
    for dog in CRON_DOGS:
        cronjob = dog_cronjob(namespace, name, uid, rig, dog, image=settings(memo).agent_image)
        if getattr(rig.dogs, dog).enabled:
            ensure(cronjob)
        else:
            remove(cronjob)
    limits = [rig.max_polecats]
    for (ns, other), specs in rigs_by_name.items():
        if ns == namespace and other != name:
            for s in specs:
                limits.append(int(s.get("maxPolecats", 3)))
    for quota in quotas(namespace, limits):
        ensure(quota)
    pods = quotas(namespace, limits)[0]["spec"]["hard"]["pods"]
    # the spec parsed: not Invalid, in the same write as Ready (admission may not have said so yet)
    valid = Condition(type="Invalid", status="False", reason="SpecValid", message="", observed_generation=generation)
    set_conditions(namespace, "rigs", name, valid, *reachable,
                   _condition("QuotaReady", True, "Applied",
                              f"{QUOTA_PODS}: {pods} agent pods in {namespace} (all rigs)", generation=generation),
                   _condition("Ready", True, "Reconciled", "ledger, quota, policies and Dogs in place",
                              generation=generation),
                   status={"phase": "Ready", "ledgerHead": head, "observedGeneration": generation})
