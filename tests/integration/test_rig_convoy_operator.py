"""The Rig and Convoy controllers as a real operator process, with real rig repositories."""

from __future__ import annotations

import os
import subprocess

import pytest

from gastown import convoy as convoys
from gastown import scheduler
from gastown.ledger import BeadType, Status

from conftest import GT, wait_for
from rigs import make_rig


@pytest.fixture
def rig(tmp_path):
    return make_rig(tmp_path)


def cr(kind, name, spec, namespace="default"):
    return {"apiVersion": "gastown.dev/v1alpha1", "kind": kind, "metadata": {"name": name, "namespace": namespace},
            "spec": spec}


def condition(obj, type_):
    return next((c for c in ((obj or {}).get("status") or {}).get("conditions", []) if c["type"] == type_), None)


def test_rig_creates_ledger_quota_account_and_policy(kubeapi, operator, rig):
    operator()
    kubeapi.create(cr("Rig", "webapp", {"gitUrl": f"file://{rig.remote}", "maxPolecats": 5, "network": {
        "egress": [{"cidr": "10.96.0.0/12", "ports": [3000]}]}}))
    obj = wait_for(lambda: (kubeapi.get("rigs", "default", "webapp").get("status") or {}).get("phase") == "Ready"
                   and kubeapi.get("rigs", "default", "webapp"), what="the Rig to be Ready")
    for type_ in ("GitReachable", "LedgerReady", "QuotaReady", "Ready"):
        assert condition(obj, type_)["status"] == "True", type_
    assert len(obj["status"]["ledgerHead"]) == 40

    def projected():  # the rig loop's first pass writes the ledger too: the status follows it
        with rig.ledger() as lg:
            return lg.tip == kubeapi.get("rigs", "default", "webapp")["status"]["ledgerHead"]
    wait_for(projected, what="status.ledgerHead at the ledger's tip")

    sessions = kubeapi.get("resourcequotas", "default", "gastown-sessions")
    assert sessions["spec"] == {"hard": {"pods": "5"}, "scopes": ["Terminating"]}  # exactly maxPolecats
    assert sessions["metadata"]["ownerReferences"][0]["uid"] == obj["metadata"]["uid"]
    runs = kubeapi.get("resourcequotas", "default", "gastown-runs")  # 4 verifications, 2 Dogs, a Mayor; 4 more
    assert runs["spec"] == {"hard": {"pods": "11"}, "scopes": ["NotTerminating"]}
    assert kubeapi.get("resourcequotas", "default", "gastown-jobs")["spec"]["hard"] == {"count/jobs.batch": "64"}
    sa = kubeapi.get("serviceaccounts", "default", "gastown-agent-webapp")
    assert sa["metadata"]["ownerReferences"][0]["kind"] == "Rig"
    role = kubeapi.get("roles", "default", "gastown-agent-webapp")
    assert role["rules"] == [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                              "verbs": ["get", "create", "update"]}]
    binding = kubeapi.get("rolebindings", "default", "gastown-agent-webapp")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "gastown-agent-webapp", "namespace": "default"}]
    policy = kubeapi.get("networkpolicies", "default", "gastown-webapp")["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"] and policy["ingress"] == []
    assert policy["podSelector"]["matchLabels"] == {"gastown.dev/rig": "webapp"}
    dns, custom = policy["egress"]
    assert {"protocol": "UDP", "port": 53} in dns["ports"]
    assert custom == {"to": [{"ipBlock": {"cidr": "10.96.0.0/12"}}], "ports": [{"protocol": "TCP", "port": 3000}]}

    # the Dogs that work on the remote are CronJobs of the Rig; gc runs in the operator
    for dog, schedule in (("prune", "17 * * * *"), ("compact", "29 4 * * 0")):
        cron = kubeapi.get("cronjobs", "default", f"gt-dog-webapp-{dog}")
        assert cron["spec"]["schedule"] == schedule and cron["spec"]["concurrencyPolicy"] == "Forbid"
        assert cron["metadata"]["ownerReferences"][0]["kind"] == "Rig"
    assert kubeapi.get("cronjobs", "default", "gt-dog-webapp-gc") is None
    # a Dog disabled, another rescheduled: the CronJobs follow
    kubeapi.patch("rigs", "default", "webapp", {"spec": {"dogs": {"prune": {"schedule": "@hourly", "enabled": False},
                                                                  "compact": {"schedule": "0 5 * * *"}}}})
    wait_for(lambda: kubeapi.get("cronjobs", "default", "gt-dog-webapp-prune") is None, what="the prune CronJob gone")
    wait_for(lambda: kubeapi.get("cronjobs", "default", "gt-dog-webapp-compact")["spec"]["schedule"] == "0 5 * * *",
             what="the compact CronJob rescheduled")

    # a second rig in the namespace raises the shared quota
    other = make_rig(rig.remote.parent / "second")
    kubeapi.create(cr("Rig", "api", {"gitUrl": f"file://{other.remote}", "maxPolecats": 2}))
    wait_for(lambda: kubeapi.get("resourcequotas", "default", "gastown-sessions")["spec"]["hard"]["pods"] == "7",
             what="the quota for both rigs")
    assert len(kubeapi.get("resourcequotas", "default", "gastown-sessions")["metadata"]["ownerReferences"]) == 2
    # a MergeQueue's parallel verifications size the runs quota
    kubeapi.create(cr("MergeQueue", "api", {"rig": "api", "parallelVerifications": 10}))
    wait_for(lambda: kubeapi.get("resourcequotas", "default", "gastown-runs")["spec"]["hard"]["pods"] == "24",
             what="the runs quota to follow the queue")  # (4 + 3) + (10 + 3) + 4
    # a rig deleted: the quotas shrink to the one left
    kubeapi.delete("rigs", "default", "api")
    wait_for(lambda: kubeapi.get("resourcequotas", "default", "gastown-sessions")["spec"]["hard"]["pods"] == "5",
             what="the quota for the rig left")


