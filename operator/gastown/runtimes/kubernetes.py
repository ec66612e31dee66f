"""KubernetesBackend: one Job per agent session (owned by its Polecat) or verification run.

``session_job`` and ``verification_job`` build the Jobs (pure, tested field by field);
``KubernetesBackend`` creates them through the API. The pod runs `gt session run` under the restricted
Pod Security profile: non-root, no privilege escalation, no capabilities, read-only root
filesystem, with writable emptyDirs for the checkout, /tmp and the session files. A polecat's HOME
is its own PersistentVolumeClaim (``state_claim``), kept across its sessions: its CLI's earlier
conversations are there to resume.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import __version__
from ..api import API_VERSION
from ..api.common import RuntimeSpec
from ..api.rig import RigSpec
from ..ledger.credentials import CREDENTIAL_HELPER, ssh_command
from ..names import (
    APP_COMPONENT,
    APP_MANAGED_BY,
    APP_NAME,
    BATCH_LABEL,
    BEAD_LABEL,
    CONVOY_LABEL,
    DOG_LABEL,
    MANAGED_BY,
    POLECAT_LABEL,
    RIG_LABEL,
    RUN_ANNOTATION,
    RUNTIME_ANNOTATION,
    SESSION_COUNT_ANNOTATION,
    SESSION_LABEL,
    VERIFICATION_LABEL,
)
from ..polecats import dns_name
from ..telemetry import tracing
from .config import ConfigError, resolve
from .presets import Runtime

DEFAULT_AGENT_IMAGE = f"gastown/agent:{__version__}"  # the operator passes Settings.agent_image
COMPONENT = "agent-session"
VERIFICATION = "verification"
WORKSPACE, SESSION_DIR, CACHE_DIR, HOME = "/workspace", "/var/run/gastown", "/var/cache/gastown", "/home/agent"
STATE_DIR = f"{HOME}/.gastown/state"  # `gt session run --state-dir`: inside the polecat's own HOME
HOME_COMPONENT = "agent-home"
SSH_DIR = "/etc/gastown/git-ssh"
RUNTIMES_DIR = "/etc/gastown/runtimes"
AGENT_UID = 1000
DEFAULT_RESOURCES = {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "4Gi"}}


def session_name(polecat: str, bead: str, count: int) -> str:
    """A Job name: unique per Polecat resource (``polecat``), bead and session number; at most 63
    characters."""
    suffix = f"-{count}"
    return dns_name(f"gt-{polecat}-{bead}", 63 - len(suffix)) + suffix


def agent_service_account(rig: str) -> str:
    return dns_name(f"gastown-agent-{rig}")


def runtimes_copy_name(configmap: str) -> str:
    """The copy of the operator's runtimes ConfigMap that the operator writes into each rig's
    namespace (a pod mounts ConfigMaps of its own namespace only). Named after the release's own,
    so two releases never write one copy, and apart from it, so that a Rig in the release's
    namespace never overwrites the ConfigMap Helm owns."""
    return f"{configmap}-agents"[:253]


def home_claim_name(polecat: str) -> str:
    """The PersistentVolumeClaim of a polecat's HOME, after its Polecat resource's name. That is a
    DNS subdomain, so this one is too (dots and all: no two Polecats share a claim)."""
    return f"gt-home-{polecat}"[:253].rstrip("-.")


@dataclass(frozen=True)
class JobRequest:
    namespace: str
    rig: str
    rig_spec: RigSpec
    polecat: str  # the ledger's name of the polecat (GT_POLECAT, the polecat label)
    polecat_uid: str
    bead: str
    count: int  # this session's number for the polecat
    runtime: RuntimeSpec  # the polecat's override or the rig's
    resources: dict[str, Any] = field(default_factory=dict)
    convoy: str | None = None
    image: str = DEFAULT_AGENT_IMAGE
    runtimes_configmap: str | None = None  # custom runtimes (Settings.runtimes_configmap)
    # The Mayor: a Job owned by its Convoy that plans the convoy's goal instead of working a bead.
    mayor_for: tuple[str, str, str] | None = None  # (convoy key, Convoy name, Convoy uid)
    polecat_resource: str = ""  # the Polecat resource's name, when it is not the ledger's name

    @property
    def resource(self) -> str:
        """The Polecat resource: the owner of the session's Job and HOME, and the root of their names."""
        return self.polecat_resource or self.polecat

    @property
    def name(self) -> str:
        if self.mayor_for:
            return dns_name(f"gt-mayor-{self.mayor_for[1]}", 60) + f"-{self.count}"
        return session_name(self.resource, self.bead, self.count)

    @property
    def component(self) -> str:
        return "mayor" if self.mayor_for else COMPONENT

    @property
    def home_claim(self) -> str | None:
        """The polecat's own HOME claim; None for the Mayor, or when the rig keeps no HOME."""
        return None if self.mayor_for or not self.rig_spec.polecat_home.enabled else home_claim_name(self.resource)


