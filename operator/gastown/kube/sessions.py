"""Polecats on a cluster: identity in the ledger, a Job per session, status from the Job."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import kopf

from ..api import GROUP, VERSION, Invalid, PolecatSpec, RigSpec
from ..api.validation import parse_spec
from ..ledger import BeadType, LedgerError, Status
from ..polecats import EnsureAgent, agent_id, branch_for, hooked_to, sessions_to_start
from ..runtimes.kubernetes import COMPONENT, JobRequest, KubernetesBackend, session_job
from .client import api_client, patch_status
from .ledgers import RigLedgers

log = logging.getLogger("gastown.sessions")
SESSION_LABELS = {"app.kubernetes.io/component": COMPONENT}
POLL_SECONDS = 2.0


def ledgers(memo: kopf.Memo) -> RigLedgers:
    if "ledgers" not in memo:
        memo["ledgers"] = RigLedgers()
    return memo["ledgers"]


# --- what the operator knows without asking the API (kopf keeps these from its watches) ---------


@kopf.index(GROUP, VERSION, "rigs")
def rigs_by_name(namespace: str, name: str, spec: Mapping, **_: Any) -> dict:
    return {(namespace, name): dict(spec)}


@kopf.index(GROUP, VERSION, "polecats")
def polecats_by_rig(namespace: str, name: str, uid: str, spec: Mapping, **_: Any) -> dict:
    return {(namespace, spec.get("rig")): {"name": name, "uid": uid, "spec": dict(spec)}}


@kopf.index("batch", "v1", "jobs", labels=SESSION_LABELS)
def sessions_by_polecat(namespace: str, name: str, labels: Mapping, status: Mapping, **_: Any) -> dict:
    return {(namespace, labels.get("gastown.dev/polecat")): {"name": name, "active": not job_finished(status)}}


def job_finished(status: Mapping) -> bool:
    return any(c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
               for c in status.get("conditions") or [])


def polecat_status_for_job(job: Mapping, deleted: bool = False) -> dict:
    """The Polecat status a session Job implies. Pure."""
    meta, status = job.get("metadata") or {}, job.get("status") or {}
    labels = meta.get("labels") or {}
    count = int((meta.get("annotations") or {}).get("gastown.dev/session-count", 0))
    if deleted or job_finished(status):
        return {"phase": "Idle", "currentBead": None, "branch": None, "session": None, "sessionCount": count}
    bead = labels.get("gastown.dev/bead")
    phase = "Working" if (status.get("ready") or 0) > 0 else "Spawning"
    return {"phase": phase, "currentBead": bead, "branch": branch_for(labels.get("gastown.dev/polecat", ""), bead),
            "session": {"name": meta.get("name"), "started": status.get("startTime")},
            "sessionCount": count}


# --- handlers ------------------------------------------------------------------------------------


@kopf.on.create(GROUP, VERSION, "polecats", id="identity")
@kopf.on.resume(GROUP, VERSION, "polecats", id="identity")
@kopf.on.update(GROUP, VERSION, "polecats", id="identity")
def polecat_identity(name: str, namespace: str, spec: Mapping, body: kopf.Body, patch: kopf.Patch,
                     memo: kopf.Memo, rigs_by_name: kopf.Index, **_: Any) -> None:
    """The polecat's identity is an agent bead in its rig's ledger: make sure it exists."""
    try:
        polecat = parse_spec(PolecatSpec, spec)
    except Invalid:
        return  # admission reports it
    rig_spec = _rig(rigs_by_name, namespace, polecat.rig)
    if rig_spec is None:
        message = f"rig {polecat.rig} does not exist (yet) in {namespace}; retrying until it does"
        kopf.warn(body, reason="RigNotFound", message=message)
        raise kopf.TemporaryError(message, delay=10)
    if polecat.desired_state == "retired":
        patch.status["phase"] = "Retired"
    elif (body.get("status") or {}).get("phase") == "Retired":
        patch.status["phase"] = "Idle"
    runtime = (polecat.runtime or rig_spec.runtime).preset
    ledger = ledgers(memo).get(namespace, polecat.rig, rig_spec.git_url, rig_spec.beads_prefix)
    try:
        ledger.apply(EnsureAgent(name, polecat.rig, "gastown operator", runtime))
    except LedgerError as e:
        kopf.warn(body, reason="LedgerUnavailable", message=f"ledger of rig {polecat.rig}: {e}")
        raise kopf.TemporaryError(f"ledger of rig {polecat.rig}: {e}", delay=30) from e


@kopf.on.event("batch", "v1", "jobs", labels=SESSION_LABELS)
def session_job_event(event: Mapping, **_: Any) -> None:
    """Project a session Job onto its Polecat's status."""
    job = event.get("object") or {}
    meta = job.get("metadata") or {}
    polecat = (meta.get("labels") or {}).get("gastown.dev/polecat")
    if not polecat:
        return
    patch_status(meta["namespace"], "polecats", polecat,
                 polecat_status_for_job(job, deleted=event.get("type") == "DELETED"))


