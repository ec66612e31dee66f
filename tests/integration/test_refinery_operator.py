"""The Refinery on a cluster: the operator process, the API double, a real rig and real gates.

The API double runs no pods, so the test plays the kubelet for verification Jobs: it runs each
Job's own command (`gt mq verify`) with the Job's own environment, then marks the Job
Complete or Failed by its exit code, as Kubernetes would.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from gastown.ledger import BeadType, Status
from gastown.names import VERIFICATION_LABEL

from conftest import GT, wait_for
from rigs import GATE_CHECK, git, make_rig, push_mr


@pytest.fixture
def rig(tmp_path):
    return make_rig(tmp_path, {"README.md": "# tiny\n", "check.py": GATE_CHECK, "mods/.keep": ""})


def apply(kubeapi, rig, **queue):
    kubeapi.create({"apiVersion": "gastown.dev/v1alpha1", "kind": "Rig", "metadata": {"name": "webapp"},
                    "spec": {"gitUrl": f"file://{rig.remote}",
                             "verification": {"gates": {"test": [sys.executable, "check.py"]},
                                              "timeoutSeconds": 120}}})
    return kubeapi.create({"apiVersion": "gastown.dev/v1alpha1", "kind": "MergeQueue", "metadata": {"name": "webapp"},
                           "spec": {"rig": "webapp", "fillWindowSeconds": 0, **queue}})


def verification_jobs(kubeapi):
    return [j for j in kubeapi.list("jobs", "default")
            if j["metadata"]["labels"].get("app.kubernetes.io/component") == "verification"]


def play(kubeapi, tmp_path, played: dict[str, int]) -> None:
    """Run each new verification Job's container command with its env; finish the Job by the result."""
    for job in verification_jobs(kubeapi):
        name = job["metadata"]["name"]
        if name in played:
            continue
        container = job["spec"]["template"]["spec"]["containers"][0]
        env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
        env.update(GT_WORKDIR=str(tmp_path / "pods" / name), GT_CACHE_DIR=str(tmp_path / "pods" / "cache"),
                   HOME=os.environ.get("HOME", str(tmp_path)))
        assert container["command"][0] == "gt"
        proc = subprocess.run([GT, *container["command"][1:]], env={**os.environ, **env}, capture_output=True,
                              text=True, timeout=120)
        played[name] = proc.returncode
        condition = {"type": "Complete" if proc.returncode == 0 else "Failed", "status": "True",
                     "reason": "" if proc.returncode == 0 else "BackoffLimitExceeded"}
        kubeapi.patch("jobs", "default", name, {"status": {"conditions": [condition]}}, subresource="status")


def test_the_operator_verifies_bisects_and_merges_with_jobs(kubeapi, operator, rig, tmp_path):
    # the MRs are queued before the queue exists, so that they form one batch however slow the machine
    mrs = {n: push_mr(rig, tmp_path, n, "BAD\n" if n == "m2" else "fine\n") for n in ("m0", "m1", "m2", "m3")}
    op = operator()
    queue = apply(kubeapi, rig)
    played: dict[str, int] = {}

    def finished():
        play(kubeapi, tmp_path, played)
        status = (kubeapi.get("mergequeues", "default", "webapp") or {}).get("status") or {}
        counters = status.get("counters") or {}
        return status if counters.get("merged") == 3 and counters.get("rejected") == 1 else None

    status = wait_for(finished, timeout=120, what=f"the queue to merge 3 and reject 1\n{op.output()}")
    main = git("rev-parse", "main", cwd=rig.remote)
    assert status["lastMergedCommit"] == main and status["queueLength"] == 0 and status["currentBatch"] == []
    assert status["counters"]["verificationRuns"] == len(played) >= 3
    assert {c["type"]: c["status"] for c in status["conditions"]}["Ready"] == "True"
    files = git("ls-tree", "--name-only", "main", "mods/", cwd=rig.remote).split()
    assert sorted(files) == ["mods/.keep", "mods/m0.txt", "mods/m1.txt", "mods/m3.txt"]
    with rig.ledger() as lg:
        beads = lg.beads()
    assert beads[mrs["m2"]].status == Status.BLOCKED
    assert "FAIL: bad line in m2.txt" in beads[beads[mrs["m2"]].metadata["source"]].comments[-1].text
    assert sum(b.type == BeadType.MERGE_BATCH for b in beads.values()) == 1

    # each verification is a Job owned by the MergeQueue, with no API token, under the restricted profile
    for job in verification_jobs(kubeapi):
        owner = job["metadata"]["ownerReferences"][0]
        assert (owner["kind"], owner["name"], owner["uid"]) == ("MergeQueue", "webapp", queue["metadata"]["uid"])
        pod = job["spec"]["template"]["spec"]
        assert pod["automountServiceAccountToken"] is False and pod["securityContext"]["runAsNonRoot"] is True
        assert pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True
    reasons = [e["reason"] for e in kubeapi.events("default", "webapp") if e["involvedObject"]["kind"] == "MergeQueue"]
    assert "Merged" in reasons and "Rejected" in reasons