def labels(req: JobRequest) -> dict[str, str]:
    out = {
        APP_NAME: "gastown",
        APP_COMPONENT: req.component,
        APP_MANAGED_BY: MANAGED_BY,
        RIG_LABEL: req.rig,
        SESSION_LABEL: req.name,
    }
    if not req.mayor_for:
        out.update({POLECAT_LABEL: req.polecat, BEAD_LABEL: req.bead})
    if req.convoy:
        out[CONVOY_LABEL] = req.convoy
    return out


def _secret_env(name: str, secret: str, key: str) -> dict:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key, "optional": True}}}


def _git_env(spec: RigSpec) -> list[dict]:
    env = [
        {"name": "GIT_TERMINAL_PROMPT", "value": "0"},
        {"name": "GIT_CONFIG_COUNT", "value": "1"},
        {"name": "GIT_CONFIG_KEY_0", "value": "credential.helper"},
        {"name": "GIT_CONFIG_VALUE_0", "value": CREDENTIAL_HELPER},
        {"name": "GIT_SSH_COMMAND", "value": ssh_command(f"{SSH_DIR}/ssh-privatekey")},
    ]
    if spec.credentials_secret:
        secret = spec.credentials_secret.name
        env += [_secret_env("GIT_USERNAME", secret, "username"), _secret_env("GIT_PASSWORD", secret, "password")]
    return env


def _trace_env() -> list[dict]:
    """TRACEPARENT and the exporter's endpoint, while the operator exports traces."""
    return [{"name": k, "value": v} for k, v in sorted(tracing.child_env().items())]


def _security() -> dict:
    return {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}


def _mounts() -> list[dict]:
    return [{"name": "workspace", "mountPath": WORKSPACE}, {"name": "home", "mountPath": HOME},
            {"name": "tmp", "mountPath": "/tmp"}, {"name": "session", "mountPath": SESSION_DIR},  # noqa: S108
            {"name": "cache", "mountPath": CACHE_DIR},
            {"name": "git-ssh", "mountPath": SSH_DIR, "readOnly": True}]


