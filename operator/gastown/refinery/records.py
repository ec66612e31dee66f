"""The Refinery's ledger records: batches, verification runs, merges, rejections, conflicts.

Pure operations. A batch is a ``merge-batch`` bead whose metadata holds the MRs, the base it
was stacked on, the bisection state and every run's result, so that a restarted queue
re-derives everything it was doing from the ledger.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..escalation import raise_in
from ..ledger import Bead, BeadType, Comment, InvalidOperation, Status
from ..ledger.ids import stable_id
from ..ledger.model import Dependency, DepType
from ..ledger.ops import Tx, merged, revise
from ..polecats import agent_of
from .bisect import Bisection, Run, run_id

MAX_ROUNDS = 3  # rejections or conflicts of one MR before a person is asked
LOG_LIMIT = 6000  # characters of gate output kept in a record


def tail(text: str, limit: int = LOG_LIMIT) -> str:
    """The end of a log, where the failure usually is."""
    return text if len(text) <= limit else f"[... {len(text) - limit} characters cut]\n{text[-limit:]}"


def _source(tx: Tx, mr: Bead) -> Bead:
    source = tx.get(mr.metadata.get("source", ""))
    if source is None:
        raise InvalidOperation(f"merge request {mr.id} names no source bead")
    return source


def _back_to_worker(tx: Tx, mr: Bead, *, counter: str, status_line: str, text: str, title: str, actor: str,
                    extra: Mapping[str, Any]) -> Bead:
    """The MR waits (blocked) and its work goes back to its polecat; after MAX_ROUNDS, to a person."""
    source = _source(tx, mr)
    worker = mr.metadata.get("worker")
    rounds = int(mr.metadata.get(counter, 0)) + 1
    tx.put(revise(mr, tx, status=Status.BLOCKED, metadata=merged(mr.metadata, {**extra, counter: rounds,
                                                                               "batch": None})),
           f"{status_line} (round {rounds})", actor)
    comments = [*source.comments, Comment(author=actor, text=text, created=tx.now)]
    if rounds >= MAX_ROUNDS:
        esc = raise_in(tx, "P1", f"{title} {rounds} times: {source.id} {source.title}", actor, reason=text,
                       related=source.id, source={"bead": source.id, "mr": mr.id, **({"polecat": worker} if worker
                                                                                     else {})},
                       dedupe=f"{counter}:{mr.id}:{rounds}")
        return tx.put(revise(source, tx, status=Status.BLOCKED, comments=comments,
                             metadata=merged(source.metadata, {"escalation": esc.id})),
                      f"{source.status} -> blocked: {title} {rounds} times, escalated", actor)
    if worker:
        agent = agent_of(tx, worker)
        if not agent.metadata.get("hooked"):
            tx.put(revise(agent, tx, metadata=merged(agent.metadata, {"hooked": source.id})),
                   f"polecat {worker} hooked {source.id} ({title})", actor)
    return tx.put(revise(source, tx, status=Status.HOOKED if worker else Status.OPEN, assignee=worker,
                         comments=comments, metadata=merged(source.metadata, {"attempts": 0})),
                  f"{source.status} -> {'hooked' if worker else 'open'}: {title}", actor)


@dataclass(frozen=True)
class RecordMerge:
    """The MR's branch is in the target: the MR and its source bead are closed."""

    mr_id: str
    commit: str
    actor: str

    def apply(self, tx: Tx) -> Bead:
        mr = tx.require(self.mr_id)
        if mr.status == Status.CLOSED:
            return mr
        source = _source(tx, mr)
        reason = f"merged into {mr.metadata.get('target', 'the target')} as {self.commit[:12]}"
        tx.put(revise(mr, tx, status=Status.CLOSED, closed_at=tx.now, close_reason=reason,
                      metadata=merged(mr.metadata, {"merged_commit": self.commit, "batch": None})),
               f"merged: {reason}", self.actor)
        if source.status == Status.CLOSED:
            return mr
        return tx.put(revise(source, tx, status=Status.CLOSED, closed_at=tx.now, close_reason=reason,
                             metadata=merged(source.metadata, {"merged_commit": self.commit})),
                      f"{source.status} -> closed: {reason}", self.actor)


