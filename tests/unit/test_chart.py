"""The Helm chart, rendered by a real helm: Kubernetes schemas, least-privilege RBAC, the Deployment."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from gastown.kube import rbac
from gastown.runtimes.definition import RuntimeDef

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "gastown"
KUBE_VERSION = "1.31.0"
NOT_IN_CORE = {"ServiceMonitor"}  # a CRD: checked by hand below


def helm() -> str:
    found = os.environ.get("GT_HELM") or (str(ROOT / ".venv" / "bin" / "helm")
                                         if (ROOT / ".venv" / "bin" / "helm").exists() else shutil.which("helm"))
    if not found:
        pytest.fail("no helm: `make venv` installs one (scripts/fetch_helm.py)")
    return found


def template(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([helm(), "template", "gt", str(CHART), "--namespace", "gastown-system",
                           "--kube-version", KUBE_VERSION, *args], capture_output=True, text=True, timeout=60)


def render(*args: str) -> list[dict]:
    proc = template(*args)
    assert proc.returncode == 0, proc.stderr
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def by_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


def installed(docs: list[dict]) -> list[dict]:
    """The release's own objects, without its hooks' (tests, uninstall)."""
    return [d for d in docs if "helm.sh/hook" not in (d["metadata"].get("annotations") or {})]


EVERYTHING = ("--set", "watchNamespaces={team-a,team-b}", "--set", "serviceMonitor.enabled=true",
              "--set", "replicas=1", "--set", "logLevel=debug", "--set", "image.tag=1.2.3",
              "--set-json", 'runtimes={"mycli": {"command": ["mycli", "run"], "promptMode": "file"}}',
              "--set-json", 'extraEnv=[{"name": "HTTPS_PROXY", "value": "http://proxy:3128"}]')


@pytest.mark.parametrize("args", [(), EVERYTHING], ids=["defaults", "everything-on"])
def test_rendered_manifests_are_valid_kubernetes(args):
    docs = render(*args)
    for doc in docs:
        if doc["kind"] in NOT_IN_CORE:
            assert doc["apiVersion"] == "monitoring.coreos.com/v1" and doc["metadata"]["name"]
            continue
        kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
        labels = doc["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "gastown" and labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["app.kubernetes.io/instance"] == "gt" and labels["helm.sh/chart"] == "gastown-0.1.0"


def rules_of(role: dict) -> set[tuple[str, str, str]]:
    return {(v, g, r) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]
            for v in rule["verbs"]}


def test_watching_every_namespace_is_one_cluster_role_with_exactly_the_operators_rules():
    docs = installed(render())
    (role,) = by_kind(docs, "ClusterRole")
    assert rules_of(role) == rbac.triples(rbac.NAMESPACED + rbac.CLUSTER)
    (binding,) = by_kind(docs, "ClusterRoleBinding")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "gt-gastown", "namespace": "gastown-system"}]
    assert all("*" not in verb for rule in role["rules"] for verb in rule["verbs"] + rule["resources"])
    assert [r["metadata"]["name"] for r in by_kind(docs, "Role")] == ["gt-gastown-leader"]  # the Lease's only


def test_watching_some_namespaces_is_a_role_in_each_and_a_small_cluster_role():
    docs = installed(render("--set", "watchNamespaces={team-a,team-b}"))
    (cluster_role,) = by_kind(docs, "ClusterRole")
    assert rules_of(cluster_role) == rbac.triples(rbac.CLUSTER)
    roles = [r for r in by_kind(docs, "Role") if r["metadata"]["name"] == "gt-gastown"]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    assert all(rules_of(r) == rbac.triples(rbac.NAMESPACED) for r in roles)
    bindings = [b for b in by_kind(docs, "RoleBinding") if b["metadata"]["name"] == "gt-gastown"]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    (deployment,) = by_kind(docs, "Deployment")
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--namespace=team-a" in args and "--namespace=team-b" in args and "--all-namespaces" not in args


def test_the_operator_deployment():
    (deployment,) = by_kind(render(), "Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] == 2 and spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["serviceAccountName"] == "gt-gastown"
    (container,) = pod["containers"]
    assert container["image"] == "gastown/operator:0.1.0"
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["resources"]["limits"]["memory"] and container["resources"]["requests"]["cpu"]
    assert "--all-namespaces" in container["args"] and "--lease-name=gt-gastown" in container["args"]
    assert "--lease-duration=10" in container["args"] and "--standalone" not in container["args"]
    assert "--liveness=http://0.0.0.0:8080/healthz" in container["args"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    refs = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in container["env"] if "valueFrom" in e}
    assert refs == {"POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace"}  # the Lease's holder and place
    assert env["GT_AGENT_IMAGE"] == "gastown/agent:0.1.0" and env["GT_RUNTIMES_CONFIGMAP"] == "gt-gastown-runtimes"
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert {"/var/cache/gastown", "/tmp", "/home/gastown", "/etc/gastown/runtimes"} <= mounts


def test_the_operator_is_ready_on_readyz_and_alive_on_healthz():
    """/readyz answers 200 only on the leader once kopf runs, or on a standby that sees a live
    leader (gastown.kube.health; tests/integration/test_operator_failover.py); /healthz as before."""
    (deployment,) = by_kind(render(), "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    probe = container["readinessProbe"]
    assert probe["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert {"name": "http", "containerPort": 8080, "protocol": "TCP"} in container["ports"]
    assert "--liveness=http://0.0.0.0:8080/healthz" in container["args"]  # the server of both, on that port
    assert probe["periodSeconds"] > 0 and probe["timeoutSeconds"] <= probe["periodSeconds"]
    # a lost Lease shows within the lease's duration (10 s): the replica exits then anyway
    assert probe["periodSeconds"] * probe["failureThreshold"] <= 10


def test_the_leader_lease_role_is_least_privilege_in_the_release_namespace():
    docs = render("--set", "watchNamespaces={team-a}")
    (role,) = [r for r in by_kind(docs, "Role") if r["metadata"]["name"] == "gt-gastown-leader"]
    assert role["metadata"]["namespace"] == "gastown-system"
    assert rules_of(role) == rbac.triples(rbac.LEADER)
    # create cannot be limited to a name; get, update and delete (a clean stop) are, to the Lease it is given
    assert role["rules"] == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "resourceNames": ["gt-gastown"],
         "verbs": ["get", "update", "delete"]}]
    (binding,) = [b for b in by_kind(docs, "RoleBinding") if b["metadata"]["name"] == "gt-gastown-leader"]
    assert binding["roleRef"]["name"] == "gt-gastown-leader" and binding["metadata"]["namespace"] == "gastown-system"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "gt-gastown", "namespace": "gastown-system"}]
    (deployment,) = by_kind(docs, "Deployment")
    assert "--lease-name=gt-gastown" in deployment["spec"]["template"]["spec"]["containers"][0]["args"]


def test_two_replicas_have_a_disruption_budget_of_one_and_one_replica_none():
    docs = render()
    (pdb,) = by_kind(docs, "PodDisruptionBudget")
    (deployment,) = by_kind(docs, "Deployment")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    assert not by_kind(render("--set", "replicas=1"), "PodDisruptionBudget")
    assert by_kind(render("--set", "replicas=1"), "Deployment")[0]["spec"]["replicas"] == 1


def test_the_runtimes_configmap_named_to_the_operator_is_the_releases_own():
    for release in ("gt", "other"):
        proc = subprocess.run([helm(), "template", release, str(CHART), "--namespace", "ns",
                               "--kube-version", KUBE_VERSION], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        docs = [d for d in yaml.safe_load_all(proc.stdout) if d]
        (configmap,) = by_kind(docs, "ConfigMap")
        (deployment,) = by_kind(docs, "Deployment")
        pod = deployment["spec"]["template"]["spec"]
        env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
        assert env["GT_RUNTIMES_CONFIGMAP"] == configmap["metadata"]["name"] == f"{release}-gastown-runtimes"
        assert {"name": "runtimes", "configMap": {"name": configmap["metadata"]["name"]}} in pod["volumes"]


def names_written(release: str, *args: str) -> set[tuple[str, str | None, str]]:
    """(kind, namespace, name) of every object a release of that name would own (helm template
    leaves out crds/: those are shared by design), its `helm test` hook included."""
    proc = subprocess.run([helm(), "template", release, str(CHART), "--namespace", "gastown-system",
                           "--kube-version", KUBE_VERSION, *args], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    docs = [d for d in yaml.safe_load_all(proc.stdout) if d]
    assert not by_kind(docs, "CustomResourceDefinition")
    return {(d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]) for d in docs}


@pytest.mark.parametrize("first,second", [
    ((), ()),  # every default: two cluster-wide releases, each with its own Lease
    (("--set", "watchNamespaces={team-a}"), ("--set", "watchNamespaces={team-b}")),  # two towns
    (("--set", "watchNamespaces={team-a}", "--set", "replicas=1"),
     ("--set", "watchNamespaces={team-a}", "--set", "replicas=1")),  # one replica each, the e2e layout
], ids=["defaults", "two-towns", "single-replica"])
def test_two_releases_side_by_side_write_no_object_of_the_same_name(first, second):
    ours, theirs = names_written("gastown", *first), names_written("other", *second)
    cluster_scoped = {k for k, ns, _ in ours if ns is None}
    assert {"ClusterRole", "ClusterRoleBinding"} <= cluster_scoped  # the check covers them
    assert ours & theirs == set()


def test_the_values_of_kopf_peering_are_accepted_and_ignored():
    """`helm upgrade --reuse-values` of a release from before the Lease carries its peering values."""
    old = ("--set", "peering.enabled=true", "--set", "peering.name=gastown", "--set", "peering.priority=0",
           "--set", "peering.create=true")
    docs = render(*old)
    assert not [d for d in docs if d["apiVersion"].startswith("kopf.dev")]
    (deployment,) = by_kind(docs, "Deployment")
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert not [a for a in args if "peering" in a or "priority" in a] and "--lease-name=gt-gastown" in args


def test_one_replica_debug_and_custom_runtimes():
    docs = render(*EVERYTHING)
    (deployment,) = by_kind(docs, "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert "--verbose" in container["args"] and deployment["spec"]["replicas"] == 1
    assert container["image"] == "gastown/operator:1.2.3"
    assert {"name": "HTTPS_PROXY", "value": "http://proxy:3128"} in container["env"]
    (configmap,) = by_kind(docs, "ConfigMap")
    runtimes = yaml.safe_load(configmap["data"]["runtimes.yaml"])["runtimes"]
    assert RuntimeDef.model_validate(runtimes["mycli"]).prompt_mode == "file"
    (monitor,) = by_kind(docs, "ServiceMonitor")
    assert monitor["spec"]["endpoints"][0] == {"port": "metrics", "path": "/metrics", "interval": "30s"}
    (service,) = by_kind(docs, "Service")
    assert {"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"} in service["spec"]["ports"]
    assert {"name": "metrics", "containerPort": 9090, "protocol": "TCP"} in container["ports"]
    assert "--metrics-port=9090" in container["args"]


def test_helm_test_hook_probes_the_service():
    proc = subprocess.run([helm(), "template", "gt", str(CHART), "--namespace", "ns", "--show-only",
                           "templates/tests/test-liveness.yaml"], capture_output=True, text=True, timeout=60)
    pod = yaml.safe_load(proc.stdout)
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert "http://gt-gastown.ns.svc:8080/healthz" in pod["spec"]["containers"][0]["command"][2]
    kubernetes_validate.validate(pod, KUBE_VERSION, strict=True)


@pytest.mark.parametrize("args,error", [
    (("--set", "workers=0"), "workers"),
    (("--set", "replicas=0"), "replicas"),
    (("--set", "leaderElection.leaseDurationSeconds=1"), "leaseDurationSeconds"),
    (("--set", "leader=true"), "Additional property leader is not allowed"),
    (("--set", "watchNamespaces={Team_A}"), "watchNamespaces"),
    (("--set", "service.type=Ingress"), "service.type"),
    (("--set", "logLevel=loud"), "logLevel"),
    (("--set-json", 'runtimes={"x": {"args": []}}'), "command"),
])
def test_the_values_schema_rejects_bad_values(args, error):
    proc = template(*args)
    assert proc.returncode != 0 and error in proc.stderr, proc.stderr


def test_the_values_file_documents_every_key_the_schema_knows():
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    deprecated = {k for k, v in schema["properties"].items() if v.get("deprecated")}
    assert deprecated == {"peering"}  # accepted for upgrades, ignored, not in values.yaml
    assert set(values) == set(schema["properties"]) - deprecated
    lines = (CHART / "values.yaml").read_text().splitlines()
    starts = [n for n, line in enumerate(lines) if line[:1].isalpha()]
    for start, end in zip(starts, [*starts[1:], len(lines)], strict=True):  # a comment in its paragraph
        paragraph = start
        while paragraph > 0 and lines[paragraph - 1].strip():
            paragraph -= 1
        assert any("#" in line for line in lines[paragraph:end]), lines[start]


def test_the_runtimes_copy_the_operator_writes_is_release_scoped_and_never_the_charts_own():
    """The operator copies the release's runtimes ConfigMap into each rig namespace: the copy's name
    comes from the release's, so two releases never write one copy, and differs from every name the
    chart writes, so a Rig in the release's namespace never overwrites (or comes to own) Helm's."""
    from gastown.runtimes.kubernetes import runtimes_copy_name

    copies = {}
    for release in ("gastown", "other"):
        written = names_written(release)
        (deployment,) = [n for k, _, n in written if k == "Deployment"]
        configmap = f"{deployment}-runtimes"  # GT_RUNTIMES_CONFIGMAP (checked above)
        copies[release] = runtimes_copy_name(configmap)
        assert ("ConfigMap", "gastown-system", configmap) in written
        assert copies[release] not in {n for k, _, n in written if k == "ConfigMap"}
    assert copies["gastown"] != copies["other"]


def test_the_replicas_prefer_distinct_nodes_and_values_override_it():
    """Two replicas on one node would both go with it: the scheduler is asked to spread them by
    hostname (preferred: a one-node cluster still runs both)."""
    (deployment,) = by_kind(render(), "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (term,) = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert term["podAffinityTerm"]["labelSelector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    assert 1 <= term["weight"] <= 100
    required = by_kind(render("--set", "podAntiAffinity=required"), "Deployment")[0]["spec"]["template"]["spec"]
    (rule,) = required["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert rule["topologyKey"] == "kubernetes.io/hostname"
    assert "affinity" not in by_kind(render("--set", "podAntiAffinity=none"), "Deployment")[0]["spec"]["template"]["spec"]
    assert "affinity" not in by_kind(render("--set", "replicas=1"), "Deployment")[0]["spec"]["template"]["spec"]
    # an affinity of the user's own: kept, and its podAntiAffinity replaces the chart's
    zone = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]}}}
    mixed = by_kind(render("--set-json", f"affinity={json.dumps(zone)}"), "Deployment")[0]["spec"]["template"]["spec"]
    assert mixed["affinity"]["nodeAffinity"] == zone["nodeAffinity"] and "podAntiAffinity" in mixed["affinity"]
    theirs = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"topologyKey": "topology.kubernetes.io/zone", "labelSelector": {"matchLabels": {"x": "y"}}}]}}
    own = by_kind(render("--set-json", f"affinity={json.dumps(theirs)}"), "Deployment")[0]["spec"]["template"]["spec"]
    assert own["affinity"] == theirs
    assert "podAntiAffinity" in template("--set", "podAntiAffinity=sometimes").stderr


def hook_docs(*args: str) -> list[dict]:
    return [d for d in render(*args) if "helm.sh/hook" in (d["metadata"].get("annotations") or {})
            and "pre-delete" in d["metadata"]["annotations"]["helm.sh/hook"]]


def test_helm_uninstall_runs_gt_operator_uninstall_in_a_bounded_restricted_job():
    docs = hook_docs()
    (job,) = by_kind(docs, "Job")
    assert job["metadata"]["namespace"] == "gastown-system" and job["metadata"]["name"] == "gt-gastown-uninstall"
    annotations = job["metadata"]["annotations"]
    assert set(annotations["helm.sh/hook-delete-policy"].split(",")) >= {"before-hook-creation", "hook-succeeded"}
    spec = job["spec"]
    assert 0 < spec["activeDeadlineSeconds"] <= 300 and spec["backoffLimit"] <= 1
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == "gastown/operator:0.1.0"
    argv = container["command"] + container.get("args", [])
    assert argv[:3] == ["gt", "operator", "uninstall"] and "-A" in argv
    timeout = int(argv[argv.index("--timeout") + 1])
    assert timeout < spec["activeDeadlineSeconds"]  # gt gives up (and says why) before the Job is killed
    # restricted Pod Security Standard
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = container["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["readOnlyRootFilesystem"] is True and pod["restartPolicy"] == "Never"
    # its own account, not the operator's, bound before the Job runs
    assert pod["serviceAccountName"] == "gt-gastown-uninstall"
    weights = {d["kind"]: int(d["metadata"]["annotations"].get("helm.sh/hook-weight", "0")) for d in docs}
    assert all(weights[k] < weights["Job"] for k in ("ServiceAccount", "ClusterRole", "ClusterRoleBinding"))
    for doc in docs:
        kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
        assert "before-hook-creation" in doc["metadata"]["annotations"]["helm.sh/hook-delete-policy"]


def test_the_uninstall_hooks_rules_are_exactly_what_gt_operator_uninstall_calls():
    """rbac.UNINSTALL is checked against the calls `gt operator uninstall` makes on the API double
    (tests/integration/test_operator_lifecycle.py); the hook's account gets exactly those, bound
    only while the hook runs (the hook's own resources, deleted with it)."""
    docs = hook_docs()
    (role,) = by_kind(docs, "ClusterRole")
    assert role["metadata"]["name"] == "gt-gastown-uninstall" and rules_of(role) == rbac.triples(rbac.UNINSTALL)
    (binding,) = by_kind(docs, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == "gt-gastown-uninstall"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "gt-gastown-uninstall",
                                    "namespace": "gastown-system"}]
    # watching some namespaces: a Role in each, and the Job names them
    some = hook_docs("--set", "watchNamespaces={team-a,team-b}")
    assert not by_kind(some, "ClusterRole") and not by_kind(some, "ClusterRoleBinding")
    roles = by_kind(some, "Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    assert all(rules_of(r) == rbac.triples(rbac.UNINSTALL) for r in roles)
    assert sorted(b["metadata"]["namespace"] for b in by_kind(some, "RoleBinding")) == ["team-a", "team-b"]
    (job,) = by_kind(some, "Job")
    argv = job["spec"]["template"]["spec"]["containers"][0]["command"]
    assert "-A" not in argv and argv[argv.index("-n") + 1] == "team-a" and "team-b" in argv


def test_the_uninstall_hook_is_release_scoped_and_can_be_switched_off():
    ours, theirs = names_written("gastown"), names_written("other")
    hooks = {n for k, _, n in ours if n.endswith("-uninstall")}
    assert hooks == {"gastown-uninstall"}  # the Job, its account, its ClusterRole and binding
    assert ours & theirs == set()
    assert not hook_docs("--set", "uninstallHook.enabled=false")


def test_the_dashboard_on_the_operators_service():
    docs = render()
    (deployment,) = by_kind(docs, "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert not [a for a in container["args"] if a.startswith("--dashboard-port")]  # off by default
    docs = render("--set", "dashboard.enabled=true", "--set", "dashboard.port=8700",
                  "--set", "dashboard.tokenSecret.name=dash", "--set", "dashboard.tokenSecret.key=tok")
    (deployment,) = by_kind(docs, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert "--dashboard-port=8700" in container["args"]
    assert {"name": "dashboard", "containerPort": 8700, "protocol": "TCP"} in container["ports"]
    (service,) = by_kind(docs, "Service")
    assert {"name": "dashboard", "port": 8700, "targetPort": "dashboard", "protocol": "TCP"} in service["spec"]["ports"]
    # the token for actions: the Secret's key mounted where the operator reads it
    from gastown.dashboard.cluster import TOKEN_FILE

    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "dashboard-token"]
    assert mount["mountPath"] == str(TOKEN_FILE.parent) and mount["readOnly"] is True
    (volume,) = [v for v in pod["volumes"] if v["name"] == "dashboard-token"]
    assert volume["secret"]["secretName"] == "dash"
    assert volume["secret"]["items"] == [{"key": "tok", "path": TOKEN_FILE.name}]
    kubernetes_validate.validate(deployment, KUBE_VERSION, strict=True)
    # read-only without a Secret: nothing mounted
    (plain,) = by_kind(render("--set", "dashboard.enabled=true"), "Deployment")
    assert "dashboard-token" not in {v["name"] for v in plain["spec"]["template"]["spec"]["volumes"]}
