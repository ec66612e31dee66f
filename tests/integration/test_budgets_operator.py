"""Budgets and shared limits on a cluster: the real `gt operator run` against the API double.

The double runs no pods, so the test plays the kubelet for each session Job: it runs the Job's
own `gt session run` (the real wrapper, with the script agent printing Claude Code's result
event) in a clone of the rig, then marks the Job complete."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from gastown import convoy as convoys
from gastown.ledger import BeadType, Status

from conftest import GT, wait_for
from rigs import git, make_rig

AGENT = str(Path(__file__).resolve().parent.parent / "agent_script.py")
RUNTIME = {"preset": "claude", "apiKeySecret": {"name": "llm-keys", "key": "anthropic"}}


def cr(kind, name, spec):
    return {"apiVersion": "gastown.dev/v1alpha1", "kind": kind, "metadata": {"name": name, "namespace": "default"},
            "spec": spec}


def condition(obj, type_):
    return next((c for c in ((obj or {}).get("status") or {}).get("conditions", []) if c["type"] == type_), None)


@pytest.fixture
def kubelet(kubeapi, tmp_path):
    """Run a session Job as its pod would: the wrapper in a fresh clone, then the Job completes."""
    runtimes = tmp_path / "runtimes.yaml"
    runtimes.write_text(yaml.safe_dump({"runtimes": {"claude": {
        "command": [sys.executable, AGENT, "usage"], "promptMode": "file", "apiKeyEnv": ["ANTHROPIC_API_KEY"]}}}))

    def run(job, **agent):
        """``agent``: the script agent's settings (AGENT_TOKENS 450 unless given)."""
        name = job["metadata"]["name"]
        env = {e["name"]: e["value"] for e in job["spec"]["template"]["spec"]["containers"][0]["env"] if "value" in e}
        work = tmp_path / "pods" / name
        git("clone", "--quiet", "--branch", env["GT_TARGET"], env["GT_RIG"], str(work / "repo"))
        proc = subprocess.run(
            [GT, "session", "run", "--workdir", str(work / "repo"), "--session-dir", str(work / "session"),
             "--cache-dir", str(work / "cache")],
            env={**os.environ, **{k: v for k, v in env.items() if k in (
                "GT_RIG", "GT_BEAD", "GT_POLECAT", "GT_SESSION", "GT_RUNTIME", "GT_TARGET")},
                 "GT_RUNTIMES_FILE": str(runtimes), "ANTHROPIC_API_KEY": "sk-test", "AGENT_TOKENS": "450",
                 "PATH": f"{Path(GT).parent}{os.pathsep}{os.environ['PATH']}", **agent},
            capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        kubeapi.patch("jobs", "default", name, {"status": {"active": 0, "succeeded": 1, "conditions": [
            {"type": "Complete", "status": "True"}]}}, subresource="status")

    return run


def session_jobs(kubeapi, rig=None):
    """The session Jobs (not the merge queue's verification Jobs), of one rig or all."""
    return [j for j in kubeapi.list("jobs", "default")
            if j["metadata"]["labels"].get("app.kubernetes.io/component") == "agent-session"
            and (rig is None or j["metadata"]["labels"].get("gastown.dev/rig") == rig)]


def active_jobs(kubeapi, rig=None):
    return [j for j in session_jobs(kubeapi, rig) if not (j.get("status") or {}).get("succeeded")]


@pytest.mark.slow
def test_a_convoy_over_budget_shows_it_on_its_status_waits_and_goes_on_when_raised(kubeapi, operator, kubelet,
                                                                                  tmp_path):
    rig = make_rig(tmp_path)
    first = operator()
    kubeapi.create(cr("Rig", "webapp", {"gitUrl": f"file://{rig.remote}", "maxPolecats": 1, "runtime": RUNTIME,
                                        "budget": {"monthly": {"tokens": 1_000_000}}}))
    kubeapi.create(cr("Convoy", "tight", {"rig": "webapp", "mergeStrategy": "direct", "budget": {"tokens": 1000},
                                          "beads": [{"key": f"b{i}", "title": f"Bead {i}"} for i in range(4)]}))

    def convoy():
        return kubeapi.get("convoys", "default", "tight")

    for _ in range(3):  # 450 tokens a session: 45 %, 90 % (P2), 135 % (P1)
        kubelet(wait_for(lambda: active_jobs(kubeapi) and active_jobs(kubeapi)[0], timeout=60, what="a session Job"))
    cond = wait_for(lambda: (condition(convoy(), "BudgetExhausted") or {}).get("status") == "True"
                    and condition(convoy(), "BudgetExhausted"), timeout=30, what="BudgetExhausted on the Convoy")
    assert cond["reason"] == "ConvoyBudget" and "1,350 of 1,000 tokens" in cond["message"]
    spend = convoy()["status"]["spend"]
    assert (spend["tokens"], spend["tokenBudget"], spend["state"], spend["usedPercent"]) == (1350, 1000, "Exhausted",
                                                                                               135)
    time.sleep(5)  # passes go on; no session starts for the convoy's last bead
    assert active_jobs(kubeapi) == [] and len(session_jobs(kubeapi)) == 3
    with rig.ledger() as lg:
        beads = lg.beads()
    escalations = [b for b in beads.values() if b.type == BeadType.ESCALATION]
    assert sorted(e.metadata["severity"] for e in escalations) == ["P1", "P2"]
    waiting = [b for b in beads.values() if b.type == BeadType.TASK and b.status == Status.OPEN]
    assert len(waiting) == 1 and not waiting[0].assignee  # nothing lost: it waits, ready
    # the Rig shows its spend against its own budget, and is not held by the convoy's
    rig_status = kubeapi.get("rigs", "default", "webapp")["status"]
    day, month = rig_status["spend"]
    assert day["tokens"] == 1350 and day["state"] == "Unbudgeted"
    assert month["tokenBudget"] == 1_000_000 and month["state"] == "Ok"
    assert condition(kubeapi.get("rigs", "default", "webapp"), "BudgetExhausted")["status"] == "False"

    # an operator restart forgets nothing: the spend is the ledger's; nothing starts, nothing is raised twice
    first.stop()
    kubeapi.patch("convoys", "default", "tight", {"status": {"spend": None}}, subresource="status")
    operator()
    wait_for(lambda: (convoy()["status"].get("spend") or {}).get("state") == "Exhausted", timeout=30,
             what="the spend projected again by the new operator")
    time.sleep(3)
    assert active_jobs(kubeapi) == [] and len(session_jobs(kubeapi)) == 3
    with rig.ledger() as lg:
        assert len([b for b in lg.beads().values() if b.type == BeadType.ESCALATION]) == 2

    # raising it (the Convoy's spec) lets its work go on
    kubeapi.patch("convoys", "default", "tight", {"spec": {"budget": {"tokens": 5000}}})
    kubelet(wait_for(lambda: active_jobs(kubeapi) and active_jobs(kubeapi)[0], timeout=60, what="the last session"))
    wait_for(lambda: (condition(convoy(), "BudgetExhausted") or {}).get("status") == "False", timeout=30,
             what="the budget no longer exhausted")
    with rig.ledger() as lg:
        assert lg.beads()[convoys.convoy_id("gt", "default/tight")].metadata["budget"]["tokens"] == 5000


@pytest.mark.slow
def test_a_rig_budget_and_a_shared_key_limit_hold_dispatch(kubeapi, operator, kubelet, tmp_path, monkeypatch):
    monkeypatch.setenv("GT_TOWN_LIMITS", json.dumps({"keys": {"default/llm-keys": 2}}))
    operator()
    rigs = {name: make_rig(tmp_path / name) for name in ("one", "two")}
    for name, rig in rigs.items():
        kubeapi.create(cr("Rig", name, {"gitUrl": f"file://{rig.remote}", "maxPolecats": 3, "runtime": RUNTIME}))
    for name in rigs:
        wait_for(lambda n=name: condition(kubeapi.get("rigs", "default", n), "Dispatching"), what=f"{name} driven")
    for name, rig in rigs.items():
        with rig.ledger() as lg:
            for i in range(3):
                lg.create(f"{name} work {i}")
    wait_for(lambda: len(active_jobs(kubeapi)) == 2, timeout=60, what="two sessions")
    time.sleep(4)
    assert len(active_jobs(kubeapi)) == 2  # the key's limit, though each rig alone could run 3
    # as sessions end, the slots go round: the rig that has had fewer sessions gets the next
    started = {"one": 0, "two": 0}
    for job in session_jobs(kubeapi):
        started[job["metadata"]["labels"]["gastown.dev/rig"]] += 1
    for _ in range(2):
        ahead = max(started, key=lambda r: started[r])
        kubelet(active_jobs(kubeapi, ahead)[0])
        spent = ahead
        wait_for(lambda: len(active_jobs(kubeapi)) == 2, timeout=60, what="the freed slot taken")
        started = {"one": 0, "two": 0}
        for job in session_jobs(kubeapi):
            started[job["metadata"]["labels"]["gastown.dev/rig"]] += 1
        assert abs(started["one"] - started["two"]) <= 1, started
        assert len(active_jobs(kubeapi)) == 2

    # a daily budget on a rig that has spent more already: it holds, with the condition; the other goes on
    other = "two" if spent == "one" else "one"
    kubeapi.patch("rigs", "default", spent, {"spec": {"budget": {"daily": {"tokens": 100}}}})
    cond = wait_for(lambda: (condition(kubeapi.get("rigs", "default", spent), "BudgetExhausted") or {}).get("status")
                    == "True" and condition(kubeapi.get("rigs", "default", spent), "BudgetExhausted"),
                    timeout=30, what="the rig's budget exhausted")
    assert cond["reason"] == "RigBudget" and " of 100 tokens" in cond["message"]
    dispatching = condition(kubeapi.get("rigs", "default", spent), "Dispatching")
    assert dispatching["status"] == "False" and dispatching["reason"] == "BudgetExhausted"
    assert kubeapi.get("rigs", "default", spent)["status"]["spend"][0]["state"] == "Exhausted"
    assert condition(kubeapi.get("rigs", "default", other), "BudgetExhausted")["status"] == "False"


def spent_in(rig):
    with rig.ledger() as lg:
        return sum(u["input_tokens"] + u["output_tokens"]
                   for b in lg.beads().values() for u in (b.metadata.get("usage") or {}).values())


@pytest.mark.slow
def test_a_convoy_across_rigs_spends_one_budget_and_goes_on_on_every_rig_when_raised(kubeapi, operator, kubelet,
                                                                                    tmp_path):
    rigs = {name: make_rig(tmp_path / name) for name in ("webapp", "api")}
    operator()
    for name, rig in rigs.items():
        kubeapi.create(cr("Rig", name, {"gitUrl": f"file://{rig.remote}", "maxPolecats": 1, "runtime": RUNTIME}))
    kubeapi.create(cr("Convoy", "wide", {
        "rig": "webapp", "mergeStrategy": "direct", "budget": {"tokens": 1000},
        "beads": [{"key": f"{r}{i}", "title": f"{r} {i}", **({"rig": "api"} if r == "api" else {})}
                  for r in rigs for i in range(3)]}))

    def convoy():
        return kubeapi.get("convoys", "default", "wide")

    def exhausted():
        return (condition(convoy(), "BudgetExhausted") or {}).get("status") == "True"

    # 450 tokens a session, one session at a time, whichever rig runs it: 450, 900 (P2), 1350 (P1)
    while not exhausted():
        jobs = wait_for(lambda: active_jobs(kubeapi) or exhausted(), timeout=60, what="a session Job")
        if jobs is not True:
            kubelet(jobs[0])
    while jobs := active_jobs(kubeapi):  # sessions started before the budget ran out end as they would
        kubelet(jobs[0])
    time.sleep(5)  # passes go on on both rigs; nothing new starts on either
    assert active_jobs(kubeapi) == []
    started = {r: len(session_jobs(kubeapi, r)) for r in rigs}
    total = spent_in(rigs["webapp"]) + spent_in(rigs["api"])
    assert started["webapp"] and started["api"] and sum(started.values()) < 6, started
    spend = wait_for(lambda: convoy()["status"]["spend"]["tokens"] == total and convoy()["status"]["spend"],
                     what="the convoy's spend on both rigs")
    assert (spend["tokenBudget"], spend["state"]) == (1000, "Exhausted") and total >= 1000
    cond = condition(convoy(), "BudgetExhausted")
    assert cond["reason"] == "ConvoyBudget" and f"{total:,} of 1,000 tokens" in cond["message"]
    with rigs["webapp"].ledger() as lg:
        assert "P1" in [b.metadata["severity"] for b in lg.beads().values() if b.type == BeadType.ESCALATION]
    with rigs["api"].ledger() as lg:  # one escalation, from the home rig: the other part only waits
        assert [b for b in lg.beads().values() if b.type == BeadType.ESCALATION] == []

    # raising it (the Convoy's spec, on its home rig's part) lets both rigs go on
    kubeapi.patch("convoys", "default", "wide", {"spec": {"budget": {"tokens": 5000}}})
    while convoy()["status"]["phase"] != "Done":
        jobs = wait_for(lambda: active_jobs(kubeapi) or convoy()["status"]["phase"] == "Done", timeout=60,
                        what="the rest of the convoy's sessions")
        if jobs is not True:
            kubelet(jobs[0])
    assert convoy()["status"]["spend"]["tokens"] == 6 * 450
    assert {j["metadata"]["labels"]["gastown.dev/rig"] for j in session_jobs(kubeapi)} == set(rigs)


@pytest.mark.slow
def test_with_a_session_ceiling_a_rig_budget_is_not_overshot_while_sessions_record_their_spend(kubeapi, operator,
                                                                                              kubelet, tmp_path):
    rig = make_rig(tmp_path)
    operator()
    kubeapi.create(cr("Rig", "webapp", {"gitUrl": f"file://{rig.remote}", "maxPolecats": 3, "runtime": RUNTIME,
                                        "budget": {"daily": {"tokens": 1000}, "sessionTokens": 400}}))
    wait_for(lambda: condition(kubeapi.get("rigs", "default", "webapp"), "Dispatching"), what="the rig driven")
    with rig.ledger() as lg:
        for i in range(5):
            lg.create(f"work {i}")
    # 400 tokens of room a session: two Jobs at once, though the rig could run three
    wait_for(lambda: len(active_jobs(kubeapi)) == 2, timeout=60, what="two sessions")
    time.sleep(3)
    assert len(active_jobs(kubeapi)) == 2
    # each runs `gt done`, then answers 3 s later with what it spent (300 tokens): meanwhile its bead is
    # in review but its spend is not in the ledger, and no new session may start on the stale spend
    runs = [threading.Thread(target=kubelet, args=(job,), kwargs={"AGENT_TOKENS": "300", "AGENT_DONE_FIRST": "3"})
            for job in active_jobs(kubeapi)]
    for run in runs:
        run.start()
    for run in runs:
        run.join()
    assert len(session_jobs(kubeapi)) == 2, [j["metadata"]["name"] for j in session_jobs(kubeapi)]
    # recorded: 600 spent, room for one more; then 900, and no room for a session of 400
    kubelet(wait_for(lambda: active_jobs(kubeapi) and active_jobs(kubeapi)[0], timeout=60, what="the third session"),
            AGENT_TOKENS="300")
    day = wait_for(lambda: (s := kubeapi.get("rigs", "default", "webapp")["status"]["spend"][0])["tokens"] == 900 and s,
                   timeout=30, what="the spend on the Rig's status")
    assert (day["tokenBudget"], day["usedPercent"], day["state"]) == (1000, 90, "Warning")
    time.sleep(5)  # passes go on; no fourth session
    assert active_jobs(kubeapi) == [] and len(session_jobs(kubeapi)) == 3
    assert spent_in(rig) == 900
    cond = condition(kubeapi.get("rigs", "default", "webapp"), "BudgetExhausted")
    assert cond["status"] == "False" and "900 of 1,000 tokens" in cond["message"]


@pytest.mark.slow
def test_from_a_cold_start_two_rigs_weighted_two_to_one_share_a_key_two_to_one(kubeapi, operator, kubelet, tmp_path,
                                                                              monkeypatch):
    monkeypatch.setenv("GT_TOWN_LIMITS", json.dumps({"keys": {"default/llm-keys": 2}}))
    rigs = {name: make_rig(tmp_path / name) for name in ("one", "two")}
    for name, rig in rigs.items():  # all the work is there before the operator starts: a cold start
        with rig.ledger() as lg:
            for i in range(9):
                lg.create(f"{name} work {i}")
        kubeapi.create(cr("Rig", name, {"gitUrl": f"file://{rig.remote}", "maxPolecats": 3, "runtime": RUNTIME,
                                        **({"budget": {"share": 2}} if name == "two" else {})}))
    operator()
    # play the kubelet: every Job that appears runs at once, and the order they appear in is the order of turns
    seen, starts, most, runs = set(), [], 0, []
    deadline = time.monotonic() + 150
    while len(starts) < 12:
        assert time.monotonic() < deadline, f"only {starts} started"
        active = active_jobs(kubeapi)
        most = max(most, len(active))
        for job in sorted(active, key=lambda j: (j["metadata"]["creationTimestamp"], j["metadata"]["name"])):
            if job["metadata"]["name"] not in seen:
                seen.add(job["metadata"]["name"])
                starts.append(job["metadata"]["labels"]["gastown.dev/rig"])
                runs.append(threading.Thread(target=kubelet, args=(job,)))
                runs[-1].start()
        time.sleep(0.1)
    for run in runs:
        run.join()
    starts = starts[:12]
    assert most <= 2  # the key's limit, though each rig alone could run 3
    # "two" weighs twice as much: two turns in three; both get a slot from the first, neither starves
    assert "two" in starts[:2] and "one" in starts[:3], starts
    assert 7 <= starts.count("two") <= 9, starts
    # neither starves: "one" in every five starts (a Job is created by the Polecat's handler after
    # the slot was given, so the order of Jobs may swap two neighbouring turns under load)
    assert all(starts[n:n + 5].count("one") >= 1 for n in range(0, 8)), starts
    # the Rigs' status shows the same: each one's spend is its own sessions' (450 tokens each)
    for name, rig in rigs.items():
        wait_for(lambda r=rig, n=name: kubeapi.get("rigs", "default", n)["status"]["spend"][0]["tokens"] == spent_in(r),
                 timeout=30, what=f"{name}'s spend on its status")
    spend = {n: kubeapi.get("rigs", "default", n)["status"]["spend"][0]["tokens"] for n in rigs}
    assert spend["two"] >= 450 * 7 and spend["one"] >= 450 * 3, spend
    assert condition(kubeapi.get("rigs", "default", "two"), "Dispatching")["status"] == "True"
    # and their turns under the key: every Job was a slot given, two for one
    def turns():
        jobs = {n: len(session_jobs(kubeapi, n)) for n in rigs}
        shown = {n: kubeapi.get("rigs", "default", n)["status"]["sharedLimits"] for n in rigs}
        return all(len(t) == 1 and t[0]["served"] == jobs[n] for n, t in shown.items()) and shown

    shown = wait_for(turns, timeout=30, what="the turns on the Rigs' status to be the Jobs")
    for name, (limit,) in shown.items():
        assert (limit["name"], limit["limit"], limit["share"]) == ("key default/llm-keys", 2, 2 if name == "two" else 1)
        assert limit["inUse"] <= 2 and limit["sessions"] <= limit["inUse"]
    # (the totals need not be two to one: the work drains after the first twelve, and the rig with
    # work left goes on alone, as it should; the share is what the first twelve showed)
    assert all(shown[n][0]["served"] >= starts.count(n) for n in rigs), (shown, starts)
