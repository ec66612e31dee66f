"""Budgets and shared limits, decided on memory snapshots: spend from session records, the
thresholds, escalations once per period, and fair shares of a shared limit."""

from __future__ import annotations

from collections import deque
from datetime import UTC, datetime, timedelta

import pytest

from gastown import budget, scheduler
from gastown import convoy as convoys
from gastown.api.budget import ConvoyBudget, RigBudget, TownLimits
from gastown.ledger import BeadType
from gastown.ledger.ops import Create, Tx
from gastown.polecats import Done, StartSession
from gastown.spend import RecordUsage

from ledgermem import MemSnapshot

NOW = datetime(2026, 11, 30, 15, 0, tzinfo=UTC)


def beads_of(tx):
    return {i: tx.get(i) for i in tx.ids()}


def used(tx, bead, session, tokens, usd=0.0, at=NOW):
    tx.now = at
    RecordUsage(bead_id=bead, session=session, runtime="script", actor="t",
                usage={"input_tokens": tokens // 2, "output_tokens": tokens - tokens // 2,
                       **({"cost_usd": usd} if usd else {})}).apply(tx)


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
    decision = scheduler.plan(beads, "gt", 5, [], now=NOW, waiting=gate.admits(beads))
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


def test_from_a_cold_start_the_first_rig_to_pass_takes_one_slot_not_all_of_them():
    for _restart in range(3):  # every restart begins with no memory of who was served
        shared = budget.SharedLimits(TownLimits.model_validate({"keys": {"KEY": 2}}))
        groups = shared.groups("KEY:abc", "claude")
        assert shared.share("a", groups, in_flight=0, queued=5, now=NOW) == 1
        assert shared.share("b", groups, in_flight=0, queued=5, now=NOW + timedelta(seconds=0.5)) == 1
        assert shared.share("a", groups, in_flight=1, queued=4, now=NOW + timedelta(seconds=1)) == 0


def test_between_rigs_served_alike_the_one_whose_work_waited_longest_goes_first_not_the_first_named():
    shared = budget.SharedLimits(TownLimits.model_validate({"keys": {"KEY": 1}}))
    groups = shared.groups("KEY:abc", "claude")
    assert shared.share("c", groups, in_flight=0, queued=1, now=NOW) == 1  # c holds the one slot
    later = NOW + timedelta(seconds=2)
    assert shared.share("a", groups, in_flight=0, queued=3, now=later, waiting_since=NOW) == 0
    assert shared.share("b", groups, in_flight=0, queued=3, now=later, waiting_since=NOW - timedelta(minutes=5)) == 0
    owed = shared.owed("b")
    assert shared.share("c", groups, in_flight=0, queued=0, now=later) == 0  # c's session ended: b is woken
    assert shared.owed("b") > owed
    assert shared.share("a", groups, in_flight=0, queued=3, now=later, waiting_since=NOW) == 0
    assert shared.share("b", groups, in_flight=0, queued=3, now=later, waiting_since=NOW - timedelta(minutes=5)) == 1


def test_weights_share_a_limit_in_proportion_and_nobody_starves():
    shared = budget.SharedLimits(TownLimits.model_validate({"keys": {"KEY": 2}}))
    groups = shared.groups("KEY:abc", "claude")
    weight = {"a": 2, "b": 1}
    running: deque[str] = deque()  # the sessions under way, oldest first
    started = {"a": 0, "b": 0}
    now = NOW
    for turn in range(120):  # rigs pass in turn, each with plenty of work; the oldest session ends now and then
        rig = "ab"[turn % 2]
        if turn % 2 == 0 and len(running) == 2:
            running.popleft()
        granted = shared.share(rig, groups, in_flight=running.count(rig), queued=10, now=now, weight=weight[rig])
        running.extend([rig] * granted)
        started[rig] += granted
        assert len(running) <= 2
        now += timedelta(seconds=1)
    assert started["b"] >= 10 and 1.8 <= started["a"] / started["b"] <= 2.2, started


