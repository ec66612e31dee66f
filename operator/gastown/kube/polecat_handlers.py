"""Polecats on a cluster: identity in the ledger, a Job per session, status from the Job."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import kopf

from .. import witness
from ..api import GROUP, VERSION, Condition, Invalid, PolecatSpec
from ..api.validation import parse_spec
from ..names import (
    APP_COMPONENT,
    APP_MANAGED_BY,
    BEAD_LABEL,
    MANAGED_BY,
    OPERATOR_ACTOR,
    POLECAT_LABEL,
    RIG_LABEL,
    SESSION_COUNT_ANNOTATION,
    SESSION_LABEL,
    branch_for,
)
from ..polecats import EnsureAgent
from ..runtimes.kubernetes import COMPONENT
from .admission import current_conditions
from .client import get_object, patch_status, post_event, set_conditions
from .ledger_calls import ledger_handler
from .memo import ledgers
from .rig_index import require_rig

log = logging.getLogger("gastown.sessions")
SESSION_LABELS = {APP_COMPONENT: COMPONENT}


# --- what the operator knows without asking the API (kopf keeps these from its watches) ---------


# The indexes are coroutines: kopf runs them on its event loop, so they never wait for a worker
# thread (those serve the handlers below).


def polecat_name(name: str, labels: Mapping) -> str:
    """The ledger's name of the polecat of a Polecat resource: its polecat label (the operator's
    own, named ``<rig>-<polecat>``), or the resource's name (one made by hand)."""
    return labels.get(POLECAT_LABEL) or name


@kopf.index(GROUP, VERSION, "polecats")
async def polecats_by_rig(*, namespace: str | None, name: str, uid: str, spec: Mapping, labels: Mapping, **_: Any) -> dict:
    return {(namespace, spec.get("rig")): {"name": polecat_name(name, labels), "resource": name, "uid": uid,
                                           "spec": dict(spec)}}


def polecat_owner(meta: Mapping) -> str | None:
    """The Polecat resource that owns a session Job or HOME claim."""
    return next((o["name"] for o in meta.get("ownerReferences") or [] if o.get("kind") == "Polecat"), None)


@kopf.index("batch", "v1", "jobs", labels=SESSION_LABELS)
async def sessions_by_polecat(*, namespace: str | None, name: str, labels: Mapping, status: Mapping, meta: Mapping,
                              **_: Any) -> dict:
    """A rig's sessions by the ledger's name of their polecat (two rigs may each have a furiosa)."""
    return {(namespace, labels.get(RIG_LABEL), labels.get(POLECAT_LABEL)): {
        "name": name, "active": not job_finished(status), "created": meta.get("creationTimestamp") or "",
        "count": session_count(meta),
        "rig": labels.get(RIG_LABEL), "owned": bool(meta.get("ownerReferences"))}}


@kopf.index("batch", "v1", "jobs", labels=SESSION_LABELS)
async def polecat_of_session(*, namespace: str | None, name: str, meta: Mapping, **_: Any) -> dict:
    """The Polecat resource a session (its Job, its pods, its heartbeat Lease) belongs to."""
    owner = polecat_owner(meta)
    return {(namespace, name): owner} if owner else {}


@kopf.index("coordination.k8s.io", "v1", "leases", labels={APP_COMPONENT: "heartbeat"})
async def heartbeats_by_session(namespace: str | None, name: str, spec: Mapping, **_: Any) -> dict:
    """A session's Lease is named after it; its renewTime is the session's last heartbeat."""
    return {(namespace, name): spec.get("renewTime")}


@kopf.index("", "v1", "pods", labels=SESSION_LABELS)
async def session_starts(namespace: str | None, labels: Mapping, status: Mapping, **_: Any) -> dict:
    """When the session's agent container started running (None while the pod is still starting)."""
    started = next((cs["state"]["running"].get("startedAt") for cs in status.get("containerStatuses") or []
                    if cs.get("name") == "agent" and (cs.get("state") or {}).get("running")), None)
    return {(namespace, labels.get(SESSION_LABEL)): started}


@kopf.index("", "v1", "pods", labels={APP_MANAGED_BY: MANAGED_BY},
            when=lambda meta, **_: not meta.get("ownerReferences"))
async def ownerless_pods(namespace: str | None, name: str, labels: Mapping, **_: Any) -> dict:
    """gastown's pods with no owner (a Job's pods have it): the Deacon deletes them."""
    return {(namespace, labels.get(RIG_LABEL)): name}


