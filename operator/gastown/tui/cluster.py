"""What the TUI shows of a cluster: the namespace's Rigs, Polecats, Convoys and MergeQueues as
their statuses say (the operator keeps them from the ledgers), their conditions that say something
is wrong, gastown's Events, and a polecat's session read from its pod's log (`kube.podlogs`).

Read with the caller's kubeconfig: `list` on gastown's resources and on events, `get` and `list`
on pods and `get` on pods/log in the namespace. ``ClusterModel`` answers as ``TownModel`` does.
"""

from __future__ import annotations

import os
from typing import Any, cast

from ..api import GROUP, VERSION
from ..feed import Event
from ..kube import podlogs
from .model import EVENTS, PEEK_LINES, ConvoyRow, Polecat, Problem, QueueView, RigRow, Snapshot

# conditions that are a problem when True, and those that are one when False
BAD_WHEN_TRUE = frozenset({"Blocked", "BudgetExhausted", "Escalated", "Stalled", "PlanInvalid", "Invalid"})
BAD_WHEN_FALSE = frozenset({"GitReachable", "SessionHealthy", "Dispatching", "Driving"})
TROUBLED_PHASES = frozenset({"Stuck", "Stalled"})  # a Polecat's


def api_client(context: str | None = None) -> Any:
    """A client from the user's kubeconfig (``context``, else its current one): $KUBECONFIG as it is
    now (the client library reads it once, when imported), else ~/.kube/config."""
    from kubernetes import config

    return config.new_client_from_config(config_file=os.environ.get("KUBECONFIG") or None, context=context)


def problems_of(rig: str, obj: dict) -> list[Problem]:
    """The conditions of a gastown object that say something is wrong, as problems."""
    kind, name = obj.get("kind", ""), obj["metadata"]["name"]
    out = []
    for c in (obj.get("status") or {}).get("conditions") or []:
        if (c.get("type") in BAD_WHEN_TRUE and c.get("status") == "True") or \
                (c.get("type") in BAD_WHEN_FALSE and c.get("status") == "False"):
            text = f"{c.get('reason', '')}: {c['message']}" if c.get("message") else c.get("reason", "")
            out.append(Problem(rig, f"{c['type']}".lower(), f"{kind} {name}", text))
    return out


def _progress(text: str) -> tuple[int, int]:
    done, _, total = text.partition("/")
    return (int(done), int(total)) if done.isdigit() and total.isdigit() else (0, 0)


