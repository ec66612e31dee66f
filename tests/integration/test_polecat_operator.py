"""The Polecat controller as a real operator process against the API double and a real rig."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from gastown.escalation import Raise
from gastown.ledger import BeadType, Status
from gastown.polecats import Hook, StartSession, agent_id
from gastown.runtimes.kubernetes import session_name

from conftest import wait_for
from rigs import make_rig


@pytest.fixture
def rig(tmp_path):
    return make_rig(tmp_path)


def apply_rig_and_polecat(kubeapi, rig, **spec):
    kubeapi.create({"apiVersion": "gastown.dev/v1alpha1", "kind": "Rig", "metadata": {"name": "webapp"},
                    "spec": {"gitUrl": f"file://{rig.remote}", "runtime": {
                        "preset": "claude", "apiKeySecret": {"name": "anthropic", "key": "api-key"}}, **spec}})
    return kubeapi.create({"apiVersion": "gastown.dev/v1alpha1", "kind": "Polecat",
                           "metadata": {"name": "furiosa"}, "spec": {"rig": "webapp"}})


def recorded(rig, polecat: str) -> None:
    """Wait for the operator to record the polecat in the rig's ledger (a Hook needs it there; the
    Polecat's status comes first when its identity handler is retried)."""
    def agent():
        with rig.ledger() as lg:
            return lg.snapshot().get(agent_id("gt", polecat))
    wait_for(agent, timeout=30, what=f"polecat {polecat} in the ledger")