@dataclass(frozen=True)
class RecordConflict:
    """The MR does not apply to the target: the work goes back to its polecat to resolve."""

    mr_id: str
    files: Sequence[str]
    actor: str

    def apply(self, tx: Tx) -> Bead:
        mr = tx.require(self.mr_id)
        if mr.status not in (Status.OPEN, Status.IN_PROGRESS):
            return mr
        files = ", ".join(self.files) or "unknown files"
        target = mr.metadata.get("target", "the target")
        text = (f"merge conflict with {target} in: {files}. Merge {target} into your branch, resolve, "
                f"commit and run `gt done` again.")
        return _back_to_worker(tx, mr, counter="conflict_rounds", status_line=f"conflict with {target} in {files}",
                               text=text, title="merge conflict", actor=self.actor,
                               extra={"conflicts": list(self.files)})


@dataclass(frozen=True, kw_only=True)
class Reject:
    """Verification failed with this MR: its work goes back to its polecat with the gate's output."""

    mr_id: str
    reason: str  # one line
    log: str  # the failing gate's output
    actor: str
    batch: str | None = None  # where the failing run is recorded

    def apply(self, tx: Tx) -> Bead:
        mr = tx.require(self.mr_id)
        if mr.status not in (Status.OPEN, Status.IN_PROGRESS):
            return mr
        text = (f"rejected by the merge queue: {self.reason}. Fix it on your branch and run `gt done` again."
                + (f"\n\n```\n{tail(self.log, 3000)}\n```" if self.log.strip() else ""))
        return _back_to_worker(tx, mr, counter="rejections", status_line=f"rejected: {self.reason}", text=text,
                               title="rejected", actor=self.actor,
                               extra={"rejection": {"reason": self.reason, "batch": self.batch}})


@dataclass(frozen=True)
class Requeue:
    """`gt mq retry`: a rejected or conflicting MR goes back into the queue as it is."""

    mr_id: str
    actor: str

    def apply(self, tx: Tx) -> Bead:
        mr = tx.require(self.mr_id)
        if mr.type != BeadType.MERGE_REQUEST:
            raise InvalidOperation(f"{mr.id} is a {mr.type}, not a merge request")
        if mr.status == Status.CLOSED:
            raise InvalidOperation(f"{mr.id} is already closed ({mr.close_reason})")
        if mr.status == Status.OPEN:
            return mr
        if mr.status == Status.IN_PROGRESS:
            raise InvalidOperation(f"{mr.id} is being verified in batch {mr.metadata.get('batch')}")
        return tx.put(revise(mr, tx, status=Status.OPEN), f"{mr.status} -> open: queued again", self.actor)


# -- batches -------------------------------------------------------------------------------


def batch_id(prefix: str, target: str, base: str, mrs: Sequence[str]) -> str:
    return stable_id(prefix, "batch", "\0".join([target, base, *mrs]))


@dataclass(frozen=True, kw_only=True)
class OpenBatch:
    """Start verifying ``mrs`` (in this order) stacked on ``base``, the target's tip."""

    target: str
    base: str
    mrs: Sequence[str]
    commits: Mapping[str, str]  # MR -> the commit verified
    retry_flaky: bool
    actor: str

    def apply(self, tx: Tx) -> Bead:
        bid = batch_id(tx.prefix, self.target, self.base, self.mrs)
        existing = tx.get(bid)
        if existing is not None:
            return existing
        state = Bisection.start(list(self.mrs), self.retry_flaky)
        batch = Bead(id=bid, title=f"Batch of {len(self.mrs)} into {self.target}", type=BeadType.MERGE_BATCH,
                     status=Status.IN_PROGRESS, labels=["refinery"],
                     metadata={"target": self.target, "base": self.base, "mrs": list(self.mrs),
                               "commits": dict(self.commits), "phase": "verifying",
                               "state": state.to_dict(), "runs": {}, "total_runs": 0},
                     dependencies=[Dependency(id=m, type=DepType.TRACKS) for m in self.mrs],
                     created_by=self.actor, created_at=tx.now, updated_at=tx.now)
        tx.put(batch, f"batch of {len(self.mrs)} on {self.target} at {self.base[:12]}", self.actor)
        for m in self.mrs:
            mr = tx.require(m)
            tx.put(revise(mr, tx, status=Status.IN_PROGRESS, metadata=merged(mr.metadata, {"batch": bid})),
                   f"{mr.status} -> in_progress: verifying in {bid}", self.actor)
        return batch


