"""A rig at a glance, from its beads: what the web dashboard and the TUI both show. Pure.

Its polecats and what each holds, the convoys worth showing, the batch the merge queue is
verifying drawn as its bisection's rounds (from the batch's history), and the merge requests merged
or rejected lately; ``batch_summary`` and ``outcomes`` are the compact, bounded form of the last two
that a MergeQueue's status carries.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from . import convoy as convoys
from .ledger import Bead, BeadType, HistoryEntry, Status
from .refinery.bisect import Bisection, Run, run_id
from .refinery.records import attempt_of
from .refinery.verify import Verification


def prefix(beads: Mapping[str, Bead]) -> str:
    """The rig's bead ID prefix (``gt`` of ``gt-abc``)."""
    return next(iter(beads), "gt-").split("-")[0]


def recently_done(beads: Mapping[str, Bead], keep: int = 5) -> list[Bead]:
    done = [b for b in beads.values() if b.type == BeadType.CONVOY and b.status == Status.CLOSED]
    return sorted(done, key=lambda b: b.closed_at or b.updated_at, reverse=True)[:keep]


def convoys_shown(beads: Mapping[str, Bead]) -> list[Bead]:
    """The open convoys, then the few done most recently."""
    return convoys.open_convoys(beads) + recently_done(beads)


def polecats(beads: Mapping[str, Bead]) -> list[tuple[Bead, Bead | None]]:
    """Each polecat's agent bead (by name) and the bead it holds (hooked to it), if any."""
    agents = sorted((b for b in beads.values() if b.type == BeadType.AGENT and b.metadata.get("name")),
                    key=lambda b: b.metadata["name"])
    return [(a, beads.get(a.metadata.get("hooked") or "")) for a in agents]


def shown_batch(beads: Mapping[str, Bead], target: str) -> Bead | None:
    """The batch the queue into ``target`` verifies, else the one that ended last (how it went)."""
    batches = [b for b in beads.values() if b.type == BeadType.MERGE_BATCH and b.metadata.get("target") == target]
    active = [b for b in batches if b.status != Status.CLOSED]
    if active:
        return min(active, key=lambda b: b.created_at)
    return max(batches, key=lambda b: b.closed_at or b.updated_at, default=None)


def recently_merged(mrs: Iterable[Bead], keep: int = 10) -> list[Bead]:
    """The merge requests merged most recently, newest first."""
    return sorted((m for m in mrs if m.metadata.get("merged_commit")), key=lambda m: m.updated_at, reverse=True)[:keep]


def recently_rejected(mrs: Iterable[Bead], keep: int = 10) -> list[Bead]:
    """The merge requests rejected (or conflicting): those waiting for their polecats first, then the
    ones already reworked, newest first (a rejection stays news)."""
    return sorted((m for m in mrs if m.status == Status.BLOCKED or m.metadata.get("rejection")
                   or m.metadata.get("conflicts")),
                  key=lambda m: (m.status != Status.BLOCKED, -m.updated_at.timestamp()))[:keep]


def rejection_reason(mr: Bead) -> str:
    """Why the queue rejected ``mr`` (its failing gate and run), or the files it conflicts on."""
    return (mr.metadata.get("rejection") or {}).get("reason") or ", ".join(mr.metadata.get("conflicts", []))


def outcomes(mrs: Sequence[Bead], keep: int = 10, text: int = 200) -> list[dict[str, str]]:
    """The last ``keep`` merges and the last ``keep`` rejections among ``mrs``, newest first: the MR,
    its title, ``merged`` with the commit or ``rejected``/``conflict`` with the reason (``text``
    characters at most), and when."""
    out = [{"mr": m.id, "title": m.title[:text], "outcome": "merged", "commit": m.metadata["merged_commit"],
            "at": (m.closed_at or m.updated_at).isoformat()} for m in recently_merged(mrs, keep)]
    out += [{"mr": m.id, "title": m.title[:text],
             "outcome": "conflict" if m.metadata.get("conflicts") and not m.metadata.get("rejection") else "rejected",
             "reason": rejection_reason(m)[:text], "at": m.updated_at.isoformat()} for m in recently_rejected(mrs, keep)]
    return sorted(out, key=lambda o: o["at"], reverse=True)


def rounds_of(batch: Bead, history: Sequence[HistoryEntry], parallel: int) -> list[list[dict[str, Any]]]:
    """The batch's runs grouped into rounds (from its history), the current round's runs under way last;
    each run's ``run`` is its ID (``gt peek --verify RUN``, a verification Job's label)."""
    attempt = attempt_of(batch)
    round_of: dict[str, int] = {}
    current = 1
    for h in history:  # oldest first: run lines, then the round line that settles them
        if h.change.startswith("run "):
            round_of.setdefault(h.change.split()[1].rstrip(":"), current)
        elif h.change.startswith("round "):
            current += 1
        elif h.change.startswith("target moved"):
            round_of, current = {}, 1
    out: list[list[dict[str, Any]]] = []
    records = batch.metadata.get("runs", {})
    for rec in records.values():
        run = Run.from_dict(rec)
        n = round_of.get(run_id(batch.id, run, attempt), current)
        while len(out) < n:
            out.append([])
        out[n - 1].append({**rec, "describe": run.describe(),
                           "run": Verification(batch.id, run, attempt).ident})
    state = Bisection.from_dict(batch.metadata["state"])
    pending = [r for r in state.next_round(parallel) if r.key not in records]
    if pending:
        while len(out) < current:
            out.append([])
        out[current - 1] += [{**r.to_dict(), "result": "running", "describe": r.describe(),
                              "run": Verification(batch.id, r, attempt).ident} for r in pending]
    return out
