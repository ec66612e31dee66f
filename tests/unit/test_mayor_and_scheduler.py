"""The Mayor's plans and the scheduler's decisions, on memory snapshots."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from gastown import convoy as convoys
from gastown import mayor, scheduler
from gastown.ledger import Status
from gastown.ledger.ops import Create, Tx
from gastown.polecats import EnsureAgent, StartSession

from ledgermem import MemSnapshot

NOW = datetime(2026, 1, 1, tzinfo=UTC)
PLAN = '{"beads": [{"key": "a", "title": "A"}, {"key": "b", "title": "B", "needs": ["a"], "priority": 1}]}'


@pytest.mark.parametrize("output", [
    PLAN,
    f"Here is my plan:\n```json\n{PLAN}\n```\nGood luck!",
    f"thinking... {{not json}} {PLAN} trailing words",
])
def test_plans_are_found_in_what_the_mayor_says(output):
    plan = mayor.parse(output)
    assert [b.key for b in plan.beads] == ["a", "b"] and plan.beads[1].needs == ["a"]


@pytest.mark.parametrize(("output", "words"), [
    ("I could not decide.", "no JSON object with a `beads` list"),
    ('{"beads": []}', "beads: List should have at least 1 item"),
    ('{"beads": [{"key": "a", "title": "A", "needs": ["a"]}]}', "dependency cycle a -> a"),
    ('{"beads": [{"key": "a", "title": "A", "needs": ["zz"]}]}', "needs unknown key zz"),
])
def test_invalid_plans_say_why(output, words):
    with pytest.raises(mayor.PlanInvalid, match=words):
        mayor.parse(output)


def test_the_prompt_asks_for_json_and_feeds_back_errors():
    text = mayor.prompt("Add dark mode", "webapp", error="beads.0.title: Field required")
    assert "Add dark mode" in text and '"beads"' in text and "beads.0.title: Field required" in text


def ledger_with(n_beads, priorities=None, convoy_cap=None):
    tx = Tx(MemSnapshot("c0", {}), NOW)
    if convoy_cap is not None:
        info = convoys.ConvoyInfo("c", "c", "webapp", "beads", max_parallel=convoy_cap)
        convoys.OpenConvoy(info, "t").apply(tx)
        convoys.PlanConvoy("c", tuple(convoys.PlannedBead(f"k{i}", f"b{i}") for i in range(n_beads)), "t").apply(tx)
    else:
        for i in range(n_beads):
            tx.now = NOW + timedelta(seconds=i)
            Create(f"b{i}", "t", seed=f"b{i}", priority=(priorities or {}).get(i, 2)).apply(tx)
    return tx


def test_dispatch_respects_the_limit_priority_and_age():
    tx = ledger_with(6, priorities={4: 0, 5: 1})
    d = scheduler.plan(dict(tx.changes), "gt", 3, [], now=NOW)
    titles = [tx.get(b).title for b, _ in d.assign]
    assert titles == ["b4", "b5", "b0"]  # P0, P1, then the oldest P2
    assert d.new_polecats == ["furiosa", "nux", "capable"] and d.queued == 6


def test_idle_polecats_are_reused_and_busy_ones_counted():
    tx = ledger_with(4)
    for name in ("furiosa", "nux"):
        EnsureAgent(name, "webapp", "t").apply(tx)
    first = scheduler.plan(dict(tx.changes), "gt", 3, [], now=NOW)
    assert [p for _, p in first.assign] == ["furiosa", "nux", "capable"]
    for bead, polecat in first.assign:
        scheduler.Assign(bead, polecat, "webapp", "t").apply(tx)
    StartSession(first.assign[0][0], "furiosa", "s1", "t").apply(tx)
    again = scheduler.plan(dict(tx.changes), "gt", 3, [], now=NOW)
    assert again.assign == [] and again.in_flight == 3 and again.queued == 1


def test_a_session_winding_down_holds_no_slot_and_its_polecat_gets_no_new_bead():
    tx = ledger_with(4)
    first = scheduler.plan(dict(tx.changes), "gt", 2, [], now=NOW)
    for bead, polecat in first.assign:
        scheduler.Assign(bead, polecat, "webapp", "t").apply(tx)
        StartSession(bead, polecat, f"s-{polecat}", "t").apply(tx)
    beads = dict(tx.changes)
    assert scheduler.plan(beads, "gt", 2, [], now=NOW).assign == []  # both agents run: the rig is full
    # furiosa's agent has exited; its wrapper still pushes and books the result: one slot is free,
    # taken by a new polecat (furiosa's checkout is still in use)
    again = scheduler.plan(beads, "gt", 2, [], now=NOW, winding={"furiosa"})
    assert [p for _, p in again.assign] == ["capable"] and again.in_flight == 2
    assert len(scheduler.in_slots(beads, {"furiosa"})) == 1


def test_convoy_max_parallel():
    tx = ledger_with(5, convoy_cap=2)
    d = scheduler.plan(dict(tx.changes), "gt", 10, [], now=NOW)
    assert len(d.assign) == 2


def test_pause_and_rate_limit_backoff():
    tx = ledger_with(2)
    tx.now = NOW
    scheduler.SetPaused(True, "user alice").apply(tx)
    d = scheduler.plan(dict(tx.changes), "gt", 3, [], now=NOW)
    assert d.assign == [] and d.held == "paused by user alice"
    scheduler.SetPaused(False, "user alice").apply(tx)
    for n, wait in ((1, 30), (2, 60), (3, 120)):
        scheduler.RateLimitStrike(f"s{n}", "t").apply(tx)
        scheduler.RateLimitStrike(f"s{n}", "t").apply(tx)  # the same session counts once
        state = scheduler.state_of(dict(tx.changes), "gt")
        assert state.strikes == n and state.backoff_until == NOW + timedelta(seconds=wait)
    assert "rate-limit backoff" in scheduler.plan(dict(tx.changes), "gt", 3, [], now=NOW).held
    assert scheduler.plan(dict(tx.changes), "gt", 3, [], now=NOW + timedelta(minutes=3)).held is None
    scheduler.ClearStrikes("t").apply(tx)
    assert scheduler.state_of(dict(tx.changes), "gt").strikes == 0


def test_steps_and_review_do_not_count_as_dispatchable_or_in_flight():
    tx = ledger_with(0)
    info = convoys.ConvoyInfo("m", "m", "webapp", "formula")
    convoys.OpenConvoy(info, "t").apply(tx)
    plan = (convoys.PlannedBead("molecule", "root"), convoys.PlannedBead("s1", "step 1", parent="molecule"))
    convoys.PlanConvoy("m", plan, "t").apply(tx)
    d = scheduler.plan(dict(tx.changes), "gt", 3, [], now=NOW)
    assert [tx.get(b).title for b, _ in d.assign] == ["root"]
    root = tx.get(d.assign[0][0])
    in_review = root.model_copy(update={"status": Status.IN_PROGRESS, "assignee": "furiosa",
                                        "metadata": {**root.metadata, "mr": "gt-mr1"}})
    assert not scheduler.flying(in_review)
