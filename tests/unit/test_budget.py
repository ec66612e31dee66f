"""Budgets and shared limits, decided on memory snapshots: spend from session records, the
thresholds, escalations once per period, and fair shares of a shared limit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from gastown import budget, scheduler
from gastown import convoy as convoys
from gastown.api.budget import ConvoyBudget, RigBudget, TownLimits
from gastown.ledger import BeadType
from gastown.ledger.ops import Create, Tx
from gastown.spend import RecordUsage

from ledgermem import MemSnapshot

NOW = datetime(2026, 11, 30, 15, 0, tzinfo=UTC)


def beads_of(tx):
    return {i: tx.get(i) for i in tx.ids()}


def used(tx, bead, session, tokens, usd=0.0, at=NOW):
    tx.now = at
    RecordUsage(bead, session, "script", {"input_tokens": tokens // 2, "output_tokens": tokens - tokens // 2,
                                          **({"cost_usd": usd} if usd else {})}, "t").apply(tx)


@pytest.fixture
def tx():
    tx = Tx(MemSnapshot("c0", {}), NOW)
    Create("work", "t", seed="w").apply(tx)
    return tx


def test_periods_are_utc_days_and_months():
    late = datetime(2026, 12, 1, 1, 30, tzinfo=UTC)
    assert budget.period_start("day", late) == datetime(2026, 12, 1, tzinfo=UTC)
    assert budget.period_start("month", NOW) == datetime(2026, 11, 1, tzinfo=UTC)
    assert budget.period_name("day", NOW) == "day 2026-11-30"
    assert budget.period_name("month", NOW) == "month 2026-11"


def test_spend_counts_each_period_from_the_session_records(tx):
    work = next(iter(tx.ids()))
    used(tx, work, "s1", 1000, 0.5, at=NOW - timedelta(days=1))  # yesterday, this month
    used(tx, work, "s2", 300, 0.25)
    used(tx, work, "s2", 300, 0.25)  # recorded twice: counted once
    day, month = budget.rig_standings(beads_of(tx), RigBudget(), NOW)
    assert (day.period, day.spent) == ("day 2026-11-30", budget.Spent(300, 0.25))
    assert (month.period, month.spent) == ("month 2026-11", budget.Spent(1300, 0.75))
    assert day.state == "Unbudgeted" and day.percent is None


@pytest.mark.parametrize(("tokens", "state"), [(500, "Ok"), (800, "Warning"), (1000, "Exhausted"), (1500, "Exhausted")])
def test_states_at_the_thresholds(tx, tokens, state):
    used(tx, next(iter(tx.ids())), "s1", tokens)
    day, _ = budget.rig_standings(beads_of(tx), RigBudget.model_validate({"daily": {"tokens": 1000}}), NOW)
    assert day.state == state
    assert day.status()["state"] == state and day.status()["tokenBudget"] == 1000


def test_money_counts_too_whichever_comes_first(tx):
    used(tx, next(iter(tx.ids())), "s1", 10, usd=4.5)
    day, _ = budget.rig_standings(beads_of(tx), RigBudget.model_validate({"daily": {"tokens": 1000, "usd": 5}}), NOW)
    assert (day.percent, day.state) == (90, "Warning")
    assert day.describe() == "10 of 1,000 tokens, $4.50 of $5.00 (90 %)"


def test_escalations_once_per_budget_and_period(tx):
    work = next(iter(tx.ids()))
    given = RigBudget.model_validate({"daily": {"tokens": 1000}})
    used(tx, work, "s1", 850)
    first = budget.gate(beads_of(tx), rig="webapp", budget=given, now=NOW, actor="t")
    assert [(r.severity, r.dedupe) for r in first.raises] == [("P2", "budget:rig:day 2026-11-30:P2:1,000 tokens")]
    assert first.held is None
    for op in first.raises:
        op.apply(tx)
    assert budget.gate(beads_of(tx), rig="webapp", budget=given, now=NOW, actor="t").raises == []
    used(tx, work, "s2", 200)
    exhausted = budget.gate(beads_of(tx), rig="webapp", budget=given, now=NOW, actor="t")
    assert [r.severity for r in exhausted.raises] == ["P1"]
    assert exhausted.held.startswith("rig budget exhausted (day 2026-11-30")
    for op in exhausted.raises:
        op.apply(tx)
    escalations = [b for b in beads_of(tx).values() if b.type == BeadType.ESCALATION]
    assert sorted(e.metadata["severity"] for e in escalations) == ["P1", "P2"]
    # raised, then reached again the same day: said again
    more = RigBudget.model_validate({"daily": {"tokens": 1100}})
    assert [r.severity for r in budget.gate(beads_of(tx), rig="webapp", budget=more, now=NOW, actor="t").raises] \
        == ["P2"]
    used(tx, work, "s3", 100)
    assert [r.severity for r in budget.gate(beads_of(tx), rig="webapp", budget=more, now=NOW, actor="t").raises] \
        == ["P1"]
    # the next day starts afresh: nothing spent, nothing held
    tomorrow = budget.gate(beads_of(tx), rig="webapp", budget=given, now=NOW + timedelta(days=1), actor="t")
    assert tomorrow.held is None and tomorrow.raises == []


def convoy_tx(n=3, given=None):
    tx = Tx(MemSnapshot("c0", {}), NOW)
    convoys.OpenConvoy(convoys.ConvoyInfo("c", "c", "webapp", "beads"), "t").apply(tx)
    convoys.PlanConvoy("c", tuple(convoys.PlannedBead(f"k{i}", f"b{i}") for i in range(n)), "t").apply(tx)
    if given is not None:
        budget.SetConvoyBudget("c", given, "t").apply(tx)
    return tx


def test_an_exhausted_convoy_holds_its_own_beads_only():
    tx = convoy_tx(given={"tokens": 100})
    Create("loose", "t", seed="loose").apply(tx)
    convoy = tx.get(convoys.convoy_id("gt", "c"))
    first = convoy.deps()[0]
    used(tx, first, "s1", 120)
    beads = beads_of(tx)
    gate = budget.gate(beads, rig="webapp", budget=RigBudget(), now=NOW, actor="t")
    assert gate.convoys == {convoy.id} and gate.held is None
    assert [r.severity for r in gate.raises] == ["P1"] and gate.raises[0].related == convoy.id
    decision = scheduler.plan(beads, "gt", 5, [], now=NOW, waiting=lambda b: budget.waits(b, beads, gate.convoys))
    assert [beads[b].title for b, _ in decision.assign] == ["loose"]


def test_raising_a_convoy_budget_lets_it_go_on():
    tx = convoy_tx(given={"tokens": 100})
    used(tx, tx.get(convoys.convoy_id("gt", "c")).deps()[0], "s1", 120)
    budget.SetConvoyBudget("c", ConvoyBudget(tokens=1000).wire(), "t").apply(tx)
    convoy = tx.get(convoys.convoy_id("gt", "c"))
    assert convoy.metadata["budget"] == {"tokens": 1000, "warnPercent": 80}
    assert budget.gate(beads_of(tx), rig="webapp", budget=RigBudget(), now=NOW, actor="t").convoys == set()


def test_the_town_budget_adds_up_every_rig():
    shared = budget.SharedLimits(TownLimits.model_validate({"daily": {"usd": 10}}))
    shared.note_spend("a", [budget.Standing("rig", "day 2026-11-30", budget.Spent(0, 6.0))])
    tx = Tx(MemSnapshot("c0", {}), NOW)
    Create("work", "t", seed="w").apply(tx)
    used(tx, next(iter(tx.ids())), "s1", 10, usd=4.0)
    gate = budget.gate(beads_of(tx), rig="b", budget=RigBudget(), now=NOW, actor="t", shared=shared)
    assert gate.held and gate.held.startswith("town budget exhausted")
    assert [r.severity for r in gate.raises] == ["P1"]
    again = budget.gate(beads_of(tx), rig="b", budget=RigBudget(), now=NOW, actor="t", shared=shared)
    assert again.held and again.raises == []  # raised once by this driver, whichever rig notices


@pytest.mark.parametrize(("identity", "name"), [("secret:ns/keys/anthropic", "ns/keys"),
                                                ("ANTHROPIC_API_KEY:0a1b2c", "ANTHROPIC_API_KEY"),
                                                ("claude:login", "claude")])
def test_keys_are_named_by_secret_or_variable(identity, name):
    assert budget.key_name(identity) == name


def test_a_shared_limit_is_never_exceeded_and_goes_round_robin():
    shared = budget.SharedLimits(TownLimits.model_validate({"keys": {"KEY": 2}}))
    groups = shared.groups("KEY:abc", "claude")
    assert groups == [("key KEY", 2)]
    running = {"a": 0, "b": 0}
    started = {"a": 0, "b": 0}
    now = NOW
    for turn in range(40):  # rigs pass in turn, each with plenty of work; one session of each ends now and then
        rig = "ab"[turn % 2]
        if turn % 3 == 0 and running[rig]:
            running[rig] -= 1
        granted = shared.share(rig, groups, in_flight=running[rig], queued=10, now=now)
        running[rig] += granted
        started[rig] += granted
        shared.took(rig, groups, granted, granted)
        assert sum(running.values()) <= 2
        now += timedelta(seconds=1)
    assert started["a"] > 3 and started["b"] > 3 and abs(started["a"] - started["b"]) <= 1


def test_a_slot_not_used_is_given_back():
    shared = budget.SharedLimits(TownLimits.model_validate({"runtimes": {"script": 1}}))
    groups = shared.groups(None, "script")
    assert shared.share("a", groups, in_flight=0, queued=1, now=NOW) == 1
    shared.took("a", groups, 1, 0)  # it did not hook anything after all
    assert shared.share("b", groups, in_flight=0, queued=1, now=NOW) == 1


def test_a_rig_with_no_shared_limit_is_not_capped():
    shared = budget.SharedLimits(TownLimits.model_validate({"keys": {"OTHER": 1}}))
    assert shared.groups("KEY:abc", "claude") == []
    assert shared.share("a", [], in_flight=3, queued=5, now=NOW) is None


def test_bad_town_limits_say_what_is_wrong():
    with pytest.raises(ValueError, match="set tokens, usd or both"):
        TownLimits.model_validate({"daily": {}})
    with pytest.raises(ValueError, match="a limit is a name and 1 or more sessions"):
        TownLimits.model_validate({"keys": {"KEY": 0}})


def test_the_operator_takes_the_town_limits_from_its_environment():
    from gastown.settings import Settings, SettingsError

    limits = Settings.from_env({"GT_TOWN_LIMITS": '{"daily": {"usd": 50}, "keys": {"team-a/llm": 4}}'}).limits()
    assert limits.daily.usd == 50 and limits.keys == {"team-a/llm": 4}
    assert Settings.from_env({}).limits() == TownLimits()
    with pytest.raises(SettingsError, match="GT_TOWN_LIMITS is not JSON: Expecting"):
        Settings.from_env({"GT_TOWN_LIMITS": "{daily"})
    with pytest.raises(SettingsError, match=r"^GT_TOWN_LIMITS.runtimes.claude: "):
        Settings.from_env({"GT_TOWN_LIMITS": '{"runtimes": {"claude": "many"}}'})


def test_a_session_job_carries_the_rigs_session_ceilings():
    from gastown.api import RigSpec
    from gastown.api.common import RuntimeSpec
    from gastown.runtimes.kubernetes import JobRequest, session_job

    def env(budget_):
        spec = RigSpec.model_validate({"gitUrl": "https://git.example.com/w.git", "budget": budget_})
        job = session_job(JobRequest(namespace="ns", rig="w", rig_spec=spec, polecat="nux", polecat_uid="u",
                                     bead="gt-1", count=1, runtime=RuntimeSpec(preset="script"), image="img"))
        return {e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}

    given = env({"sessionTokens": 50000, "sessionSeconds": 600})
    assert (given["GT_SESSION_MAX_TOKENS"], given["GT_SESSION_MAX_SECONDS"]) == ("50000", "600")
    assert "GT_SESSION_MAX_TOKENS" not in env({})
