"""The rig loop on a cluster: the rig pass with Polecat resources and Jobs as its ports.

One kopf daemon per Rig. It wakes when the ledger moves (one ls-remote per poll for the
whole rig), when kopf's indexes of the rig's Polecats, Jobs, Convoys and MergeQueues change,
and every Settings.patrol_seconds for what only time changes (the Witness's heartbeat ages, escalation
bumps); it never polls the Kubernetes API. After each pass it projects the ledger onto the status of
the Rig, its Polecats (restarts) and its Convoys.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import kopf
from kubernetes import client

from .. import convoy as convoys
from .. import escalation, notify, witness
from ..api import API_VERSION, GROUP, VERSION, Condition, Invalid, PolecatSpec, RigSpec
from ..api.validation import parse_spec
from ..deacon import Deacon
from ..dogs import Kennel, Timers
from ..escalation import Routes
from ..ledger import Bead, BeadType, Ledger, LedgerError, Status, counts_by_status
from ..local.driver import parts_done
from ..names import APP_MANAGED_BY, MANAGED_BY, OPERATOR_ACTOR, RIG_LABEL
from ..polecats import agent_id, hooked_to
from ..refinery.verify import Verification
from ..rigloop import RigPass
from ..runtimes.kubernetes import (
    JobRequest,
    KubernetesBackend,
    VerifyRequest,
    session_job,
    state_claim,
    verification_job,
)
from ..settings import Settings
from ..telemetry import metrics
from .client import api_client, post_event, put_status, read_secret, set_conditions
from .convoys import convoy_status
from .mergequeues import active_queue, project_queues, queue_settings
from .objects import ensure
from .sessions import ledgers, rig_spec, session_signals
from .sessions import settings as operator_settings

log = logging.getLogger("gastown.dispatch")
POLL_SECONDS = 2.0


class KubePort:
    def __init__(self, namespace: str, rig_name: str, rig_uid: str, rig: RigSpec, prefix: str,
                 polecats: Mapping[str, dict], sessions: kopf.Index, convoy_refs: Mapping[str, dict],
                 backend: KubernetesBackend, settings: Settings,
                 peers: Callable[[str], Ledger | None] | None = None, queue: dict | None = None,
                 verification_jobs: list[dict] | None = None, starts: Mapping | None = None,
                 heartbeats: Mapping | None = None, ownerless_pods: list[str] | None = None):
        self.peers, self.settings = peers or (lambda rig: None), settings
        self.queue, self.verification_jobs = queue, verification_jobs or []
        self.starts, self.heartbeats = starts or {}, heartbeats or {}
        self.ownerless_pods = sorted(set(ownerless_pods or []))
        self.namespace, self.rig_name, self.rig_uid, self.rig, self.prefix = namespace, rig_name, rig_uid, rig, prefix
        self.known, self.sessions, self.convoy_refs, self.backend = polecats, sessions, convoy_refs, backend

    def polecats(self) -> tuple[list[str], set[str]]:
        retired = {n for n, p in self.known.items() if p["spec"].get("desiredState") == "retired"}
        return list(self.known), retired

    def busy(self) -> set[str]:
        return {p for p in self.known if any(s["active"] for s in self.sessions.get((self.namespace, p), []))}

    def _owner(self, kind: str, name: str, uid: str, controller: bool = False) -> dict:
        return {"apiVersion": API_VERSION, "kind": kind, "name": name, "uid": uid,
                "blockOwnerDeletion": True, **({"controller": True} if controller else {})}

    def add_polecat(self, name: str) -> None:
        ensure({"apiVersion": API_VERSION, "kind": "Polecat",
                "metadata": {"name": name, "namespace": self.namespace,
                             "labels": {APP_MANAGED_BY: MANAGED_BY, RIG_LABEL: self.rig_name},
                             "ownerReferences": [self._owner("Rig", self.rig_name, self.rig_uid)]},
                "spec": {"rig": self.rig_name}})
        log.info("rig %s/%s: new polecat %s", self.namespace, self.rig_name, name)

    def start_session(self, polecat: str, bead: str, beads: Mapping[str, Bead]) -> None:
        ref = self.known.get(polecat)
        if ref is None:
            return  # its resource is not in kopf's index yet: the next pass starts it
        agent = beads.get(agent_id(self.prefix, polecat))
        count = int(agent.metadata.get("sessions", 0)) + 1 if agent else 1
        pspec = parse_spec(PolecatSpec, ref["spec"])
        resources = pspec.resources.wire() if (pspec.resources.requests or pspec.resources.limits) else {}
        req = JobRequest(
            namespace=self.namespace, rig=self.rig_name, rig_spec=self.rig, polecat=polecat, polecat_uid=ref["uid"],
            bead=bead, count=count, runtime=pspec.runtime or self.rig.runtime, resources=resources,
            convoy=(beads[bead].metadata.get("convoy") if bead in beads else None), **self._images())
        job = session_job(req)
        self.backend.ensure_claim(state_claim(req))  # the polecat's HOME, before its first session
        self.backend.start(job)
        log.info("rig %s/%s: session %s for %s on %s", self.namespace, self.rig_name, job["metadata"]["name"],
                 polecat, bead)

    def _images(self) -> dict[str, Any]:
        return {"image": self.settings.agent_image, "runtimes_configmap": self.settings.runtimes_configmap}

    def plan_with_mayor(self, key: str, goal: str) -> None:
        ref = self.convoy_refs.get(key)
        if ref is None:
            return
        job = session_job(JobRequest(
            namespace=self.namespace, rig=self.rig_name, rig_spec=self.rig, polecat="mayor", polecat_uid="",
            bead=key, count=1, runtime=self.rig.runtime, mayor_for=(key, ref["name"], ref["uid"]), **self._images()))
        self.backend.start(job)  # one Mayor Job per convoy: a second start finds it there

    # -- the Refinery ---------------------------------------------------------------------

    def start_verification(self, verification: Verification) -> None:
        owner = (self._owner("MergeQueue", self.queue["name"], self.queue["uid"], controller=True) if self.queue
                 else self._owner("Rig", self.rig_name, self.rig_uid, controller=True))
        job = verification_job(VerifyRequest(
            namespace=self.namespace, rig=self.rig_name, rig_spec=self.rig, batch=verification.batch,
            run=verification.run.to_dict(), ident=verification.ident, attempt=verification.attempt,
            ref=verification.ref, owner=owner, image=self.settings.agent_image))
        self.backend.start(job)
        log.info("rig %s/%s: verification %s (%s)", self.namespace, self.rig_name, job["metadata"]["name"],
                 verification.run.describe())

    def verifications(self, batch: str) -> dict[str, str | None]:
        return {j["ident"]: j["ended"] for j in self.verification_jobs if j["batch"] == batch}

    def refinery_event(self, reason: str, message: str, warning: bool = False) -> None:
        kind, name = ("MergeQueue", self.queue["name"]) if self.queue else ("Rig", self.rig_name)
        post_event(self.namespace, kind, name, reason, message, "Warning" if warning else "Normal")

    def announce(self, convoy: Bead, progress: convoys.ConvoyProgress) -> None:
        name = convoy.metadata["name"]
        text = f"convoy {name} on rig {self.rig_name} is done: {convoy.close_reason or progress.text}"
        for target in convoy.metadata.get("notify") or [{"type": "event"}]:
            try:
                if target.get("type") == "webhook":
                    ref = target["secretRef"]
                    notify.webhook(read_secret(self.namespace, ref["name"])[ref["key"]], text,
                                   {"rig": self.rig_name, "convoy": name, "progress": progress.text})
                elif target.get("type") == "event":
                    post_event(self.namespace, "Convoy", name, "ConvoyDone", text)
                else:
                    log.info("%s", text)
            except Exception as e:  # noqa: BLE001 (a failed announcement must not stop the rig)
                log.warning("convoy %s: could not notify %s: %s", name, target.get("type"), e)


    def parts_done(self, key: str, rigs: list[str]) -> bool:
        return parts_done(self.peers, key, rigs)

    def session_signals(self) -> dict[str, witness.SessionSignal]:
        return session_signals(self.namespace, self.known, self.sessions, self.starts, self.heartbeats,
                               datetime.now(UTC))

    def salvage(self, polecat: str, bead: str) -> None:
        """Nothing to do from here: a session pod saves its own work when it is stopped (its wrapper
        commits and pushes on SIGTERM, within the pod's grace period), and a pod already gone
        pushed what it had when its runtime ended."""

    def orphan_jobs(self) -> list[str]:
        """gastown's Jobs of this rig that lost their owner (made by hand, or their owner's
        reference removed): nothing would ever clean them up."""
        sessions = [j for (ns, _polecat), jobs in self.sessions.items() if ns == self.namespace for j in jobs
                    if j.get("rig") == self.rig_name]
        return sorted({j["name"] for j in [*sessions, *self.verification_jobs] if not j.get("owned", True)})

    def patrol(self, ledger: Ledger) -> None:
        """The Deacon's round for this rig: ledger heals, and orphaned Jobs and pods deleted
        (each gets SIGTERM and its grace period: a session wrapper pushes its work); each an Event."""
        grace = timedelta(seconds=self.settings.orphan_grace_seconds)
        heals = Deacon(ledger, OPERATOR_ACTOR, grace).patrol(list(self.known), self.busy(), self.rig.default_branch)
        for heal in heals:
            post_event(self.namespace, "Rig", self.rig_name, heal.kind, f"{heal.subject}: {heal.message}", "Warning")
        orphans = self.orphan_jobs()
        metrics.observe_heals(self.namespace, self.rig_name,
                              [h.kind for h in heals] + ["OrphanDeleted"] * (len(orphans) + len(self.ownerless_pods)))
        for job in orphans:
            self.backend.stop(self.namespace, job)
            post_event(self.namespace, "Rig", self.rig_name, "OrphanDeleted",
                       f"Job {job} was gastown's but had no owner: deleted", "Warning")
        for pod in self.ownerless_pods:
            self.backend.delete_pod(self.namespace, pod)
            post_event(self.namespace, "Rig", self.rig_name, "OrphanDeleted",
                       f"Pod {pod} was gastown's but had no owner: deleted", "Warning")

    def stop_session(self, polecat: str) -> None:
        jobs = [j for j in self.sessions.get((self.namespace, polecat), []) if j["active"]]
        for job in jobs:
            self.backend.stop(self.namespace, job["name"])
            log.info("rig %s/%s: stopped session %s of %s", self.namespace, self.rig_name, job["name"], polecat)

    def deliver(self, esc: Bead, route: str) -> bool:
        body = escalation.message(esc)
        severity = esc.metadata.get("severity", "P2")
        if route == "webhook":
            ref = self.rig.escalation.webhook_secret
            if ref is None:
                return False
            notify.webhook(read_secret(self.namespace, ref.name)[ref.key], body["text"], body["fields"])
        elif route == "event":
            source = esc.metadata.get("source") or {}
            kind, name = (("Convoy", source["convoy"]) if source.get("convoy") in {r["name"] for r in self.convoy_refs.values()}
                          else ("Polecat", source["polecat"]) if source.get("polecat") in self.known
                          else ("Rig", self.rig_name))
            post_event(self.namespace, kind, name, f"Escalation{severity}", body["text"],
                       "Warning" if severity in ("P0", "P1") else "Normal")
        elif route == "condition":
            set_conditions(self.namespace, "rigs", self.rig_name, Condition(
                type="Escalated", status="True", reason=f"Escalation{severity}",
                message=f"{esc.id}: {body['text'][:1000]} (gt escalate ack {esc.id})"))
        else:
            log.warning("rig %s/%s: escalation %s", self.namespace, self.rig_name, body["text"])
        return True


@kopf.daemon(GROUP, VERSION, "rigs", id="dispatch", cancellation_timeout=10)
def rig_loop(name: str, namespace: str, uid: str, spec: Mapping, stopped: kopf.DaemonStopped,
             memo: kopf.Memo, polecats_by_rig: kopf.Index, sessions_by_polecat: kopf.Index,
             convoys_by_rig: kopf.Index, rigs_by_name: kopf.Index, mergequeues_by_rig: kopf.Index,
             verifications_by_rig: kopf.Index, session_starts: kopf.Index, heartbeats_by_session: kopf.Index,
             ownerless_pods: kopf.Index, **_: Any) -> None:
    def peer(other: str) -> Ledger | None:
        """Another rig's ledger (for the parts of this rig's convoys that live there)."""
        other_spec = rig_spec(rigs_by_name, namespace, other)
        return ledgers(memo).for_rig(namespace, other, other_spec) if other_spec else None

    backend = KubernetesBackend(api_client())
    config = operator_settings(memo)
    seen: object = None
    last_pass = last_patrol = 0.0
    projected: dict[str, Any] = {}
    git_error: str | None = None
    peer_rigs: set[str] = set()
    rig: RigSpec | None = None
    gc_timer: Timers | None = None
    gc: threading.Thread | None = None
    while not stopped:
        try:  # ``spec`` is a live view: kopf keeps it up to date as the Rig changes
            changed = parse_spec(RigSpec, spec)
        except Invalid:
            changed = rig  # admission reports what is wrong; the last good spec goes on
        if changed is None:
            stopped.wait(POLL_SECONDS)
            continue
        if changed != rig:
            rig, seen = changed, None
            gc_timer = Timers(rig.dogs, datetime.now(UTC), only=("gc",))  # the other Dogs are the Rig's CronJobs
        try:
            ledger = ledgers(memo).for_rig(namespace, name, rig)  # follows credential changes
        except client.ApiException as e:
            log.warning("rig %s/%s: credentials Secret: %s", namespace, name, e.reason)
            stopped.wait(POLL_SECONDS * 5)
            continue
        polecats = {p["name"]: p for p in polecats_by_rig.get((namespace, name), [])}
        refs = {c["key"]: c for c in convoys_by_rig.get((namespace, name), [])}
        queues = list(mergequeues_by_rig.get((namespace, name), []))
        queue = active_queue(queues)
        settings = queue_settings(queue, rig.default_branch)
        jobs = list(verifications_by_rig.get((namespace, name), []))
        try:
            tip = ledger.refresh()
            port = KubePort(namespace, name, uid, rig, ledger.prefix, polecats, sessions_by_polecat, refs, backend,
                            config, peer, queue, jobs, session_starts, heartbeats_by_session,
                            list(ownerless_pods.get((namespace, name), [])))
            # the parts of this rig's convoys on other rigs move other ledgers: their tips wake us too
            peer_tips = tuple((r, other.refresh()) for r in sorted(peer_rigs) if (other := peer(r)) is not None)
            fingerprint = (tip, tuple(sorted((p, p in port.busy()) for p in polecats)), tuple(sorted(refs)), peer_tips,
                           settings, tuple(sorted((m["name"], len(m["conditions"])) for m in queues)),
                           tuple(sorted((j["ident"] or "", j["ended"] or "") for j in jobs)))
            if fingerprint != seen or time.monotonic() - last_pass > config.patrol_seconds:
                last_pass = time.monotonic()
                ref = rig.runtime.api_key_secret  # rigs on one Secret key share its rate limits
                report = RigPass(name, ledger, port, rig.max_polecats, rig.runtime.preset, OPERATOR_ACTOR,
                                 Routes.from_spec(rig.escalation), witness.Thresholds.from_spec(rig.witness),
                                 settings, key=f"secret:{namespace}/{ref.name}/{ref.key}" if ref else None,
                                 backoffs=memo["backoffs"]).run(fresh=False)
                metrics.observe_pass(namespace, name, report, time.monotonic() - last_pass)
                project(namespace, name, ledger.prefix, ledger.tip, report.beads or {}, refs, polecats, projected,
                        report.held, peer)
                project_queues(namespace, name, queues, report.beads or {}, settings.target, report.refinery,
                               projected)
                # a filling queue forms its batch when the window ends: that is time, not an event
                filling = report.refinery is not None and report.refinery.phase == "Filling"
                seen = fingerprint if not (report.acted or filling) else None
                peer_rigs = {r for c in convoys.open_convoys(report.beads or {}) if convoys.is_home(c, name)
                             for r in convoys.other_rigs(c)}
            if time.monotonic() - last_patrol > config.deacon_seconds:
                last_patrol = time.monotonic()
                port.patrol(ledger)
            if (gc is None or not gc.is_alive()) and gc_timer and gc_timer.due(datetime.now(UTC)):
                gc = threading.Thread(target=_gc, args=(namespace, name, ledger, rig), daemon=True, name=f"gc-{namespace}-{name}")
                gc.start()
            git_error = report_git(namespace, name, None, git_error)
        except LedgerError as e:
            log.warning("rig %s/%s: %s", namespace, name, e)
            git_error = report_git(namespace, name, str(e), git_error)
        stopped.wait(POLL_SECONDS)
    metrics.forget(namespace, name)


def _gc(namespace: str, name: str, ledger: Ledger, rig: RigSpec) -> None:
    """The gc Dog, on the operator's own cache of the rig (in the background: it may take a while)."""
    try:
        Kennel(ledger, rig.default_branch, rig.dogs.retain_days, OPERATOR_ACTOR).run("gc")
        metrics.observe_dog(namespace, name, "gc", True)
    except LedgerError as e:
        log.warning("the gc Dog of %s: %s", ledger.remote, e)
        metrics.observe_dog(namespace, name, "gc", False)