def test_a_rigs_share_weight_is_one_or_more():
    assert RigBudget().share == 1 and RigBudget.model_validate({"share": 3}).share == 3
    with pytest.raises(ValueError, match="greater than or equal to 1"):
        RigBudget.model_validate({"share": 0})


def test_with_a_session_ceiling_a_budget_starts_only_the_sessions_it_has_room_for(tx):
    given = RigBudget.model_validate({"daily": {"tokens": 1000}, "sessionTokens": 400})
    standing = budget.rig_standings(beads_of(tx), given, NOW)[0]
    assert budget.room(standing, budget.PerSession(400), under_way=0) == 2
    assert budget.room(standing, budget.PerSession(400), under_way=1) == 1  # the one under way may still use its 400
    assert budget.room(standing, budget.PerSession(400), under_way=3) == 0
    assert budget.room(standing, budget.PerSession(), under_way=3) is None  # no ceiling: nothing to reserve
    used(tx, next(iter(tx.ids())), "s1", 700)
    gate = budget.gate(beads_of(tx), rig="web", budget=given, now=NOW, actor="t")
    assert gate.room == 0 and gate.held is None  # nothing new is hooked; what is hooked already starts
    assert gate.rig[0].state == "Ok"  # not exhausted: no P1, it only waits


def worked(tx, bead, polecat, session, *, done=True):
    """The bead hooked to ``polecat``, its session started and (``done``) ended by `gt done`: in review."""
    scheduler.Assign(bead, polecat, "web", "t", runtime="script").apply(tx)
    StartSession(bead, polecat, session, "t").apply(tx)
    if done:
        Done(bead_id=bead, polecat=polecat, session=session, status="completed", branch=f"polecat/{polecat}/{bead}",
             target="main", commit="c0ffee", reason="", actor="t").apply(tx)


def test_a_session_in_review_counts_as_under_way_until_its_spend_is_recorded(tx):
    given = RigBudget.model_validate({"daily": {"tokens": 1000}, "sessionTokens": 400})
    work = next(iter(tx.ids()))
    worked(tx, work, "furiosa", "s1")
    assert tx.get(work).metadata["mr"] and not scheduler.flying(tx.get(work))  # in review: not in flight any more
    gate = budget.gate(beads_of(tx), rig="web", budget=given, now=NOW, actor="t")
    assert (gate.under_way, gate.room) == (1, 1)  # its spend may still come: counted at its ceiling
    used(tx, work, "s1", 300)
    gate = budget.gate(beads_of(tx), rig="web", budget=given, now=NOW, actor="t")
    assert (gate.under_way, gate.room) == (0, 1)  # recorded: 700 left, room for one session of 400
    # a wrapper that died before recording its session's spend is awaited for USAGE_GRACE at most
    Create("other", "t", seed="o").apply(tx)
    other = next(i for i in tx.ids() if tx.get(i).title == "other")
    worked(tx, other, "nux", "s2")
    late = NOW + budget.USAGE_GRACE + timedelta(seconds=1)
    assert budget.gate(beads_of(tx), rig="web", budget=given, now=NOW, actor="t").under_way == 1
    assert budget.gate(beads_of(tx), rig="web", budget=given, now=late, actor="t").under_way == 0


