"""Budgets and shared limits on a cluster: the real `gt operator run` against the API double.

The double runs no pods, so the test plays the kubelet for each session Job: it runs the Job's
own `gt session run` (the real wrapper, with the script agent printing Claude Code's result
event) in a clone of the rig, then marks the Job complete."""

from __future__ import annotations

import json
import os
import subprocess
import sys
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

    def run(job):
        name = job["metadata"]["name"]
        env = {e["name"]: e["value"] for e in job["spec"]["template"]["spec"]["containers"][0]["env"] if "value" in e}
        work = tmp_path / "pods" / name
        git("clone", "--quiet", "--branch", env["GT_TARGET"], env["GT_RIG"], str(work / "repo"))
        proc = subprocess.run(
            [GT, "session", "run", "--workdir", str(work / "repo"), "--session-dir", str(work / "session"),
             "--cache-dir", str(work / "cache")],
            env={**os.environ, **{k: v for k, v in env.items() if k in (
                "GT_RIG", "GT_BEAD", "GT_POLECAT", "GT_SESSION", "GT_RUNTIME", "GT_TARGET")},
                 "GT_RUNTIMES_FILE": str(runtimes), "ANTHROPIC_API_KEY": "sk-test", "AGENT_TOKENS": "450"},
            capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        kubeapi.patch("jobs", "default", name, {"status": {"active": 0, "succeeded": 1, "conditions": [
            {"type": "Complete", "status": "True"}]}}, subresource="status")

    return run


def active_jobs(kubeapi, rig=None):
    return [j for j in kubeapi.list("jobs", "default") if not (j.get("status") or {}).get("succeeded")
            and (rig is None or j["metadata"]["labels"].get("gastown.dev/rig") == rig)]


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
    assert active_jobs(kubeapi) == [] and len(kubeapi.list("jobs", "default")) == 3
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
    assert active_jobs(kubeapi) == [] and len(kubeapi.list("jobs", "default")) == 3
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
    for job in kubeapi.list("jobs", "default"):
        started[job["metadata"]["labels"]["gastown.dev/rig"]] += 1
    for _ in range(2):
        ahead = max(started, key=lambda r: started[r])
        kubelet(active_jobs(kubeapi, ahead)[0])
        spent = ahead
        wait_for(lambda: len(active_jobs(kubeapi)) == 2, timeout=60, what="the freed slot taken")
        started = {"one": 0, "two": 0}
        for job in kubeapi.list("jobs", "default"):
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
