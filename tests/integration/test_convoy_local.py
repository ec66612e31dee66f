"""A convoy through the local driver: the scheduler's limit, dependencies, mountain skips, stalls."""

from __future__ import annotations

import json
import os
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gastown import convoy as convoys
from gastown.api.common import RuntimeSpec
from gastown.ledger import BeadType, DepType, Status
from gastown.local.driver import RigConfig, RigDriver
from gastown.polecats import EnsureAgent, Hook
from gastown.runtimes.local import LocalBackend

from conftest import agents_at_once, session_results, wait_for
from rigs import git, make_rig

AGENT = str(Path(__file__).resolve().parent.parent / "agent_script.py")


@pytest.fixture
def rig(tmp_path):
    return make_rig(tmp_path)


@pytest.fixture
def driver(rig, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    backend = LocalBackend(tmp_path / "town", cache_root=tmp_path / "town-cache", heartbeat_interval=0.5)
    ledger = rig.ledger("gastown daemon")
    config = RigConfig(rig.name, str(rig.remote), max_polecats=3,
                       runtime=RuntimeSpec(preset="script", args=[sys.executable, AGENT, "convoy"]))
    yield RigDriver(config, backend, ledger)
    ledger.close()


def open_convoy(rig, key, beads, labels=(), stall_after=3600):
    info = convoys.ConvoyInfo(key=key, name=key, rig=rig.name, source="beads", labels=tuple(labels),
                              strategy="direct", stall_after=stall_after)
    plan = tuple(convoys.PlannedBead(k, title, needs=tuple(needs)) for k, title, needs in beads)
    with rig.ledger() as lg:
        lg.apply(convoys.OpenConvoy(info, "user tester"))
        return lg.apply(convoys.PlanConvoy(key, plan, "user tester"))


def run_until(driver, done, timeout=120):
    stop = threading.Event()
    thread = threading.Thread(target=driver.run, args=(stop,), kwargs={"poll": 0.05}, daemon=True)
    thread.start()
    try:
        return wait_for(done, timeout=timeout, what="the convoy to finish")
    finally:
        stop.set()
        thread.join(10)


def convoy_bead(rig, key):
    with rig.ledger() as lg:
        beads = lg.beads()
    return beads[convoys.convoy_id("gt", key)], beads


def outcomes(driver):
    return session_results(driver.backend.town / "sessions")


TWELVE = [  # a small project: two chains and a fan-in
    ("models", "Data models", []), ("api", "API endpoints", ["models"]), ("ui", "UI pages", ["api"]),
    ("auth", "Login", ["models"]), ("perms", "Permissions", ["auth"]), ("audit", "Audit log", ["perms", "api"]),
    ("docs", "Docs", ["ui", "audit"]), ("ci", "CI config", []), ("lint", "Lint rules", ["ci"]),
    ("cache", "Caching", ["api"]), ("metrics", "Metrics", []), ("release", "Release notes", ["docs", "lint"]),
]


def test_twelve_beads_on_three_polecats(rig, driver):
    convoy = open_convoy(rig, "project", TWELVE)
    ids = convoy.metadata["keys"]
    run_until(driver, lambda: convoy_bead(rig, "project")[0].status == Status.CLOSED)

    final, beads = convoy_bead(rig, "project")
    assert final.close_reason == "12 of 12 beads merged"
    assert all(beads[i].status == Status.CLOSED for i in ids.values())
    # every bead's file is on main, merged exactly once
    files = git("ls-tree", "--name-only", "main", "work/", cwd=rig.remote).splitlines()
    assert sorted(files) == sorted(f"work/{i}.txt" for i in ids.values())
    merges = git("log", "--merges", "--format=%s", "main", cwd=rig.remote).splitlines()
    assert len(merges) == 12 and len(set(merges)) == 12

    results = outcomes(driver)
    assert len(results) == 12 and all(r["status"] == "completed" for r in results)
    # at no moment more than 3 agents (a wrapper wrapping up holds no slot)
    peak = agents_at_once(driver.backend.town / "sessions")
    assert peak <= 3
    assert peak >= 2  # and they did run side by side
    # a bead never starts before what it needs is merged
    started = {}
    for path in (driver.backend.town / "sessions").glob("*/request.json"):
        req = json.loads(path.read_text())["request"]
        result = json.loads((path.parent / "result.json").read_text())
        started[req["bead"]] = result["started_at"]
    for key, _, needs in TWELVE:
        for need in needs:
            assert beads[ids[need]].closed_at.timestamp() <= started[ids[key]], (key, need)
    # each change is signed by the polecat that made it (the worktrees share one git config)
    for path in (driver.backend.town / "sessions").glob("*/request.json"):
        req = json.loads(path.read_text())["request"]
        author = git("log", "--no-merges", "--format=%an", "main", "--", f"work/{req['bead']}.txt", cwd=rig.remote)
        assert author == f"polecat {req['polecat']}"
    # re-planning the convoy writes nothing new
    again = open_convoy(rig, "project", TWELVE)
    assert again.metadata["keys"] == ids
    assert len([b for b in convoy_bead(rig, "project")[1].values() if b.type == BeadType.TASK]) == 12


def test_work_handed_back_to_more_polecats_than_the_limit_waits_its_turn(rig, driver):
    """Five beads hooked to five polecats (as conflicts and rejections hand work back to whoever
    did it) on a rig whose limit is 3: never more than 3 agents at once, and all five finish."""
    convoy = open_convoy(rig, "handback", [(f"b{i}", f"Bead {i}", []) for i in range(5)])
    ids = convoy.metadata["keys"]
    with rig.ledger() as lg:
        for polecat, bead in zip(["furiosa", "nux", "slit", "toast", "capable"], ids.values(), strict=True):
            lg.apply(EnsureAgent(polecat, rig.name, "user tester"))
            lg.apply(Hook(bead, polecat, "user tester"))
    run_until(driver, lambda: convoy_bead(rig, "handback")[0].status == Status.CLOSED)

    results = outcomes(driver)
    assert len(results) == 5 and all(r["status"] == "completed" for r in results)
    assert agents_at_once(driver.backend.town / "sessions") <= 3


def test_mountain_skips_a_bead_that_keeps_failing(rig, driver):
    beads = [("a", "First", []), ("bad", "BROKEN on purpose", []), ("after", "Needs the broken one", ["bad"]),
             ("b", "Second", ["a"])]
    open_convoy(rig, "climb", beads, labels=["mountain"])
    run_until(driver, lambda: convoy_bead(rig, "climb")[0].status == Status.CLOSED)
    final, all_beads = convoy_bead(rig, "climb")
    ids = final.metadata["keys"]
    assert final.close_reason == "2 of 4 beads merged, 2 skipped"
    bad = all_beads[ids["bad"]]
    assert "skipped" in bad.labels and bad.metadata["attempts"] == 3
    assert "failed 3 sessions" in bad.metadata["skip_reason"]
    assert "which was skipped" in all_beads[ids["after"]].metadata["skip_reason"]
    assert all_beads[ids["a"]].status == all_beads[ids["b"]].status == Status.CLOSED
    failed = [r for r in outcomes(driver) if r["status"] == "failed"]
    assert len(failed) == 3  # restarted twice, then skipped


def test_a_stalled_convoy_raises_its_condition_once(rig, driver):
    open_convoy(rig, "slow", [("x", "BROKEN forever", [])], stall_after=60)
    later = datetime.now(UTC) + timedelta(minutes=5)
    driver.config.max_polecats = 0  # nothing runs: nothing can progress
    driver.step(now=later)
    driver.step(now=later + timedelta(minutes=1))
    convoy, beads = convoy_bead(rig, "slow")
    assert convoy.metadata["stalled_since"]
    assert convoys.progress(convoy, beads).phase == "Stalled"
    escalations = [b for b in beads.values() if b.type == BeadType.ESCALATION]
    assert len(escalations) == 1 and "stalled" in escalations[0].title
    assert escalations[0].deps(DepType.TRACKS) == [convoy.id]


def goal_convoy(rig, key):
    info = convoys.ConvoyInfo(key=key, name=key, rig=rig.name, source="goal", goal="Make it shine",
                              strategy="direct")
    with rig.ledger() as lg:
        lg.apply(convoys.OpenConvoy(info, "user tester"))


def test_the_mayor_plans_a_goal(rig, driver, tmp_path, monkeypatch):
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"beads": [{"key": "polish", "title": "Polish"},
                                          {"key": "shine", "title": "Shine", "needs": ["polish"]}]}))
    monkeypatch.setenv("AGENT_PLAN", str(plan))
    goal_convoy(rig, "shiny")
    run_until(driver, lambda: convoy_bead(rig, "shiny")[0].status == Status.CLOSED)
    convoy, beads = convoy_bead(rig, "shiny")
    assert convoy.metadata["planned_by"] == "mayor" and sorted(convoy.metadata["keys"]) == ["polish", "shine"]
    assert convoy.close_reason == "2 of 2 beads merged"


