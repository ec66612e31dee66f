"""The Refinery on a cluster, the pure parts: the verification Job, its end, the MergeQueue status."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from gastown.api import RigSpec
from gastown.kube.mergequeue_handlers import (
    KEEP_OUTCOMES,
    KEEP_ROUNDS,
    KEEP_TEXT,
    active_queue,
    mergequeue_status,
    queue_settings,
    verification_ended,
)
from gastown.ledger import Bead, BeadType, HistoryEntry, Status
from gastown.refinery import RefineryReport
from gastown.refinery.bisect import Bisection, Run, run_id
from gastown.refinery.verify import Verification
from gastown.runtimes.kubernetes import VerifyRequest, verification_job

RIG = RigSpec.model_validate({
    "gitUrl": "https://git.example.com/webapp.git", "credentialsSecret": {"name": "webapp-git"},
    "verification": {"gates": {"test": ["npm", "test"], "lint": ["npm", "run", "lint"]},
                     "image": "node:22-slim", "timeoutSeconds": 600,
                     "resources": {"requests": {"cpu": "2"}, "limits": {"memory": "2Gi"}}}})
OWNER = {"apiVersion": "gastown.dev/v1alpha1", "kind": "MergeQueue", "name": "webapp", "uid": "mq-1",
         "controller": True, "blockOwnerDeletion": True}
RUN = Run(("gt-aaa",), ("gt-bbb", "gt-ccc"))
IDENT = f"{run_id('gt-0batch0000', RUN, 0)}-0"  # the run's ID: its batch, attempt and stack


def job(attempt=0, rig=RIG):
    v = Verification("gt-0batch0000", RUN, attempt)
    return verification_job(VerifyRequest(namespace="team-a", rig="webapp", rig_spec=rig, batch=v.batch,
                                          run=RUN.to_dict(), ident=v.ident, attempt=v.attempt, ref=v.ref, owner=OWNER,
                                          image="registry.local/gastown-agent:1"))


def test_the_job_runs_gt_mq_verify_with_the_rigs_gates():
    j = job()
    container = j["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert container["command"] == ["gt", "mq", "verify"] and container["image"] == "node:22-slim"
    assert json.loads(env["GT_GATES"]) == [["lint", ["npm", "run", "lint"]], ["test", ["npm", "test"]]]
    assert json.loads(env["GT_RUN"]) == {"prefix": ["gt-aaa"], "group": ["gt-bbb", "gt-ccc"]}
    assert env["GT_VERIFY_REF"] == f"refs/gastown/verify/gt-0batch0000/{IDENT}" and env["GT_ATTEMPT"] == "0"
    assert env["GT_RIG"] == RIG.git_url and env["GT_VERIFY_TIMEOUT"] == "600"
    assert {"GIT_USERNAME", "GIT_PASSWORD"} <= set(env)  # from the rig's Secret, by reference
    assert all("secretKeyRef" in e["valueFrom"] for e in container["env"] if e["name"] in ("GIT_USERNAME",
                                                                                         "GIT_PASSWORD"))
    assert container["resources"] == {"requests": {"cpu": "2"}, "limits": {"memory": "2Gi"}}
    assert j["spec"]["activeDeadlineSeconds"] == 1200 and j["spec"]["backoffLimit"] == 0


def test_the_job_is_owned_by_the_queue_and_has_no_api_access():
    j = job()
    assert j["metadata"]["ownerReferences"] == [OWNER]
    labels = j["metadata"]["labels"]
    assert labels["app.kubernetes.io/component"] == "verification" and labels["gastown.dev/rig"] == "webapp"
    assert labels["gastown.dev/verification"] == IDENT and labels["gastown.dev/batch"] == "gt-0batch0000"
    pod = j["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False and pod["restartPolicy"] == "Never"
    assert pod["securityContext"]["runAsNonRoot"] is True
    sc = pod["containers"][0]["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}


def test_a_rebuilt_batch_gets_new_jobs_and_names_are_dns_labels():
    first, second = job(0), job(1)
    assert first["metadata"]["name"] != second["metadata"]["name"]
    for j in (first, second):
        name = j["metadata"]["name"]
        assert len(name) <= 63 and name.startswith("gt-verify-") and name == name.lower()


def test_without_a_verification_image_the_agent_image_runs_the_gates():
    plain = RigSpec.model_validate({"gitUrl": "https://git.example.com/webapp.git"})
    container = job(rig=plain)["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "registry.local/gastown-agent:1"
    assert json.loads(next(e["value"] for e in container["env"] if e["name"] == "GT_GATES")) == []


def test_a_job_that_ended_says_where_its_log_is():
    assert verification_ended("gt-verify-x", {}) is None
    assert verification_ended("gt-verify-x", {"conditions": [{"type": "Failed", "status": "False"}]}) is None
    failed = verification_ended("gt-verify-x", {"conditions": [
        {"type": "Failed", "status": "True", "reason": "DeadlineExceeded", "message": "Job was active longer"}]})
    assert "DeadlineExceeded: Job was active longer" in failed and "kubectl logs job/gt-verify-x" in failed
    assert "completed" in verification_ended("gt-verify-x", {"conditions": [{"type": "Complete", "status": "True"}]})


def queue(name, created, reason=None, spec=None):
    conditions = [{"type": "Ready", "status": "True", "reason": reason}] if reason else []
    return {"name": name, "uid": name, "spec": spec or {"rig": "webapp"}, "created": created,
            "conditions": conditions}


def test_the_queue_already_merging_stays_active_else_the_oldest():
    old, new = queue("zeta", "2026-01-01T00:00:00Z"), queue("alpha", "2026-02-01T00:00:00Z")
    assert active_queue([new, old]) is old
    assert active_queue([queue("zeta", "2026-01-01T00:00:00Z"), queue("alpha", "2026-02-01T00:00:00Z", "Merging")]
                        )["name"] == "alpha"
    assert active_queue([]) is None


def test_settings_come_from_the_queue_or_the_defaults():
    s = queue_settings(queue("q", "", spec={"rig": "webapp", "batchSize": 3, "targetBranch": "release"}), "main")
    assert (s.target, s.batch_size, s.parallel) == ("release", 3, 4)
    assert queue_settings(None, "trunk").target == "trunk"
    assert queue_settings(queue("q", "", spec={"rig": "webapp", "batchSize": 0}), "main").batch_size == 8


def bead(id_, type_, status, **meta):
    now = datetime(2026, 11, 24, tzinfo=UTC)
    return Bead(id=id_, title=id_, type=type_, status=status, created_at=now, updated_at=now, created_by="test",
                closed_at=now + timedelta(minutes=len(id_)) if status == Status.CLOSED else None, metadata=meta)


def test_status_counts_from_the_ledger():
    beads = {b.id: b for b in [
        bead("gt-a01", BeadType.MERGE_REQUEST, Status.CLOSED, target="main", merged_commit="a" * 40),
        bead("gt-a0002", BeadType.MERGE_REQUEST, Status.CLOSED, target="main", merged_commit="b" * 40),
        bead("gt-a03", BeadType.MERGE_REQUEST, Status.BLOCKED, target="main", rejections=2),
        bead("gt-a04", BeadType.MERGE_REQUEST, Status.OPEN, target="main"),
        bead("gt-a05", BeadType.MERGE_REQUEST, Status.IN_PROGRESS, target="main", batch="gt-bat"),
        bead("gt-bat", BeadType.MERGE_BATCH, Status.IN_PROGRESS, target="main", mrs=["gt-a05"], total_runs=3,
             state=Bisection.start(["gt-a05"]).to_dict(), runs={}, phase="verifying"),
    ]}
    status = mergequeue_status(beads, "main", RefineryReport(phase="Bisecting"))
    only = Run((), ("gt-a05",))
    assert status == {"phase": "Bisecting", "queueLength": 1, "currentBatch": ["gt-a05"],
                      "batch": {"id": "gt-bat", "phase": "verifying", "mrs": ["gt-a05"], "round": 1,
                                "rounds": [{"round": 1, "runs": [
                                    {"run": Verification("gt-bat", only, 0).ident, "group": ["gt-a05"], "stackedOn": 0,
                                     "result": "running", "summary": "1 MR(s) on 0 accepted"}]}],
                                "accepted": [], "rejected": []},
                      "recent": [{"mr": "gt-a0002", "title": "gt-a0002", "outcome": "merged", "commit": "b" * 40,
                                  "at": "2026-11-24T00:08:00+00:00"},
                                 {"mr": "gt-a01", "title": "gt-a01", "outcome": "merged", "commit": "a" * 40,
                                  "at": "2026-11-24T00:06:00+00:00"},
                                 {"mr": "gt-a03", "title": "gt-a03", "outcome": "rejected", "reason": "",
                                  "at": "2026-11-24T00:00:00+00:00"}],
                      "lastMergedCommit": "b" * 40,
                      "counters": {"merged": 2, "rejected": 2, "conflicts": 0, "verificationRuns": 3}}


def test_the_status_keeps_a_long_bisection_and_the_queues_history_bounded():
    """A batch of 64 bisected one run at a time (many rounds) and 30 merges: the status keeps the last
    rounds (numbered as they were), the last merges and rejections, and short reasons."""
    mrs = [f"gt-m{i:02}" for i in range(64)]
    bad = set(mrs[::7])
    state, records, history = Bisection.start(mrs), {}, []
    while runs := state.next_round(1):
        results = {r: "fail" if bad & set(r.group) or (not r.group and bad & set(r.prefix)) else "pass"
                   for r in runs}
        for r, res in results.items():
            records[r.key] = {**r.to_dict(), "result": res, "tip": "t", "gate": "test" if res == "fail" else None}
            history.append(HistoryEntry("c", "refinery", "d", f"run {run_id('gt-bat', r, 0)}: {r.describe()}: {res}"))
        state.settle(results)
        history.append(HistoryEntry("c", "refinery", "d", f"round {state.rounds}: settled"))
    batch = bead("gt-bat", BeadType.MERGE_BATCH, Status.IN_PROGRESS, target="main", mrs=mrs, runs=records,
                 state=state.to_dict(), phase="verifying")
    merged = [bead(f"gt-x{i:02}", BeadType.MERGE_REQUEST, Status.CLOSED, target="main", merged_commit=f"{i:040}")
              for i in range(30)]
    rejected = bead("gt-r00", BeadType.MERGE_REQUEST, Status.BLOCKED, target="main",
                    rejection={"reason": "gate test failed: " + "x" * 1000})
    beads = {b.id: b for b in [batch, *merged, rejected]}

    status = mergequeue_status(beads, "main", None, history=lambda bid: history if bid == "gt-bat" else [], parallel=1)
    shown = status["batch"]
    assert state.rounds > KEEP_ROUNDS and shown["round"] == state.rounds
    assert [r["round"] for r in shown["rounds"]] == list(range(state.rounds - KEEP_ROUNDS + 1, state.rounds + 1))
    assert all(len(r["runs"]) == 1 for r in shown["rounds"])
    assert shown["rejected"] == sorted(bad) and len(shown["accepted"]) == 64 - len(bad)
    assert [r["outcome"] for r in status["recent"]] == ["merged"] * KEEP_OUTCOMES + ["rejected"]
    assert len(status["recent"][-1]["reason"]) == KEEP_TEXT
    assert len(json.dumps(status)) < 16_000  # a status, not a log