def session_polecat(index: kopf.Index, namespace: str | None, session: str | None) -> str | None:
    """The Polecat resource of a session, by the session's (its Job's) name."""
    return next(iter(index.get((namespace, session), [])), None) if session else None


def session_signals(namespace: str, rig: str, polecats: Iterable[str], *, sessions: Mapping, starts: Mapping,
                    heartbeats: Mapping, now: datetime) -> dict[str, witness.SessionSignal]:
    """What the Witness needs to know of each polecat's (by its ledger name) newest session Job on
    ``rig``, from kopf's indexes. Pure.

    A session's age counts from its agent container's start: a pod still pulling its image or
    cloning is starting, never hung (a pod that cannot start shows as SessionHealthy=False, and
    its Job's deadline ends it)."""
    out = {}
    for polecat in polecats:
        jobs = list(sessions.get((namespace, rig, polecat), []))
        if not jobs:
            continue
        job = max(jobs, key=lambda j: (j["created"], j.get("count", 0)))  # a stamp counts whole seconds
        started = [s for s in starts.get((namespace, job["name"]), []) if s]
        beats = [b for b in heartbeats.get((namespace, job["name"]), []) if b]
        age = max(0.0, (now - _when(max(started))).total_seconds()) if started else 0.0
        beat = max(0.0, (now - _when(max(beats))).total_seconds()) if beats else None
        out[polecat] = witness.SessionSignal(job["name"], job["active"], age=age, heartbeat_age=beat)
    return out


