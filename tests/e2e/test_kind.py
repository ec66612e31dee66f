"""End to end on a real cluster (the one KUBECONFIG points at; `make kind-up kind-load e2e`).

It installs the chart (release gastown-e2e, watching one fresh namespace), starts a git server
in that namespace holding a sample rig, applies a Rig, a MergeQueue and a Convoy of explicit
beads worked by the `script` runtime, and waits until the merge queue merged them to main and
the convoy is Done; then a session-shaped pod beyond the namespace's limits is refused by the
API server (the gastown-sessions quota). Everything it made is removed at the end, in the order
the README's uninstall section gives: gastown's custom resources while the operator still runs,
then the release (its pre-delete hook runs `gt operator uninstall`), then the namespace, which
must be gone within a minute. Other tests:

- `helm uninstall` with a Rig left in place: the hook leaves no gastown finalizer and nothing the
  operator made, its own Job and rights go, and the namespace is gone within a minute;
- the same with the hook off (`--no-hooks`), then `gt operator uninstall` by hand;
- the operator scaled to zero, a namespace of a Rig, a MergeQueue and a Convoy is deleted: gone
  within a minute.

test_failover.py has the restart and the leader's failover. Skipped, with the reason,
when no cluster answers. The images must be in the cluster: GT_E2E_IMAGE_TAG (default dev, as
`make kind-load` builds them).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
TAG = os.environ.get("GT_E2E_IMAGE_TAG", "dev")
GROUP, VERSION = "gastown.dev", "v1alpha1"


def _cluster():
    """The API clients, or the reason there are none."""
    try:
        from kubernetes import client, config

        config.load_kube_config()
        api = client.ApiClient()
        client.VersionApi(api).get_code(_request_timeout=5)
        return api
    except Exception as e:  # no kubeconfig, no server, no route: all mean "no cluster here"
        return f"no reachable Kubernetes cluster ({type(e).__name__}: {str(e).splitlines()[0][:160]})"


@pytest.fixture(scope="module")
def api():
    found = _cluster()
    if isinstance(found, str):
        print(f"e2e skipped: {found}")
        pytest.skip(found)
    return found


MANAGED = "app.kubernetes.io/managed-by=gastown-operator"
PLURALS = ("convoys", "mergequeues", "rigs", "polecats")  # gastown's namespaced kinds, the order to delete them
FINALIZER = "gastown.dev/finalizer"
HELM = str(ROOT / ".venv" / "bin" / "helm")


def _namespace(api) -> str:
    """A fresh namespace under the restricted profile (agent pods must pass it)."""
    from kubernetes import client

    name = f"gastown-e2e-{uuid.uuid4().hex[:6]}"
    client.CoreV1Api(api).create_namespace({"metadata": {"name": name, "labels": {
        "pod-security.kubernetes.io/enforce": "restricted"}}})
    return name


def _install(api, release: str, watch: str | None = None) -> str:
    """A fresh namespace, and a release in it watching just it (or just ``watch``)."""
    from kubernetes import client

    name = _namespace(api)
    try:
        subprocess.run([HELM, "upgrade", "--install", release, str(ROOT / "charts" / "gastown"),
                        "--namespace", name, "--set", f"watchNamespaces={{{watch or name}}}", "--set", f"image.tag={TAG}",
                        "--set", f"agentImage.tag={TAG}", "--set", "peering.enabled=false", "--wait",
                        "--timeout", "5m"], check=True)
    except BaseException:
        subprocess.run([HELM, "uninstall", release, "--namespace", name], check=False)
        client.CoreV1Api(api).delete_namespace(name)
        raise
    return name


def _gastown_objects(api, ns: str) -> list[tuple[str, dict]]:
    from kubernetes import client

    objects = client.CustomObjectsApi(api)
    return [(plural, item) for plural in PLURALS
            for item in objects.list_namespaced_custom_object(GROUP, VERSION, ns, plural)["items"]]


def _delete_gastown_objects(api, ns: str, timeout: float = 180) -> None:
    """Step 1 of the uninstall, the operator still running: delete every Convoy, MergeQueue and Rig
    (a Rig's Polecats, Jobs, CronJobs, claims and RBAC go with it) and wait until they are gone."""
    from kubernetes import client

    objects = client.CustomObjectsApi(api)
    for plural in PLURALS:
        objects.delete_collection_namespaced_custom_object(GROUP, VERSION, ns, plural)
    _wait(lambda: not _gastown_objects(api, ns), timeout, f"gastown's objects in {ns} to be deleted by the operator")


def _remove_finalizers(api, ns: str) -> list[str]:
    """The README's loop for an operator that is gone: a merge patch that drops every finalizer of
    gastown's objects in ``ns`` (kubectl patch --type=merge -p '{"metadata":{"finalizers":null}}')."""
    from kubernetes import client

    objects, patched = client.CustomObjectsApi(api), []
    for plural, obj in _gastown_objects(api, ns):
        if obj["metadata"].get("finalizers"):
            objects.patch_namespaced_custom_object(GROUP, VERSION, ns, plural, obj["metadata"]["name"],
                                                   {"metadata": {"finalizers": None}})
            patched.append(f"{plural}/{obj['metadata']['name']}")
    return patched


def _gt_uninstall(ns: str) -> str:
    """`gt operator uninstall -n ns`, as the README's step 3."""
    proc = subprocess.run([str(ROOT / ".venv" / "bin" / "gt"), "operator", "uninstall", "-n", ns, "--timeout", "60"],
                          capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _uninstall(api, release: str, ns: str, *flags: str) -> None:
    """`helm uninstall --wait` (its pre-delete hook first), then wait until the operator's pod has stopped too."""
    from kubernetes import client

    subprocess.run([HELM, "uninstall", release, "--namespace", ns, "--cascade", "foreground", "--wait",
                    "--timeout", "3m", *flags], check=True)
    selector = f"app.kubernetes.io/instance={release},app.kubernetes.io/component=operator"
    _wait(lambda: not client.CoreV1Api(api).list_namespaced_pod(ns, label_selector=selector).items, 120,
          f"the operator of {release} to stop")


def _namespace_gone(api, ns: str) -> bool:
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    try:
        client.CoreV1Api(api).read_namespace(ns)
    except ApiException as e:
        if e.status == 404:
            return True
        raise
    return False


def _delete_namespace_within_a_minute(api, ns: str) -> None:
    from kubernetes import client

    client.CoreV1Api(api).delete_namespace(ns)
    try:
        _wait(lambda: _namespace_gone(api, ns), 60, f"the namespace {ns} to be deleted")
    except AssertionError:
        left = [(p, o["metadata"]["name"], o["metadata"].get("finalizers")) for p, o in _gastown_objects(api, ns)]
        raise AssertionError(f"namespace {ns} still Terminating after 60s; gastown objects left: {left}") from None


@pytest.fixture(scope="module")
def namespace(api):
    name = _install(api, "gastown-e2e")
    try:
        yield name
    finally:
        # the README's uninstall: custom resources first, while the operator removes its finalizers
        try:
            _delete_gastown_objects(api, name)
        finally:
            try:
                _uninstall(api, "gastown-e2e", name)
            finally:
                _gt_uninstall(name)  # what the operator made, and any finalizer: even after a failure no namespace leaks
                _delete_namespace_within_a_minute(api, name)


GIT_SERVER = """\
set -e
mkdir -p /tmp/git && cd /tmp/git
git init -q --bare --initial-branch=main sample.git
git -C sample.git config daemon.receivepack true
git init -q --initial-branch=main /tmp/seed && cd /tmp/seed
echo '# sample' > README.md && git add README.md
git -c user.name=e2e -c user.email=e2e@example.com commit -qm seed
git push -q /tmp/git/sample.git main
exec git daemon --reuseaddr --export-all --enable=receive-pack --base-path=/tmp/git --port=9418 /tmp/git
"""


def _git_server(api, ns: str) -> str:
    from kubernetes import client

    labels = {"app": "gitserver"}
    security = {"allowPrivilegeEscalation": False, "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}}
    client.CoreV1Api(api).create_namespaced_pod(ns, {
        "metadata": {"name": "gitserver", "labels": labels},
        "spec": {"securityContext": {"runAsUser": 1000, "runAsGroup": 1000, "runAsNonRoot": True,
                                     "seccompProfile": {"type": "RuntimeDefault"}},
                 "containers": [{"name": "git", "image": f"gastown/agent:{TAG}", "command": ["sh", "-c", GIT_SERVER],
                                 "env": [{"name": "HOME", "value": "/tmp"}],
                                 "ports": [{"containerPort": 9418}], "securityContext": security,
                                 "readinessProbe": {"tcpSocket": {"port": 9418}, "periodSeconds": 2}}]}})
    client.CoreV1Api(api).create_namespaced_service(ns, {
        "metadata": {"name": "gitserver"},
        "spec": {"selector": labels, "ports": [{"port": 9418, "targetPort": 9418}]}})
    _wait(lambda: any(c.ready for c in (client.CoreV1Api(api).read_namespaced_pod("gitserver", ns).status
                                        .container_statuses or [])), 180, "the git server")
    return f"git://gitserver.{ns}.svc/sample.git"


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(2)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def test_a_convoy_of_explicit_beads_is_merged_on_a_real_cluster(api, namespace):
    from kubernetes import client

    objects = client.CustomObjectsApi(api)
    url = _git_server(api, namespace)

    def apply(plural: str, kind: str, name: str, spec: dict) -> None:
        objects.create_namespaced_custom_object(GROUP, VERSION, namespace, plural, {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": kind, "metadata": {"name": name}, "spec": spec})

    apply("rigs", "Rig", "sample", {
        "gitUrl": url, "maxPolecats": 2, "network": {"policy": False},
        "runtime": {"preset": "script", "args": ["sh", "-c", 'echo "$GT_BEAD" > "work-$GT_BEAD.txt"']},
        "verification": {"gates": {"test": ["sh", "-c", "ls work-*.txt"]}}})
    apply("mergequeues", "MergeQueue", "sample", {"rig": "sample", "fillWindowSeconds": 5})
    apply("convoys", "Convoy", "first", {"rig": "sample", "beads": [
        {"key": "one", "title": "The first file"},
        {"key": "two", "title": "The second file", "needs": ["one"]}]})

    def status(plural: str, name: str) -> dict:
        return objects.get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name).get("status") or {}

    _wait(lambda: status("rigs", "sample").get("phase") == "Ready", 120, "the Rig to be Ready")
    _wait(lambda: status("convoys", "first").get("phase") == "Done", 900, "the convoy to be Done")
    queue = status("mergequeues", "sample")
    assert queue["counters"]["merged"] == 2 and queue["counters"]["rejected"] == 0
    assert len(queue["lastMergedCommit"]) == 40

    # the Dogs: the API server took their CronJobs; one run of prune, as `kubectl create job --from`
    batch = client.BatchV1Api(api)
    cron = batch.read_namespaced_cron_job("gt-dog-sample-prune", namespace)
    assert cron.spec.schedule == "17 * * * *" and cron.spec.time_zone == "Etc/UTC"
    job = api.sanitize_for_serialization(cron.spec.job_template)
    job.update(apiVersion="batch/v1", kind="Job")
    job.setdefault("metadata", {})["name"] = "gt-dog-sample-prune-e2e"
    batch.create_namespaced_job(namespace, job)
    _wait(lambda: (batch.read_namespaced_job("gt-dog-sample-prune-e2e", namespace).status.succeeded or 0) >= 1,
          300, "a run of the prune Dog to succeed")


MADE = (("CoreV1Api", "service_account"), ("CoreV1Api", "resource_quota"), ("CoreV1Api", "config_map"),
        ("RbacAuthorizationV1Api", "role"), ("RbacAuthorizationV1Api", "role_binding"),
        ("NetworkingV1Api", "network_policy"), ("BatchV1Api", "cron_job"), ("BatchV1Api", "job"),
        ("CoordinationV1Api", "lease"))


def _unreachable_rig(objects, ns: str, name: str, *, policy: bool) -> None:
    """A Rig whose remote is nowhere: the operator still makes its quotas (and NetworkPolicy)."""
    objects.create_namespaced_custom_object(GROUP, VERSION, ns, "rigs", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "Rig", "metadata": {"name": name},
        "spec": {"gitUrl": f"git://nowhere.{ns}.svc/none.git", "maxPolecats": 1, "network": {"policy": policy},
                 "runtime": {"preset": "script", "args": ["true"]}}})


def _made_by_operator(api, ns: str) -> list[str]:
    """What carries the operator's managed-by label in ``ns`` (what `gt operator uninstall` deletes)."""
    from kubernetes import client

    return [f"{kind}/{o.metadata.name}" for group, kind in MADE
            for o in getattr(getattr(client, group)(api), f"list_namespaced_{kind}")(ns, label_selector=MANAGED).items]


def test_helm_uninstall_runs_the_hook_which_leaves_no_finalizer_and_nothing_the_operator_made(api):
    """`helm uninstall` with a Rig (and all the operator made for it) still in place: its pre-delete
    hook (`gt operator uninstall`) leaves no gastown finalizer and nothing the operator made, then
    the hook's own Job and rights go, and the namespace is gone within a minute of its deletion."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    objects = client.CustomObjectsApi(api)
    release = "gastown-e2e-hook"
    ns = _install(api, release)
    try:
        _unreachable_rig(objects, ns, "left", policy=True)
        _wait(lambda: {"resource_quota/gastown-sessions", "network_policy/gastown-left"} <= set(_made_by_operator(api, ns)),
              120, "the operator's quotas and NetworkPolicy for the Rig")
        _uninstall(api, release, ns)  # the hook runs first; helm fails if it fails
        assert [o["metadata"]["name"] for p, o in _gastown_objects(api, ns) if p == "rigs"] == ["left"]
        assert not [(p, o["metadata"]["name"]) for p, o in _gastown_objects(api, ns)
                    if any(f.startswith(f"{GROUP}/") for f in o["metadata"].get("finalizers") or [])]
        assert _made_by_operator(api, ns) == []
        hook = f"{release}-uninstall"
        assert not [j for j in client.BatchV1Api(api).list_namespaced_job(ns).items if j.metadata.name == hook]
        assert not [r for r in client.RbacAuthorizationV1Api(api).list_namespaced_role(ns).items
                    if r.metadata.name == hook]  # its rights lived only while it ran
        _delete_namespace_within_a_minute(api, ns)
    finally:
        if not _namespace_gone(api, ns):  # a failure above: leave nothing behind
            subprocess.run([HELM, "uninstall", release, "--namespace", ns, "--no-hooks"], check=False)
            _gt_uninstall(ns)
            with contextlib.suppress(ApiException):  # 409 when already Terminating
                client.CoreV1Api(api).delete_namespace(ns)


def test_a_rig_namespace_is_deleted_within_a_minute_with_the_operator_scaled_to_zero(api):
    """The operator stopped (its Deployment at 0 replicas), a namespace holding a Rig, a MergeQueue
    and a Convoy (and what the operator made for them) is deleted: nothing holds it (no finalizer
    waits for an operator), it is gone within a minute; the release then uninstalls cleanly."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    objects, core = client.CustomObjectsApi(api), client.CoreV1Api(api)
    release, rigs = "gastown-e2e-zero", _namespace(api)
    ns = _install(api, release, watch=rigs)
    try:
        spec = {"gitUrl": f"git://nowhere.{rigs}.svc/none.git", "maxPolecats": 1, "network": {"policy": False},
                "runtime": {"preset": "script", "args": ["true"]}}
        for plural, kind, body in (("rigs", "Rig", spec), ("mergequeues", "MergeQueue", {"rig": "held"}),
                                   ("convoys", "Convoy", {"rig": "held", "beads": [{"key": "a", "title": "A"}]})):
            objects.create_namespaced_custom_object(GROUP, VERSION, rigs, plural, {
                "apiVersion": f"{GROUP}/{VERSION}", "kind": kind, "metadata": {"name": "held"}, "spec": body})
        _wait(lambda: "resource_quota/gastown-sessions" in _made_by_operator(api, rigs), 120,
              "the operator to reconcile the Rig")
        deployment = next(d.metadata.name for d in client.AppsV1Api(api).list_namespaced_deployment(
            ns, label_selector=f"app.kubernetes.io/instance={release}").items)
        client.AppsV1Api(api).patch_namespaced_deployment_scale(deployment, ns, {"spec": {"replicas": 0}})
        selector = f"app.kubernetes.io/instance={release},app.kubernetes.io/component=operator"
        _wait(lambda: not core.list_namespaced_pod(ns, label_selector=selector).items, 120, "no operator pod")
        _delete_namespace_within_a_minute(api, rigs)
        _uninstall(api, release, ns)  # its hook finds nothing left in the deleted namespace
        _delete_namespace_within_a_minute(api, ns)
    finally:  # a failure above: leave nothing behind
        if not _namespace_gone(api, ns):
            subprocess.run([HELM, "uninstall", release, "--namespace", ns, "--no-hooks"], check=False)
        if not _namespace_gone(api, rigs):
            _gt_uninstall(rigs)
        for left in (rigs, ns):
            with contextlib.suppress(ApiException):  # 404 when gone, 409 when already Terminating
                core.delete_namespace(left)


def test_uninstalling_with_a_rig_in_place_then_gt_operator_uninstall_frees_the_namespace_within_a_minute(api):
    """`helm uninstall --no-hooks` (the hook turned off) with a Rig (and all the operator made for it)
    still in place, then `gt operator uninstall` by hand, then the namespace: gone within a minute,
    with no operator running."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    objects = client.CustomObjectsApi(api)
    release = "gastown-e2e-uninstall"
    ns = _install(api, release)
    try:
        _unreachable_rig(objects, ns, "orphan", policy=False)
        core = client.CoreV1Api(api)
        _wait(lambda: [q for q in core.list_namespaced_resource_quota(ns).items
                       if q.metadata.name == "gastown-sessions"], 120, "the operator's quotas for the Rig")
        rig = objects.get_namespaced_custom_object(GROUP, VERSION, ns, "rigs", "orphan")
        assert not rig["metadata"].get("finalizers"), "gastown puts no finalizer on a Rig"
        _uninstall(api, release, ns, "--no-hooks")
        assert [o["metadata"]["name"] for p, o in _gastown_objects(api, ns) if p == "rigs"] == ["orphan"]
        out = _gt_uninstall(ns)
        assert f"{ns}/resourcequotas/gastown-sessions" in out and "ledgers in git" in out
        assert not core.list_namespaced_resource_quota(ns).items
        assert not core.list_namespaced_service_account(ns, label_selector=MANAGED).items
        _delete_namespace_within_a_minute(api, ns)
    finally:
        if not _namespace_gone(api, ns):  # a failure above: leave nothing behind
            subprocess.run([HELM, "uninstall", release, "--namespace", ns], check=False)
            _remove_finalizers(api, ns)
            with contextlib.suppress(ApiException):  # 409 when already Terminating
                client.CoreV1Api(api).delete_namespace(ns)


def test_a_session_pod_beyond_the_limit_is_refused_by_the_api_server(api, namespace):
    """The quota backs the limit on a real API server: with the namespace's rigs at maxPolecats 2
    and 1 (the convoy test's Rig, and this one), the fourth pod shaped like a session (its own
    activeDeadlineSeconds) is refused, whatever made it."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    objects, core = client.CustomObjectsApi(api), client.CoreV1Api(api)
    if not any(o["metadata"]["name"] == "sample" for p, o in _gastown_objects(api, namespace) if p == "rigs"):
        objects.create_namespaced_custom_object(GROUP, VERSION, namespace, "rigs", {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "Rig", "metadata": {"name": "sample"},
            "spec": {"gitUrl": f"git://nowhere.{namespace}.svc/none.git", "maxPolecats": 2,
                     "network": {"policy": False}, "runtime": {"preset": "script", "args": ["true"]}}})
    objects.create_namespaced_custom_object(GROUP, VERSION, namespace, "rigs", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "Rig", "metadata": {"name": "quota"},
        "spec": {"gitUrl": f"git://nowhere.{namespace}.svc/none.git", "maxPolecats": 1, "network": {"policy": False},
                 "runtime": {"preset": "script", "args": ["true"]}}})

    def hard() -> str | None:
        quota = core.read_namespaced_resource_quota("gastown-sessions", namespace)
        return (quota.status.hard or {}).get("pods") if quota.status else None

    _wait(lambda: hard() == "3", 120, "gastown-sessions to hold 3 pods (2 + 1)")
    _wait(lambda: not [p for p in core.list_namespaced_pod(namespace).items
                       if p.spec.active_deadline_seconds and p.status.phase in ("Pending", "Running")],
          600, "no session pod running (the convoy test's are done)")
    security = {"allowPrivilegeEscalation": False, "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]},
                "seccompProfile": {"type": "RuntimeDefault"}}

    def session_like(i: int) -> dict:
        return {"metadata": {"name": f"session-like-{i}"},
                "spec": {"activeDeadlineSeconds": 600, "restartPolicy": "Never",
                         "securityContext": {"runAsUser": 1000, "runAsNonRoot": True},
                         "containers": [{"name": "s", "image": f"gastown/agent:{TAG}", "command": ["sleep", "300"],
                                         "securityContext": security}]}}

    try:
        for i in range(3):
            core.create_namespaced_pod(namespace, session_like(i))
        with pytest.raises(ApiException) as refused:
            core.create_namespaced_pod(namespace, session_like(3))
        assert refused.value.status == 403 and "exceeded quota: gastown-sessions" in refused.value.body
    finally:
        for i in range(4):
            with contextlib.suppress(ApiException):
                core.delete_namespaced_pod(f"session-like-{i}", namespace, grace_period_seconds=0)
        objects.delete_namespaced_custom_object(GROUP, VERSION, namespace, "rigs", "quota")