def session_job(req: JobRequest, runtime: Runtime | None = None) -> dict:
    """The Job that runs one session of ``req.polecat`` on ``req.bead``."""
    spec = req.rig_spec
    runtime = runtime or _runtime(req.runtime.preset)
    deadline = spec.session_deadline_seconds
    env: list[dict[str, Any]] = [
        {"name": "GT_RIG", "value": spec.git_url},
        {"name": "GT_BEAD", "value": req.bead},
        {"name": "GT_POLECAT", "value": req.polecat},
        {"name": "GT_SESSION", "value": req.name},
        {"name": "GT_RUNTIME", "value": req.runtime.preset},
        {"name": "GT_TARGET", "value": spec.default_branch},
        {"name": "GT_WORKDIR", "value": f"{WORKSPACE}/repo"},
        {"name": "GT_SESSION_DIR", "value": f"{SESSION_DIR}/session"},
        {"name": "GT_CACHE_DIR", "value": CACHE_DIR},
        {"name": "GT_DEADLINE", "value": str(deadline)},
        {"name": "GT_HEARTBEAT", "value": f"lease:{req.namespace}/{req.name}"},
        {"name": "HOME", "value": HOME},
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        *_git_env(spec),
        *_trace_env(),
    ]
    if req.runtime.model:
        env.append({"name": "GT_MODEL", "value": req.runtime.model})
    for name, ceiling in (("GT_SESSION_MAX_TOKENS", spec.budget.session_tokens),
                          ("GT_SESSION_MAX_SECONDS", spec.budget.session_seconds)):
        env += [{"name": name, "value": str(ceiling)}] if ceiling else []
    key_env = runtime.key_env(req.runtime.model) if runtime else None
    if req.runtime.api_key_secret and key_env:
        ref = req.runtime.api_key_secret
        env.append({"name": key_env, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}})
    if runtime:  # the CLI's own settings (static values; the session wrapper sets the same for its child)
        state = None if req.mayor_for else Path(STATE_DIR)  # the Mayor keeps no state: no --state-dir
        taken = {e["name"] for e in env}
        env += [{"name": k, "value": v} for k, v in sorted(runtime.session_env(state).items()) if k not in taken]
    mounts = _mounts()
    if req.runtimes_configmap:
        env.append({"name": "GT_RUNTIMES_FILE", "value": f"{RUNTIMES_DIR}/runtimes.yaml"})
        mounts.append({"name": "runtimes", "mountPath": RUNTIMES_DIR, "readOnly": True})
    if req.mayor_for:
        command = ["gt", "mayor", "plan", "--convoy", req.mayor_for[0]]
        owner = {"apiVersion": API_VERSION, "kind": "Convoy", "name": req.mayor_for[1],
                 "uid": req.mayor_for[2], "controller": True, "blockOwnerDeletion": True}
    else:
        command = ["gt", "session", "run", "--state-dir", STATE_DIR]
        owner = {"apiVersion": API_VERSION, "kind": "Polecat", "name": req.resource,
                 "uid": req.polecat_uid, "controller": True, "blockOwnerDeletion": True}
    if req.runtime.args:
        command += ["--", *req.runtime.args]
    resources = req.resources or DEFAULT_RESOURCES
    volumes = _volumes(spec, "workspace", "tmp", "session", "cache")
    volumes.insert(1, {"name": "home", "persistentVolumeClaim": {"claimName": req.home_claim}} if req.home_claim
                   else {"name": "home", "emptyDir": {}})
    if req.runtimes_configmap:
        volumes.append({"name": "runtimes", "configMap": {"name": runtimes_copy_name(req.runtimes_configmap)}})
    pod = {
        "serviceAccountName": agent_service_account(req.rig),
        "automountServiceAccountToken": True,  # the heartbeat Lease
        "initContainers": [{
            "name": "clone",
            "image": req.image,
            "command": ["git", "clone", "--quiet", "--no-tags", "--branch", spec.default_branch,
                        "--", spec.git_url, f"{WORKSPACE}/repo"],
            "env": [{"name": "HOME", "value": HOME}, *_git_env(spec)],
            "securityContext": _security(),
            "volumeMounts": _mounts(),
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "1Gi"}},
        }],
        "containers": [{
            "name": "agent",
            "image": req.runtime.image or req.image,
            "command": command,
            "workingDir": f"{WORKSPACE}/repo",
            "env": env,
            "securityContext": _security(),
            "volumeMounts": mounts,
            "resources": resources,
            "terminationMessagePolicy": "FallbackToLogsOnError",
        }],
        "volumes": volumes,
    }
    annotations = {BEAD_LABEL: req.bead, RUNTIME_ANNOTATION: req.runtime.preset,
                   SESSION_COUNT_ANNOTATION: str(req.count)}
    deadline += 600  # room for the clone and `gt done`
    if not req.mayor_for:
        # On the pod too: the namespace's session quota is scoped Terminating, which counts only
        # pods whose own spec has a deadline. The Mayor's, verification and Dog pods have none:
        # they count against the other quota (kube/rig_handlers.quotas).
        pod["activeDeadlineSeconds"] = deadline
    return _job(req.name, req.namespace, labels=labels(req), annotations=annotations, owner=owner, deadline=deadline,
                pod=pod)


def state_claim(req: JobRequest) -> dict | None:
    """The PersistentVolumeClaim of the polecat's HOME, which its session Jobs mount; None when
    there is none (the Mayor; a rig with polecatHome.enabled false). Owned by the Polecat, so it
    goes when the Polecat goes. ReadWriteOnce is enough: a polecat runs one session at a time.
    Its volume's files belong to the agent's group through the pod's fsGroup."""
    if req.home_claim is None:
        return None
    home = req.rig_spec.polecat_home
    spec: dict[str, Any] = {"accessModes": ["ReadWriteOnce"], "volumeMode": "Filesystem",
                            "resources": {"requests": {"storage": home.size}}}
    if home.storage_class_name:
        spec["storageClassName"] = home.storage_class_name
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": req.home_claim, "namespace": req.namespace,
            "labels": {APP_NAME: "gastown", APP_COMPONENT: HOME_COMPONENT,
                       APP_MANAGED_BY: MANAGED_BY, RIG_LABEL: req.rig,
                       POLECAT_LABEL: req.polecat},
            "ownerReferences": [{"apiVersion": API_VERSION, "kind": "Polecat", "name": req.resource,
                                 "uid": req.polecat_uid, "controller": True, "blockOwnerDeletion": True}],
        },
        "spec": spec,
    }