def test_hooked_bead_starts_a_job_and_the_finished_job_idles_the_polecat(kubeapi, operator, rig, tmp_path,
                                                                          monkeypatch):
    op = operator()
    polecat = apply_rig_and_polecat(kubeapi, rig)

    # the operator records the polecat's identity in the rig's ledger
    def agent():
        with rig.ledger() as lg:
            return lg.snapshot().get(agent_id("gt", "furiosa"))
    identity = wait_for(agent, timeout=30, what="the agent bead")
    assert identity.metadata["rig"] == "webapp" and identity.metadata["state"] == "idle"
    assert kubeapi.list("jobs", "default") == []

    # hooking a bead (what the scheduler or `gt sling` does) starts a session Job
    with rig.ledger() as lg:
        bead = lg.create("Add login")
        lg.apply(Hook(bead.id, "furiosa", "user tester"))
    jobs = wait_for(lambda: kubeapi.list("jobs", "default", selector="gastown.dev/polecat=furiosa"),
                    timeout=30, what="a session Job")
    assert len(jobs) == 1, op.output()
    job = jobs[0]
    assert job["metadata"]["ownerReferences"][0]["uid"] == polecat["metadata"]["uid"]
    assert job["metadata"]["labels"]["gastown.dev/bead"] == bead.id
    env = {e["name"]: e for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["ANTHROPIC_API_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "anthropic"
    assert env["GT_RIG"]["value"] == f"file://{rig.remote}"

    def polecat_status():
        return kubeapi.get("polecats", "default", "furiosa").get("status") or {}
    wait_for(lambda: polecat_status().get("phase") == "Spawning", what="Spawning")
    assert polecat_status()["currentBead"] == bead.id and polecat_status()["sessionCount"] == 1

    name = job["metadata"]["name"]
    kubeapi.patch("jobs", "default", name, {"status": {"active": 1, "ready": 1,
                                                        "startTime": "2026-11-24T10:00:00Z"}},
                  subresource="status")
    wait_for(lambda: polecat_status().get("phase") == "Working", what="Working")
    assert polecat_status()["session"]["name"] == name

    # the wrapper's heartbeat Lease becomes the polecat's last heartbeat
    kubeapi.create({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {
        "name": name, "labels": {"app.kubernetes.io/component": "heartbeat", "gastown.dev/polecat": "furiosa"}},
        "spec": {"holderIdentity": name, "renewTime": "2026-11-24T10:00:05.000000Z"}})
    wait_for(lambda: polecat_status().get("lastHeartbeat") == "2026-11-24T10:00:05.000000Z", what="heartbeat")

    # the session ends (here the Job just completes; its wrapper records the result in the ledger)
    kubeapi.patch("jobs", "default", name, {"status": {
        "active": 0, "ready": 0, "succeeded": 1,
        "conditions": [{"type": "Complete", "status": "True"}]}}, subresource="status")
    wait_for(lambda: polecat_status().get("phase") == "Idle" and not polecat_status().get("currentBead"),
             what="Idle")
    assert polecat_status()["sessionCount"] == 1
    with rig.ledger() as lg:
        assert lg.get(bead.id).status == Status.HOOKED  # nothing ran it: still the polecat's
    # one Job for one hook, however often the rig loop looked
    assert len(kubeapi.list("jobs", "default")) == 1


def test_polecat_of_a_missing_rig_waits(kubeapi, operator, rig):
    operator()
    kubeapi.create({"apiVersion": "gastown.dev/v1alpha1", "kind": "Polecat", "metadata": {"name": "nux"},
                    "spec": {"rig": "nowhere"}})
    events = wait_for(lambda: [e for e in kubeapi.events("default", "nux")
                               if "rig nowhere does not exist" in e["message"]], what="an Event")
    assert events[0]["type"] == "Warning" and events[0]["reason"] == "RigNotFound"


def test_a_retired_polecat_gets_no_session(kubeapi, operator, rig):
    operator()
    kubeapi.create({"apiVersion": "gastown.dev/v1alpha1", "kind": "Rig", "metadata": {"name": "webapp"},
                    "spec": {"gitUrl": f"file://{rig.remote}"}})
    kubeapi.create({"apiVersion": "gastown.dev/v1alpha1", "kind": "Polecat", "metadata": {"name": "furiosa"},
                    "spec": {"rig": "webapp", "desiredState": "retired"}})
    wait_for(lambda: (kubeapi.get("polecats", "default", "furiosa").get("status") or {}).get("phase") == "Retired",
             what="Retired")
    with rig.ledger() as lg:
        bead = lg.create("Nobody should start this")
        lg.apply(Hook(bead.id, "furiosa", "user tester"))
    kubeapi.create({"apiVersion": "gastown.dev/v1alpha1", "kind": "Polecat", "metadata": {"name": "nux"},
                    "spec": {"rig": "webapp"}})
    with rig.ledger() as lg:
        wait_for(lambda: lg.snapshot().get(agent_id("gt", "nux")), what="nux's identity")
        other = lg.create("For nux")
        lg.apply(Hook(other.id, "nux", "user tester"))
    wait_for(lambda: kubeapi.list("jobs", "default", selector="gastown.dev/polecat=nux"), what="nux's Job")
    assert kubeapi.list("jobs", "default", selector="gastown.dev/polecat=furiosa") == []


@pytest.mark.parametrize(("state", "reason", "words"), [
    ({"terminated": {"reason": "OOMKilled", "exitCode": 137}}, "OOMKilled", "ran out of memory"),
    ({"waiting": {"reason": "ImagePullBackOff", "message": "back-off pulling image"}}, "ImagePullBackOff",
     "image cannot be pulled"),
])
def test_pod_failure_states_become_polecat_conditions_and_events(kubeapi, operator, rig, state, reason, words):
    operator()
    apply_rig_and_polecat(kubeapi, rig)
    labels = {"app.kubernetes.io/component": "agent-session", "gastown.dev/polecat": "furiosa",
              "gastown.dev/session": "gt-furiosa-gt-abc-1"}
    kubeapi.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "gt-furiosa-gt-abc-1-x", "labels": labels},
                    "spec": {"containers": [{"name": "agent", "image": "gastown/agent:1"}]}})
    wait_for(lambda: (kubeapi.get("polecats", "default", "furiosa").get("status") or {}).get("conditions"),
             what="the polecat admitted")
    kubeapi.patch("pods", "default", "gt-furiosa-gt-abc-1-x", {"status": {
        "phase": "Failed" if "terminated" in state else "Pending",
        "containerStatuses": [{"name": "agent", "state": state}]}}, subresource="status")

    def cond():
        conditions = (kubeapi.get("polecats", "default", "furiosa").get("status") or {}).get("conditions", [])
        return next((c for c in conditions if c["type"] == "SessionHealthy"), None)
    c = wait_for(cond, what="SessionHealthy")
    assert c["status"] == "False" and c["reason"] == reason and words in c["message"]
    assert "gt-furiosa-gt-abc-1" in c["message"]
    others = {x["type"] for x in kubeapi.get("polecats", "default", "furiosa")["status"]["conditions"]}
    assert "Invalid" in others  # the other conditions are kept
    events = wait_for(lambda: [e for e in kubeapi.events("default", "furiosa") if e["reason"] == reason],
                      what="a Warning Event")
    assert events[0]["type"] == "Warning"
    # the same trouble seen again is not a second Event
    kubeapi.patch("pods", "default", "gt-furiosa-gt-abc-1-x", {"metadata": {"labels": {"seen": "again"}}})
    time.sleep(1.5)
    assert len([e for e in kubeapi.events("default", "furiosa") if e["reason"] == reason]) == 1


