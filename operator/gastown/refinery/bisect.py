"""Bisecting a batch of merge requests: which runs to verify next, and what their results mean.

Pure and serialisable: the state lives in the batch's ledger record, so a restarted queue
resumes the bisection exactly where it was. A *run* verifies ``group`` stacked on ``prefix``
(the MRs accepted so far, stacked on the batch's base). One *round* is the runs verified at
once; the next round is planned when all of them have a result.

- Round 1 verifies the whole batch. Green: done, in one run.
- Red: retried once when flaky retries are on (a run of its own: ``Run.retry``), then split,
  and the parts are verified in parallel on the accepted prefix. A part that passes joins the
  prefix; a part that fails is split again.
- A failed group is split when the next round is planned (``next_round``), to use the
  round's verification slots. A group of more than four goes into its quarters (the halves of
  its halves) at once: the quarters cost the four runs that two levels of halves cost at worst
  (bors-ng runs both halves of every red group), so they never cost more runs than halves, and
  they save a round. Never finer than quarters: eighths would cost more runs than they save.
  A group of three or four goes into halves, or into singles when the round has slots free.
  The parts are always nodes of the tree of halves, and the split depends only on the state
  and ``parallel``, so planning a round again (after a restart) gives the same runs.
- A failing pair, when the round has a slot free for each and fewer than three groups to
  split, is run as two singles. Otherwise its first MR runs alone, and when it passes the
  second is the bad one (the pair failed without it failing), so it is rejected without a run
  of its own; a second whose first also failed runs alone in the next round.
- Two groups passing in the same round were each verified on the prefix, never together: the
  next round's runs are stacked on both, and when no round follows, the prefix is verified
  alone before anything merges. If that fails (the MRs interact), the accepted MRs are bisected
  again one group at a time, each stacked on the last verified prefix.
- No MR is rejected before the target itself is known to be green (some run passed); when a
  round after the first fails entirely and that is not known, the target alone is verified in
  the next round.
  A red target rejects nothing: the batch ends with ``target_red`` set.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Result = Literal["pass", "fail", "conflict"]


@dataclass(frozen=True)
class Run:
    prefix: tuple[str, ...]  # accepted MRs, stacked first
    group: tuple[str, ...]  # the MRs under test; () verifies the prefix alone (the target when empty)
    retry: int = 0  # a flaky retry of the same stack is a run of its own, with a result of its own

    @property
    def key(self) -> str:
        """The run's key within its batch (where its result is recorded)."""
        text = "\0".join([*self.prefix, "|", *self.group, *([f"retry {self.retry}"] if self.retry else [])])
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def stack(self) -> tuple[str, ...]:
        return self.prefix + self.group

    def describe(self) -> str:
        if not self.group:
            return f"the {len(self.prefix)} accepted together" if self.prefix else "the target"
        again = f" (retry {self.retry})" if self.retry else ""
        return f"{len(self.group)} MR(s) on {len(self.prefix)} accepted{again}"

    def to_dict(self) -> dict[str, Any]:
        return {"prefix": list(self.prefix), "group": list(self.group), **({"retry": self.retry} if self.retry else {})}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Run:
        return cls(tuple(data["prefix"]), tuple(data["group"]), int(data.get("retry", 0)))


def run_id(batch: str, run: Run, attempt: int = 0) -> str:
    """A run's ID: unique per batch, the batch's rebase ``attempt`` and the run (its retry included)."""
    return hashlib.sha256(f"{batch}\0{attempt}\0{run.key}".encode()).hexdigest()[:16]


