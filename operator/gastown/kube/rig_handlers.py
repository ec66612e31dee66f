"""The Rig controller: the ledger, and the namespaced objects a rig's pods need."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import kopf
from kubernetes.client.rest import ApiException

from ..api import API_VERSION, GROUP, VERSION, Condition, Invalid, MergeQueueSpec, RigSpec
from ..api.validation import parse_spec
from ..ledger import Ledger, LedgerError, git_stopped
from ..names import APP_COMPONENT, APP_MANAGED_BY, APP_NAME, MANAGED_BY, RIG_LABEL
from ..runtimes.config import config_file
from ..runtimes.kubernetes import (
    COMPONENT,
    DOG,
    VERIFICATION,
    agent_service_account,
    dog_cronjob,
    runtimes_copy_name,
)
from .client import set_conditions
from .forbidden import refused, retry_in
from .ledger_calls import ledger_handler
from .memo import ledgers, settings
from .mergequeue_handlers import active_queue
from .objects import ensure, remove

log = logging.getLogger("gastown.rigs")
MANAGED = {APP_NAME: "gastown", APP_MANAGED_BY: MANAGED_BY}
# The namespace's quotas, shared by its rigs: sessions (exactly the rigs' maxPolecats), the other
# runs (verification, Dogs, Mayors), and Jobs. gastown-agent-pods is the one older versions wrote.
QUOTA_SESSIONS, QUOTA_RUNS, QUOTA_JOBS, QUOTA_LEGACY = "gastown-sessions", "gastown-runs", "gastown-jobs", \
    "gastown-agent-pods"
CRON_DOGS = ("prune", "compact")  # the gc Dog runs in the operator: the caches it cleans are its own
MAYORS = 1  # per rig: a Mayor pod plans a goal convoy; more wait their turn on the quota
RUNS_HEADROOM = 4  # per namespace: pods without a deadline that are not gastown's (the operator's own
# replicas and their surge, when a Rig shares the release's namespace)


def _owner(name: str, uid: str) -> list[dict]:
    return [{"apiVersion": API_VERSION, "kind": "Rig", "name": name, "uid": uid,
             "controller": True, "blockOwnerDeletion": True}]


def _owners(rigs: Iterable[RigEntry]) -> list[dict]:
    """Every rig of the namespace owns what they share: the garbage collector deletes it with the
    last of them (operator or not), and keeps it while one is left."""
    return [{"apiVersion": API_VERSION, "kind": "Rig", "name": r.name, "uid": r.uid}
            for r in sorted(rigs, key=lambda r: r.name)]


class RigEntry(NamedTuple):
    """What the namespace's quotas need of one of its rigs."""

    name: str
    uid: str
    max_polecats: int
    parallel_verifications: int = MergeQueueSpec.model_fields["parallel_verifications"].default


@kopf.index(GROUP, VERSION, "rigs")
def rigs_in_namespace(namespace: str | None, name: str, uid: str, spec: Mapping, **_: Any) -> dict:
    return {namespace: {"name": name, "uid": uid, "maxPolecats": spec.get("maxPolecats")}}


def namespace_rigs(namespace: str, rigs_index: kopf.Index, queues_index: kopf.Index,
                   gone: str | None = None) -> list[RigEntry]:
    """The rigs of ``namespace`` (but ``gone``), from kopf's indexes. Pure."""
    out = []
    for r in rigs_index.get(namespace, []):
        if r["name"] == gone:
            continue
        queue = active_queue(list(queues_index.get((namespace, r["name"]), [])))
        parallel = (queue or {}).get("spec", {}).get("parallelVerifications")
        out.append(RigEntry(r["name"], r["uid"], int(r["maxPolecats"] or RigSpec.model_fields["max_polecats"].default),
                            *([int(parallel)] if parallel else [])))
    return out


def runtimes_configmap(namespace: str, configmap: str | None, runtimes_file: Path,
                       rigs: Iterable[RigEntry] = ()) -> dict | None:
    """The custom runtimes file, copied into a rig's namespace for its session pods to mount (a
    pod mounts ConfigMaps of its own namespace only), owned by the namespace's rigs. Pure but for
    reading the file."""
    if not configmap or not runtimes_file.is_file():
        return None
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": runtimes_copy_name(configmap), "namespace": namespace, "labels": MANAGED,
                         "ownerReferences": _owners(rigs)},
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


