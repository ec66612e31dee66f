"""The Dogs: a rig's maintenance, on schedules from its spec. No LLM.

  prune     delete polecat branches already merged into the target (when no open bead still
            works on them), verification refs of finished batches, and stale worktrees
  gc        `git gc` of the caches the driver keeps of the rig, after dropping its cached
            refs of branches the remote no longer has (so their objects can go)
  compact   move closed ephemeral records (messages, merge batches) older than retainDays
            into the ledger's archive: still readable by ID, no longer loaded with the live
            ledger, their IDs never reused

On a cluster prune and compact run as CronJobs (`gt dog run`); gc runs in the operator, since
the caches it cleans are the operator's own. Locally the daemon fires all three on the same
schedules. Every deletion is compare-and-swap on what was seen, so a Dog racing a session or
the Refinery loses the race instead of deleting fresh work.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from .api.rig import Dogs
from .cron import Schedule
from .ledger import Bead, BeadType, Ledger, Status
from .ledger.gitrun import run_git
from .ledger.merge import HEADS, Branches
from .ledger.ops import Tx
from .refinery.verify import VERIFY_REFS

log = logging.getLogger("gastown.dogs")
NAMES = ("prune", "gc", "compact")
EPHEMERAL = (BeadType.MESSAGE, BeadType.MERGE_BATCH)
POLECAT_BRANCHES = "polecat/"


@dataclass
class DogReport:
    dog: str
    done: list[str] = field(default_factory=list)  # one line per thing done

    def __str__(self) -> str:
        return f"{self.dog}: " + ("; ".join(self.done) if self.done else "nothing to do")


# --- compact ------------------------------------------------------------------------------


def compactable(bead: Bead, cutoff: datetime) -> bool:
    """A closed ephemeral record, closed before ``cutoff``."""
    closed = bead.closed_at or bead.updated_at
    return bead.type in EPHEMERAL and bead.status == Status.CLOSED and closed < cutoff


@dataclass(frozen=True)
class Archive:
    """Move the named beads to the archive, each only if it is still compactable."""

    bead_ids: tuple[str, ...]
    cutoff: datetime
    actor: str

    def apply(self, tx: Tx) -> list[str]:
        moved = []
        for bead_id in self.bead_ids:
            bead = tx.get(bead_id)
            if bead is not None and compactable(bead, self.cutoff):
                tx.move_to_archive(bead_id, f"archived: a closed {bead.type}, closed before "
                                            f"{self.cutoff:%Y-%m-%d %H:%M}", self.actor)
                moved.append(bead_id)
        return moved


# --- prune --------------------------------------------------------------------------------


def prunable_branches(beads: Mapping[str, Bead], heads: Mapping[str, str],
                      merged: Callable[[str], bool]) -> list[tuple[str, str]]:
    """Polecat branches (name, tip) whose tip is in the target and that no open bead works on.
    ``heads`` must be listed before ``beads`` were read: a branch is pushed after its bead exists."""
    in_use = {b.metadata.get("branch") for b in beads.values() if b.status != Status.CLOSED}
    out = []
    for branch, tip in sorted(heads.items()):
        if not branch.startswith(POLECAT_BRANCHES) or branch in in_use:
            continue
        bead = beads.get(branch.rsplit("/", 1)[-1])
        if bead is not None and bead.status != Status.CLOSED:
            continue  # hooked again: its next session resumes this branch
        if merged(tip):
            out.append((branch, tip))
    return out


def finished_verify_refs(beads: Mapping[str, Bead], refs: Iterable[str]) -> list[str]:
    """Verification refs of batches that are closed or gone (``refs`` listed before ``beads``)."""
    out = []
    for ref in refs:
        batch = beads.get(ref.removeprefix(f"{VERIFY_REFS}/").split("/", 1)[0])
        if batch is None or batch.status == Status.CLOSED:
            out.append(ref)
    return out


def stale_polecats(beads: Mapping[str, Bead], names: Iterable[str], now: datetime, retain_days: int) -> list[str]:
    """Polecats (of ``names``, those with a worktree) that hold no work and are retired, gone
    from the ledger, or idle for longer than ``retain_days``: their worktrees may go."""
    agents = {b.metadata.get("name"): b for b in beads.values() if b.type == BeadType.AGENT}
    holding = {b.assignee for b in beads.values() if b.assignee and b.status != Status.CLOSED
               and b.type not in (BeadType.AGENT, BeadType.MERGE_REQUEST, BeadType.ESCALATION)}
    out = []
    for name in sorted(names):
        agent = agents.get(name)
        if name in holding or (agent is not None and agent.metadata.get("state") == "working"):
            continue
        if agent is None or agent.metadata.get("state") == "retired" \
                or now - agent.updated_at > timedelta(days=retain_days):
            out.append(name)
    return out


# --- gc -----------------------------------------------------------------------------------


def loose_objects(repo: Path) -> int:
    proc = run_git(["count-objects"], repo=repo, check=False)
    return int(proc.stdout.split()[0]) if proc.returncode == 0 and proc.stdout else 0


def gc(repo: Path) -> str:
    """`git gc` (default expiry, so objects being written meanwhile are safe); what it did."""
    before = loose_objects(repo)
    proc = run_git(["gc", "--quiet"], repo=repo, check=False, timeout=1800)
    if proc.returncode != 0:
        return f"git gc failed in {repo}: {proc.stderr.decode(errors='replace').strip()[:200]}"
    return f"{repo.name}: loose objects {before} -> {loose_objects(repo)} (the rest packed)"


# --- the runner ---------------------------------------------------------------------------


class Kennel:
    """The Dogs of one rig, run against its ledger (and, for gc, caches the driver names)."""

    def __init__(self, ledger: Ledger, target: str, retain_days: int = 14, actor: str = "dogs"):
        self.ledger, self.target, self.retain_days, self.actor = ledger, target, retain_days, actor
        self.branches = Branches(ledger.store)

    def run(self, dog: str, **kwargs: object) -> DogReport:
        if dog not in NAMES:
            raise ValueError(f"no Dog named {dog!r} (one of {', '.join(NAMES)})")
        report: DogReport = getattr(self, dog)(**kwargs)
        log.info("rig %s: %s", self.ledger.remote, report)
        return report

    def compact(self, now: datetime | None = None) -> DogReport:
        beads = self.ledger.beads()
        cutoff = (now or datetime.now(UTC)) - timedelta(days=self.retain_days)
        ids = tuple(sorted(i for i, b in beads.items() if compactable(b, cutoff)))
        report = DogReport("compact")
        if ids:
            moved = self.ledger.apply(Archive(ids, cutoff, self.actor))
            if moved:
                report.done.append(f"archived {len(moved)} closed records ({', '.join(moved[:5])}"
                                   + (", ..." if len(moved) > 5 else "") + ")")
        return report

    def prune(self, worktrees: Callable[[Mapping[str, Bead]], list[str]] | None = None) -> DogReport:
        """``worktrees``: the driver's cleaner of stale worktrees (locally), given the beads."""
        report = DogReport("prune")
        heads = {ref.removeprefix("refs/heads/"): sha
                 for ref, sha in self.branches.remote_refs(f"refs/heads/{POLECAT_BRANCHES.rstrip('/')}").items()}
        refs = list(self.branches.remote_refs(VERIFY_REFS))
        beads = self.ledger.beads()  # after the listing: see prunable_branches
        if heads:
            target = self.branches.fetch(self.target, *heads)[self.target]  # a branch moved since: not merged
            for branch, tip in prunable_branches(beads, heads, lambda sha: target is not None
                                                 and self.ledger.store.is_ancestor(sha, target)):
                if self.branches.delete(branch, tip):  # else it moved since it was listed: kept
                    report.done.append(f"deleted merged branch {branch}")
        stale = finished_verify_refs(beads, refs)
        if stale:
            self.branches.delete_refs(*stale)
            report.done.append(f"deleted {len(stale)} verification refs of finished batches")
        if worktrees is not None:
            report.done += [f"removed the stale worktree of {p}" for p in worktrees(beads)]
        return report

    def gc(self, repos: Iterable[Path] = ()) -> DogReport:
        """The ledger cache (its cached refs of deleted branches dropped first), then ``repos``."""
        report = DogReport("gc")
        cache = self.ledger.store.cache
        # the cache's ref of the ledger moves on fetch only: what this process wrote and pushed is
        # unreferenced until then, and gc must not count it as garbage
        self.ledger.store.fetch()
        live = set(self.branches.remote_refs("refs/heads"))
        proc = run_git(["for-each-ref", "--format=%(refname)", HEADS], repo=cache, check=False)
        gone = [r for r in proc.stdout.decode().split() if f"refs/heads/{r.removeprefix(HEADS + '/')}" not in live]
        with self.ledger.store.locked():
            for ref in gone:
                run_git(["update-ref", "-d", ref], repo=cache, check=False)
        if gone:
            report.done.append(f"dropped {len(gone)} cached refs of deleted branches")
        for repo in [cache, *repos]:
            if repo.exists():
                report.done.append(gc(repo))
        return report


class Timers:
    """When each enabled Dog is next due, from its schedule; the local daemon's CronJobs."""

    def __init__(self, spec: Dogs, now: datetime, only: Iterable[str] = NAMES):
        self.schedules = {n: Schedule.parse(getattr(spec, n).schedule) for n in only if getattr(spec, n).enabled}
        self.next = {n: s.next_after(now) for n, s in self.schedules.items()}

    def due(self, now: datetime) -> list[str]:
        out = [n for n, t in self.next.items() if t <= now]
        for n in out:
            self.next[n] = self.schedules[n].next_after(now)
        return out