def _job(name: str, namespace: str, *, labels: dict[str, str], annotations: dict[str, str], owner: dict,
         deadline: int, pod: dict) -> dict:
    """A run-once Job with a deadline and a TTL whose pod meets the restricted Pod Security profile."""
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": namespace, "labels": labels, "annotations": annotations,
                     "ownerReferences": [owner]},
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": deadline,
            "ttlSecondsAfterFinished": 3600,
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "restartPolicy": "Never",
                    "enableServiceLinks": False,
                    "securityContext": {"runAsNonRoot": True, "runAsUser": AGENT_UID, "runAsGroup": AGENT_UID,
                                        "fsGroup": AGENT_UID, "seccompProfile": {"type": "RuntimeDefault"}},
                    **pod,
                },
            },
        },
    }


def _volumes(spec: RigSpec, *names: str) -> list[dict]:
    """emptyDirs by name, and the rig's SSH key (optional: https rigs have none)."""
    return [{"name": n, "emptyDir": {}} for n in names] + [{"name": "git-ssh", "secret": {
        "secretName": spec.credentials_secret.name if spec.credentials_secret else "gastown-no-ssh-key",
        "optional": True, "defaultMode": 0o440,
        "items": [{"key": "ssh-privatekey", "path": "ssh-privatekey"}]}}]


@dataclass(frozen=True)
class VerifyRequest:
    """One verification run of the Refinery: the gates on one stacked tip."""

    namespace: str
    rig: str
    rig_spec: RigSpec
    batch: str
    run: dict[str, list[str]]  # bisect.Run.to_dict()
    ident: str  # refinery.verify.Verification.ident: the run's key and the batch's attempt
    attempt: int
    ref: str  # the scratch ref of the stacked tip
    owner: dict  # the MergeQueue (or the Rig when the rig has none)
    image: str = DEFAULT_AGENT_IMAGE

    @property
    def name(self) -> str:
        suffix = f"-{self.attempt}"
        return dns_name(f"gt-verify-{self.batch}-{self.ident[:12]}", 63 - len(suffix)) + suffix


def verification_job(req: VerifyRequest) -> dict:
    """The Job that runs `gt mq verify` for one run: no API access, the same pod rules as sessions."""
    spec, verification = req.rig_spec, req.rig_spec.verification
    job_labels = {APP_NAME: "gastown", APP_COMPONENT: VERIFICATION,
                  APP_MANAGED_BY: MANAGED_BY, RIG_LABEL: req.rig,
                  BATCH_LABEL: req.batch, VERIFICATION_LABEL: req.ident}
    env = [
        {"name": "GT_RIG", "value": spec.git_url},
        {"name": "GT_BATCH", "value": req.batch},
        {"name": "GT_RUN", "value": json.dumps(req.run)},
        {"name": "GT_VERIFY_REF", "value": req.ref},
        {"name": "GT_ATTEMPT", "value": str(req.attempt)},
        {"name": "GT_GATES", "value": json.dumps(verification.gates.ordered())},
        {"name": "GT_VERIFY_TIMEOUT", "value": str(verification.timeout_seconds)},
        {"name": "GT_WORKDIR", "value": f"{WORKSPACE}/repo"},
        {"name": "GT_CACHE_DIR", "value": CACHE_DIR},
        {"name": "HOME", "value": HOME},
        *_git_env(spec),
        *_trace_env(),
    ]
    mounts = [m for m in _mounts() if m["name"] != "session"]
    resources = verification.resources.wire() if (verification.resources.requests or verification.resources.limits) \
        else DEFAULT_RESOURCES
    pod = {
        "serviceAccountName": agent_service_account(req.rig),
        "automountServiceAccountToken": False,  # gates are the rig's code: no API access
        "containers": [{
            "name": "verify",
            "image": verification.image or req.image,
            "command": ["gt", "mq", "verify"],
            "workingDir": WORKSPACE,
            "env": env,
            "securityContext": _security(),
            "volumeMounts": mounts,
            "resources": resources,
            "terminationMessagePolicy": "FallbackToLogsOnError",
        }],
        "volumes": _volumes(spec, "workspace", "home", "tmp", "cache"),
    }
    annotations = {RUN_ANNOTATION: json.dumps(req.run)}
    return _job(req.name, req.namespace, labels=job_labels, annotations=annotations, owner=req.owner,
                deadline=verification.timeout_seconds + 600, pod=pod)