def _session_pod(kubeapi, job, started):
    labels = job["spec"]["template"]["metadata"]["labels"]
    kubeapi.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"{job['metadata']['name']}-x",
                                                                   "namespace": "default", "labels": labels},
                    "spec": {"containers": [{"name": "agent", "image": "gastown/agent"}]}})
    kubeapi.patch("pods", "default", f"{job['metadata']['name']}-x", {"status": {"phase": "Running",
                  "containerStatuses": [{"name": "agent", "ready": True, "restartCount": 0, "image": "a",
                                         "imageID": "a", "state": {"running": {"startedAt": started}}}]}},
                  subresource="status")


def test_the_cluster_witness_restarts_a_lost_session_and_stops_a_hung_one(kubeapi, operator, rig, monkeypatch):
    monkeypatch.setenv("GT_PATROL_SECONDS", "1")  # time-driven patrols, fast
    op = operator()
    apply_rig_and_polecat(kubeapi, rig, witness={"hungAfterSeconds": 60})  # the default would wait 5 minutes
    recorded(rig, "furiosa")
    with rig.ledger() as lg:
        bead = lg.create("Add login")
        lg.apply(Hook(bead.id, "furiosa", "user tester"))

    def job(count):
        return next((j for j in kubeapi.list("jobs", "default") if j["metadata"]["name"] ==
                     session_name("furiosa", bead.id, count)), None)

    # session 1 starts, beats, then its pod dies (OOMKilled) without a word to the ledger
    first = wait_for(lambda: job(1), timeout=30, what="session 1")
    name = first["metadata"]["name"]
    with rig.ledger() as lg:
        lg.apply(StartSession(bead.id, "furiosa", name, "polecat furiosa"))
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    _session_pod(kubeapi, first, now)
    kubeapi.patch("jobs", "default", name, {"status": {"conditions": [
        {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]}}, subresource="status")
    # the Witness sees the session gone with the bead in progress: stalled; the end is recorded, a new session starts
    second = wait_for(lambda: job(2), timeout=30, what=f"session 2 after a lost session\n{op.output()}")
    with rig.ledger() as lg:
        work = lg.get(bead.id)
    assert work.metadata["ended"] == name and work.metadata["attempts"] == 1
    assert "is gone without a result" in work.comments[-1].text

    # session 2 runs but its heartbeat stopped two minutes ago: hung past the Rig's 60 s; stopped, a third starts
    name = second["metadata"]["name"]
    with rig.ledger() as lg:
        lg.apply(StartSession(bead.id, "furiosa", name, "polecat furiosa"))
    stale = (datetime.now(UTC) - timedelta(minutes=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    _session_pod(kubeapi, second, stale)
    kubeapi.create({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {
        "name": name, "labels": {"app.kubernetes.io/component": "heartbeat", "gastown.dev/polecat": "furiosa"}},
        "spec": {"holderIdentity": name, "renewTime": stale.replace("Z", ".000000Z")}})
    wait_for(lambda: job(3), timeout=30, what="session 3 after a hung one")
    assert job(2) is None  # deleted: its pod got SIGTERM and its grace period to push its work
    with rig.ledger() as lg:
        work = lg.get(bead.id)
    assert work.metadata["ended"] == name and work.metadata["attempts"] == 2
    assert work.metadata["last_outcome"] == "hung"


def test_the_deacon_deletes_gastowns_jobs_and_pods_that_lost_their_owner(kubeapi, operator, rig, monkeypatch):
    monkeypatch.setenv("GT_DEACON_SECONDS", "1")
    operator()
    apply_rig_and_polecat(kubeapi, rig)
    labels = {"app.kubernetes.io/component": "agent-session", "app.kubernetes.io/managed-by": "gastown-operator",
              "gastown.dev/rig": "webapp", "gastown.dev/polecat": "furiosa", "gastown.dev/session": "gt-stray-1"}
    kubeapi.create({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "gt-stray-1", "labels": labels},
                    "spec": {"template": {"spec": {"containers": [{"name": "agent", "image": "x"}],
                                                   "restartPolicy": "Never"}}}})
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "gt-stray-pod", "labels": labels},
           "spec": {"containers": [{"name": "agent", "image": "x"}], "restartPolicy": "Never"}}
    kubeapi.create(pod)
    owned = {**pod, "metadata": {"name": "gt-owned-pod", "labels": labels, "ownerReferences": [
        {"apiVersion": "batch/v1", "kind": "Job", "name": "gt-some-job", "uid": "job-1", "controller": True}]}}
    kubeapi.create(owned)
    wait_for(lambda: kubeapi.get("jobs", "default", "gt-stray-1") is None, timeout=30, what="the stray Job deleted")
    wait_for(lambda: kubeapi.get("pods", "default", "gt-stray-pod") is None, timeout=30, what="the stray pod deleted")
    events = wait_for(lambda: len(e := [e for e in kubeapi.events("default", "webapp")
                                        if e["reason"] == "OrphanDeleted"]) == 2 and e, what="two OrphanDeleted Events")
    assert sorted(e["message"].split()[1] for e in events) == ["gt-stray-1", "gt-stray-pod"]
    assert all(e["involvedObject"]["kind"] == "Rig" for e in events)
    assert kubeapi.get("pods", "default", "gt-owned-pod") is not None  # a Job's pod is its Job's business


