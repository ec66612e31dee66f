"""The bisection engine of the Refinery, driven with simulated gates (pure, no git)."""

from __future__ import annotations

import json
import random
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gastown.refinery.bisect import Bisection, Result, Run, _quarters

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


def test_short_of_slots_a_bad_pair_member_is_inferred_without_a_run_of_its_own():
    b, rounds = drive(["a", "b"], breaks_with({"b"}), parallel=1)
    assert [[r.stack for r in rr] for rr in rounds] == [[("a", "b")], [("a",)]]
    assert b.accepted == ["a"] and b.rejected == {"b": "inferred"}


def test_with_slots_free_a_bad_pair_is_run_as_two_singles_in_one_round():
    b, rounds = drive(["a", "b"], breaks_with({"b"}), parallel=2)
    assert [[r.stack for r in rr] for rr in rounds] == [[("a", "b")], [("a",), ("b",)]]
    assert b.accepted == ["a"] and b.rejected == {"b": "fail"} and b.runs == 3


def test_quarters_are_verified_in_one_round_when_the_slots_allow():
    b, rounds = drive(names(8), breaks_with({"mr-05"}), parallel=4)
    m = names(8)
    assert [r.group for r in rounds[1]] == [tuple(m[0:2]), tuple(m[2:4]), tuple(m[4:6]), tuple(m[6:8])]
    assert all(r.prefix == () for r in rounds[1])
    # the three green quarters became the prefix; the red one is run as two singles on it
    assert [r.stack for r in rounds[2]] == [(*m[0:4], *m[6:8], "mr-04"), (*m[0:4], *m[6:8], "mr-05")]
    assert len(rounds) == 3 and b.runs == 7 and b.rejected == {"mr-05": "fail"}
    assert tuple(b.accepted) == rounds[2][0].stack  # the stack that merges passed as a whole


def test_a_failed_group_of_more_than_four_is_quartered_whatever_the_slots():
    b = Bisection.start(names(16))
    b.settle({b.next_round(1)[0]: "fail"})
    assert [len(r.group) for r in b.next_round(1)] == [4]  # one slot: the quarters run one at a time
    assert [len(r.group) for r in b.next_round(8)] == [4, 4, 4, 4]


@pytest.mark.parametrize("bad, parallel, groups", [
    ("bh", 2, ["a", "g"]),  # short of slots: each red pair's first, its second deferred
    ("bh", 3, ["a", "b", "g"]),  # one slot over: the first red pair as two singles
    ("bh", 4, ["a", "b", "g", "h"]),
    ("bdh", 8, ["a", "c", "g"]),  # three red groups: the pairs keep their inference
])
def test_failed_pairs_are_split_to_the_free_slots(bad, parallel, groups):
    b = Bisection.start(list("abcdefgh"))
    b.settle({b.next_round(1)[0]: "fail"})
    before = json.loads(json.dumps(b.to_dict()))
    b.settle({r: "fail" if set(bad) & set(r.group) else "pass" for r in b.next_round(4)})
    again = Bisection.from_dict(json.loads(json.dumps(b.to_dict())))
    runs = b.next_round(parallel)
    assert ["".join(r.group) for r in runs] == groups
    assert again.next_round(parallel) == runs == b.next_round(parallel)  # planning again: the same runs
    assert ["".join(r.group) for r in Bisection.from_dict(before).next_round(4)] == ["ab", "cd", "ef", "gh"]
    b2, _ = drive(list("abcdefgh"), breaks_with(set(bad)), parallel=parallel)
    assert set(b2.rejected) == set(bad) and set(b2.accepted) == set("abcdefgh") - set(bad)


def test_halves_are_verified_in_parallel_on_the_accepted_prefix():
    b, rounds = drive(names(4), breaks_with({"mr-03"}), parallel=2)
    assert [r.group for r in rounds[1]] == [tuple(names(4)[:2]), tuple(names(4)[2:])]
    assert all(r.prefix == () for r in rounds[1])
    assert all(r.prefix == tuple(names(4)[:2]) for r in rounds[2])  # the green half became the prefix
    assert b.rejected == {"mr-03": "fail"} and b.accepted == names(3)


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


# -- properties over random placements of bad MRs, slots and k-way splits ------------------------

def halves_tree(group: tuple[str, ...]) -> set[tuple[str, ...]]:
    """Every node of the tree of halves under ``group`` (what bors-ng may verify)."""
    half = len(group) // 2
    return {group} | (halves_tree(group[:half]) | halves_tree(group[half:]) if half else set())


