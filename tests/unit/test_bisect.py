"""The bisection engine of the Refinery, driven with simulated gates (pure, no git)."""

from __future__ import annotations

import json
import random
from collections.abc import Callable

import pytest

from gastown.refinery.bisect import Bisection, Result, Run

Gate = Callable[[Run], Result]


def drive(mrs: list[str], gate: Gate, parallel: int = 4, retry_flaky: bool = False,
          persist: bool = False) -> tuple[Bisection, list[list[Run]]]:
    """Run a bisection to the end; ``persist`` round-trips the state through JSON each round,
    as the ledger record does between rig passes."""
    b = Bisection.start(mrs, retry_flaky)
    rounds = []
    while runs := b.next_round(parallel):
        assert len(runs) <= max(1, parallel)
        assert all(r.prefix == tuple(b.accepted) or not r.prefix for r in runs)
        rounds.append(runs)
        b.settle({r: gate(r) for r in runs})
        if persist:
            b = Bisection.from_dict(json.loads(json.dumps(b.to_dict())))
        assert len(rounds) < 100, "the bisection does not end"
    return b, rounds


def breaks_with(bad: set[str]) -> Gate:
    return lambda run: "fail" if bad & set(run.stack) else "pass"


def names(n: int) -> list[str]:
    return [f"mr-{i:02d}" for i in range(n)]


def test_green_batch_is_one_run():
    b, rounds = drive(names(8), breaks_with(set()))
    assert b.accepted == names(8) and not b.rejected and b.runs == 1 and b.rounds == 1 and b.done


@pytest.mark.parametrize("seed", range(60))
def test_random_batches_accept_exactly_the_good_and_reject_exactly_the_bad(seed):
    rng = random.Random(seed)
    mrs = names(rng.randint(1, 20))
    bad = set(rng.sample(mrs, rng.randint(0, min(5, len(mrs)))))
    b, rounds = drive(mrs, breaks_with(bad), parallel=rng.randint(1, 5), persist=seed % 2 == 0)
    assert set(b.accepted) == set(mrs) - bad
    assert set(b.rejected) == bad and set(b.rejected.values()) <= {"fail", "inferred"}
    assert b.runs == sum(len(r) for r in rounds) and b.rounds == len(rounds)
    # what merges was verified as a whole: the last run with the accepted stack passed
    if b.accepted:
        assert any(r.stack == tuple(b.accepted) for rr in rounds for r in rr)


def test_a_bad_pair_member_is_inferred_without_a_run_of_its_own():
    b, rounds = drive(["a", "b"], breaks_with({"b"}))
    assert [[r.stack for r in rr] for rr in rounds] == [[("a", "b")], [("a",)]]
    assert b.accepted == ["a"] and b.rejected == {"b": "inferred"}


def test_halves_are_verified_in_parallel_on_the_accepted_prefix():
    b, rounds = drive(names(8), breaks_with({"mr-05"}))
    assert [r.group for r in rounds[1]] == [tuple(names(8)[:4]), tuple(names(8)[4:])]
    assert all(r.prefix == () for r in rounds[1])
    assert all(r.prefix == tuple(names(8)[:4]) for r in rounds[2])  # the green half became the prefix
    assert b.rejected == {"mr-05": "fail"} or b.rejected == {"mr-05": "inferred"}


def test_interacting_mrs_that_pass_alone_but_fail_together_are_not_both_merged():
    def gate(run: Run) -> Result:
        return "fail" if {"mr-01", "mr-06"} <= set(run.stack) else "pass"

    b, rounds = drive(names(8), gate)
    assert b.sequential  # the prefix failed as a whole: re-bisected one group at a time
    assert len(b.rejected) == 1 and set(b.rejected) <= {"mr-01", "mr-06"}
    assert set(b.accepted) == set(names(8)) - set(b.rejected)
    assert gate(Run(tuple(b.accepted), ())) == "pass"


def test_a_red_target_rejects_nobody():
    b, rounds = drive(names(8), lambda run: "fail")
    assert b.target_red and b.done and not b.rejected and not b.accepted
    assert rounds[-1][-1] == Run((), ())  # the target alone was verified before anything was rejected


def test_a_red_target_with_a_single_mr_rejects_nobody():
    b, _ = drive(["a"], lambda run: "fail")
    assert b.target_red and not b.rejected


def test_one_flaky_failure_is_retried_before_bisecting():
    outcomes = iter(["fail", "pass"])
    b, rounds = drive(names(6), lambda run: next(outcomes), retry_flaky=True)
    assert b.accepted == names(6) and b.runs == 2 and b.retried


@pytest.mark.parametrize("count", [1, 6])
def test_the_retry_is_a_run_of_its_own(count):
    outcomes = iter(["fail", "pass"])
    b, rounds = drive(names(count), lambda run: next(outcomes), retry_flaky=True, persist=True)
    (first,), (again,) = rounds
    assert again.stack == first.stack and again.retry == 1 and again.key != first.key
    assert Run.from_dict(json.loads(json.dumps(again.to_dict()))) == again
    assert b.accepted == names(count) and b.runs == 2


def test_without_retry_a_flaky_failure_bisects():
    outcomes = iter(["fail"])
    b, rounds = drive(names(6), lambda run: next(outcomes, "pass"), retry_flaky=False)
    assert b.accepted == names(6) and b.runs > 2 and not b.retried


def test_a_conflicting_mr_is_rejected_as_conflict():
    def gate(run: Run) -> Result:
        return "conflict" if "mr-02" in run.stack else "pass"

    b, _ = drive(names(4), gate)
    assert b.rejected == {"mr-02": "conflict"} and b.accepted == ["mr-00", "mr-01", "mr-03"]


def test_parallel_one_is_sequential_and_still_exact():
    bad = {"mr-03", "mr-04", "mr-10"}
    b, rounds = drive(names(12), breaks_with(bad), parallel=1)
    assert all(len(r) == 1 for r in rounds)
    assert set(b.rejected) == bad and set(b.accepted) == set(names(12)) - bad


def test_run_keys_are_stable_and_distinguish_prefix_from_group():
    assert Run(("a",), ("b",)).key == Run.from_dict(Run(("a",), ("b",)).to_dict()).key
    assert Run(("a",), ("b",)).key != Run((), ("a", "b")).key
    assert Run((), ()).describe() == "the target" and Run(("a",), ()).describe() == "the 1 accepted together"


@pytest.mark.parametrize("k,parallel,max_rounds", [(1, 4, 7), (2, 4, 7)])
def test_rounds_stay_within_log2_n_plus_two_for_few_bad(k, parallel, max_rounds):
    mrs = names(32)
    for seed in range(40):
        bad = set(random.Random(seed).sample(mrs, k))
        b, rounds = drive(mrs, breaks_with(bad), parallel=parallel)
        assert len(rounds) <= max_rounds, (seed, bad)