def test_unreachable_remote_is_a_condition_and_an_event_not_a_crash(kubeapi, operator, tmp_path):
    op = operator()
    kubeapi.create(cr("Rig", "lost", {"gitUrl": f"file://{tmp_path}/missing.git"}))
    obj = wait_for(lambda: (condition(kubeapi.get("rigs", "default", "lost"), "GitReachable") or {}).get("status")
                   == "False" and kubeapi.get("rigs", "default", "lost"), what="GitReachable=False")
    cond = condition(obj, "GitReachable")
    assert "missing.git" in cond["message"] and "does not appear to be a git repository" in cond["message"]
    # the rig loop may say so first; the reconcile, which never got the ledger, sets the phase
    wait_for(lambda: kubeapi.get("rigs", "default", "lost")["status"].get("phase") == "Error", what="phase Error")
    events = wait_for(lambda: [e for e in kubeapi.events("default", "lost") if e["reason"] == "GitUnreachable"],
                      what="a GitUnreachable Event")
    assert events[0]["type"] == "Warning"
    assert op.proc.poll() is None  # still running, retrying with backoff


def test_a_remote_that_goes_away_flips_git_reachable(kubeapi, operator, rig, monkeypatch):
    # an idle rig looks at its remote every GT_POLL_IDLE_SECONDS (30 s by default): a short one here
    monkeypatch.setenv("GT_POLL_IDLE_SECONDS", "4")
    op = operator()
    kubeapi.create(cr("Rig", "webapp", {"gitUrl": f"file://{rig.remote}"}))
    wait_for(lambda: (condition(kubeapi.get("rigs", "default", "webapp"), "GitReachable") or {}).get("status")
             == "True", what="GitReachable=True")
    hidden = rig.remote.with_name("hidden.git")
    rig.remote.rename(hidden)
    # within a poll or two; a loaded CI machine has taken more than 20 s (the log says why, should it fail)
    cond = wait_for(lambda: (condition(kubeapi.get("rigs", "default", "webapp"), "GitReachable") or {}).get("status")
                    == "False" and condition(kubeapi.get("rigs", "default", "webapp"), "GitReachable"),
                    timeout=60, what=lambda: f"GitReachable=False; the operator's log:\n{op.output()[-6000:]}")
    assert "webapp.git" in cond["message"]
    # the phase says it too (kubectl get rigs), and comes back with the remote
    assert kubeapi.get("rigs", "default", "webapp")["status"]["phase"] == "Error"
    wait_for(lambda: any(e["reason"] == "GitUnreachable" for e in kubeapi.events("default", "webapp")),
             what="a GitUnreachable Event")
    hidden.rename(rig.remote)
    wait_for(lambda: condition(kubeapi.get("rigs", "default", "webapp"), "GitReachable")["status"] == "True",
             what="GitReachable=True again")
    assert kubeapi.get("rigs", "default", "webapp")["status"]["phase"] == "Ready"