def quotas(namespace: str, rigs: Iterable[RigEntry]) -> list[dict]:
    """The namespace's quotas, for all its rigs, the API server's backstop behind each rig's limit:

    - gastown-sessions, scoped Terminating (pods whose spec has a deadline: session pods only),
      exactly the sum of the rigs' maxPolecats, so a session pod beyond the limits is refused even
      if the operator is wrong;
    - gastown-runs, scoped NotTerminating (every other pod of the namespace): per rig its
      MergeQueue's parallel verifications, its Dogs and a Mayor, and RUNS_HEADROOM;
    - gastown-jobs: Jobs of either kind, finished ones counting until their TTL removes them.
    Owned by every rig of the namespace. Pure."""
    rigs = list(rigs)
    sessions = sum(r.max_polecats for r in rigs)
    runs = sum(r.parallel_verifications + len(CRON_DOGS) + MAYORS for r in rigs) + RUNS_HEADROOM
    meta = {"namespace": namespace, "labels": MANAGED, "ownerReferences": _owners(rigs)}
    return [
        {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {**meta, "name": QUOTA_SESSIONS},
         "spec": {"hard": {"pods": str(sessions)}, "scopes": ["Terminating"]}},
        {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {**meta, "name": QUOTA_RUNS},
         "spec": {"hard": {"pods": str(runs)}, "scopes": ["NotTerminating"]}},
        # room for a few rounds of each
        {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {**meta, "name": QUOTA_JOBS},
         "spec": {"hard": {"count/jobs.batch": str((sessions + runs) * 4)}}},
    ]


def apply_quotas(namespace: str, rigs: list[RigEntry]) -> list[dict]:
    """Write the namespace's quotas for ``rigs`` (none left: the garbage collector has them)."""
    written = quotas(namespace, rigs)
    if rigs:
        for quota in written:
            ensure(quota)
    remove({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"namespace": namespace, "name": QUOTA_LEGACY}})
    return written


@kopf.on.event(GROUP, VERSION, "rigs")  # type: ignore[arg-type]  # not on.delete: that would put a finalizer on every Rig
def shrink_quotas(*, event: Mapping, name: str, namespace: str, rigs_in_namespace: kopf.Index,
                  mergequeues_by_rig: kopf.Index, **_: Any) -> None:
    """A Rig gone: the quotas for the rigs left (while the operator is down, the garbage collector
    drops the gone Rig's ownership, and the next reconcile resizes)."""
    if event.get("type") == "DELETED":
        apply_quotas(namespace, namespace_rigs(namespace, rigs_in_namespace, mergequeues_by_rig, gone=name))


@kopf.on.create(GROUP, VERSION, "mergequeues", id="quota")
@kopf.on.update(GROUP, VERSION, "mergequeues", id="quota", field="spec.parallelVerifications")  # type: ignore[arg-type]  # kopf's Protocol has no index kwargs
def follow_parallel_verifications(*, namespace: str, spec: Mapping, rigs_in_namespace: kopf.Index,
                                  mergequeues_by_rig: kopf.Index, **_: Any) -> None:
    """A MergeQueue's parallel verifications size the namespace's gastown-runs quota."""
    rigs = namespace_rigs(namespace, rigs_in_namespace, mergequeues_by_rig)
    if any(r.name == spec.get("rig") for r in rigs):
        apply_quotas(namespace, rigs)


def _condition(type_: str, ok: bool, reason: str, message: str, *, generation: int | None) -> Condition:
    return Condition(type=type_, status="True" if ok else "False", reason=reason, message=message,
                     observed_generation=generation)