class ClusterModel:
    """The gastown objects of ``namespace`` (only rig ``rig`` when given), read again on every ``read``."""

    def __init__(self, namespace: str, rig: str | None = None, client: Any = None, context: str | None = None):
        self.namespace, self.only = namespace, rig
        self.client = client if client is not None else api_client(context)
        self.where = f"namespace {namespace}" + (f" (context {context})" if context else "")

    def close(self) -> None:
        self.client.close()

    def _list(self, plural: str) -> list[dict]:
        from kubernetes import client

        api = client.CustomObjectsApi(self.client)
        found = cast(dict, api.list_namespaced_custom_object(GROUP, VERSION, self.namespace, plural)).get("items", [])
        kind = {"rigs": "Rig", "polecats": "Polecat", "convoys": "Convoy", "mergequeues": "MergeQueue"}[plural]
        return sorted(({**o, "kind": o.get("kind") or kind} for o in found), key=lambda o: o["metadata"]["name"])

    def rig_names(self) -> list[str]:
        return [r["metadata"]["name"] for r in self._list("rigs")]

    def read(self) -> Snapshot:
        snap = Snapshot(self.where, None, title=f"cluster, {self.where}")
        mine = self.only
        rigs = [r for r in self._list("rigs") if mine in (None, r["metadata"]["name"])]
        names = {r["metadata"]["name"] for r in rigs}
        polecats = [p for p in self._list("polecats") if (p.get("spec") or {}).get("rig") in names]
        convoys = [c for c in self._list("convoys") if (c.get("spec") or {}).get("rig") in names]
        queues = [q for q in self._list("mergequeues") if (q.get("spec") or {}).get("rig") in names]
        rig_of = {("Rig", n): n for n in names} | {(o["kind"], o["metadata"]["name"]): o["spec"]["rig"]
                                                   for o in polecats + convoys + queues}
        titles = {b["id"]: b.get("title", "") for c in convoys for b in (c.get("status") or {}).get("beads") or []
                  if b.get("id")}
        for r in rigs:
            name, spec, status = r["metadata"]["name"], r.get("spec") or {}, r.get("status") or {}
            counts = status.get("beads") or {}
            phase = status.get("phase") or "Pending"
            snap.rigs.append(RigRow(name=name, limit=int(spec.get("maxPolecats", 3)),
                                    working=int(status.get("activePolecats", 0)),
                                    in_flight=int(counts.get("hooked", 0)) + int(counts.get("in_progress", 0)),
                                    scheduler=phase,
                                    error=None if phase in ("Ready", "Pending") else _ready_message(r)))
            snap.problems += problems_of(name, r)
        for p in polecats:
            rig, name, status = p["spec"]["rig"], p["metadata"]["name"], p.get("status") or {}
            phase = status.get("phase") or ""
            bead = status.get("currentBead")
            session = (status.get("session") or {}).get("name")
            snap.polecats.append(Polecat(rig=rig, name=name, state=phase.lower(), bead=bead,
                                         title=titles.get(bead or ""),
                                         verdict=phase.lower() if phase in TROUBLED_PHASES else None,
                                         session=session, running=phase == "Working"))
            if phase in TROUBLED_PHASES:
                snap.problems.append(Problem(rig, phase.lower(), name, f"{bead or ''}: polecat {phase.lower()}"))
            snap.problems += problems_of(rig, p)
        for c in convoys:
            status = c.get("status") or {}
            spend = status.get("spend") or {}
            done, total = _progress(status.get("progress", ""))
            snap.convoys.append(ConvoyRow(rig=c["spec"]["rig"], id=status.get("convoyBead") or "",
                                          name=c["metadata"]["name"], phase=status.get("phase") or "Planning",
                                          done=done, total=total, spend=_spend(spend)))
            snap.problems += problems_of(c["spec"]["rig"], c)
        for q in queues:
            spec, status = q["spec"], q.get("status") or {}
            counters = status.get("counters") or {}
            batch = list(status.get("currentBatch") or [])
            rig = spec["rig"]
            target = spec.get("targetBranch") or next((r.get("spec", {}).get("defaultBranch", "main") for r in rigs
                                                       if r["metadata"]["name"] == rig), "main")
            shown = status.get("batch") or {}
            common = {"rig": rig, "target": target, "waiting": [], "merged": int(counters.get("merged", 0)),
                      "rejected": int(counters.get("rejected", 0)), "length": int(status.get("queueLength", 0)),
                      "recent": list(status.get("recent") or [])}
            if shown.get("id"):  # the batch as the operator draws it: its rounds and runs (run IDs for a peek)
                rounds = [[{**r, "describe": r.get("summary", "")} for r in rnd.get("runs") or []]
                          for rnd in shown.get("rounds") or []]
                snap.queues.append(QueueView(**common, batch=shown["id"], phase=shown.get("phase", ""),
                                             mrs=list(shown.get("mrs") or []), rounds=rounds, ended=not batch))
            else:  # (an operator older than status.batch)
                snap.queues.append(QueueView(**common, batch=f"{len(batch)} MRs" if batch else None,
                                             phase=status.get("phase", ""), mrs=batch))
            snap.problems += problems_of(rig, q)
        snap.events = self._events(rig_of)
        return snap

    def _events(self, rig_of: dict[tuple[str, str], str]) -> list[Event]:
        """gastown's Events about the rigs shown, newest first."""
        from kubernetes import client

        found = client.CoreV1Api(self.client).list_namespaced_event(self.namespace).items
        out = []
        for e in found:
            obj = e.involved_object
            if not (obj and obj.kind and obj.name and (obj.api_version or "").startswith(GROUP)):
                continue
            rig = rig_of.get((obj.kind, obj.name))
            if rig is None:
                continue
            when = e.last_timestamp or e.event_time or e.first_timestamp or e.metadata.creation_timestamp
            out.append(Event(at=when.isoformat() if when else "", rig=rig, kind=e.reason or "", text=e.message or "",
                             actor=(e.source.component if e.source else None) or e.reporting_component or "",
                             commit="", bead=f"{obj.kind} {obj.name}"))
        return sorted(out, key=lambda ev: ev.at, reverse=True)[:EVENTS]

    def peek(self, rig: str, polecat: str, lines: int = PEEK_LINES) -> tuple[str, str]:
        """The log of the pod of the polecat's newest session (its last ``lines``), with a line saying which pod."""
        try:
            pod = podlogs.session_pod(self.client, self.namespace, polecat, rig)
        except podlogs.NoPod as e:
            return str(e), ""
        phase = pod.status.phase if pod.status else None
        head = f"polecat {polecat} (rig {rig}): pod {self.namespace}/{pod.metadata.name}" + (
            f", {phase.lower()}" if phase else "")
        return head, podlogs.read(self.client, pod, lines) or "(no output yet)"


def _ready_message(rig: dict) -> str:
    found = [c for c in (rig.get("status") or {}).get("conditions") or [] if c.get("type") == "Ready"]
    return (found[0].get("message") or found[0].get("reason", "")) if found else (rig.get("status") or {}).get("phase", "")


def _spend(spend: dict) -> str:
    """A Convoy's status.spend in a few words: tokens, dollars, and against its budget."""
    if not spend.get("tokens") and not spend.get("usd"):
        return ""
    used = f" ({spend['usedPercent']}% of budget)" if spend.get("usedPercent") is not None else ""
    return f"{spend.get('tokens', 0)} tokens, ${spend.get('usd', 0.0):.2f}{used}"
