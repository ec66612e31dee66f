"""Prometheus metrics of the rig loops, served by the operator at /metrics.

Gauges are the ledger's state after each rig pass (the same projection as the Rig status);
counters are what the passes did. Every series carries the rig's namespace and name.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Iterable

from prometheus_client import Counter, Gauge, Histogram, start_http_server

from .. import spend
from ..budget import Gate
from ..ledger import Bead, BeadType, Status
from ..rigpass import PassReport

RIG = ("namespace", "rig")
STATUSES = tuple(str(s) for s in Status)
SEVERITIES = ("P0", "P1", "P2", "P3")

BEADS = Gauge("gastown_beads", "Work beads of the rig's ledger, by status.", [*RIG, "status"])
ACTIVE = Gauge("gastown_active_polecats", "Polecats holding work (hooked or in progress).", RIG)
QUEUED = Gauge("gastown_merge_requests_queued", "Merge requests waiting or being verified.", RIG)
ESCALATIONS = Gauge("gastown_escalations_open", "Open escalations, by severity.", [*RIG, "severity"])
STARTED = Counter("gastown_sessions_started_total", "Agent sessions started.", RIG)
MERGED = Counter("gastown_merges_total", "Merge requests merged into the target branch.", RIG)
REJECTED = Counter("gastown_merge_rejections_total", "Merge requests rejected by verification.", RIG)
CONFLICTS = Counter("gastown_merge_conflicts_total", "Merge requests taken out of a batch for a conflict.", RIG)
RECOVERIES = Counter("gastown_witness_actions_total", "Sessions the Witness stopped or recorded as lost.", RIG)
HEALS = Counter("gastown_deacon_heals_total", "Heals by the Deacon, by kind.", [*RIG, "kind"])
DOGS = Counter("gastown_dog_runs_total", "Runs of the Dogs in this process, by outcome.", [*RIG, "dog", "outcome"])
TOKENS = Counter("gastown_tokens", "Tokens the rig's agent sessions used, as their runtimes reported them.",
                 [*RIG, "runtime", "kind"])
COST = Counter("gastown_cost_usd", "What the rig's agent sessions cost in US dollars, where the runtime reports it.",
               [*RIG, "runtime"])
BUDGET = ("scope", "convoy", "period", "unit")  # scope rig | convoy | town; period day | month | total; tokens | usd
SPENT = Gauge("gastown_budget_spent", "Spend counted against a budget this period (the ledger's session records).",
              [*RIG, *BUDGET])
REMAINING = Gauge("gastown_budget_remaining", "What is left of a budget this period (negative: overspent).",
                  [*RIG, *BUDGET])
PASS_SECONDS = Histogram("gastown_rig_pass_seconds", "Time one rig pass takes.", RIG,
                         buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))


def serve(port: int, address: str = "0.0.0.0") -> None:  # noqa: S104 (a pod's port, behind its Service)
    start_http_server(port, addr=address)


def observe_pass(namespace: str, rig: str, report: PassReport, seconds: float) -> None:
    labels = (namespace, rig)
    PASS_SECONDS.labels(*labels).observe(seconds)
    STARTED.labels(*labels).inc(report.started)
    RECOVERIES.labels(*labels).inc(report.healed)
    refinery = report.refinery
    MERGED.labels(*labels).inc(report.merged + (len(refinery.merged) if refinery else 0))
    REJECTED.labels(*labels).inc(len(refinery.rejected) if refinery else 0)
    CONFLICTS.labels(*labels).inc(report.conflicts + (len(refinery.conflicts) if refinery else 0))
    if report.beads is None:
        return
    beads = list(report.beads.values())
    _count_spend(labels, beads)
    if report.budget is not None:
        _observe_budget(labels, report.budget)
    work = [b for b in beads if b.type not in (BeadType.AGENT, BeadType.CONVOY, BeadType.MERGE_REQUEST,
                                               BeadType.ESCALATION, BeadType.MERGE_BATCH, BeadType.MESSAGE)]
    by_status = Tally(str(b.status) for b in work)
    for status in STATUSES:
        BEADS.labels(*labels, status).set(by_status.get(status, 0))
    ACTIVE.labels(*labels).set(len({b.assignee for b in work if b.assignee
                                    and b.status in (Status.HOOKED, Status.IN_PROGRESS)}))
    QUEUED.labels(*labels).set(sum(1 for b in beads if b.type == BeadType.MERGE_REQUEST
                                   and b.status in (Status.OPEN, Status.IN_PROGRESS)))
    open_escalations = Tally(b.metadata.get("severity") for b in beads
                             if b.type == BeadType.ESCALATION and b.status != Status.CLOSED)
    for severity in SEVERITIES:
        ESCALATIONS.labels(*labels, severity).set(open_escalations.get(severity, 0))


_counted: set[tuple[str, str, str, str]] = set()  # (namespace, rig, bead, session) already in the counters


def _count_spend(labels: tuple[str, str], beads: Iterable[Bead]) -> None:
    """Each session's usage, from the ledger, into the counters once: a restarted process counts
    what the ledger holds again, from zero, as a counter reset should."""
    for bead, session, usage in spend.records(beads):
        key = (*labels, bead.id, session)
        if key in _counted:
            continue
        _counted.add(key)
        runtime = str(usage.get("runtime") or "unknown")
        for kind in ("input", "output"):
            TOKENS.labels(*labels, runtime, kind).inc(float(usage.get(f"{kind}_tokens") or 0))
        COST.labels(*labels, runtime).inc(float(usage.get("cost_usd") or 0))


_budget_series: dict[tuple[str, str], set[tuple[str, ...]]] = {}  # (namespace, rig) -> the series it set


def _observe_budget(labels: tuple[str, str], gate: Gate) -> None:
    """Spend and what is left, per budget; a convoy's series go when it closes. The town's are
    under the rig label "" (every rig's pass sees the same town)."""
    seen: set[tuple[str, ...]] = set()
    standings = [(labels, "rig", "", s) for s in gate.rig] + [((labels[0], ""), "town", "", s) for s in gate.town]
    standings += [(labels, "convoy", s.scope.removeprefix("convoy "), s) for s in gate.convoy.values()]
    for rig_labels, scope, convoy, s in standings:
        period = s.period.split()[0]
        for unit, spent, given in (("tokens", s.spent.tokens, s.limit and s.limit.tokens),
                                   ("usd", s.spent.usd, s.limit and s.limit.usd)):
            key = (*rig_labels, scope, convoy, period, unit)
            SPENT.labels(*key).set(spent)
            if given:
                REMAINING.labels(*key).set(given - spent)
            if rig_labels == labels:
                seen.add(key)
    for gone in _budget_series.get(labels, set()) - seen:
        _remove(SPENT, *gone)
        _remove(REMAINING, *gone)
    _budget_series[labels] = seen


def observe_heals(namespace: str, rig: str, kinds: Iterable[str]) -> None:
    for kind in kinds:
        HEALS.labels(namespace, rig, kind).inc()


def observe_dog(namespace: str, rig: str, dog: str, ok: bool) -> None:
    DOGS.labels(namespace, rig, dog, "ok" if ok else "error").inc()


def forget(namespace: str, rig: str) -> None:
    """A rig that is gone leaves no gauges behind (its counters end with the process)."""
    for status in STATUSES:
        _remove(BEADS, namespace, rig, status)
    for severity in SEVERITIES:
        _remove(ESCALATIONS, namespace, rig, severity)
    for gauge in (ACTIVE, QUEUED):
        _remove(gauge, namespace, rig)
    for key in _budget_series.pop((namespace, rig), set()):
        _remove(SPENT, *key)
        _remove(REMAINING, *key)


def _remove(metric: Gauge, *labels: str) -> None:
    try:
        metric.remove(*labels)
    except KeyError:
        pass