@dataclass
class Bisection:
    mrs: list[str]
    retry_flaky: bool = False
    pending: list[list[str]] = field(default_factory=list)
    failed: list[list[str]] = field(default_factory=list)  # failed groups, split when the next round is planned
    deferred: dict[str, str] = field(default_factory=dict)  # first of a failed pair -> its second
    accepted: list[str] = field(default_factory=list)
    rejected: dict[str, str] = field(default_factory=dict)  # MR -> "fail" | "inferred" | "conflict"
    held: list[str] = field(default_factory=list)  # failed alone before the target was known green
    verified: bool = True  # the accepted stack has passed as a whole
    target_green: bool = False  # some run passed: the target itself is fine
    target_check: bool = False  # verify the target alone in the next round
    target_red: bool = False
    retried: bool = False
    sequential: bool = False  # after the accepted MRs failed together: one group at a time
    rounds: int = 0
    runs: int = 0

    @classmethod
    def start(cls, mrs: list[str], retry_flaky: bool = False) -> Bisection:
        return cls(list(mrs), retry_flaky, pending=[list(mrs)] if mrs else [])

    @property
    def done(self) -> bool:
        return self.target_red or not (self.pending or self.failed or self.deferred or self.target_check or self.held
                                       or (self.accepted and not self.verified))

    def next_round(self, parallel: int) -> list[Run]:
        """The runs to verify now (at most ``parallel``); empty when the bisection is done.

        Splits the groups that failed last round into the parts these runs verify (deterministic:
        called again, on this state or on the one saved before it, it gives the same runs)."""
        if self.done:
            return []
        if self.failed:
            self._split(max(1, parallel))
        prefix = tuple(self.accepted)
        groups = self.pending[:1] if self.sequential else self.pending
        runs = [Run(prefix, tuple(g), retry=int(self.retried and not prefix and g == self.mrs)) for g in groups]
        if not self.pending and not self.verified:
            runs.append(Run(prefix, ()))
        if self.target_check:  # last: when slots are short, a passing group makes it moot
            runs.append(Run((), ()))
        return runs[:max(1, parallel)]

    def settle(self, results: Mapping[Run, Result]) -> None:
        """Take the results of one round (every run of ``next_round``)."""
        self.rounds += 1
        self.runs += len(results)
        passed = 0
        for run, result in results.items():
            if not run.group:
                passed += self._settle_alone(run, result)
                continue
            group = list(run.group)
            self.pending.remove(group)
            if result == "pass":
                passed += 1
                self.accepted += group
                self.target_green = True
                if group[0] in self.deferred:
                    self.rejected[self.deferred.pop(group[0])] = "inferred"
            elif result == "fail" and self.retry_flaky and not self.retried and group == self.mrs:
                self.retried = True  # the whole batch once more, as a run of its own (Run.retry)
                self.pending.append(group)
            elif len(group) == 1:
                second = self.deferred.pop(group[0], None)
                if second is not None:
                    self.pending.append([second])  # unknown: its first failed too
                if result == "conflict":
                    self.rejected[group[0]] = "conflict"
                else:
                    self.held.append(group[0])  # rejected once the target is known to be green
            else:
                self.failed.append(group)  # split by next_round, to the slots it has
        if self.held and self.target_green:
            self.rejected.update({mr: "fail" for mr in self.held})
            self.held = []
        if passed == 1:
            self.verified = True
        elif passed > 1:
            self.verified = False
        if not passed and not self.target_green and not self.target_red and (self.held or self.rounds > 1):
            self.target_check = True  # (after the first round: one red batch says little about the target)
        if self.target_green:
            self.target_check = False
        order = {mr: i for i, mr in enumerate(self.mrs)}
        self.pending.sort(key=lambda g: order[g[0]])

    def _split(self, parallel: int) -> None:
        """Split the failed groups into the parts the next round verifies (see the module's
        docstring): more than four into quarters; fewer into halves (a pair into its first MR,
        its second deferred), then, in order, into singles while the round has slots free."""
        order = {mr: i for i, mr in enumerate(self.mrs)}
        failed = sorted(self.failed, key=lambda g: order[g[0]])
        self.failed = []
        if self.sequential:  # one group at a time: halves, and no inference from a pair
            self.pending += [part for g in failed for part in _halves(g)]
            return
        parts = [_quarters(g) if len(g) > 4 else [g[:1]] if len(g) == 2 else _halves(g) for g in failed]
        free = parallel - len(self.pending) - sum(len(p) for p in parts)
        for i, g in enumerate(failed):
            finer = _quarters(g)
            if len(g) == 2 and len(failed) > 2:
                continue  # three or more red groups: a pair's inference saves more runs than its singles save rounds
            if len(finer) - len(parts[i]) <= free:
                free -= len(finer) - len(parts[i])
                parts[i] = finer
        for g, p in zip(failed, parts, strict=True):
            if len(g) == 2 and len(p) == 1:
                self.deferred[g[0]] = g[1]
            self.pending += p
        self.pending.sort(key=lambda g: order[g[0]])

    def _settle_alone(self, run: Run, result: Result) -> int:
        if not run.prefix:  # the target alone
            self.target_check = False
            self.target_green = result == "pass"
            self.target_red = result != "pass"
            return 0
        if result == "pass":
            self.verified = True
            return 1
        # the accepted MRs fail together though each group passed: bisect them again, one at a time
        half = len(run.prefix) // 2
        self.pending = [list(run.prefix[:half]), list(run.prefix[half:]), *self.pending]
        self.accepted, self.verified, self.sequential = [], True, True
        return 0

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Bisection:
        # (a state saved before ``failed`` existed has none: the default is right for it)
        fields: dict[str, Any] = {k: (list(v) if isinstance(v, list) else dict(v) if isinstance(v, dict) else v)
                                  for k, v in data.items()}
        return cls(**fields)


def _halves(group: list[str]) -> list[list[str]]:
    """A group's halves (the first the smaller); a single MR is its own only part."""
    half = len(group) // 2
    return [group[:half], group[half:]] if half else [group]


def _quarters(group: list[str]) -> list[list[str]]:
    """The halves of a group's halves: nodes of the same tree as the halves, a level down."""
    return [quarter for half in _halves(group) for quarter in _halves(half)]