def test_the_towns_room_counts_every_rigs_sessions_under_way_and_is_reserved_while_a_rig_hooks(tx):
    shared = budget.SharedLimits(TownLimits.model_validate({"daily": {"tokens": 2000}}))
    given = RigBudget.model_validate({"sessionTokens": 400})
    other = Tx(MemSnapshot("c0", {}), NOW)
    for i in range(3):
        Create(f"w{i}", "t", seed=f"w{i}").apply(other)
    for i, bead in enumerate(sorted(other.ids())):
        worked(other, bead, f"cat{i}", f"s{i}", done=False)
    gate_other = budget.gate(beads_of(other), rig="other", budget=given, now=NOW, actor="t", shared=shared,
                             ident="other")
    assert gate_other.room == 2  # 2000 - 3 x 400: two more; reserved for it until it says what it hooked
    gate = budget.gate(beads_of(tx), rig="web", budget=given, now=NOW, actor="t", shared=shared, ident="web")
    assert gate.room == 0  # 3 under way and 2 reserved there: 2000 - 5 x 400
    shared.took("other", [], None, 0, under_way=3)  # it hooked nothing: the reservation is given back
    assert budget.gate(beads_of(tx), rig="web", budget=given, now=NOW, actor="t", shared=shared,
                       ident="web").room == 2
    # a rig not heard of for a while no longer holds room
    assert budget.gate(beads_of(tx), rig="web", budget=given, now=NOW + budget.STALE, actor="t", shared=shared,
                       ident="web").room == 5


def test_a_convoys_room_counts_its_sessions_on_every_rig_and_a_dispatch_hooks_no_more_than_fit():
    tx = convoy_tx(n=4, given={"tokens": 1000})
    given = RigBudget.model_validate({"sessionTokens": 400})
    convoy = tx.get(convoys.convoy_id("gt", "c"))
    beads = beads_of(tx)
    gate = budget.gate(beads, rig="webapp", budget=given, now=NOW, actor="t")
    assert gate.convoy_room == {convoy.id: 2}
    decision = scheduler.plan(beads, "gt", 5, [], now=NOW, waiting=gate.admits(beads))
    assert len(decision.assign) == 2  # two fit, four were ready
    # a part on another rig with one session under way there
    away = convoy_tx(n=1, given=None)
    part = away.get(convoys.convoy_id("gt", "c"))
    worked(away, part.deps()[0], "furiosa", "s1", done=False)
    gate = budget.gate(beads, rig="webapp", budget=given, now=NOW, actor="t",
                       parts=lambda c: [(part, beads_of(away))])
    assert gate.convoy_room == {convoy.id: 1}
    assert not gate.waits(beads[convoy.deps()[0]], beads)


def test_a_money_budget_counts_each_session_under_way_at_the_most_a_recent_session_cost(tx):
    given = RigBudget.model_validate({"daily": {"usd": 1.0}})
    work = next(iter(tx.ids()))
    assert budget.gate(beads_of(tx), rig="web", budget=given, now=NOW, actor="t").room is None  # no cost known yet
    for i in range(budget.RECENT + 1):  # an old costly one, then RECENT cheap ones: the estimate is the recent ones'
        used(tx, work, f"old{i}", 10, usd=0.5 if i == 0 else 0.01, at=NOW - timedelta(days=2, minutes=-i))
    assert budget.session_cost(beads_of(tx).values()) == pytest.approx(0.01)
    used(tx, work, "today", 10, usd=0.3)
    assert budget.session_cost(beads_of(tx).values()) == pytest.approx(0.3)
    Create("other", "t", seed="o").apply(tx)
    worked(tx, next(i for i in tx.ids() if tx.get(i).title == "other"), "nux", "s1", done=False)
    gate = budget.gate(beads_of(tx), rig="web", budget=given, now=NOW, actor="t")
    assert (gate.under_way, gate.room) == (1, 1)  # $1 - $0.30 spent - $0.30 under way: one more at $0.30


def test_a_rigs_turns_under_a_shared_limit_are_the_slots_it_took():
    shared = budget.SharedLimits(TownLimits.model_validate({"keys": {"K": 2}}))
    groups = shared.groups("K:abc", "claude")
    granted = shared.share("a", groups, in_flight=0, queued=3, now=NOW - budget.SETTLE, weight=2)
    shared.took("a", groups, granted, 1)  # it hooked one of the two
    shared.share("b", groups, in_flight=0, queued=1, now=NOW)
    (a,) = shared.turns("a", groups, NOW)
    assert a == {"name": "key K", "limit": 2, "inUse": 2, "sessions": 1, "share": 2, "served": 1}
    assert shared.turns("b", groups, NOW)[0]["served"] == 1
