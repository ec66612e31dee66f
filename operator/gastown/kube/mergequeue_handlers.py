"""The Refinery on a cluster: which MergeQueue configures a rig, its verification Jobs, its status.

The Refinery itself runs in the rig loop (rigloop_daemon); here is what the loop knows about the
cluster without asking the API (kopf's indexes) and what it writes back (the MergeQueue's
status, projected from the ledger: its counters, the batch being bisected drawn as its rounds and
runs as the dashboard draws it, and the merge requests merged and rejected lately; bounded, so
that a status never grows with the queue's history).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import kopf

from .. import overview
from ..api import GROUP, VERSION, Condition, Invalid, MergeQueueSpec
from ..api.validation import parse_spec
from ..ledger import Bead, HistoryEntry, LedgerError
from ..names import APP_COMPONENT, BATCH_LABEL, RIG_LABEL, VERIFICATION_LABEL
from ..refinery import QueueSettings, RefineryReport
from ..refinery import queue as q
from ..refinery.bisect import Bisection
from ..runtimes.kubernetes import VERIFICATION
from .admission import current_conditions
from .client import put_status, set_conditions

VERIFY_LABELS = {APP_COMPONENT: VERIFICATION}
KEEP_ROUNDS = 12  # a batch's last rounds in the status (a batch of 64 with two bad MRs takes about 8)
KEEP_OUTCOMES = 10  # merges in the status, and rejections
KEEP_TEXT = 200  # characters of a title or a reason in the status

History = Callable[[str], Sequence[HistoryEntry]]  # a bead's history, oldest first (Ledger.history)
HISTORY_KEY = "batch history"  # where the projection's memo keeps it (a space: never PLURAL/NAME, put_status's)


@kopf.index(GROUP, VERSION, "mergequeues")
def mergequeues_by_rig(*, namespace: str | None, name: str, uid: str, spec: Mapping, meta: Mapping, status: Mapping,
                       **_: Any) -> dict:
    return {(namespace, spec.get("rig")): {"name": name, "uid": uid, "spec": dict(spec),
                                           "created": meta.get("creationTimestamp") or "",
                                           "conditions": list((status or {}).get("conditions") or [])}}


@kopf.index("batch", "v1", "jobs", labels=VERIFY_LABELS)
def verifications_by_rig(*, namespace: str | None, name: str, labels: Mapping, status: Mapping, meta: Mapping,
                         **_: Any) -> dict:
    return {(namespace, labels.get(RIG_LABEL)): {
        "name": name, "batch": labels.get(BATCH_LABEL), "ident": labels.get(VERIFICATION_LABEL),
        "ended": verification_ended(name, status), "owned": bool(meta.get("ownerReferences"))}}


def verification_ended(job: str, status: Mapping) -> str | None:
    """None while the Job runs; otherwise what to say if its result is not in the ledger."""
    for c in status.get("conditions") or []:
        if c.get("status") != "True":
            continue
        if c.get("type") == "Failed":
            return (f"verification Job {job} failed ({c.get('reason') or 'Failed'}: {c.get('message') or 'no message'}) "
                    f"without recording a result; see kubectl logs job/{job}")
        if c.get("type") == "Complete":
            return f"verification Job {job} completed without recording a result; see kubectl logs job/{job}"
    return None


def active_queue(queues: list[dict]) -> dict | None:
    """The MergeQueue that configures the rig: the one already merging, else the oldest."""
    def merging(queue: dict) -> bool:
        return any(c.get("type") == "Ready" and c.get("reason") == "Merging" for c in queue["conditions"])

    return min(queues, key=lambda m: (not merging(m), m["created"], m["name"]), default=None)


def queue_settings(queue: dict | None, default_branch: str) -> QueueSettings:
    """The queue's settings; the defaults when the rig has no (valid) MergeQueue, since a rig's
    merge requests are merged all the same (admission reports an invalid spec)."""
    try:
        spec = parse_spec(MergeQueueSpec, queue["spec"]) if queue else None
    except Invalid:
        spec = None
    return QueueSettings.from_spec(spec, default_branch)


def mergequeue_status(beads: Mapping[str, Bead], target: str, report: RefineryReport | None, *,
                      history: History | None = None, parallel: int = 4) -> dict:
    """The MergeQueue's status from the ledger (and the phase of the pass that just ran). Pure but
    for ``history``, the ledger's (the bisection's rounds are told by the batch's history)."""
    batch = q.active_batch(beads, target)
    merged = [b for b in q.merge_requests(beads, target) if b.metadata.get("merged_commit") and b.closed_at]
    last = max(merged, key=lambda b: b.closed_at, default=None)  # type: ignore[arg-type, return-value]
    c = q.counters(beads, target)
    shown = overview.shown_batch(beads, target)
    return {"phase": report.phase if report else ("Verifying" if batch else "Idle"),
            "queueLength": len(q.queued(beads, target)),
            "currentBatch": list(batch.metadata.get("mrs", [])) if batch else [],
            "batch": batch_status(shown, _history(history, shown.id), parallel) if shown else None,
            "recent": overview.outcomes(q.merge_requests(beads, target), keep=KEEP_OUTCOMES, text=KEEP_TEXT),
            "lastMergedCommit": last.metadata["merged_commit"] if last else None,
            "counters": {"merged": c["merged"], "rejected": c["rejected"], "conflicts": c["conflicts"],
                         "verificationRuns": c["verification_runs"]}}