def test_a_remote_gone_after_a_refused_push_is_a_condition_not_a_crashed_loop(kubeapi, operator, rig, monkeypatch):
    """A push refused as the remote goes away (a push racing a rename failed so in CI) leaves the
    ledger not knowing its tip. The rig loop's next round must say GitReachable=False, not fail in
    kopf's daemon and sit out its retry."""
    monkeypatch.setenv("GT_POLL_IDLE_SECONDS", "4")  # an idle rig looks at its remote soon
    op = operator()
    kubeapi.create(cr("Rig", "webapp", {"gitUrl": f"file://{rig.remote}"}))
    wait_for(lambda: (condition(kubeapi.get("rigs", "default", "webapp"), "GitReachable") or {}).get("status")
             == "True", what="GitReachable=True")
    hidden = rig.remote.with_name("hidden.git")
    hook = rig.remote / "hooks" / "pre-receive"  # the next push: the remote moves away, and refuses it
    hook.write_text(f"#!/bin/sh\nmv {rig.remote} {hidden}\nexit 1\n")
    hook.chmod(0o755)
    kubeapi.create(cr("Convoy", "fix", {"rig": "webapp", "beads": [{"key": "a", "title": "A"}]}))
    wait_for(hidden.exists, what="the push that moves the remote away")
    cond = wait_for(lambda: (condition(kubeapi.get("rigs", "default", "webapp"), "GitReachable") or {}).get("status")
                    == "False" and condition(kubeapi.get("rigs", "default", "webapp"), "GitReachable"),
                    timeout=30, what=lambda: f"GitReachable=False; the operator's log:\n{op.output()[-6000:]}")
    assert "webapp.git" in cond["message"]
    assert "Daemon 'dispatch' failed" not in op.output()


def test_convoy_with_a_bad_formula_var_says_which(kubeapi, operator, rig):
    operator()
    kubeapi.create(cr("Rig", "webapp", {"gitUrl": f"file://{rig.remote}"}))
    kubeapi.create(cr("Convoy", "fix", {"rig": "webapp", "formula": {"name": "bugfix", "vars": {"colour": "red"}}}))
    cond = wait_for(lambda: condition(kubeapi.get("convoys", "default", "fix"), "PlanInvalid"), what="PlanInvalid")
    assert cond["status"] == "True" and cond["reason"] == "FormulaInvalid"
    assert "unknown var colour" in cond["message"]
    # the condition is written during the handler, the phase with the handler's own patch just after
    wait_for(lambda: kubeapi.get("convoys", "default", "fix")["status"].get("phase") == "Failed", what="phase Failed")
    events = wait_for(lambda: [e for e in kubeapi.events("default", "fix") if e["reason"] == "FormulaInvalid"],
                      what="an Event")
    assert "colour" in events[0]["message"]
    kubeapi.patch("convoys", "default", "fix", {"spec": {"formula": {"vars": {"colour": None}}}})
    cond = wait_for(lambda: condition(kubeapi.get("convoys", "default", "fix"), "PlanInvalid"), what="PlanInvalid")
    wait_for(lambda: "missing required var 'bug'" in condition(kubeapi.get("convoys", "default", "fix"),
                                                               "PlanInvalid")["message"], what="the missing var")