def bors_runs(mrs: list[str], bad: set[str]) -> int:
    """Sequential bisection (bors-ng): every node of the tree whose parent failed."""
    runs, queue = 0, [mrs]
    while queue:
        group = queue.pop(0)
        runs += 1
        if bad & set(group) and len(group) > 1:
            queue[0:0] = [group[:len(group) // 2], group[len(group) // 2:]]
    return runs


def check_invariants(mrs: list[str], bad: set[str], parallel: int, retry_flaky: bool, persist: bool,
                     red_target: bool = False, flaky_first: bool = False) -> tuple[Bisection, list[list[Run]]]:
    outcomes: dict[Run, Result] = {}
    flaked = []

    def gate(run: Run) -> Result:
        if red_target or bad & set(run.stack):
            result: Result = "fail"
        elif flaky_first and not flaked:
            flaked.append(run)
            result = "fail"
        else:
            result = "pass"
        outcomes[run] = result
        return result

    b = Bisection.start(mrs, retry_flaky)
    rounds: list[list[Run]] = []
    while runs := b.next_round(parallel):
        assert len(runs) <= max(1, parallel) and len(set(runs)) == len(runs)
        assert all(r.prefix == tuple(b.accepted) or not r.prefix for r in runs)
        # k-way: every part is a node of the tree of halves (quarters skip a level), never finer
        assert all(r.group in halves_tree(tuple(mrs)) or not r.group for r in runs)
        rejected_before = set(b.rejected)
        rounds.append(runs)
        b.settle({r: gate(r) for r in runs})
        if persist:
            b = Bisection.from_dict(json.loads(json.dumps(b.to_dict())))
        if set(b.rejected) - rejected_before:  # nobody is rejected before the target is known green
            assert any(res == "pass" for res in outcomes.values())
        assert len(rounds) < 200, "the bisection does not end"
    assert b.done and b.runs == sum(len(r) for r in rounds) and b.rounds == len(rounds)
    if red_target:  # a red target rejects nobody
        assert b.target_red and not b.rejected and not b.accepted
        return b, rounds
    assert not b.target_red
    assert set(b.accepted) == set(mrs) - bad  # no good MR rejected
    assert set(b.rejected) == bad  # no bad MR merged
    if b.accepted:  # the accepted stack passed as a whole before it merges
        assert any(r.stack == tuple(b.accepted) and res == "pass" for r, res in outcomes.items())
    retries = [r for rr in rounds for r in rr if r.retry]
    if retry_flaky and (bad or flaky_first) and len(mrs):
        assert [r.stack for r in retries] == [tuple(mrs)] and retries[0] == rounds[1][0]
    else:
        assert not retries
    return b, rounds


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_random_placements_with_k_way_splits_keep_every_guarantee(data):
    n = data.draw(st.integers(1, 40), label="n")
    mrs = names(n)
    bad = set(data.draw(st.lists(st.sampled_from(mrs), max_size=n, unique=True), label="bad"))
    parallel = data.draw(st.integers(1, 12), label="parallel")
    retry_flaky = data.draw(st.booleans(), label="retry_flaky")
    # (without the retry a flaky failure may reject a good MR: what the retry is for)
    flaky_first = data.draw(st.booleans(), label="flaky_first") and not bad and retry_flaky
    b, rounds = check_invariants(mrs, bad, parallel, retry_flaky, data.draw(st.booleans(), label="persist"),
                                 flaky_first=flaky_first)
    if not bad and not flaky_first:
        assert b.runs == 1
    # k-way splits: a red batch of more than four is verified as its quarters, as many at once as
    # the slots allow, and no group is ever split finer than quarters
    if n > 4 and bad and not retry_flaky:
        assert [len(r.group) for r in rounds[1]] == [len(q) for q in _quarters(mrs)][:parallel]
    for before, after in zip(rounds, rounds[1:], strict=False):
        failed = [r.group for r in before if r.group and not set(r.group) <= set(b.accepted)]
        for part in (r.group for r in after if r.group):
            parents = [g for g in failed if set(part) < set(g)]
            assert not parents or any(len(g) <= 4 * len(part) + 3 for g in parents)


@settings(max_examples=100, deadline=None)
@given(n=st.integers(1, 40), parallel=st.integers(1, 12), persist=st.booleans())
def test_an_all_bad_batch_costs_no_more_runs_than_bors_ng(n, parallel, persist):
    mrs = names(n)
    b, rounds = check_invariants(mrs, set(mrs), parallel, False, persist)
    assert rounds[-1][-1] == Run((), ()) or any(Run((), ()) in rr for rr in rounds)  # the target was checked
    # more than four MRs: quarters save more than the run that checks the target costs
    assert b.runs <= bors_runs(mrs, set(mrs)) + (n <= 4)


@settings(max_examples=100, deadline=None)
@given(n=st.integers(1, 40), parallel=st.integers(1, 12), retry_flaky=st.booleans(), persist=st.booleans())
def test_a_red_target_rejects_nobody_whatever_the_splits(n, parallel, retry_flaky, persist):
    check_invariants(names(n), set(), parallel, retry_flaky, persist, red_target=True)


@pytest.mark.parametrize("n", [8, 32])
@pytest.mark.parametrize("k", [1, 2, 4, 8])
@pytest.mark.parametrize("parallel", [1, 2, 4, 8])
def test_no_more_runs_than_bors_ng_on_average_in_every_cell(n, k, parallel):
    mrs = names(n)
    ours, theirs = [], []
    for seed in range(200):
        bad = set(random.Random(seed).sample(mrs, min(k, n)))
        ours.append(drive(mrs, breaks_with(bad), parallel=parallel)[0].runs)
        theirs.append(bors_runs(mrs, bad))
    assert sum(ours) <= sum(theirs)


@pytest.mark.parametrize("k, parallel, max_rounds", [(1, 8, 4), (1, 16, 4), (4, 8, 6)])
def test_k_way_splits_meet_the_round_targets_for_32(k, parallel, max_rounds):
    mrs = names(32)
    for seed in range(100):
        bad = set(random.Random(seed).sample(mrs, k))
        b, rounds = drive(mrs, breaks_with(bad), parallel=parallel)
        assert len(rounds) <= max_rounds and b.runs <= bors_runs(mrs, bad) + (k > 1), (seed, bad)
