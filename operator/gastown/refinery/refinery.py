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
from ..telemetry import tracing
from ..trouble import MERGE, TARGET, VERIFY, Troubles, merge_problem
from . import queue as q
from .bisect import Bisection, Run
from .records import (
    AbandonBatch,
    FinishBatch,
    OpenBatch,
    RebaseBatch,
    RecordConflict,
    RecordRun,
    SettleRound,
    attempt_of,
    batch_id,
    run_record,
    settled,
    state_of,
    verified_tip,
)
from .verify import Verification

log = logging.getLogger("gastown.refinery")


class VerifyPort(Protocol):
    # whether the verifiers read the stacks from the Refinery's own cache (threads of the same
    # process): then no stack is pushed to the rig as a scratch ref
    shares_cache: bool

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


def merge_message(batch: str, mr: str) -> str:
    """The message of ``mr``'s merge commit in a stack of ``batch`` (the target's history keeps it)."""
    return f"Merge {mr} (merge queue {batch})"


class Refinery:
    def __init__(self, ledger: Ledger, port: VerifyPort, settings: q.QueueSettings, *, actor: str = "refinery",
                 troubles: Troubles | None = None):
        self.ledger, self.port, self.settings, self.actor = ledger, port, settings, actor
        self.branches = Branches(ledger.store)
        self.troubles = troubles or Troubles(actor)  # a push or a verifier that keeps failing waits its backoff
        self.now = datetime.now(UTC)  # the step's
        # the stacks built, per batch and base: stack (MRs in order) -> its commit; a round builds
        # each of its runs on the longest part already built (the accepted prefix, at least)
        self._built: dict[tuple[str, str], dict[tuple[str, ...], str]] = {}
        self._present: set[str] = set()  # commits known to be in the cache

    def step(self, beads: Mapping[str, Bead], now: datetime) -> RefineryReport:
        report = RefineryReport()
        self.now = now
        for _ in range(8):  # settling a round may make the next one startable at once
            batch = q.active_batch(beads, self.settings.target)
            if batch is None:
                if self._form(beads, now, report):  # its first round starts at once
                    report.opened += 1
                    beads = self.ledger.snapshot(refresh=False).beads()
                    continue
                report.phase = "Filling" if q.queued(beads, self.settings.target) else "Idle"
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
        # stacked as the batch's first run stacks them (its ID in the messages), for that run to reuse
        bid = batch_id(self.ledger.prefix, target, base, [mr.id for mr in batch])
        stacked: list[Bead] = []
        tip: str = base
        built: dict[tuple[str, ...], str] = {(): base}
        for mr in batch:
            commit = mr.metadata.get("commit")
            if not commit or not self.ledger.store.has(commit):
                self._conflict(mr, ["(the MR's commit is not on its branch any more)"], report)
                continue
            result = self.branches.merge(tip, commit, merge_message(bid, mr.id), Signature.of(self.actor))
            if result.clean and result.commit is not None:
                stacked.append(mr)
                tip = built[tuple(m.id for m in stacked)] = result.commit
            else:
                self._conflict(mr, result.conflicts, report)
        if not stacked:
            return 0
        if len(stacked) == len(batch):  # (else the batch has another ID: its runs build their own stacks)
            self._built = {(bid, base): built}
            self._present.update(built.values())
        opened = self.ledger.apply(OpenBatch(target=target, base=base, mrs=[m.id for m in stacked],
                                             commits={m.id: m.metadata["commit"] for m in stacked},
                                             retry_flaky=self.settings.retry_flaky, actor=self.actor))
        log.info("refinery: batch %s of %d on %s at %s", opened.id, len(stacked), target, base[:12])
        return 1

    def _conflict(self, mr: Bead, files: list[str], report: RefineryReport) -> None:
        self.ledger.apply(RecordConflict(mr.id, tuple(files), self.actor))
        report.conflicts.append(mr.id)
        self.port.refinery_event("Conflict", f"{mr.id} ({mr.metadata.get('branch')}) conflicts with "
                                 f"{self.settings.target} in {', '.join(files) or 'unknown files'}", warning=True)

    # -- verifying ------------------------------------------------------------------------

    def _verify(self, batch: Bead, report: RefineryReport) -> bool:
        """Start what the round lacks, or settle it; True when the step should go on (a round settled,
        and no next one started)."""
        runs = state_of(batch).next_round(self.settings.parallel)
        missing = [r for r in runs if run_record(batch, r) is None]
        if not missing:
            return self._settle(batch, report)
        self._start_missing(batch, missing, report)
        return False

    def _settle(self, batch: Bead, report: RefineryReport) -> bool:
        """Settle the round, and start the next one while the settling is pushed: the bisection is
        pure, so the next round is known from the records (a crash before the settling lands: the
        next step settles it again, and finds the next round's runs under way or recorded)."""
        found = settled(batch, self.settings.parallel)
        if found and found[0].done and self._merge_settled(batch, found[0], report):
            return True
        before = state_of(batch).rejected
        settling = self.ledger.submit(SettleRound(batch.id, self.settings.parallel, self.actor))
        following = [r for r in found[0].next_round(self.settings.parallel) if run_record(batch, r) is None] \
            if found and not found[0].done else []
        if following:  # (the batch's base, commits and runs are the settled one's)
            self._start_missing(batch, following, report)
        if (after := settling.result()) is not None:
            self._report_rejections(after, before, report)
        report.settled += 1
        return not following

    def _start_missing(self, batch: Bead, missing: list[Run], report: RefineryReport) -> None:
        """Start the runs of ``missing`` not under way; record as failed a run whose verifier ended
        without a result."""
        now = self.now
        if not self.troubles.due(VERIFY, now):
            return
        known = self.port.verifications(batch.id)
        starting = []
        for run in missing:
            ident = Verification(batch.id, run, attempt_of(batch)).ident
            if ident not in known:
                starting.append(run)
            elif known[ident] is not None:  # the verifier died without a word
                self.ledger.apply(RecordRun(batch_id=batch.id, run=run, result="fail", tip="", gate="verification",
                                            log=str(known[ident]), actor=self.actor, attempt=attempt_of(batch)))
        if starting:
            with self.troubles.trying(VERIFY, now, lambda e: f"verification cannot start: {e}", (Exception,)):
                self._start(batch, starting, report)

    def _start(self, batch: Bead, runs: list[Run], report: RefineryReport) -> None:
        """Start ``runs`` together: their stacks built (a conflict recorded as the run's result),
        their refs pushed at once (unless the verifiers share this cache), then every verifier started."""
        stacks = {}
        for run in runs:
            tip = self._stack(batch, run)
            if tip is not None:
                stacks[Verification(batch.id, run, attempt_of(batch), tip if self.port.shares_cache else "")] = tip
        if not self.port.shares_cache:
            self.branches.push_refs({v.ref: tip for v, tip in stacks.items()})
        for verification, tip in stacks.items():
            run = verification.run
            with tracing.span("verify", self._trace(batch), batch=batch.id, run=verification.ident,
                              stack=",".join(run.stack)):
                self.port.start_verification(verification)  # the verifier's own span is under this one
            report.started += 1
            log.info("refinery: %s run %s: %s at %s", batch.id, verification.ident, run.describe(), tip[:12])

    def _stack(self, batch: Bead, run: Run) -> str | None:
        """The commit of ``run``'s stack on the batch's base, built on the longest part of it already
        built (by this Refinery, or recorded by a run of this batch); None when an MR does not apply
        (recorded as the run's result)."""
        base, commits = batch.metadata["base"], batch.metadata["commits"]
        if (batch.id, base) not in self._built:  # (only the active batch's stacks are kept)
            self._built = {(batch.id, base): {(): base}}
        built = self._built[(batch.id, base)]
        for rec in batch.metadata.get("runs", {}).values():
            if rec.get("tip"):
                built.setdefault((*rec["prefix"], *rec["group"]), rec["tip"])
        done = next((n for n in range(len(run.stack), 0, -1) if run.stack[:n] in built
                     and self._has(built[run.stack[:n]])), 0)
        tip = built[run.stack[:done]] if done else base
        for i, mr in enumerate(run.stack[done:], start=done + 1):
            result = self.branches.merge(tip, commits[mr], merge_message(batch.id, mr), Signature.of(self.actor))
            if not result.clean or result.commit is None:
                self.ledger.apply(RecordRun(batch_id=batch.id, run=run, result="conflict", tip="", gate=None,
                                            log=f"{mr} does not apply on this stack: {', '.join(result.conflicts)}",
                                            actor=self.actor, conflicts=tuple(result.conflicts)))
                return None
            tip = built[run.stack[:i]] = result.commit
            self._present.add(tip)
        return tip

    def _has(self, commit: str) -> bool:
        """Whether the cache holds ``commit`` (asked once per commit, and never of one built here)."""
        if commit not in self._present and self.ledger.store.has(commit):
            self._present.add(commit)
        return commit in self._present

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

    def _merge_settled(self, batch: Bead, state: Bisection, report: RefineryReport) -> bool:
        """The round settling now decides the merge: push the verified tip first, then record the
        settling and the merge in one write (a crash in between: the next step settles the round
        and finds the tip in the target). False when the merge waits for the settling instead (a
        red target, nothing accepted, the tip gone, the target moved, a push refused: the settled
        batch's own step sees to them)."""
        target, base = batch.metadata["target"], batch.metadata["base"]
        tip = verified_tip(batch, state)
        if state.target_red or not state.accepted or tip is None or not self._has(tip) \
                or not self.troubles.due(MERGE, self.now):
            return False
        pushed = None
        with self.troubles.trying(MERGE, self.now, merge_problem(target), (LedgerError,)):
            pushed = self.branches.push(tip, target, base)
        if not pushed:
            return False
        before = state_of(batch).rejected
        settled_batch = batch.model_copy(update={"metadata": {**batch.metadata, "state": state.to_dict(),
                                                              "phase": "merging"}})
        after = self._finish(settled_batch, tip, report, SettleRound(batch.id, self.settings.parallel, self.actor))
        report.settled += 1
        self._report_rejections(after, before, report)
        return True

    def _fetch_tip(self, batch: Bead, tip: str) -> None:
        for rec in batch.metadata.get("runs", {}).values():
            if rec.get("tip") == tip:
                self.branches.fetch_ref(Verification(batch.id, Run.from_dict(rec), attempt_of(batch)).ref)

    def _trace(self, batch: Bead) -> tracing.Context | None:
        """Where a batch's spans go: under its first merge request's convoy."""
        if not tracing.enabled():
            return None
        return tracing.bead_context(batch.metadata["mrs"], self.ledger.snapshot(refresh=False).beads())

    def _finish(self, batch: Bead, tip: str, report: RefineryReport, settle: SettleRound | None = None) -> Bead:
        with tracing.span("merge", self._trace(batch), batch=batch.id, target=batch.metadata["target"], tip=tip,
                          merge_requests=",".join(state_of(batch).accepted)):
            return self._finished(batch, tip, report, settle)

    def _finished(self, batch: Bead, tip: str, report: RefineryReport, settle: SettleRound | None) -> Bead:
        """Record the merge (after ``settle``, in the same write), and meanwhile delete the merged
        branches and the scratch refs in one push (a crash in between: the next step finds the tip
        in the target and finishes again)."""
        beads = self.ledger.snapshot(refresh=False).beads()
        accepted = state_of(batch).accepted
        recording = self.ledger.submit(FinishBatch(batch.id, tip, self.actor, settle))
        self.branches.delete_all({beads[mr].metadata["branch"]: batch.metadata["commits"][mr] for mr in accepted},
                                 *self._refs(batch))
        recorded = recording.result()
        report.merged.extend(accepted)
        self.port.refinery_event("Merged", f"{len(accepted)} merge request(s) into {batch.metadata['target']} "
                                 f"as {tip[:12]}: {', '.join(accepted)}")
        log.info("refinery: batch %s merged %d as %s", batch.id, len(accepted), tip[:12])
        return recorded

    def _drop_refs(self, batch: Bead) -> None:
        self.branches.delete_refs(*self._refs(batch))

    def _refs(self, batch: Bead) -> list[str]:
        """The batch's scratch refs on the rig (none when the verifiers share this cache)."""
        if self.port.shares_cache:
            return []
        return [Verification(batch.id, Run.from_dict(rec), attempt_of(batch)).ref
                for rec in batch.metadata.get("runs", {}).values()]
