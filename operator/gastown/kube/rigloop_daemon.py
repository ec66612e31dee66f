"""The rig loop on a cluster: one kopf daemon per Rig runs the engine's RigLoop, with Polecat
resources and Jobs as its ports.

The loop passes when the ledger moves (one ls-remote per poll for the whole rig), when kopf's
indexes of the rig's Polecats, Jobs, Convoys and MergeQueues change, and every
Settings.patrol_seconds for what only time changes (the Witness's heartbeat ages, escalation
bumps); it never polls the Kubernetes API. After each pass the driver projects the ledger onto
the status of the Rig, its Polecats (restarts) and its Convoys.

It keeps the rig loop's one Cadence: GT_POLL_BUSY_SECONDS (at least POLL_SECONDS) between ticks
while the rig is busy, each quiet tick doubling the wait up to GT_POLL_IDLE_SECONDS. A wait ends at once when the operator sees
something of the rig move without asking anyone (``KubeRig.woken``, looked at by one task for every
resting rig, rests.py: kopf's indexes, fed by its watches: the Rig's spec, its Polecats, Convoys,
MergeQueues, a Job ending; a push to the rig's ledger, or to a ledger of its convoys, from this
process: a Convoy's handler). A write by anyone else (a session's push) is seen at the next poll.

The daemon is a coroutine: each tick runs in the rig loops' own pool of threads (memo.rig_threads)
and the daemon awaits between ticks, so a rig holds a thread only while it ticks and kopf's
workers are left to the handlers, however many rigs there are. A pass asks the API server once
for what it wants (a Polecat, a session Job) and not again while kopf's indexes catch up.

A polecat keeps its ledger name (the agent bead's, GT_POLECAT, the gastown.dev/polecat label);
its Polecat resource is named ``<rig>-<polecat>`` (polecats.resource_name), so that two rigs of a
namespace may each have a furiosa.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import kopf
from kubernetes import client

from .. import convoy as convoys
from .. import escalation, notify, witness
from ..api import API_VERSION, Condition, Invalid, PolecatSpec, RigSpec, set_condition
from ..api.validation import parse_spec
from ..budget import Gate, budget_condition
from ..deacon import Heal
from ..dogs import DogReport, Kennel
from ..escalation import Routes
from ..ledger import Bead, BeadType, Ledger, Status, counts_by_status
from ..ledger.ledger import pushed_marker, pushed_stamp
from ..names import APP_MANAGED_BY, MANAGED_BY, OPERATOR_ACTOR, POLECAT_LABEL, RIG_LABEL
from ..polecats import agent_id, hooked_to, resource_name
from ..refinery.verify import Verification
from ..rigloop import RESTART_SECONDS, Cadence, Driver, DriverPort, RigLoop, Round
from ..rigpass import PassConfig, PassReport, parts_of
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
from ..trouble import REMOTE, Trouble
from .client import (
    api_client,
    post_event,
    put_status,
    read_secret,
    set_conditions,
    update_conditions,
)
from .convoy_handlers import convoy_status
from .daemon import rig_daemon
from .forbidden import refused
from .memo import ledgers, rig_rests, rig_threads, settings
from .mergequeue_handlers import active_queue, project_queues, queue_settings
from .objects import create
from .polecat_handlers import session_signals
from .rig_index import rig_spec

log = logging.getLogger("gastown.dispatch")
POLL_SECONDS = 2.0  # at least this between two ticks of a busy rig's loop (an idle rig's grow to GT_POLL_IDLE_SECONDS)
STOP_BACKOFF = 15.0  # seconds kopf waits for a stopping rig loop (its tick, its claim's release) before cancelling it
ASK_AGAIN_SECONDS = 30.0  # a request kopf's indexes do not show yet is made again after this long


class Asked:
    """What a rig loop asked the API server for (a Polecat, a session Job) that kopf's indexes may
    not show yet: a pass asks again only when the last ask is ASK_AGAIN_SECONDS old."""

    def __init__(self) -> None:
        self._at: dict[tuple[str, str], float] = {}

    def first(self, kind: str, name: str) -> bool:
        """True (and noted) when ``name`` was not asked for lately: ask now."""
        now = time.monotonic()
        self._at = {k: t for k, t in self._at.items() if now - t < ASK_AGAIN_SECONDS}
        if (kind, name) in self._at:
            return False
        self._at[(kind, name)] = now
        return True

    def lately(self, kind: str) -> set[str]:
        now = time.monotonic()
        return {n for (k, n), t in self._at.items() if k == kind and now - t < ASK_AGAIN_SECONDS}


class KubePort:
    """The rig loop's ports on a cluster, over kopf's indexes as they are at one round."""

    shares_cache = False  # the verifiers are Jobs: they fetch each stack's scratch ref from the rig
    books_in_order = False  # a session books its start from its pod

    def __init__(self, *, namespace: str, rig_name: str, rig_uid: str, rig: RigSpec, ledger: Ledger,
                 polecats: Mapping[str, dict], sessions: kopf.Index, convoy_refs: Mapping[str, dict],
                 backend: KubernetesBackend, settings: Settings, queue: dict | None = None,
                 queues: list[dict] | None = None, verification_jobs: list[dict] | None = None,
                 starts: Mapping | None = None, heartbeats: Mapping | None = None,
                 ownerless_pods: list[str] | None = None, asked: Asked | None = None):
        self.ledger, self.settings = ledger, settings  # nothing here asks the remote: a round never fails
        self.queue, self.queues, self.verification_jobs = queue, queues or [], verification_jobs or []
        self.starts, self.heartbeats = starts or {}, heartbeats or {}
        self.ownerless_pods = sorted(set(ownerless_pods or []))
        self.namespace, self.rig_name, self.rig_uid, self.rig = namespace, rig_name, rig_uid, rig
        # ``polecats``: the rig's Polecat resources by the ledger's name of their polecat
        self.known, self.sessions, self.convoy_refs, self.backend = polecats, sessions, convoy_refs, backend
        self.asked = asked or Asked()

    def polecats(self) -> tuple[list[str], set[str]]:
        retired = {n for n, p in self.known.items() if p["spec"].get("desiredState") == "retired"}
        return list(self.known), retired

    def busy(self) -> set[str]:
        return {p for p in self.known if any(s["active"] for s in self._sessions(p))}

    def _sessions(self, polecat: str) -> list[dict]:
        return list(self.sessions.get((self.namespace, self.rig_name, polecat), []))

    def _owner(self, kind: str, name: str, uid: str, controller: bool = False) -> dict:
        return {"apiVersion": API_VERSION, "kind": kind, "name": name, "uid": uid,
                "blockOwnerDeletion": True, **({"controller": True} if controller else {})}

    def add_polecat(self, name: str) -> None:
        """The Polecat resource of ``name`` (the ledger's name), made once: one already there (made
        a moment ago, not yet in kopf's index) is left as it is."""
        if name in self.known or not self.asked.first("polecat", name):
            return
        resource = resource_name(self.rig_name, name)
        if create({"apiVersion": API_VERSION, "kind": "Polecat",
                   "metadata": {"name": resource, "namespace": self.namespace,
                                "labels": {APP_MANAGED_BY: MANAGED_BY, RIG_LABEL: self.rig_name, POLECAT_LABEL: name},
                                "ownerReferences": [self._owner("Rig", self.rig_name, self.rig_uid)]},
                   "spec": {"rig": self.rig_name}}):
            log.info("rig %s/%s: new polecat %s (Polecat %s)", self.namespace, self.rig_name, name, resource)

    def start_session(self, polecat: str, bead: str, beads: Mapping[str, Bead], *, frees_at_exit: bool) -> None:
        """A Job for the session (``frees_at_exit`` is never True here: a Job holds its slot until its
        end is recorded, so its wrap-up keeps its priority)."""
        ref = self.known.get(polecat)
        if ref is None:
            return  # its resource is not in kopf's index yet: the next pass starts it
        agent = beads.get(agent_id(self.ledger.prefix, polecat))
        count = int(agent.metadata.get("sessions", 0)) + 1 if agent else 1
        pspec = parse_spec(PolecatSpec, ref["spec"])
        resources = pspec.resources.wire() if (pspec.resources.requests or pspec.resources.limits) else {}
        req = JobRequest(
            namespace=self.namespace, rig=self.rig_name, rig_spec=self.rig, polecat=polecat, polecat_uid=ref["uid"],
            polecat_resource=ref["resource"], bead=bead, count=count, runtime=pspec.runtime or self.rig.runtime,
            resources=resources, convoy=(beads[bead].metadata.get("convoy") if bead in beads else None),
            **self._images())
        if not self.asked.first("session", req.name):
            return  # started a moment ago: kopf's index shows its Job soon
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
        post_event(self.namespace, kind, name, reason, message=message, type_="Warning" if warning else "Normal")

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
                    post_event(self.namespace, "Convoy", name, "ConvoyDone", message=text)
                else:
                    log.info("%s", text)
            except Exception as e:  # noqa: BLE001 (a failed announcement must not stop the rig)
                log.warning("convoy %s: could not notify %s: %s", name, target.get("type"), e)

    def session_signals(self) -> dict[str, witness.SessionSignal]:
        return session_signals(self.namespace, self.rig_name, self.known, sessions=self.sessions, starts=self.starts,
                               heartbeats=self.heartbeats, now=datetime.now(UTC))

    def salvage(self, polecat: str, bead: str) -> None:
        """Nothing to do from here: a session pod saves its own work when it is stopped (its wrapper
        commits and pushes on SIGTERM, within the pod's grace period), and a pod already gone
        pushed what it had when its runtime ended."""

    def orphan_jobs(self) -> list[str]:
        """gastown's Jobs of this rig that lost their owner (made by hand, or their owner's
        reference removed): nothing would ever clean them up."""
        sessions = [j for (ns, rig, _polecat), jobs in self.sessions.items()
                    if ns == self.namespace and rig == self.rig_name for j in jobs]
        return sorted({j["name"] for j in [*sessions, *self.verification_jobs] if not j.get("owned", True)})

    def deacon_scope(self) -> list[str]:
        """The polecats with a resource, and those whose resource was asked for a moment ago (after
        a reinstall, their work waits for them rather than being reopened)."""
        return sorted(set(self.known) | self.asked.lately("polecat"))

    def restore(self, beads: Mapping[str, Bead]) -> list[str]:
        """After a reinstall (none of the rig's Polecats on the cluster, its agent beads in the
        ledger): each polecat's resource made again from its agent bead."""
        if self.known:
            return []
        names = sorted(b.metadata["name"] for b in beads.values() if b.type == BeadType.AGENT
                       and "polecat" in b.labels and b.metadata.get("rig") == self.rig_name and b.metadata.get("name"))
        for name in names:
            self.add_polecat(name)
        return names

    def after_patrol(self, heals: Sequence[Heal]) -> list[str]:
        """Each of the Deacon's heals an Event; orphaned Jobs and pods deleted (each gets SIGTERM
        and its grace period: a session wrapper pushes its work), each an Event too."""
        for heal in heals:
            post_event(self.namespace, "Rig", self.rig_name, heal.kind, message=f"{heal.subject}: {heal.message}",
                       type_="Warning")
        orphans = self.orphan_jobs()
        deleted = ["OrphanDeleted"] * (len(orphans) + len(self.ownerless_pods))
        for job in orphans:
            self.backend.stop(self.namespace, job)
            post_event(self.namespace, "Rig", self.rig_name, "OrphanDeleted",
                       message=f"Job {job} was gastown's but had no owner: deleted", type_="Warning")
        for pod in self.ownerless_pods:
            self.backend.delete_pod(self.namespace, pod)
            post_event(self.namespace, "Rig", self.rig_name, "OrphanDeleted",
                       message=f"Pod {pod} was gastown's but had no owner: deleted", type_="Warning")
        return deleted

    def run_dog(self, name: str) -> DogReport:
        """The gc Dog, on the operator's own cache of the rig (the other Dogs are the Rig's CronJobs)."""
        return Kennel(self.ledger, self.rig.default_branch, self.rig.dogs.retain_days, OPERATOR_ACTOR).run(name)

    def stop_session(self, polecat: str) -> None:
        jobs = [j for j in self._sessions(polecat) if j["active"]]
        for job in jobs:
            self.backend.stop(self.namespace, job["name"])
            log.info("rig %s/%s: stopped session %s of %s", self.namespace, self.rig_name, job["name"], polecat)

    def webhook_url(self) -> str | None:
        ref = self.rig.escalation.webhook_secret
        return None if ref is None else read_secret(self.namespace, ref.name)[ref.key]

    def deliver(self, esc: Bead, route: str) -> bool:
        body = escalation.message(esc)
        severity = esc.metadata.get("severity", "P2")
        if route == "event":
            source = esc.metadata.get("source") or {}
            kind, name = (("Convoy", source["convoy"]) if source.get("convoy") in {r["name"] for r in self.convoy_refs.values()}
                          else ("Polecat", self.known[source["polecat"]]["resource"]) if source.get("polecat") in self.known
                          else ("Rig", self.rig_name))
            post_event(self.namespace, kind, name, f"Escalation{severity}", message=body["text"],
                       type_="Warning" if severity in ("P0", "P1") else "Normal")
        elif route == "condition":
            set_conditions(self.namespace, "rigs", self.rig_name, Condition(
                type="Escalated", status="True", reason=f"Escalation{severity}",
                message=f"{esc.id}: {body['text'][:1000]} (gt escalate ack {esc.id})"))
        else:
            log.warning("rig %s/%s: escalation %s", self.namespace, self.rig_name, body["text"])
        return True


class KubeRig:
    """The operator's ``Driver`` of the rig loop for one Rig: each round a KubePort over kopf's indexes."""

    def __init__(self, *, name: str, namespace: str, uid: str, spec: Mapping, memo: kopf.Memo,
                 indexes: Mapping[str, kopf.Index]):
        self.name, self.namespace, self.uid, self.spec, self.memo = name, namespace, uid, spec, memo
        self.indexes, self.settings = indexes, settings(memo)
        self.backend = KubernetesBackend(api_client())
        self.rig: RigSpec | None = None
        self.port: KubePort | None = None
        self.projected: dict[str, Any] = {}
        self.git_error: str | None = None
        self.holder: str | None = ""  # who holds the ledger, as last said ("": not said yet)
        self.blocked: dict[str, str] = {}  # the rig's problems besides its remote, by key
        self.peer_rigs: set[str] = set()  # the other rigs of this rig's open convoys (their parts, their budget)
        self.asked = Asked()
        self.restored = False  # the rig's Polecats checked against its ledger (once per loop)
        self.remote: str | None = None  # its ledger's, as of the last round
        self.markers: tuple[str, ...] = ()  # the pushed markers of its ledger and of its convoys' other rigs

    def peer(self, other: str) -> Ledger | None:
        """Another rig's ledger (for the parts of this rig's convoys that live there)."""
        other_spec = rig_spec(self.indexes["rigs_by_name"], self.namespace, other)
        return ledgers(self.memo).for_rig(self.namespace, other, other_spec) if other_spec else None

    def round(self) -> Round | float:
        try:  # ``spec`` is a live view: kopf keeps it up to date as the Rig changes
            self.rig = parse_spec(RigSpec, self.spec)
        except Invalid:
            pass  # admission reports what is wrong; the last good spec goes on
        rig, ns, name, ix = self.rig, self.namespace, self.name, self.indexes
        if rig is None:
            return POLL_SECONDS
        try:
            ledger = ledgers(self.memo).for_rig(ns, name, rig)  # follows credential changes
        except client.ApiException as e:
            log.warning("rig %s/%s: credentials Secret: %s", ns, name, e.reason)
            return POLL_SECONDS * 5
        queues = list(ix["mergequeues_by_rig"].get((ns, name), []))
        queue = active_queue(queues)
        self.port = port = KubePort(
            namespace=ns, rig_name=name, rig_uid=self.uid, rig=rig, ledger=ledger,
            polecats={p["name"]: p for p in sorted(  # one made by hand (named as its polecat) wins
                ix["polecats_by_rig"].get((ns, name), []), key=lambda p: p["name"] == p["resource"])},
            sessions=ix["sessions_by_polecat"], convoy_refs={c["key"]: c for c in ix["convoys_by_rig"].get((ns, name), [])},
            backend=self.backend, settings=self.settings, queue=queue, queues=queues,
            verification_jobs=list(ix["verifications_by_rig"].get((ns, name), [])), starts=ix["session_starts"],
            heartbeats=ix["heartbeats_by_session"], ownerless_pods=list(ix["ownerless_pods"].get((ns, name), [])),
            asked=self.asked)
        ref = rig.runtime.api_key_secret  # rigs on one Secret key share its rate limits
        config = PassConfig(limit=rig.max_polecats, runtime=rig.runtime.preset, target=rig.default_branch,
                            routes=Routes.from_spec(rig.escalation), thresholds=witness.Thresholds.from_spec(rig.witness),
                            queue=queue_settings(queue, rig.default_branch), dogs=rig.dogs, dog_names=("gc",),
                            key=f"secret:{ns}/{ref.name}/{ref.key}" if ref else None, budget=rig.budget,
                            shared=self.memo.get("shared"))
        return Round(ledger=ledger, port=port, config=config)

    def wake_key(self, round: Round) -> Hashable:
        # the parts of this rig's convoys on other rigs move other ledgers: their tips wake us too
        peers = [(r, other) for r in sorted(self.peer_rigs) if (other := self.peer(r)) is not None]
        self.remote = round.ledger.store.remote
        self.markers = tuple(str(pushed_marker(lg.store.remote)) for lg in [round.ledger, *(o for _, o in peers)])
        return self.seen(), tuple((r, other.refresh()) for r, other in peers)

    def seen(self) -> Hashable:
        """What kopf's indexes show of the rig (its watches keep them): its spec, its Polecats and
        their sessions (each Job's name, whether it runs, when its pod's agent started), its Convoys,
        MergeQueues and verification Jobs. Not the heartbeats: the Witness's deadlines (the pass's
        ``due``) say when one is owed a look, and a beat is no news."""
        at, ix, sessions = (self.namespace, self.name), self.indexes, self.indexes["sessions_by_polecat"]
        starts = ix["session_starts"]

        def jobs(polecat: str) -> list[tuple]:
            return sorted((s["name"], s["active"], sorted(map(str, starts.get((self.namespace, s["name"]), []))))
                          for s in sessions.get((*at, polecat), []))
        polecats = sorted(((p["resource"], p["spec"], jobs(p["name"])) for p in ix["polecats_by_rig"].get(at, [])),
                          key=lambda p: p[0])
        return (list(ix["rigs_by_name"].get(at, [])), polecats, sorted(c["key"] for c in ix["convoys_by_rig"].get(at, [])),
                sorted((m["name"], len(m["conditions"])) for m in ix["mergequeues_by_rig"].get(at, [])),
                sorted((j["ident"] or "", j["ended"] or "") for j in ix["verifications_by_rig"].get(at, [])),
                self.memo["shared"].owed(self.remote) if "shared" in self.memo and self.remote else 0)

    def woken(self) -> Hashable:
        """What ends a wait: ``seen``, and each push from this process to the rig's ledger or to a
        ledger of its convoys (a Convoy's handler writes there; a marker is replaced per push)."""
        return self.seen(), tuple(pushed_stamp(m) for m in self.markers)

    def passed(self, round: Round, report: PassReport) -> bool:
        port, ns, name, beads = self.port, self.namespace, self.name, report.beads or {}
        assert port is not None
        if not self.restored:  # the loop's first pass: a reinstalled rig gets its Polecats back
            self.restored = True
            if port.restore(beads):
                log.info("rig %s/%s: Polecats made again from the ledger's polecats", ns, name)
        project(ns, name, prefix=round.ledger.prefix, tip=round.ledger.tip, beads=beads, refs=port.convoy_refs,
                polecats=port.known, last=self.projected, held=report.held, peer=self.peer, gate=report.budget)
        project_queues(ns, name, queues=port.queues, beads=beads, target=round.config.queue.target,
                       report=report.refinery, last=self.projected, history=round.ledger.history)
        # every other rig of its open convoys: their parts' progress, and their budget (the home part's)
        self.peer_rigs = {r for c in convoys.open_convoys(beads) for r in c.metadata.get("rigs") or [] if r != name}
        # a filling queue forms its batch when the window ends: that is time, not an event
        filling = report.refinery is not None and report.refinery.phase == "Filling"
        return report.acted or filling

    def troubles(self, troubles: Sequence[Trouble]) -> None:
        remote = next((t.problem for t in troubles if t.key == REMOTE), None)
        self.git_error = report_git(self.namespace, self.name, remote, self.git_error)
        self.blocked = report_blocked(self.namespace, self.name, troubles, self.blocked)

    def claim(self, holder: str | None) -> None:
        self.holder = report_claim(self.namespace, self.name, holder, self.holder)

    def claimant(self) -> str:
        """How this Rig signs its ledger's driver claim: the same from any replica, another after a
        reinstall (a new uid) or from another cluster."""
        return f"operator rig {self.namespace}/{self.name} (uid {self.uid})"


# kopf.daemon without the finalizer (kube/daemon.py). At a stop kopf waits up to STOP_BACKOFF
# seconds for the loop to see ``stopped`` and release its claim (a SIGTERM ends the tick's git at
# once: kube/run.py), and cancels it only then.
@rig_daemon(id="dispatch", backoff=RESTART_SECONDS, cancellation_backoff=STOP_BACKOFF, cancellation_timeout=5)
async def rig_loop(*, name: str, namespace: str, uid: str, spec: Mapping, stopped: kopf.DaemonStopped,
                   memo: kopf.Memo, polecats_by_rig: kopf.Index, sessions_by_polecat: kopf.Index,
                   convoys_by_rig: kopf.Index, rigs_by_name: kopf.Index, mergequeues_by_rig: kopf.Index,
                   verifications_by_rig: kopf.Index, session_starts: kopf.Index, heartbeats_by_session: kopf.Index,
                   ownerless_pods: kopf.Index, **_: Any) -> None:
    indexes = {"polecats_by_rig": polecats_by_rig, "sessions_by_polecat": sessions_by_polecat,
               "convoys_by_rig": convoys_by_rig, "rigs_by_name": rigs_by_name, "mergequeues_by_rig": mergequeues_by_rig,
               "verifications_by_rig": verifications_by_rig, "session_starts": session_starts,
               "heartbeats_by_session": heartbeats_by_session, "ownerless_pods": ownerless_pods}
    driver = KubeRig(name=name, namespace=namespace, uid=uid, spec=spec, memo=memo, indexes=indexes)
    s = driver.settings
    poll = max(POLL_SECONDS, s.poll_busy_seconds)  # the local daemon's rule, never below 2 s for an operator's many rigs
    cadence = Cadence.of(s, poll=poll, period=s.patrol_seconds, idle=max(poll, s.poll_idle_seconds))
    loop = RigLoop(rig=name, label=namespace, driver=driver, actor=OPERATOR_ACTOR, cadence=cadence,
                   holder=driver.claimant(), peers=driver.peer, backoffs=memo["backoffs"])
    threads, rests, aio = rig_threads(memo), rig_rests(memo), asyncio.get_running_loop()
    refusals = 0  # API requests of the tick refused or failed in a row
    try:
        while not stopped:  # a thread only for the tick itself; the wait holds none
            try:
                seconds = await aio.run_in_executor(threads, loop.tick)
                refusals = 0
            except client.ApiException as e:  # a status write, a Job: the rig goes on, never kopf's minute
                refusals += 1
                seconds = s.backoff().delay(refusals)
                log.warning("rig %s/%s: %s; the rig loop tries again in %.0fs", namespace, name,
                            refused(e) if e.status == 403 else f"the API server answered {e.status} {e.reason}",
                            seconds)
            await rests.rest(driver.woken, stopped, seconds)  # a change the operator sees ends it at once
    finally:
        await aio.run_in_executor(threads, loop.release)  # the next driver need not wait out the lease
        metrics.forget(namespace, name)


def report_git(namespace: str, rig: str, error: str | None, last: str | None) -> str | None:
    """Flip GitReachable when the remote goes away or comes back; return the error now."""
    if error == last:
        return last
    reachable = Condition(type="GitReachable", status="False" if error else "True",
                          reason="GitError" if error else "Reachable",
                          message=f"{error}; retrying" if error else "the remote answers again")
    update_conditions(namespace, "rigs", rig, lambda current: set_condition(current, reachable),
                      fields=lambda have: git_phase(have, error))
    if error:
        post_event(namespace, "Rig", rig, "GitUnreachable", message=error, type_="Warning")
    return error


def git_phase(status: Mapping, error: str | None) -> dict:
    """The Rig's phase as its remote goes and comes back: Error while unreachable, Ready again once
    it answers if the reconcile had made the Rig Ready (a Rig never reconciled waits for its
    reconcile; an Invalid spec stays Invalid)."""
    if status.get("phase") == "Invalid":
        return {}
    if error:
        return {"phase": "Error"}
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
    return {"phase": "Ready"} if ready else {}


def report_claim(namespace: str, rig: str, holder: str | None, last: str | None) -> str | None:
    """Flip Driving when another driver holds the rig's ledger, or this operator takes it."""
    if holder == last:
        return last
    set_conditions(namespace, "rigs", rig, Condition(
        type="Driving", status="False" if holder else "True", reason="LedgerClaimed" if holder else "Driving",
        message=(f"the ledger is driven by {holder}: this Rig waits (stop that driver, or let its claim go stale)"
                 if holder else "this operator drives the rig's ledger")))
    if holder:
        post_event(namespace, "Rig", rig, "LedgerClaimed", message=f"the ledger is driven by {holder}",
                   type_="Warning")
    return holder


def report_blocked(namespace: str, rig: str, troubles: Sequence[Trouble], last: dict[str, str]) -> dict[str, str]:
    """The Blocked condition names what keeps the rig from working (an Event when a problem starts)."""
    now = {t.key: t.problem + (f" (escalated {t.escalation})" if t.escalation else "") for t in troubles
           if t.key != REMOTE}
    if now == last:
        return last
    for key in now.keys() - last.keys():
        post_event(namespace, "Rig", rig, "Blocked", message=now[key], type_="Warning")
    set_conditions(namespace, "rigs", rig, Condition(
        type="Blocked", status="True" if now else "False", reason="Blocked" if now else "Working",
        message="; ".join(now.values())[:4000] if now else "nothing keeps the rig from working"))
    return now


def project(namespace: str, rig: str, *, prefix: str, tip: str | None, beads: Mapping[str, Bead],
            refs: Mapping[str, dict], polecats: Mapping[str, dict], last: dict[str, Any], held: str | None = None,
            peer: Callable[[str], Ledger | None] | None = None, gate: Gate | None = None) -> None:
    """Write what the ledger says onto the Rig, Polecat and Convoy statuses; only what changed."""
    def put(plural: str, obj: str, status: dict, *conditions: Condition) -> None:
        put_status(namespace, plural, obj, status, last=last)
        if conditions and last.get(f"{plural}/{obj}#conditions") != conditions:
            set_conditions(namespace, plural, obj, *conditions)
            last[f"{plural}/{obj}#conditions"] = conditions

    work = [b for b in beads.values() if b.type not in (BeadType.AGENT, BeadType.CONVOY)]
    active = len({b.assignee for b in work if b.assignee and b.status in (Status.HOOKED, Status.IN_PROGRESS)})
    status: dict[str, Any] = {"ledgerHead": tip, "beads": counts_by_status(work), "activePolecats": active}
    status["spend"], status["sharedLimits"] = ([s.status() for s in gate.rig], gate.turns) if gate else ([], [])
    put("rigs", rig, status, Condition(
        type="Dispatching", status="False" if held else "True",
        reason=("Paused" if held.startswith("paused") else "BudgetExhausted" if "budget exhausted" in held
                else "RateLimited") if held else "Dispatching",
        message=held or "ready beads go to polecats as slots free"),
        *([budget_condition([*gate.rig, *gate.town])] if gate else []))
    for polecat, ref in polecats.items():
        holding = hooked_to(beads, polecat) or next(
            (b for b in work if b.assignee == polecat and b.status == Status.IN_PROGRESS), None)
        put("polecats", ref["resource"], {"restartCount": int(holding.metadata.get("attempts", 0)) if holding else 0})
    for key, ref in refs.items():
        convoy = beads.get(convoys.convoy_id(prefix, key))
        if convoy is None or not convoys.is_home(convoy, rig):
            continue  # the Convoy's status is its home rig's to write
        fields, conditions = convoy_status(convoy, beads, parts_of(peer, convoy, rig) if peer else [])
        put("convoys", ref["name"], fields, *conditions)


# The rig loop's Protocols, checked by mypy in `make lint`: a port that drifts fails there.
_port: type[DriverPort] = KubePort
_driver: type[Driver] = KubeRig