@kopf.on.create(GROUP, VERSION, "rigs", id="reconcile")
@kopf.on.resume(GROUP, VERSION, "rigs", id="reconcile")
@kopf.on.update(GROUP, VERSION, "rigs", id="reconcile")  # type: ignore[arg-type]  # kopf's Protocol has no index kwargs
@ledger_handler
def reconcile_rig(*, name: str, namespace: str, uid: str, spec: Mapping, body: kopf.Body,
                  memo: kopf.Memo, retry: int, rigs_in_namespace: kopf.Index, mergequeues_by_rig: kopf.Index,
                  **_: Any) -> None:
    try:
        rig = parse_spec(RigSpec, spec)
    except Invalid:
        return  # admission reports it
    generation = body["metadata"].get("generation")
    try:
        ledger = ledgers(memo).for_rig(namespace, name, rig)
        head = ledger.ensure()
    except (LedgerError, ApiException) as e:
        if isinstance(e, LedgerError) and git_stopped():
            raise  # the operator is stopping, its git ended: no error of the Rig's (ledger_handler)
        secret = rig.credentials_secret
        what = f"Secret {secret.name}: {e.reason}" if isinstance(e, ApiException) and secret else str(e)
        message = f"{what}. Check spec.gitUrl and the credentials Secret; retrying."
        set_conditions(namespace, "rigs", name, *(_condition(t, False, "GitError", message, generation=generation)
                                                   for t in ("GitReachable", "LedgerReady", "Ready")),
                       status={"phase": "Error"})
        kopf.warn(body, reason="GitUnreachable", message=message)
        raise kopf.TemporaryError(message, delay=min(10 * 2 ** retry, 300)) from e
    reachable = [_condition("GitReachable", True, "Reachable", rig.git_url, generation=generation),
                 _condition("LedgerReady", True, "Ready", f"gastown/ledger at {head[:12]}", generation=generation)]
    rigs = namespace_rigs(namespace, rigs_in_namespace, mergequeues_by_rig)
    if not any(r.name == name for r in rigs):  # not indexed yet (its first event): it is there all the same
        rigs.append(RigEntry(name, uid, rig.max_polecats))
    try:
        sessions = _apply(namespace, name, uid, rig, rigs=rigs, memo=memo)
    except ApiException as e:
        if e.status != 403:
            raise
        message = f"{refused(e)} The Rig is reconciled once the operator's RBAC allows it (the chart's grants it)."
        set_conditions(namespace, "rigs", name, _condition("Ready", False, "Forbidden", message, generation=generation),
                       status={"phase": "Error"})
        kopf.warn(body, reason="Forbidden", message=message)
        raise kopf.TemporaryError(message, delay=retry_in(retry + 1)) from e
    # the spec parsed: not Invalid, in the same write as Ready (admission may not have said so yet)
    valid = Condition(type="Invalid", status="False", reason="SpecValid", message="", observed_generation=generation)
    set_conditions(namespace, "rigs", name, valid, *reachable,
                   _condition("QuotaReady", True, "Applied",
                              f"{QUOTA_SESSIONS}: {sessions} session pods in {namespace} (all rigs)",
                              generation=generation),
                   _condition("Ready", True, "Reconciled", "ledger, quota, policies and Dogs in place",
                              generation=generation),
                   status=lambda have: {"phase": "Ready", "ledgerHead": ledger_head(ledger, have.get("ledgerHead"), head),
                                        "observedGeneration": generation})


def ledger_head(ledger: Ledger, shown: str | None, head: str) -> str:
    """What status.ledgerHead says after a reconcile that read the ledger at ``head``. The rig loop
    projects the ledger's tip after each pass, and its first pass writes as the reconcile applies
    the rig's objects: the head it shows may be later than the reconcile's, and it never moves back
    (the loop writes it again only once the ledger moves)."""
    if shown and shown != head and ledger.store.is_ancestor(head, shown):
        return shown
    return head


def _apply(namespace: str, name: str, uid: str, rig: RigSpec, *, rigs: list, memo: kopf.Memo) -> int:
    """The rig's objects, Dogs and quotas in place; the namespace's session pods allowed."""
    runtimes = runtimes_configmap(namespace, settings(memo).runtimes_configmap, config_file(), rigs)
    for obj in [*rig_objects(namespace, name, uid, rig), *([runtimes] if runtimes else [])]:
        ensure(obj)
    for dog in CRON_DOGS:
        cronjob = dog_cronjob(namespace, name, uid, rig, dog=dog, image=settings(memo).agent_image)
        if getattr(rig.dogs, dog).enabled:
            ensure(cronjob)
        else:
            remove(cronjob)
    return apply_quotas(namespace, rigs)[0]["spec"]["hard"]["pods"]