def _cached(history: History | None, beads: Mapping[str, Bead], last: dict[str, Any]) -> History | None:
    """``history``, read again only when the bead changed (a pass writes the status each time it runs)."""
    if history is None:
        return None

    def read(bead: str) -> Sequence[HistoryEntry]:
        key = (bead, beads[bead].updated_at if bead in beads else None)
        cached = last.get(HISTORY_KEY)
        if cached is None or cached[0] != key:
            cached = last[HISTORY_KEY] = (key, history(bead))
        return cached[1]
    return read


def _history(history: History | None, bead: str) -> Sequence[HistoryEntry]:
    try:
        return history(bead) if history else ()
    except LedgerError:  # (not in the ledger's tip yet: its runs are shown in one round until the next pass)
        return ()


def batch_status(batch: Bead, history: Sequence[HistoryEntry], parallel: int) -> dict:
    """The batch and its bisection (``overview.rounds_of``, as the dashboard draws it): its MRs, its
    last ``KEEP_ROUNDS`` rounds with their runs, and what it accepted and rejected so far."""
    rounds = overview.rounds_of(batch, history, parallel)
    first = max(0, len(rounds) - KEEP_ROUNDS)
    state = Bisection.from_dict(batch.metadata["state"])
    mrs = list(batch.metadata.get("mrs", []))
    return {"id": batch.id, "phase": batch.metadata.get("phase", ""), "mrs": mrs, "round": len(rounds),
            "rounds": [{"round": n, "runs": [run_status(r) for r in runs]}
                       for n, runs in enumerate(rounds[first:], first + 1)],
            "accepted": list(state.accepted), "rejected": [m for m in mrs if m in state.rejected]}


def run_status(run: Mapping[str, Any]) -> dict:
    """One run of a round (from ``overview.rounds_of``): the MRs it verifies stacked on how many
    accepted ones, its result (or ``running``), its ID (the Job's ``gastown.dev/verification`` label)."""
    return {"run": run["run"], "group": list(run["group"]), "stackedOn": len(run["prefix"]),
            "result": run["result"], "summary": run["describe"], **({"gate": run["gate"]} if run.get("gate") else {})}


def project_queues(namespace: str, rig: str, *, queues: list[dict], beads: Mapping[str, Bead], target: str,
                   report: RefineryReport | None, last: dict[str, Any], history: History | None = None) -> None:
    """Write the ledger's view onto the rig's MergeQueues: the status on the one that runs, a
    Ready=False (Duplicate) condition on any other. A queue with an invalid spec is admission's."""
    active = active_queue(queues)
    parallel = queue_settings(active, target).parallel
    for queue in queues:
        conditions = current_conditions({"status": {"conditions": queue["conditions"]}})
        if any(c.type == "Ready" and c.reason == "InvalidSpec" for c in conditions):
            continue
        if queue is active:
            status = mergequeue_status(beads, target, report, history=_cached(history, beads, last),
                                       parallel=parallel)
            ready = Condition(type="Ready", status="True", reason="Merging",
                              message=f"merging rig {rig}'s merge requests into {target}")
        else:
            status = {"phase": "Invalid"}
            ready = Condition(type="Ready", status="False", reason="Duplicate",
                              message=f"rig {rig} is merged by MergeQueue {active['name']}; delete this one "  # type: ignore[index]
                                      "or move its settings there")
        put_status(namespace, "mergequeues", queue["name"], status, last=last)  # first: a reader of Ready sees it
        if not any(c.type == "Ready" and c.reason == ready.reason for c in conditions):
            # (whenever the watched object lacks it: a no-op when the object has it already)
            set_conditions(namespace, "mergequeues", queue["name"], ready)