def test_an_operator_restart_restarts_no_session_twice_and_repeats_no_escalation(kubeapi, operator, rig,
                                                                                  monkeypatch):
    monkeypatch.setenv("GT_PATROL_SECONDS", "1")
    first_op = operator()
    apply_rig_and_polecat(kubeapi, rig)
    recorded(rig, "furiosa")
    with rig.ledger() as lg:
        bead = lg.create("Add login")
        lg.apply(Hook(bead.id, "furiosa", "user tester"))

    def job(polecat, bead_id, count):
        return next((j for j in kubeapi.list("jobs", "default") if j["metadata"]["name"] ==
                     session_name(polecat, bead_id, count)), None)

    # session 1 is lost; the Witness records it and starts session 2, which runs (and is young)
    first = wait_for(lambda: job("furiosa", bead.id, 1), timeout=30, what="session 1")
    with rig.ledger() as lg:
        lg.apply(StartSession(bead.id, "furiosa", first["metadata"]["name"], "polecat furiosa"))
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    _session_pod(kubeapi, first, now)
    kubeapi.patch("jobs", "default", first["metadata"]["name"], {"status": {"conditions": [
        {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]}}, subresource="status")
    second = wait_for(lambda: job("furiosa", bead.id, 2), timeout=30, what="session 2")
    with rig.ledger() as lg:
        lg.apply(StartSession(bead.id, "furiosa", second["metadata"]["name"], "polecat furiosa"))
        esc = lg.apply(Raise("P1", "the build cache is full", "user tester"))
    _session_pod(kubeapi, second, datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))

    def escalation_events():
        return [e for e in kubeapi.events("default") if e.get("reason") == "EscalationP1"]
    wait_for(lambda: escalation_events(), timeout=30, what="the escalation routed to an Event")
    wait_for(lambda: "P1:event" in rig_ledger_get(rig, esc.id).metadata.get("delivered", []), timeout=30,
             what="the delivery recorded")

    # the operator goes away and a new one takes over: it re-derives everything from the ledger and the API
    first_op.stop()
    operator()
    kubeapi.create({"apiVersion": "gastown.dev/v1alpha1", "kind": "Polecat", "metadata": {"name": "nux"},
                    "spec": {"rig": "webapp"}})
    wait_for(lambda: kubeapi.get("polecats", "default", "nux").get("status"), timeout=30, what="polecat nux")
    with rig.ledger() as lg:
        other = lg.create("Add logout")
        lg.apply(Hook(other.id, "nux", "user tester"))
    # the new operator is at work (its rig passes start nux's session) and has patrolled for a while
    wait_for(lambda: job("nux", other.id, 1), timeout=30, what="the new operator dispatching")
    time.sleep(3)  # a few one-second patrols of the Witness and escalation routing
    assert job("furiosa", bead.id, 3) is None and job("furiosa", bead.id, 2) is not None
    work = rig_ledger_get(rig, bead.id)
    assert work.metadata["attempts"] == 1 and work.metadata["session"] == second["metadata"]["name"]
    assert len(escalation_events()) == 1
    with rig.ledger() as lg:
        beads = lg.beads()
    assert [b.id for b in beads.values() if b.type == BeadType.ESCALATION] == [esc.id]


