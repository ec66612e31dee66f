"""The namespace's quotas against the pods the operator writes: the API server counts a pod
against a quota whose scopes it matches (Terminating: the pod's own spec has activeDeadlineSeconds;
NotTerminating: it has none), and refuses a pod that would take a quota past its hard count. The
API double enforces no quota, so these are checked here on the specs themselves (and on a real
cluster by tests/e2e/test_kind.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gastown.api import RigSpec
from gastown.api.common import RuntimeSpec
from gastown.kube.rig_handlers import (
    QUOTA_JOBS,
    QUOTA_RUNS,
    QUOTA_SESSIONS,
    RigEntry,
    quotas,
    runtimes_configmap,
)
from gastown.runtimes.kubernetes import (
    JobRequest,
    VerifyRequest,
    dog_cronjob,
    session_job,
    verification_job,
)

RIG = RigSpec.model_validate({"gitUrl": "https://git.example.com/webapp.git", "maxPolecats": 2})
RIGS = [RigEntry("webapp", "uid-w", 2), RigEntry("api", "uid-a", 3, parallel_verifications=6)]


def matches(quota: dict, pod: dict) -> bool:
    """Whether the API server counts ``pod`` (a pod spec) against ``quota``: its scopes, as
    kube-apiserver's quota evaluator reads them."""
    terminating = pod.get("activeDeadlineSeconds") is not None
    for scope in quota["spec"].get("scopes", []):
        if scope == "Terminating" and not terminating or scope == "NotTerminating" and terminating:
            return False
    return "pods" in quota["spec"]["hard"]


def by_name(objs: list[dict]) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in objs}


def session_pod(polecat: str = "furiosa", **kw) -> dict:
    req = JobRequest(namespace="team-a", rig="webapp", rig_spec=RIG, polecat=polecat, polecat_uid="uid-1",
                     bead="wa-1", count=1, runtime=RuntimeSpec(preset="script", args=["true"]), **kw)
    return session_job(req)["spec"]["template"]["spec"]


def other_pods() -> dict[str, dict]:
    mayor = session_pod(polecat="mayor", mayor_for=("team-a/c", "c", "uid-c"))
    verify = verification_job(VerifyRequest(namespace="team-a", rig="webapp", rig_spec=RIG, batch="gt-b", run={},
                                            ident="x" * 16, attempt=0, ref="refs/x", owner={}))
    dogs = {dog: dog_cronjob("team-a", "webapp", "uid-w", RIG, dog=dog)["spec"]["jobTemplate"]["spec"]["template"]["spec"]
            for dog in ("prune", "compact")}
    return {"mayor": mayor, "verification": verify["spec"]["template"]["spec"], **dogs}


def test_every_session_pod_counts_against_the_session_quota_and_no_other_pod_does():
    q = by_name(quotas("team-a", RIGS))
    pod = session_pod()
    assert pod["activeDeadlineSeconds"] == RIG.session_deadline_seconds + 600  # the Job's, on the pod
    assert matches(q[QUOTA_SESSIONS], pod) and not matches(q[QUOTA_RUNS], pod)
    for what, other in other_pods().items():
        assert not matches(q[QUOTA_SESSIONS], other), what
        assert matches(q[QUOTA_RUNS], other), what


def test_the_session_quota_is_exactly_the_rigs_limits():
    q = by_name(quotas("team-a", RIGS))
    assert q[QUOTA_SESSIONS]["spec"] == {"hard": {"pods": "5"}, "scopes": ["Terminating"]}  # 2 + 3
    # per rig: its queue's parallel verifications, two Dogs, a Mayor; and 4 for the operator's replicas
    assert q[QUOTA_RUNS]["spec"] == {"hard": {"pods": str((4 + 2 + 1) + (6 + 2 + 1) + 4)}, "scopes": ["NotTerminating"]}
    assert q[QUOTA_JOBS]["spec"] == {"hard": {"count/jobs.batch": str((5 + 20) * 4)}}


@pytest.mark.parametrize("limit", [1, 2, 5])
def test_a_session_pod_beyond_the_limit_is_refused(limit):
    """As the API server admits pods: each session pod takes one of the quota's; the one past it
    is refused, whatever the operator thinks."""
    (sessions,) = [x for x in quotas("team-a", [RigEntry("webapp", "uid-w", limit)])
                   if x["metadata"]["name"] == QUOTA_SESSIONS]
    hard, used = int(sessions["spec"]["hard"]["pods"]), 0
    admitted = []
    for i in range(limit + 1):
        pod = session_pod(polecat=f"p{i}")
        if matches(sessions, pod) and used + 1 > hard:
            continue  # 403 exceeded quota
        used += matches(sessions, pod)
        admitted.append(i)
    assert admitted == list(range(limit))


def test_what_the_rigs_share_is_owned_by_each_of_them(tmp_path: Path):
    owners = [{"apiVersion": "gastown.dev/v1alpha1", "kind": "Rig", "name": "api", "uid": "uid-a"},
              {"apiVersion": "gastown.dev/v1alpha1", "kind": "Rig", "name": "webapp", "uid": "uid-w"}]
    for quota in quotas("team-a", RIGS):
        assert quota["metadata"]["ownerReferences"] == owners  # none the controller: GC waits for the last
    runtimes = tmp_path / "runtimes.yaml"
    runtimes.write_text("runtimes: {}\n")
    copy = runtimes_configmap("team-a", "gt-gastown-runtimes", runtimes, RIGS)
    assert copy["metadata"]["ownerReferences"] == owners
    assert copy["metadata"]["name"] == "gt-gastown-runtimes-agents"  # never the release's own ConfigMap
    assert {"name": "runtimes", "configMap": {"name": "gt-gastown-runtimes-agents"}} in \
        session_pod(runtimes_configmap="gt-gastown-runtimes")["volumes"]