def test_convoy_is_planned_once_and_dispatched_under_the_limit(kubeapi, operator, rig):
    operator()
    kubeapi.create(cr("Rig", "webapp", {"gitUrl": f"file://{rig.remote}", "maxPolecats": 2}))
    beads = [{"key": f"b{i}", "title": f"Bead {i}"} for i in range(4)]
    beads.append({"key": "last", "title": "Last", "needs": ["b0"]})
    kubeapi.create(cr("Convoy", "work", {"rig": "webapp", "beads": beads, "labels": ["mountain"]}))

    status = wait_for(lambda: (kubeapi.get("convoys", "default", "work").get("status") or {}).get("progress") == "0/5"
                      and kubeapi.get("convoys", "default", "work")["status"], what="the convoy's progress")
    assert status["phase"] == "Running" and len(status["beads"]) == 5
    with rig.ledger() as lg:
        all_beads = lg.beads()
    convoy = all_beads[convoys.convoy_id("gt", "default/work")]
    assert convoy.type == BeadType.CONVOY and len(convoy.metadata["keys"]) == 5
    assert status["convoyBead"] == convoy.id

    # two polecats (the limit), each with a session Job; the rest waits
    jobs = wait_for(lambda: len(kubeapi.list("jobs", "default")) == 2 and kubeapi.list("jobs", "default"),
                    what="two session Jobs")
    polecats = kubeapi.list("polecats", "default")
    assert sorted(p["metadata"]["name"] for p in polecats) == ["webapp-furiosa", "webapp-nux"]  # <rig>-<polecat>
    assert sorted(p["metadata"]["labels"]["gastown.dev/polecat"] for p in polecats) == ["furiosa", "nux"]
    assert all(p["metadata"]["ownerReferences"][0]["kind"] == "Rig" for p in polecats)
    assert {j["metadata"]["labels"]["gastown.dev/convoy"] for j in jobs} == {convoy.id}
    with rig.ledger() as lg:
        hooked = [b for b in lg.beads().values() if b.status == Status.HOOKED]
    assert len(hooked) == 2
    # re-applying (an update) plans nothing new
    kubeapi.patch("convoys", "default", "work", {"metadata": {"labels": {"touched": "yes"}}, "spec": {"maxParallel": 9}})
    wait_for(lambda: kubeapi.get("convoys", "default", "work")["metadata"].get("generation") == 2, what="the update")
    with rig.ledger() as lg:
        tasks = [b for b in lg.beads().values() if b.type == BeadType.TASK]
    assert len(tasks) == 5
    assert len(kubeapi.list("jobs", "default")) == 2

    # `gt scheduler pause` (a ledger write) shows on the Rig, next to its other conditions
    with rig.ledger() as lg:
        lg.apply(scheduler.SetPaused(True, "user alice"))
    cond = wait_for(lambda: (condition(kubeapi.get("rigs", "default", "webapp"), "Dispatching") or {}).get("reason")
                    == "Paused" and condition(kubeapi.get("rigs", "default", "webapp"), "Dispatching"),
                    what="Dispatching=False")
    assert cond["status"] == "False" and "paused by user alice" in cond["message"]
    assert condition(kubeapi.get("rigs", "default", "webapp"), "LedgerReady")["status"] == "True"


