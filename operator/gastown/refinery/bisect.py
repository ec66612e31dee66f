"""Bisecting a batch of merge requests: which runs to verify next, and what their results mean.

Pure and serialisable: the state lives in the batch's ledger record, so a restarted queue
resumes the bisection exactly where it was. A *run* verifies ``group`` stacked on ``prefix``
(the MRs accepted so far, stacked on the batch's base). One *round* is the runs verified at
once; the next round is planned when all of them have a result.

- Round 1 verifies the whole batch. Green: done, in one run.
- Red: retried once when flaky retries are on (a run of its own: ``Run.retry``), then split in
  halves, and both halves are verified in parallel on the accepted prefix. A half that passes
  joins the prefix; a half that fails is split again.
- A failing pair is not run as two singles: its first MR runs alone, and when it passes the
  second is the bad one (the pair failed without it failing), so it is rejected without a run
  of its own. Seconds whose first also failed are verified together in the next round.
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
        return self.target_red or not (self.pending or self.deferred or self.target_check or self.held
                                       or (self.accepted and not self.verified))

    def next_round(self, parallel: int) -> list[Run]:
        """The runs to verify now (at most ``parallel``); empty when the bisection is done."""
        if self.done:
            return []
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
        unknown: list[str] = []
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
                    unknown.append(second)
                if result == "conflict":
                    self.rejected[group[0]] = "conflict"
                else:
                    self.held.append(group[0])  # rejected once the target is known to be green
            elif len(group) == 2 and not self.sequential:
                self.pending.append(group[:1])
                self.deferred[group[0]] = group[1]
            else:
                half = len(group) // 2
                self.pending += [group[:half], group[half:]]
        if unknown:
            self.pending.append(unknown)
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
        return cls(**{k: (list(v) if isinstance(v, list) else dict(v) if isinstance(v, dict) else v)
                      for k, v in data.items()})