def test_a_second_mergequeue_for_the_rig_is_marked_duplicate(kubeapi, operator, rig):
    operator()
    apply(kubeapi, rig)
    wait_for(lambda: ready(kubeapi, "webapp").get("reason") == "Merging", timeout=30, what="the first queue to run")
    kubeapi.create({"apiVersion": "gastown.dev/v1alpha1", "kind": "MergeQueue", "metadata": {"name": "second"},
                    "spec": {"rig": "webapp"}})

    # the first one keeps running; the second says why it does nothing
    condition = wait_for(lambda: (c := ready(kubeapi, "second")).get("reason") == "Duplicate" and c, timeout=30,
                         what="the second queue to be marked Duplicate")
    assert "merged by MergeQueue webapp" in condition["message"]
    assert kubeapi.get("mergequeues", "default", "second")["status"]["phase"] == "Invalid"
    assert ready(kubeapi, "webapp")["reason"] == "Merging"


def ready(kubeapi, name):
    status = (kubeapi.get("mergequeues", "default", name) or {}).get("status") or {}
    return next((c for c in status.get("conditions") or [] if c["type"] == "Ready"), {})


@pytest.mark.slow
def test_the_mergequeue_status_shows_the_bisection_while_and_after_it_runs(kubeapi, operator, rig, tmp_path):
    """A batch of four with m2 bad: round 1 runs the batch (red), round 2 its four singles at once, round 3
    the three accepted together. The status shows each round's runs (their groups, results and run IDs,
    those of the Jobs) while they run, and the finished batch with the merges and the rejection after."""
    mrs = {n: push_mr(rig, tmp_path, n, "BAD\n" if n == "m2" else "fine\n") for n in ("m0", "m1", "m2", "m3")}
    batch_of = [mrs[n] for n in ("m0", "m1", "m2", "m3")]
    op = operator()
    apply(kubeapi, rig)
    played: dict[str, int] = {}

    def status():
        return (kubeapi.get("mergequeues", "default", "webapp") or {}).get("status") or {}

    def until(predicate, what: str):
        try:
            return wait_for(predicate, timeout=90, what=what)
        except AssertionError as e:
            raise AssertionError(f"{e}; the status: {status()}\n{op.output()}") from None

    def running_round(n: int, jobs: int):
        """Round ``n`` shown as running, its runs those of the ``jobs`` Jobs not yet played."""
        unplayed = {j["metadata"]["labels"][VERIFICATION_LABEL] for j in verification_jobs(kubeapi)
                    if j["metadata"]["name"] not in played}
        batch = status().get("batch") or {}
        rounds = batch.get("rounds") or []
        if len(unplayed) != jobs or len(rounds) != n:
            return None
        runs = rounds[-1]["runs"]
        return batch if ({r["run"] for r in runs} == unplayed and {r["result"] for r in runs} == {"running"}) else None

    batch = until(lambda: running_round(1, 1), "round 1 running in the status")
    assert batch["mrs"] == batch_of and batch["phase"] == "verifying" and batch["round"] == 1
    assert batch["rounds"][0]["round"] == 1
    [run] = batch["rounds"][0]["runs"]
    assert run["group"] == batch_of and run["stackedOn"] == 0 and run["summary"] == "4 MR(s) on 0 accepted"
    assert status()["currentBatch"] == batch_of and status()["phase"] in ("Verifying", "Bisecting")

    play(kubeapi, tmp_path, played)
    batch = until(lambda: running_round(2, 4), "round 2 running in the status")
    [first] = batch["rounds"][0]["runs"]
    assert (first["run"], first["result"], first["gate"]) == (run["run"], "fail", "test")
    assert sorted(r["group"] for r in batch["rounds"][1]["runs"]) == [[m] for m in sorted(batch_of)]

    def finished():
        play(kubeapi, tmp_path, played)
        s = status()
        return s if (s.get("counters") or {}).get("merged") == 3 and (s.get("batch") or {}).get("phase") == "merged" \
            else None

    after = until(finished, "the batch to be merged")
    batch = after["batch"]
    assert after["currentBatch"] == [] and batch["mrs"] == batch_of
    assert [sorted((tuple(r["group"]), r["result"]) for r in rnd["runs"]) for rnd in batch["rounds"]] == [
        [(tuple(batch_of), "fail")], sorted(((m,), "fail" if m == mrs["m2"] else "pass") for m in batch_of),
        [((), "pass")]]
    assert [r["run"] for rnd in batch["rounds"] for r in rnd["runs"]] != [] and \
        {r["run"] for rnd in batch["rounds"] for r in rnd["runs"]} == \
        {j["metadata"]["labels"][VERIFICATION_LABEL] for j in verification_jobs(kubeapi)}
    last = batch["rounds"][2]["runs"][0]
    assert last["group"] == [] and last["stackedOn"] == 3 and last["summary"] == "the 3 accepted together"
    assert batch["accepted"] == [mrs["m0"], mrs["m1"], mrs["m3"]] and batch["rejected"] == [mrs["m2"]]
    recent = {r["mr"]: r for r in after["recent"]}
    assert recent[mrs["m2"]]["outcome"] == "rejected" and "test" in recent[mrs["m2"]]["reason"]
    main = git("rev-parse", "main", cwd=rig.remote)
    assert {recent[mrs[n]]["outcome"] for n in ("m0", "m1", "m3")} == {"merged"}
    assert {main.startswith(recent[mrs[n]]["commit"]) for n in ("m0", "m1", "m3")} == {True}
    assert recent[mrs["m0"]]["title"] == "Merge polecat/cat-m0/m0"