@dataclass(frozen=True, kw_only=True)
class RecordRun:
    """A verification run's result (written by the verifier itself; the first result stands)."""

    batch_id: str
    run: Run
    result: str  # pass | fail | conflict
    tip: str
    gate: str | None  # the failing gate
    log: str
    actor: str
    conflicts: Sequence[str] = ()  # files, when the stack could not be built
    attempt: int | None = None  # the batch's rebases when the run started (None: the current)

    def apply(self, tx: Tx) -> Bead:
        batch = tx.require(self.batch_id)
        runs = dict(batch.metadata.get("runs", {}))
        stale = self.attempt is not None and self.attempt != attempt_of(batch)  # verified on an older base
        if stale or self.run.key in runs or batch.status == Status.CLOSED:
            return batch
        runs[self.run.key] = {**self.run.to_dict(), "result": self.result, "tip": self.tip, "gate": self.gate,
                              "log": tail(self.log), "conflicts": list(self.conflicts), "at": tx.now.isoformat()}
        return tx.put(revise(batch, tx, metadata=merged(batch.metadata, {"runs": runs})),
                      f"run {run_id(batch.id, self.run, attempt_of(batch))}: {self.run.describe()}: {self.result}"
                      + (f" ({self.gate})" if self.gate else ""), self.actor)


def state_of(batch: Bead) -> Bisection:
    return Bisection.from_dict(batch.metadata["state"])


def attempt_of(batch: Bead) -> int:
    return int(batch.metadata.get("rebases", 0))


def run_record(batch: Bead, run: Run) -> Mapping[str, Any] | None:
    return batch.metadata.get("runs", {}).get(run.key)


def _failing_run(batch: Bead, mr: str) -> Mapping[str, Any] | None:
    """The smallest failing run that holds ``mr``: the best evidence against it."""
    failing = [r for r in batch.metadata.get("runs", {}).values() if r["result"] != "pass" and mr in r["group"]]
    return min(failing, key=lambda r: len(r["group"]), default=None)


def settled(batch: Bead, parallel: int) -> tuple[Bisection, dict[Run, Mapping[str, Any]]] | None:
    """The bisection once the current round is settled, and the round's records; None when the
    batch is not verifying or a run of the round has no result yet."""
    if batch.metadata.get("phase") != "verifying":
        return None
    state = state_of(batch)
    records = {r: run_record(batch, r) for r in state.next_round(parallel)}
    if any(rec is None for rec in records.values()):
        return None
    state.settle({r: rec["result"] for r, rec in records.items()})  # type: ignore[index]
    return state, records  # type: ignore[return-value]


@dataclass(frozen=True)
class SettleRound:
    """Every run of the current round has a result: advance the bisection, reject what it isolated."""

    batch_id: str
    parallel: int
    actor: str

    def apply(self, tx: Tx) -> Bead | None:
        batch = tx.require(self.batch_id)
        found = settled(batch, self.parallel)
        if found is None:
            return None
        state, records = found
        before = set(state_of(batch).rejected)
        summary = ", ".join(f"{r.describe()}: {rec['result']}" for r, rec in records.items())
        phase = "verifying"
        if state.done:
            phase = "target-red" if state.target_red else "merging" if state.accepted else "finished"
        batch = tx.put(revise(batch, tx, metadata=merged(batch.metadata, {
            "state": state.to_dict(), "phase": phase,
            "total_runs": int(batch.metadata.get("total_runs", 0)) + len(records)})),
            f"round {state.rounds}: {summary}" + (f"; {phase}" if phase != "verifying" else ""), self.actor)
        for mr in sorted(set(state.rejected) - before, key=state.mrs.index):
            self._reject(tx, batch, mr, state.rejected[mr])
        if phase == "finished":
            return tx.put(revise(batch, tx, status=Status.CLOSED, closed_at=tx.now,
                                 close_reason="every merge request was rejected"), "finished: nothing to merge",
                          self.actor)
        return batch

    def _reject(self, tx: Tx, batch: Bead, mr: str, why: str) -> None:
        run = _failing_run(batch, mr) or {}
        if why == "conflict":
            RecordConflict(mr, tuple(run.get("conflicts", ())), self.actor).apply(tx)
            return
        gate = run.get("gate") or "verification"
        if why == "inferred":
            reason = (f"gate {gate} failed on the pair holding it, and passed without it "
                      f"(run {_key(batch, run)} in {batch.id})")
        else:
            reason = f"gate {gate} failed with it alone on the verified prefix (run {_key(batch, run)} in {batch.id})"
        Reject(mr_id=mr, reason=reason, log=run.get("log", ""), actor=self.actor, batch=batch.id).apply(tx)


def _key(batch: Bead, run: Mapping[str, Any]) -> str:
    if not run:
        return "?"
    return run_id(batch.id, Run.from_dict(run), attempt_of(batch))