def test_a_convoy_across_rigs_closes_when_every_part_is_done(kubeapi, operator, rig):
    operator()
    api = make_rig(rig.remote.parent / "api")
    kubeapi.create(cr("Rig", "webapp", {"gitUrl": f"file://{rig.remote}", "maxPolecats": 1}))
    kubeapi.create(cr("Rig", "api", {"gitUrl": f"file://{api.remote}", "maxPolecats": 1}))
    beads = [{"key": "ui", "title": "UI"}, {"key": "endpoint", "title": "Endpoint", "rig": "api"},
             {"key": "docs", "title": "API docs", "rig": "api", "needs": ["endpoint"]}]
    kubeapi.create(cr("Convoy", "feature", {"rig": "webapp", "beads": beads, "notify": [{"type": "event"}]}))
    status = wait_for(lambda: (kubeapi.get("convoys", "default", "feature").get("status") or {}).get("progress")
                      == "0/3" and kubeapi.get("convoys", "default", "feature")["status"], what="progress 0/3")
    assert sorted((b["key"], b["rig"]) for b in status["beads"]) == [("docs", "api"), ("endpoint", "api"),
                                                                     ("ui", "webapp")]
    key = "default/feature"

    def close_all(r, keys):
        with r.ledger() as lg:
            part = lg.get(convoys.convoy_id("gt", key))
            for k in keys:
                bead_id = part.metadata["keys"][k]
                if lg.get(bead_id).status != Status.CLOSED:
                    lg.close_bead(bead_id, "merged (test)")
            return lg.get(convoys.convoy_id("gt", key))

    close_all(rig, ["ui"])  # the home part's own beads are done, the other rig's are not
    wait_for(lambda: kubeapi.get("convoys", "default", "feature")["status"]["progress"] == "1/3", what="1/3")
    with rig.ledger() as lg:
        assert lg.get(convoys.convoy_id("gt", key)).status != Status.CLOSED
    close_all(api, ["endpoint", "docs"])
    done = wait_for(lambda: kubeapi.get("convoys", "default", "feature")["status"]["phase"] == "Done"
                    and kubeapi.get("convoys", "default", "feature")["status"], what="Done", timeout=40)
    assert done["progress"] == "3/3"
    # the projection's conditions sit next to admission's and the planner's: no writer drops another's
    wait_for(lambda: {c["type"]: c["reason"] for c in kubeapi.get("convoys", "default", "feature")["status"]["conditions"]}
             == {"Invalid": "SpecValid", "Ready": "Accepted", "PlanInvalid": "Planned", "Stalled": "Moving",
                 "Done": "AllMerged", "BudgetExhausted": "NoBudget"}, what="every writer's conditions")
    events = wait_for(lambda: [e for e in kubeapi.events("default", "feature") if e["reason"] == "ConvoyDone"],
                      what="one ConvoyDone Event")
    assert len(events) == 1


def test_needs_across_rigs_are_refused(kubeapi, operator, rig):
    operator()
    kubeapi.create(cr("Rig", "webapp", {"gitUrl": f"file://{rig.remote}"}))
    kubeapi.create(cr("Convoy", "tangle", {"rig": "webapp", "beads": [
        {"key": "a", "title": "A"}, {"key": "b", "title": "B", "rig": "api", "needs": ["a"]}]}))
    cond = wait_for(lambda: condition(kubeapi.get("convoys", "default", "tangle"), "Invalid"), what="Invalid")
    assert "needs across rigs are not supported" in cond["message"]


