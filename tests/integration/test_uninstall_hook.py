"""The chart's pre-delete hook, run as it is rendered: its Job's own command, against the API double,
with only the rights its Role gives (helm template renders both; tests/unit/test_chart.py checks
the manifests themselves)."""

from __future__ import annotations

import os
import subprocess

import yaml

from gastown.kube import rbac

from conftest import GT, ROOT

MANAGED = {"app.kubernetes.io/managed-by": "gastown-operator"}


def hook(*values: str) -> tuple[list[str], set[tuple[str, str, str]]]:
    """The hook Job's argv and the rules of the role bound to its account."""
    proc = subprocess.run([str(ROOT / ".venv" / "bin" / "helm"), "template", "gt", str(ROOT / "charts" / "gastown"),
                           "--namespace", "gastown-system", *values], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    docs = [d for d in yaml.safe_load_all(proc.stdout) if d and d["metadata"]["name"] == "gt-gastown-uninstall"]
    (job,) = [d for d in docs if d["kind"] == "Job"]
    rules = {(v, g, r) for d in docs if d["kind"] in ("ClusterRole", "Role") for rule in d["rules"]
             for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}
    return job["spec"]["template"]["spec"]["containers"][0]["command"], rules


def made_by_the_operator(kubeapi, ns: str) -> None:
    """gastown's objects with the finalizer an older operator left, and one object of each kind the operator makes."""
    kubeapi.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    for kind in ("Rig", "Convoy", "MergeQueue", "Polecat"):
        kubeapi.create({"apiVersion": "gastown.dev/v1alpha1", "kind": kind, "metadata": {
            "name": "webapp", "namespace": ns, "finalizers": ["gastown.dev/finalizer"]}, "spec": {}})
    kubeapi.create({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {
        "name": "heartbeat", "namespace": ns, "labels": {"app.kubernetes.io/component": "heartbeat"}}})
    for api, kind in (("batch/v1", "CronJob"), ("batch/v1", "Job"), ("v1", "ServiceAccount"),
                      ("rbac.authorization.k8s.io/v1", "Role"), ("rbac.authorization.k8s.io/v1", "RoleBinding"),
                      ("v1", "ResourceQuota"), ("v1", "ConfigMap"), ("networking.k8s.io/v1", "NetworkPolicy")):
        kubeapi.create({"apiVersion": api, "kind": kind, "metadata": {"name": f"gastown-{kind.lower()}",
                                                                      "namespace": ns, "labels": MANAGED}})


def run_hook(kubeapi, kubeconfig, argv: list[str]) -> set[tuple[str, str, str]]:
    """Run ``argv`` (gt ...) as the hook's pod would; the (verb, group, resource) it called."""
    since = len(kubeapi.requests)
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    proc = subprocess.run([GT, *argv[1:]], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    calls, kubeapi.requests = kubeapi.requests[since:], kubeapi.requests[:since]  # the fixture checks the operator's
    mine, kubeapi.requests = kubeapi.requests, calls
    try:
        return kubeapi.verbs()
    finally:
        kubeapi.requests = mine


def test_the_hooks_command_frees_every_namespace_with_exactly_the_rights_its_role_gives(kubeapi, kubeconfig):
    made_by_the_operator(kubeapi, "team-a")
    argv, rules = hook()
    called = run_hook(kubeapi, kubeconfig, argv)
    assert called <= rules, sorted(called - rules)  # nothing refused on a cluster
    # and nothing granted that it does not use, but deleting the HOME claims (--delete-home-claims)
    assert rules - called == {("delete", "", "persistentvolumeclaims")}
    assert rules == rbac.triples(rbac.UNINSTALL)
    assert kubeapi.get("rigs", "team-a", "webapp")["metadata"].get("finalizers") in (None, [])
    assert kubeapi.list("cronjobs", "team-a") == [] and kubeapi.list("networkpolicies", "team-a") == []


def test_the_hook_of_a_release_watching_some_namespaces_stays_in_them(kubeapi, kubeconfig):
    made_by_the_operator(kubeapi, "team-a")
    made_by_the_operator(kubeapi, "elsewhere")
    argv, rules = hook("--set", "watchNamespaces={team-a}")
    called = run_hook(kubeapi, kubeconfig, argv)
    assert called <= rules, sorted(called - rules)
    assert kubeapi.list("cronjobs", "team-a") == []
    assert kubeapi.list("cronjobs", "elsewhere")  # another release's (or nobody's) namespace: untouched
    assert kubeapi.get("rigs", "elsewhere", "webapp")["metadata"]["finalizers"] == ["gastown.dev/finalizer"]