DOG = "dog"


def dog_name(rig: str, dog: str) -> str:
    """A CronJob name: at most 52 characters, so that its Jobs' names stay within 63."""
    return dns_name(f"gt-dog-{rig}", 51 - len(dog)) + f"-{dog}"


def dog_cronjob(namespace: str, rig: str, rig_uid: str, spec: RigSpec, *, dog: str,
                image: str = DEFAULT_AGENT_IMAGE) -> dict:
    """The CronJob of one of the rig's Dogs (prune or compact): `gt dog run` on the schedule of
    spec.dogs, in UTC, never two at once, with no API access and the session pods' rules."""
    job_labels = {APP_NAME: "gastown", APP_COMPONENT: DOG,
                  APP_MANAGED_BY: MANAGED_BY, RIG_LABEL: rig, DOG_LABEL: dog}
    dogs = spec.dogs
    command = ["gt", "dog", "run", dog, "--rig", spec.git_url, "--target", spec.default_branch,
               "--retain-days", str(dogs.retain_days)]
    env = [{"name": "HOME", "value": HOME}, {"name": "GT_TOWN", "value": f"{CACHE_DIR}/town"}, *_git_env(spec)]
    pod = {
        "serviceAccountName": agent_service_account(rig),
        "automountServiceAccountToken": False,
        "containers": [{
            "name": dog,
            "image": image,
            "command": command,
            "env": env,
            "securityContext": _security(),
            "volumeMounts": [m for m in _mounts() if m["name"] not in ("session", "workspace")],
            "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
            "terminationMessagePolicy": "FallbackToLogsOnError",
        }],
        "volumes": _volumes(spec, "home", "tmp", "cache"),
    }
    owner = {"apiVersion": API_VERSION, "kind": "Rig", "name": rig, "uid": rig_uid,
             "controller": True, "blockOwnerDeletion": True}
    job = _job(dog_name(rig, dog), namespace, labels=job_labels, annotations={}, owner=owner, deadline=1800, pod=pod)
    job_spec = job["spec"]
    job_spec["backoffLimit"] = 1  # a Dog is idempotent: one more try, then the next schedule
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": job["metadata"],
        "spec": {
            "schedule": getattr(dogs, dog).schedule,
            "timeZone": "Etc/UTC",
            "concurrencyPolicy": "Forbid",
            "startingDeadlineSeconds": 600,
            "successfulJobsHistoryLimit": 1,
            "failedJobsHistoryLimit": 3,
            "jobTemplate": {"metadata": {"labels": job_labels}, "spec": job_spec},
        },
    }


def _runtime(name: str) -> Runtime | None:
    """The runtime, custom ones included (the operator mounts the same runtimes file)."""
    try:
        return resolve(name)
    except ConfigError:
        return None  # unknown here: the session itself reports it clearly


class KubernetesBackend:
    """Create session (and Mayor) Jobs through the Kubernetes API."""

    def __init__(self, api_client: Any):
        from kubernetes import client

        self.batch = client.BatchV1Api(api_client)
        self.core = client.CoreV1Api(api_client)

    def ensure_claim(self, claim: dict | None) -> None:
        """Create a polecat's HOME claim unless it is there (409: made by an earlier session)."""
        from kubernetes.client.rest import ApiException

        if claim is None:
            return
        try:
            self.core.create_namespaced_persistent_volume_claim(claim["metadata"]["namespace"], claim)  # type: ignore[arg-type]  # a dict body is fine
        except ApiException as e:
            if e.status != 409:
                raise

    def start(self, job: dict) -> str:
        from kubernetes.client.rest import ApiException

        try:
            self.batch.create_namespaced_job(job["metadata"]["namespace"], job)  # type: ignore[arg-type]  # a dict body is fine
        except ApiException as e:
            if e.status != 409:  # already created by an earlier pass: nothing to do
                raise
        return job["metadata"]["name"]

    def stop(self, namespace: str, name: str) -> None:
        """Delete a Job and its pods: each gets SIGTERM and its grace period to save its work."""
        from kubernetes.client.rest import ApiException

        try:
            self.batch.delete_namespaced_job(name, namespace, propagation_policy="Background")
        except ApiException as e:
            if e.status != 404:
                raise

    def delete_pod(self, namespace: str, name: str) -> None:
        from kubernetes.client.rest import ApiException

        try:
            self.core.delete_namespaced_pod(name, namespace)
        except ApiException as e:
            if e.status != 404:
                raise