def test_an_invalid_plan_is_retried_once_then_escalated(rig, driver, tmp_path, monkeypatch):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"beads": [{"key": "a", "title": "A", "needs": ["a"]}]}))
    monkeypatch.setenv("AGENT_PLAN", str(bad))
    goal_convoy(rig, "muddled")
    run_until(driver, lambda: convoy_bead(rig, "muddled")[0].metadata.get("plan_error"), timeout=60)
    convoy, beads = convoy_bead(rig, "muddled")
    assert "dependency cycle a -> a" in convoy.metadata["plan_error"]
    assert "after a retry" in convoy.metadata["plan_error"]
    assert convoys.progress(convoy, beads).phase == "Failed"
    esc = beads[convoy.metadata["escalation"]]
    assert esc.type == BeadType.ESCALATION and "plan is invalid" in esc.title
    prompts = sorted((driver.backend.town / "mayor").rglob("mayor-prompt.md"))
    assert prompts and "Your last answer was rejected" in prompts[0].read_text()


def test_a_plan_fixed_on_the_retry_is_used(rig, driver, tmp_path, monkeypatch):
    bad, good = tmp_path / "bad.json", tmp_path / "good.json"
    bad.write_text("{\"beads\": []}")
    good.write_text(json.dumps({"beads": [{"key": "only", "title": "Only"}]}))
    monkeypatch.setenv("AGENT_PLAN", str(bad))
    monkeypatch.setenv("AGENT_PLAN_FIXED", str(good))
    goal_convoy(rig, "second-try")
    run_until(driver, lambda: convoy_bead(rig, "second-try")[0].status == Status.CLOSED)
    assert convoy_bead(rig, "second-try")[0].metadata["keys"].keys() == {"only"}