def rig_ledger_get(rig, bead_id):
    with rig.ledger() as lg:
        return lg.get(bead_id)


def test_a_polecat_keeps_its_home_across_sessions_and_loses_it_with_the_polecat(kubeapi, operator, rig,
                                                                                monkeypatch):
    monkeypatch.setenv("GT_PATROL_SECONDS", "1")
    op = operator()
    polecat = apply_rig_and_polecat(kubeapi, rig, polecatHome={"size": "2Gi", "storageClassName": "standard"})
    recorded(rig, "furiosa")
    assert kubeapi.list("persistentvolumeclaims", "default") == []
    with rig.ledger() as lg:
        bead = lg.create("Add login")
        lg.apply(Hook(bead.id, "furiosa", "user tester"))

    def job(count):
        return next((j for j in kubeapi.list("jobs", "default") if j["metadata"]["name"] ==
                     session_name("furiosa", bead.id, count)), None)

    first = wait_for(lambda: job(1), timeout=30, what=f"session 1\n{op.output()}")
    # the claim was created before the first session's Job (a pod never waits for a claim nobody makes)
    posts = [path for method, path in kubeapi.requests if method == "POST"]
    claim_post = next((i for i, p in enumerate(posts) if p.endswith("/persistentvolumeclaims")), None)
    job_post = next(i for i, p in enumerate(posts) if p.endswith("/jobs"))
    assert claim_post is not None and claim_post < job_post, f"no claim before the first Job: {posts}"
    claims = kubeapi.list("persistentvolumeclaims", "default")
    assert [c["metadata"]["name"] for c in claims] == ["gt-home-furiosa"]
    claim = claims[0]
    assert claim["metadata"]["ownerReferences"][0]["uid"] == polecat["metadata"]["uid"]
    assert claim["metadata"]["labels"]["gastown.dev/rig"] == "webapp"
    assert claim["metadata"]["labels"]["gastown.dev/polecat"] == "furiosa"
    assert claim["spec"] == {"accessModes": ["ReadWriteOnce"], "volumeMode": "Filesystem",
                             "resources": {"requests": {"storage": "2Gi"}}, "storageClassName": "standard"}

    def home_of(j):
        return next(v for v in j["spec"]["template"]["spec"]["volumes"] if v["name"] == "home")
    assert home_of(first)["persistentVolumeClaim"]["claimName"] == "gt-home-furiosa"

    # the session is lost; the next one mounts the same HOME: its CLI finds the earlier conversation
    with rig.ledger() as lg:
        lg.apply(StartSession(bead.id, "furiosa", first["metadata"]["name"], "polecat furiosa"))
    _session_pod(kubeapi, first, datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
    kubeapi.patch("jobs", "default", first["metadata"]["name"], {"status": {"conditions": [
        {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]}}, subresource="status")
    second = wait_for(lambda: job(2), timeout=30, what=f"session 2\n{op.output()}")
    assert home_of(second)["persistentVolumeClaim"]["claimName"] == "gt-home-furiosa"
    assert len(kubeapi.list("persistentvolumeclaims", "default")) == 1
    claim_posts = [p for m, p in kubeapi.requests if m == "POST" and p.endswith("/persistentvolumeclaims")]
    assert len(claim_posts) >= 2  # asked again before session 2: 409, it exists
    assert kubeapi.get("persistentvolumeclaims", "default", "gt-home-furiosa")["metadata"]["uid"] == \
        claim["metadata"]["uid"]  # the same claim, not a new one

    # the Polecat goes: its HOME goes with it (garbage collection of what it owns), Jobs too
    kubeapi.delete("polecats", "default", "furiosa")
    wait_for(lambda: kubeapi.get("polecats", "default", "furiosa") is None, timeout=30, what="the Polecat deleted")
    wait_for(lambda: kubeapi.list("persistentvolumeclaims", "default") == [], timeout=30, what="the claim deleted")
    assert job(2) is None