def verified_tip(batch: Bead, state: Bisection | None = None) -> str | None:
    """The commit that verified the accepted MRs as a whole (what the target moves to); ``state``:
    the batch's bisection, when it is not yet recorded."""
    accepted = (state or state_of(batch)).accepted
    for rec in batch.metadata.get("runs", {}).values():
        if rec["result"] == "pass" and rec["prefix"] + rec["group"] == accepted:
            return rec["tip"]
    return None


@dataclass(frozen=True)
class FinishBatch:
    """The target now holds ``commit``: every accepted MR and its source bead are closed (the
    round that decided it settled first, in the same write, when ``settle`` is given)."""

    batch_id: str
    commit: str
    actor: str
    settle: SettleRound | None = None

    def apply(self, tx: Tx) -> Bead:
        if self.settle is not None:
            self.settle.apply(tx)
        batch = tx.require(self.batch_id)
        if batch.status == Status.CLOSED:
            return batch
        accepted = state_of(batch).accepted
        for mr in accepted:
            RecordMerge(mr, self.commit, self.actor).apply(tx)
        batch = tx.require(self.batch_id)
        return tx.put(revise(batch, tx, status=Status.CLOSED, closed_at=tx.now,
                             close_reason=f"merged {len(accepted)} into {batch.metadata['target']} as "
                                          f"{self.commit[:12]}",
                             metadata=merged(batch.metadata, {"phase": "merged", "merged_commit": self.commit})),
                      f"merged {len(accepted)} as {self.commit[:12]}", self.actor)


@dataclass(frozen=True)
class RebaseBatch:
    """The target moved while the batch was verified: verify the accepted MRs again on its new tip."""

    batch_id: str
    base: str
    retry_flaky: bool
    actor: str
    force: bool = False  # verify again even on the same base (the verified tip was lost)

    def apply(self, tx: Tx) -> Bead:
        batch = tx.require(self.batch_id)
        if batch.status == Status.CLOSED or (batch.metadata.get("base") == self.base and not self.force):
            return batch
        accepted = state_of(batch).accepted
        state = Bisection.start(accepted, self.retry_flaky)
        old = batch.metadata["base"]
        return tx.put(revise(batch, tx, metadata=merged(batch.metadata, {
            "base": self.base, "mrs": accepted, "state": state.to_dict(), "phase": "verifying", "runs": {},
            "rebases": int(batch.metadata.get("rebases", 0)) + 1})),
            f"target moved from {old[:12]} to {self.base[:12]}: verifying {len(accepted)} again", self.actor)


@dataclass(frozen=True)
class AbandonBatch:
    """The target itself fails verification: no MR is rejected, the batch's MRs wait in the queue,
    and a P1 bug is filed against the target (once per target commit)."""

    batch_id: str
    actor: str

    def apply(self, tx: Tx) -> Bead:
        batch = tx.require(self.batch_id)
        if batch.status == Status.CLOSED:
            return batch
        target, base = batch.metadata["target"], batch.metadata["base"]
        run = batch.metadata.get("runs", {}).get(Run((), ()).key, {})
        bug_id = stable_id(tx.prefix, "target-red", f"{target}\0{base}")
        if tx.get(bug_id) is None:
            gate = run.get("gate") or "verification"
            text = (f"The merge queue found {target} failing by itself at {base[:12]} (gate {gate}); "
                    f"no merge request is rejected for it, and the queue waits for a fix.\n\n"
                    f"```\n{tail(run.get('log', ''), 3000)}\n```")
            tx.put(Bead(id=bug_id, title=f"{target} fails verification at {base[:12]} ({gate})", type=BeadType.BUG,
                        priority=1, description=text, labels=["refinery", "target-red"],
                        metadata={"target": target, "commit": base},
                        created_by=self.actor, created_at=tx.now, updated_at=tx.now),
                   f"P1 bug: {target} red at {base[:12]}", self.actor)
        for m in batch.metadata["mrs"]:
            mr = tx.require(m)
            if mr.status == Status.IN_PROGRESS:
                tx.put(revise(mr, tx, status=Status.OPEN, metadata=merged(mr.metadata, {"batch": None})),
                       "in_progress -> open: the target is red, waiting", self.actor)
        return tx.put(revise(batch, tx, status=Status.CLOSED, closed_at=tx.now,
                             close_reason=f"{target} is red by itself at {base[:12]}: filed {bug_id}",
                             metadata=merged(batch.metadata, {"phase": "target-red", "bug": bug_id})),
                      f"abandoned: {target} red at {base[:12]} ({bug_id})", self.actor)

