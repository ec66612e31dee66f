"""The Dogs' CronJobs: `gt dog run` on the Rig's schedule, valid Kubernetes, restricted pods."""

from __future__ import annotations

import kubernetes_validate
import pytest

from gastown.api import RigSpec
from gastown.runtimes.kubernetes import dog_cronjob, dog_name

KUBE_VERSION = "1.31.0"
RIG = RigSpec.model_validate({"gitUrl": "https://git.example.com/webapp.git", "defaultBranch": "trunk",
                              "credentialsSecret": {"name": "webapp-git"},
                              "dogs": {"compact": {"schedule": "@weekly"}, "retainDays": 30}})


@pytest.mark.parametrize("dog", ["prune", "compact"])
def test_the_cronjob_is_valid_kubernetes_and_runs_gt_dog(dog):
    cron = dog_cronjob("team-a", "webapp", "rig-1", RIG, dog=dog, image="registry.local/gastown-agent:1")
    kubernetes_validate.validate(cron, KUBE_VERSION, strict=True)
    spec = cron["spec"]
    assert spec["schedule"] == {"prune": "17 * * * *", "compact": "@weekly"}[dog]
    assert spec["timeZone"] == "Etc/UTC" and spec["concurrencyPolicy"] == "Forbid"
    assert cron["metadata"]["ownerReferences"] == [{"apiVersion": "gastown.dev/v1alpha1", "kind": "Rig",
                                                   "name": "webapp", "uid": "rig-1", "controller": True,
                                                   "blockOwnerDeletion": True}]
    job = spec["jobTemplate"]["spec"]
    assert job["backoffLimit"] == 1 and job["activeDeadlineSeconds"] == 1800 and job["ttlSecondsAfterFinished"]
    pod = job["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False and pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    assert container["command"] == ["gt", "dog", "run", dog, "--rig", RIG.git_url, "--target", "trunk",
                                    "--retain-days", "30"]
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] and not sc["allowPrivilegeEscalation"] and sc["capabilities"] == {"drop": ["ALL"]}
    env = {e["name"]: e for e in container["env"]}
    assert env["GIT_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "webapp-git"  # by reference, never a value
    assert spec["jobTemplate"]["metadata"]["labels"]["app.kubernetes.io/component"] == "dog"


def test_names_leave_room_for_the_jobs_suffix():
    name = dog_name("a-very-long-rig-name-that-goes-on-and-on-and-on-forever", "compact")
    assert len(name) <= 52 and name.endswith("-compact") and not name.startswith("-")