def _when(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def session_count(meta: Mapping) -> int:
    """A session Job's count among its polecat's sessions on its bead (its annotation)."""
    return int((meta.get("annotations") or {}).get(SESSION_COUNT_ANNOTATION, 0))


def job_finished(status: Mapping) -> bool:
    return any(c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
               for c in status.get("conditions") or [])


def polecat_status_for_job(job: Mapping, deleted: bool = False) -> dict:
    """The Polecat status a session Job implies. Pure."""
    meta, status = job.get("metadata") or {}, job.get("status") or {}
    labels = meta.get("labels") or {}
    count = session_count(meta)
    if deleted or job_finished(status):
        return {"phase": "Idle", "currentBead": None, "branch": None, "session": None, "sessionCount": count}
    bead = labels.get(BEAD_LABEL)
    phase = "Working" if (status.get("ready") or 0) > 0 else "Spawning"
    return {"phase": phase, "currentBead": bead, "branch": branch_for(labels.get(POLECAT_LABEL, ""), bead) if bead else None,
            "session": {"name": meta.get("name"), "started": status.get("startTime")},
            "sessionCount": count}


# --- handlers ------------------------------------------------------------------------------------


@kopf.on.create(GROUP, VERSION, "polecats", id="identity")
@kopf.on.resume(GROUP, VERSION, "polecats", id="identity")
@kopf.on.update(GROUP, VERSION, "polecats", id="identity")  # type: ignore[arg-type]  # kopf's Protocol has no index kwargs
@ledger_handler
def polecat_identity(*, name: str, namespace: str, spec: Mapping, labels: Mapping, body: kopf.Body,
                     patch: kopf.Patch, memo: kopf.Memo, rigs_by_name: kopf.Index, **_: Any) -> None:
    """The polecat's identity is an agent bead in its rig's ledger: make sure it exists. Its
    labels name its rig and its polecat (for `kubectl get -l` and the POLECAT column)."""
    try:
        polecat = parse_spec(PolecatSpec, spec)
    except Invalid:
        return  # admission reports it
    name = polecat_name(name, labels)
    for key, value in ((POLECAT_LABEL, name), (RIG_LABEL, polecat.rig)):
        if labels.get(key) != value:
            patch.metadata.labels[key] = value
    rig = require_rig(rigs_by_name, namespace, polecat.rig, body)
    if polecat.desired_state == "retired":
        patch.status["phase"] = "Retired"
    elif (body.get("status") or {}).get("phase") == "Retired":
        patch.status["phase"] = "Idle"
    runtime = (polecat.runtime or rig.runtime).preset
    ledgers(memo).for_rig(namespace, polecat.rig, rig).apply(EnsureAgent(name, polecat.rig, OPERATOR_ACTOR, runtime))


@kopf.on.event("batch", "v1", "jobs", labels=SESSION_LABELS)
def session_job_event(event: Mapping, **_: Any) -> None:
    """Project a session Job onto its Polecat's (its owner's) status."""
    job = event.get("object") or {}
    meta = job.get("metadata") or {}
    polecat = polecat_owner(meta)
    if not polecat:
        return
    patch_status(meta["namespace"], "polecats", polecat,
                 polecat_status_for_job(job, deleted=event.get("type") == "DELETED"))


@kopf.on.event("coordination.k8s.io", "v1", "leases", labels={APP_COMPONENT: "heartbeat"})  # type: ignore[arg-type]  # kopf's Protocol has no index kwargs
def session_heartbeat(event: Mapping, polecat_of_session: kopf.Index, **_: Any) -> None:
    """A session renewed its Lease (named after the session): that is the polecat's last heartbeat."""
    lease = event.get("object") or {}
    meta = lease.get("metadata") or {}
    polecat = session_polecat(polecat_of_session, meta.get("namespace"), meta.get("name"))
    renewed = (lease.get("spec") or {}).get("renewTime")
    if polecat and renewed and event.get("type") != "DELETED":
        patch_status(meta["namespace"], "polecats", polecat, {"lastHeartbeat": renewed})


# --- pods: what their containers say about a session -----------------------------------------------

POD_TROUBLE = {
    # waiting reasons: the session cannot start
    "ImagePullBackOff": "the agent image cannot be pulled",
    "ErrImagePull": "the agent image cannot be pulled",
    "InvalidImageName": "the agent image name is invalid",
    "CreateContainerConfigError": "a Secret or ConfigMap the pod needs is missing",
    "CrashLoopBackOff": "a container keeps crashing",
    # terminated reasons: the session died
    "OOMKilled": "the session ran out of memory (raise the polecat's memory limit)",
    "DeadlineExceeded": "the session ran past its deadline",
    "Evicted": "the node evicted the pod",
}


def pod_trouble(pod: Mapping) -> tuple[str, str] | None:
    """(reason, what it means) when a session pod is in trouble, else None. Pure."""
    status = pod.get("status") or {}
    if status.get("reason") in POD_TROUBLE:
        return status["reason"], POD_TROUBLE[status["reason"]]
    for cs in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
        for state in ("waiting", "terminated"):
            reason = ((cs.get("state") or {}).get(state) or {}).get("reason") or \
                ((cs.get("lastState") or {}).get(state) or {}).get("reason")
            if reason in POD_TROUBLE:
                return reason, f"{POD_TROUBLE[reason]} (container {cs.get('name')})"
    return None


@kopf.on.event("", "v1", "pods", labels=SESSION_LABELS)  # type: ignore[arg-type]  # kopf's Protocol has no index kwargs
def session_pod_event(event: Mapping, polecat_of_session: kopf.Index, **_: Any) -> None:
    """A session pod in trouble becomes SessionHealthy=False and a Warning Event on its Polecat (once
    per trouble); a session pod running well makes it True again."""
    pod = event.get("object") or {}
    meta = pod.get("metadata") or {}
    labels = meta.get("labels") or {}
    # a pod whose Job kopf has not indexed: its polecat label, which names a Polecat made by hand
    polecat = session_polecat(polecat_of_session, meta.get("namespace"), labels.get(SESSION_LABEL)) or \
        labels.get(POLECAT_LABEL)
    if not polecat or event.get("type") == "DELETED":
        return
    trouble = pod_trouble(pod)
    running = (pod.get("status") or {}).get("phase") == "Running"
    if trouble is None and not running:
        return
    obj = get_object(meta["namespace"], "polecats", polecat)
    if obj is None:
        return
    current = next((c for c in current_conditions(obj) if c.type == "SessionHealthy"), None)
    session = labels.get(SESSION_LABEL, meta.get("name"))
    if trouble is None:
        if current is not None and current.status == "False":
            set_conditions(meta["namespace"], "polecats", polecat, Condition(
                type="SessionHealthy", status="True", reason="Running", message=f"session {session} runs"))
        return
    reason, what = trouble
    text = f"session {session}: {what}"
    if current is not None and current.status == "False" and current.message == text:
        return  # already said
    set_conditions(meta["namespace"], "polecats", polecat, Condition(
        type="SessionHealthy", status="False", reason=reason, message=text))
    post_event(meta["namespace"], "Polecat", polecat, reason, message=text, type_="Warning")