def report_git(namespace: str, rig: str, error: str | None, last: str | None) -> str | None:
    """Flip GitReachable when the remote goes away or comes back; return the error now."""
    if error == last:
        return last
    set_conditions(namespace, "rigs", rig, Condition(
        type="GitReachable", status="False" if error else "True", reason="GitError" if error else "Reachable",
        message=f"{error}; retrying" if error else "the remote answers again"))
    if error:
        post_event(namespace, "Rig", rig, "GitUnreachable", error, "Warning")
    return error


def project(namespace: str, rig: str, prefix: str, tip: str | None, beads: Mapping[str, Bead], refs: Mapping[str, dict],
            polecats: Mapping[str, dict], last: dict[str, Any], held: str | None = None,
            peer: Callable[[str], Ledger | None] | None = None) -> None:
    """Write what the ledger says onto the Rig, Polecat and Convoy statuses; only what changed."""
    def put(plural: str, obj: str, status: dict, *conditions: Condition) -> None:
        put_status(namespace, plural, obj, status, last)
        if conditions and last.get(f"{plural}/{obj}#conditions") != conditions:
            set_conditions(namespace, plural, obj, *conditions)
            last[f"{plural}/{obj}#conditions"] = conditions

    work = [b for b in beads.values() if b.type not in (BeadType.AGENT, BeadType.CONVOY)]
    active = len({b.assignee for b in work if b.assignee and b.status in (Status.HOOKED, Status.IN_PROGRESS)})
    status: dict[str, Any] = {"ledgerHead": tip, "beads": counts_by_status(work), "activePolecats": active}
    put("rigs", rig, status, Condition(
        type="Dispatching", status="False" if held else "True",
        reason=("Paused" if held.startswith("paused") else "RateLimited") if held else "Dispatching",
        message=held or "ready beads go to polecats as slots free"))
    for polecat in polecats:
        held = hooked_to(beads, polecat) or next(
            (b for b in work if b.assignee == polecat and b.status == Status.IN_PROGRESS), None)
        put("polecats", polecat, {"restartCount": int(held.metadata.get("attempts", 0)) if held else 0})
    for key, ref in refs.items():
        convoy = beads.get(convoys.convoy_id(prefix, key))
        if convoy is None or not convoys.is_home(convoy, rig):
            continue  # the Convoy's status is its home rig's to write
        parts = []
        for other in convoys.other_rigs(convoy):
            ledger = peer(other) if peer else None
            if ledger is not None:
                snap = ledger.snapshot()
                part = snap.get(convoys.convoy_id(snap.prefix, key))
                if part is not None:
                    parts.append((part, snap.beads()))
        fields, conditions = convoy_status(convoy, beads, parts)
        put("convoys", ref["name"], fields, *conditions)
