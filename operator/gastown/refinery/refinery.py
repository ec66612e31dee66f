"""The Refinery of one rig: one step of the merge queue, run by every rig pass.

Each step reads the ledger and moves the active batch on by what it finds there: form a
batch (after the fill window, conflicting MRs taken out), start the runs of the current
round that have no result yet (each stack pushed as a scratch ref for the verifier), settle a
round whose runs all have results, and merge: the target is moved to the verified tip with a
compare-and-swap push. Every decision is re-derived from the ledger, so a queue killed at any
point resumes: a run recorded is never run again, and a tip already pushed is recognised by
ancestry and recorded, never pushed twice.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from ..ledger import Bead, Ledger, LedgerError
from ..ledger.gitstore import Signature
from ..ledger.merge import Branches
from ..trouble import MERGE, TARGET, VERIFY, Troubles, merge_problem
from . import queue as q
from .bisect import Run
from .records import (
    AbandonBatch,
    FinishBatch,
    OpenBatch,
    RebaseBatch,
    RecordConflict,
    RecordRun,
    SettleRound,
    attempt_of,
    run_record,
    state_of,
    verified_tip,
)
from .verify import Verification

log = logging.getLogger("gastown.refinery")


class VerifyPort(Protocol):
    def start_verification(self, verification: Verification) -> None:
        """Verify the commit at ``verification.ref`` (asynchronously); the verifier records the result."""

    def verifications(self, batch: str) -> Mapping[str, str | None]:
        """Verification ident -> None while it runs, or why it ended without recording a result."""

    def refinery_event(self, reason: str, message: str, warning: bool = False) -> None: ...


@dataclass
class RefineryReport:
    batch: str | None = None
    phase: str = "Idle"
    opened: int = 0
    started: int = 0
    settled: int = 0
    merged: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)

    @property
    def acted(self) -> bool:
        return bool(self.opened or self.started or self.settled or self.merged or self.rejected or self.conflicts)


class Refinery:
    def __init__(self, ledger: Ledger, port: VerifyPort, settings: q.QueueSettings, actor: str = "refinery",
                 troubles: Troubles | None = None):
        self.ledger, self.port, self.settings, self.actor = ledger, port, settings, actor
        self.branches = Branches(ledger.store)
        self.troubles = troubles or Troubles(actor)  # a push or a verifier that keeps failing waits its backoff
        self.now = datetime.now(UTC)  # the step's

    def step(self, beads: Mapping[str, Bead], now: datetime) -> RefineryReport:
        report = RefineryReport()
        self.now = now
        for _ in range(8):  # settling a round may make the next one startable at once
            batch = q.active_batch(beads, self.settings.target)
            if batch is None:
                report.opened += self._form(beads, now, report)
                report.phase = "Verifying" if report.opened else "Filling" if q.queued(beads, self.settings.target) \
                    else "Idle"
                return report
            report.batch = batch.id
            phase = batch.metadata.get("phase")
            if phase == "verifying":
                report.phase = "Bisecting" if state_of(batch).rounds else "Verifying"
                if not self._verify(batch, report):
                    return report
            elif phase == "merging":
                report.phase = "Merging"
                if not self._merge(batch, report):
                    return report
            elif phase == "target-red":
                self.ledger.apply(AbandonBatch(batch.id, self.actor))
                self.port.refinery_event("TargetRed", f"{self.settings.target} fails verification by itself at "
                                         f"{batch.metadata['base'][:12]}: no merge request rejected, P1 bug filed",
                                         warning=True)
            beads = self.ledger.snapshot(refresh=False).beads()
        return report

    # -- forming a batch ------------------------------------------------------------------

    def _form(self, beads: Mapping[str, Bead], now: datetime, report: RefineryReport) -> int:
        target = self.settings.target
        batch = q.due(q.queued(beads, target), self.settings, now)
        if not batch:
            return 0
        if not self.troubles.due(TARGET, now):
            return 0
        tips = self.branches.fetch(target, *sorted({b.metadata["branch"] for b in batch}))
        base = tips[target]
        if base is None:
            self.troubles.failed(TARGET, f"the target branch {target} is not on the remote: push it, or change "
                                         f"the rig's branch", now)
            return 0
        self.troubles.cleared(TARGET)
        if q.red_target_waits(beads, target, base, batch):
            return 0
        stacked, tip = [], base
        for mr in batch:
            commit = mr.metadata.get("commit")
            if not commit or not self.ledger.store.has(commit):
                self._conflict(mr, ["(the MR's commit is not on its branch any more)"], report)
                continue
            result = self.branches.merge(tip, commit, f"Merge {mr.metadata['branch']}", Signature.of(self.actor))
            if result.clean:
                stacked.append(mr)
                tip = result.commit  # type: ignore[assignment]
            else:
                self._conflict(mr, result.conflicts, report)
        if not stacked:
            return 0
        opened = self.ledger.apply(OpenBatch(target, base, [m.id for m in stacked],
                                             {m.id: m.metadata["commit"] for m in stacked}, self.settings.retry_flaky,
                                             self.actor))
        log.info("refinery: batch %s of %d on %s at %s", opened.id, len(stacked), target, base[:12])
        return 1

    def _conflict(self, mr: Bead, files: list[str], report: RefineryReport) -> None:
        self.ledger.apply(RecordConflict(mr.id, tuple(files), self.actor))
        report.conflicts.append(mr.id)
        self.port.refinery_event("Conflict", f"{mr.id} ({mr.metadata.get('branch')}) conflicts with "
                                 f"{self.settings.target} in {', '.join(files) or 'unknown files'}", warning=True)

    # -- verifying ------------------------------------------------------------------------

    def _verify(self, batch: Bead, report: RefineryReport) -> bool:
        """Start what the round lacks; True when the round settled (so step again)."""
        runs = state_of(batch).next_round(self.settings.parallel)
        missing = [r for r in runs if run_record(batch, r) is None]
        if not missing:
            before = state_of(batch).rejected
            settled = self.ledger.apply(SettleRound(batch.id, self.settings.parallel, self.actor))
            report.settled += 1
            if settled is not None:
                self._report_rejections(settled, before, report)
            return True
        now = self.now
        if not self.troubles.due(VERIFY, now):
            return False
        known = self.port.verifications(batch.id)
        for run in missing:
            ident = Verification(batch.id, run, attempt_of(batch)).ident
            if ident in known:
                if known[ident] is not None:  # the verifier died without a word
                    self.ledger.apply(RecordRun(batch.id, run, "fail", "", "verification", str(known[ident]),
                                                self.actor, attempt=attempt_of(batch)))
                continue
            with self.troubles.trying(VERIFY, now, lambda e: f"verification cannot start: {e}", (Exception,)):
                self._start(batch, run)
                report.started += 1
            if not self.troubles.due(VERIFY, now):
                break
        return False

    def _start(self, batch: Bead, run: Run) -> None:
        commits = batch.metadata["commits"]
        tip = batch.metadata["base"]
        for mr in run.stack:
            result = self.branches.merge(tip, commits[mr], f"Merge {mr} (merge queue {batch.id})",
                                         Signature.of(self.actor))
            if not result.clean:
                self.ledger.apply(RecordRun(batch.id, run, "conflict", "", None,
                                            f"{mr} does not apply on this stack: {', '.join(result.conflicts)}",
                                            self.actor, conflicts=tuple(result.conflicts)))
                return
            tip = result.commit  # type: ignore[assignment]
        verification = Verification(batch.id, run, attempt_of(batch))
        self.branches.push_ref(tip, verification.ref)
        self.port.start_verification(verification)
        log.info("refinery: %s run %s: %s at %s", batch.id, verification.ident, run.describe(), tip[:12])

    def _report_rejections(self, batch: Bead, before: Mapping[str, str], report: RefineryReport) -> None:
        beads = self.ledger.snapshot(refresh=False).beads()
        for mr, why in state_of(batch).rejected.items():
            if mr in before:
                continue
            bead = beads[mr]
            if why == "conflict":
                report.conflicts.append(mr)
                self.port.refinery_event("Conflict", f"{mr} ({bead.metadata.get('branch')}) conflicts within the "
                                         f"batch: {', '.join(bead.metadata.get('conflicts', []))}", warning=True)
            else:
                report.rejected.append(mr)
                self.port.refinery_event("Rejected", f"{mr} ({bead.metadata.get('branch')}): "
                                         f"{bead.metadata.get('rejection', {}).get('reason', why)}", warning=True)

    # -- merging --------------------------------------------------------------------------

    def _merge(self, batch: Bead, report: RefineryReport) -> bool:
        target, base = batch.metadata["target"], batch.metadata["base"]
        tip = verified_tip(batch)
        current = self.branches.fetch(target)[target]
        if tip and not self.ledger.store.has(tip):
            self._fetch_tip(batch, tip)
        if tip is None or not self.ledger.store.has(tip) or current is None:
            log.warning("refinery: batch %s: verified tip %s is gone; verifying again", batch.id, tip)
            self.ledger.apply(RebaseBatch(batch.id, current or base, self.settings.retry_flaky, self.actor,
                                          force=True))
            return True
        if current != base:
            if self.ledger.store.is_ancestor(tip, current):  # pushed before a restart: record it
                self._finish(batch, tip, report)
                return True
            log.info("refinery: %s moved to %s during batch %s: verifying again on it", target, current[:12], batch.id)
            self._drop_refs(batch)
            self.ledger.apply(RebaseBatch(batch.id, current, self.settings.retry_flaky, self.actor))
            return True
        now = self.now
        if not self.troubles.due(MERGE, now):
            return False
        pushed = None
        with self.troubles.trying(MERGE, now, merge_problem(target), (LedgerError,)):
            pushed = self.branches.push(tip, target, base)
        if not pushed:
            return False  # moved just now (the next step rebuilds), or refused (tried again after a backoff)
        self._finish(batch, tip, report)
        return True

    def _fetch_tip(self, batch: Bead, tip: str) -> None:
        for rec in batch.metadata.get("runs", {}).values():
            if rec.get("tip") == tip:
                self.branches.fetch_ref(Verification(batch.id, Run.from_dict(rec), attempt_of(batch)).ref)

    def _finish(self, batch: Bead, tip: str, report: RefineryReport) -> None:
        self.ledger.apply(FinishBatch(batch.id, tip, self.actor))
        beads = self.ledger.snapshot(refresh=False).beads()
        accepted = state_of(batch).accepted
        for mr in accepted:
            bead = beads[mr]
            self.branches.delete(bead.metadata["branch"], batch.metadata["commits"][mr])
            report.merged.append(mr)
        self._drop_refs(batch)
        self.port.refinery_event("Merged", f"{len(accepted)} merge request(s) into {batch.metadata['target']} "
                                 f"as {tip[:12]}: {', '.join(accepted)}")
        log.info("refinery: batch %s merged %d as %s", batch.id, len(accepted), tip[:12])

    def _drop_refs(self, batch: Bead) -> None:
        self.branches.delete_refs(*[Verification(batch.id, Run.from_dict(rec), attempt_of(batch)).ref
                                    for rec in batch.metadata.get("runs", {}).values()])