@kopf.on.event("coordination.k8s.io", "v1", "leases", labels={"app.kubernetes.io/component": "heartbeat"})
def session_heartbeat(event: Mapping, **_: Any) -> None:
    """A session renewed its Lease: that is the polecat's last heartbeat."""
    lease = event.get("object") or {}
    meta = lease.get("metadata") or {}
    polecat = (meta.get("labels") or {}).get("gastown.dev/polecat")
    renewed = (lease.get("spec") or {}).get("renewTime")
    if polecat and renewed and event.get("type") != "DELETED":
        patch_status(meta["namespace"], "polecats", polecat, {"lastHeartbeat": renewed})


@kopf.daemon(GROUP, VERSION, "rigs", id="sessions", cancellation_timeout=10)
def rig_sessions(name: str, namespace: str, spec: Mapping, stopped: kopf.DaemonStopped, memo: kopf.Memo,
                 polecats_by_rig: kopf.Index, sessions_by_polecat: kopf.Index, **_: Any) -> None:
    """Start a session Job for every polecat of this rig that holds a bead and runs nothing.

    Woken by the ledger moving (one ls-remote per poll for the whole rig) or by the set of
    polecats and sessions changing; never by polling the Kubernetes API.
    """
    try:
        rig = parse_spec(RigSpec, spec)
    except Invalid:
        return
    ledger = ledgers(memo).get(namespace, name, rig.git_url, rig.beads_prefix)
    backend = KubernetesBackend(api_client())
    seen: object = None
    restarts_seen: dict[str, int] = {}
    while not stopped:
        polecats = {p["name"]: p for p in polecats_by_rig.get((namespace, name), [])
                    if p["spec"].get("desiredState") != "retired"}
        busy = {p for p in polecats if any(s["active"] for s in sessions_by_polecat.get((namespace, p), []))}
        try:
            tip = ledger.refresh()
            fingerprint = (tip, tuple(sorted(polecats)), tuple(sorted(busy)))
            if fingerprint != seen:
                snap = ledger.snapshot(refresh=False)
                beads = snap.beads()
                for polecat in polecats:
                    held = hooked_to(beads, polecat) or _in_progress(beads, polecat)
                    restarts = int(held.metadata.get("attempts", 0)) if held else 0
                    if restarts_seen.get(polecat) != restarts:
                        patch_status(namespace, "polecats", polecat, {"restartCount": restarts})
                        restarts_seen[polecat] = restarts
                for polecat, bead in sessions_to_start(beads, polecats, busy):
                    agent = beads.get(agent_id(snap.prefix, polecat))
                    count = int(agent.metadata.get("sessions", 0)) + 1 if agent else 1
                    job = _job(namespace, name, rig, polecats[polecat], bead, count, beads)
                    backend.start(job)
                    log.info("rig %s/%s: started session %s for %s on %s", namespace, name,
                             job["metadata"]["name"], polecat, bead)
                seen = fingerprint
        except LedgerError as e:
            log.warning("rig %s/%s: ledger unavailable: %s", namespace, name, e)
        stopped.wait(POLL_SECONDS)


def _in_progress(beads: Mapping, polecat: str):
    return next((b for b in beads.values() if b.assignee == polecat and b.status == Status.IN_PROGRESS
                 and b.type != BeadType.AGENT), None)


def _rig(rigs_by_name: kopf.Index, namespace: str, rig: str) -> RigSpec | None:
    for spec in rigs_by_name.get((namespace, rig), []):
        try:
            return parse_spec(RigSpec, spec)
        except Invalid:
            return None
    return None


def _job(namespace: str, rig_name: str, rig: RigSpec, polecat: Mapping, bead_id: str, count: int,
         beads: Mapping) -> dict:
    pspec = parse_spec(PolecatSpec, polecat["spec"])
    convoy = beads[bead_id].metadata.get("convoy") if bead_id in beads else None
    job = session_job(JobRequest(
        namespace=namespace, rig=rig_name, rig_spec=rig, polecat=polecat["name"], polecat_uid=polecat["uid"],
        bead=bead_id, count=count, runtime=pspec.runtime or rig.runtime,
        resources=pspec.resources.wire() if (pspec.resources.requests or pspec.resources.limits) else {},
        convoy=convoy))
    return job