def test_gt_sling_on_a_cluster_starts_the_polecat_it_names(kubeapi, operator, rig, tmp_path):
    operator()
    kubeapi.create(cr("Rig", "webapp", {"gitUrl": f"file://{rig.remote}"}))
    wait_for(lambda: (kubeapi.get("rigs", "default", "webapp").get("status") or {}).get("phase") == "Ready",
             what="the Rig")
    with rig.ledger() as lg:
        lg.apply(scheduler.SetPaused(True, "user alice"))  # the scheduler would dispatch it first
        bead = lg.create("Hotfix", priority=0)
    env = {**os.environ, "GT_TOWN": str(tmp_path / "town"), "GT_ACTOR": "user alice"}
    proc = subprocess.run([GT, "sling", bead.id, str(rig.remote), "--polecat", "toast"], env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert f"{bead.id} hooked to polecat toast" in proc.stdout
    # a paused rig starts nothing new, a slung bead's session neither, and says so
    assert "the rig is paused by user alice: its session starts after that" in proc.stdout
    with rig.ledger() as lg:
        lg.apply(scheduler.SetPaused(False, "user alice"))
    wait_for(lambda: kubeapi.get("polecats", "default", "webapp-toast"), what="the Polecat of toast")
    jobs = wait_for(lambda: kubeapi.list("jobs", "default", selector="gastown.dev/polecat=toast"), what="its Job")
    assert jobs[0]["metadata"]["labels"]["gastown.dev/bead"] == bead.id


def test_the_rig_loop_follows_the_spec_as_it_changes(kubeapi, operator, rig):
    operator()
    with rig.ledger() as lg:
        for i in range(3):
            lg.create(f"Task {i}")
    # a schedule the CRD pattern lets through but gastown.cron refuses: Invalid, nothing dispatched
    kubeapi.create(cr("Rig", "webapp", {"gitUrl": f"file://{rig.remote}", "maxPolecats": 1,
                                        "dogs": {"prune": {"schedule": "61 * * * *"}}}))
    invalid = wait_for(lambda: condition(kubeapi.get("rigs", "default", "webapp"), "Invalid"), timeout=30,
                       what="the Invalid condition")
    assert invalid["status"] == "True" and "minute: 61 is outside 0-59" in invalid["message"]

    def sessions():
        return [j for j in kubeapi.list("jobs", "default")
                if j["metadata"]["labels"].get("app.kubernetes.io/component") == "agent-session"]
    # fixed: the rig loop, which had been waiting, starts and keeps to one polecat
    kubeapi.patch("rigs", "default", "webapp", {"spec": {"dogs": {"prune": {"schedule": "17 * * * *"}}}})
    wait_for(lambda: len(sessions()) == 1, timeout=30, what="one session under maxPolecats 1")
    # raised: the running loop picks the new limit up without a restart
    kubeapi.patch("rigs", "default", "webapp", {"spec": {"maxPolecats": 3}})
    wait_for(lambda: len(sessions()) == 3, timeout=30, what="three sessions under maxPolecats 3")


def test_rigs_on_one_api_key_secret_wait_out_its_rate_limit_together(kubeapi, operator, rig):
    """A rate limit on one rig's key holds every rig of the operator that uses the same Secret key:
    their Dispatching condition names the key's backoff and the rig that hit it."""
    operator()
    other = make_rig(rig.remote.parent / "api")
    runtime = {"preset": "claude", "apiKeySecret": {"name": "llm-keys", "key": "anthropic"}}
    kubeapi.create(cr("Rig", "webapp", {"gitUrl": f"file://{rig.remote}", "maxPolecats": 1, "runtime": runtime}))
    kubeapi.create(cr("Rig", "api", {"gitUrl": f"file://{other.remote}", "maxPolecats": 1, "runtime": runtime}))
    kubeapi.create(cr("Rig", "solo", {"gitUrl": f"file://{make_rig(rig.remote.parent / 'solo').remote}",
                                      "maxPolecats": 1, "runtime": {**runtime, "apiKeySecret": {
                                          "name": "llm-keys", "key": "other"}}}))
    for name in ("webapp", "api", "solo"):
        wait_for(lambda n=name: condition(kubeapi.get("rigs", "default", n), "Dispatching"), what=f"{name} dispatching")
    with rig.ledger() as lg:
        lg.apply(scheduler.RateLimitStrike("s-1", "polecat furiosa", retry_after=600))

    def held(name):
        cond = condition(kubeapi.get("rigs", "default", name), "Dispatching") or {}
        return cond if cond.get("status") == "False" else None

    assert "rate-limit backoff until" in wait_for(lambda: held("webapp"), what="webapp backing off")["message"]
    with other.ledger() as lg:  # work for a rig on the same key: it waits, hooked to nobody
        bead = lg.create("Work on the same key").id
    cond = wait_for(lambda: held("api"), what="api waiting on the shared key")
    assert cond["reason"] == "RateLimited" and "of its API key" in cond["message"] and "rig webapp" in cond["message"]
    with other.ledger() as lg:
        assert lg.get(bead).status == Status.OPEN
    assert not [j for j in kubeapi.list("jobs", "default") if j["metadata"]["labels"].get("gastown.dev/rig") == "api"]
    assert condition(kubeapi.get("rigs", "default", "solo"), "Dispatching")["status"] == "True"  # another key
