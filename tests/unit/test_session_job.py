"""The Job built for an agent session, field by field."""

from __future__ import annotations

import pytest

from gastown.api import RigSpec
from gastown.api.common import RuntimeSpec, SecretKeyRef
from gastown.kube.polecat_handlers import polecat_status_for_job
from gastown.runtimes import PRESETS, Runtime
from gastown.runtimes.kubernetes import (
    HOME,
    STATE_DIR,
    JobRequest,
    session_job,
    session_name,
    state_claim,
)

RIG = RigSpec.model_validate({"gitUrl": "https://git.example.com/webapp.git", "defaultBranch": "trunk",
                              "credentialsSecret": {"name": "webapp-git"}, "sessionDeadlineSeconds": 900})


def request(**kw):
    base = dict(namespace="team-a", rig="webapp", rig_spec=RIG, polecat="furiosa", polecat_uid="uid-1",
                bead="wa-k3x9q.1", count=3,
                runtime=RuntimeSpec(preset="claude", model="opus",
                                    apiKeySecret=SecretKeyRef(name="anthropic", key="api-key")),
                convoy="login", image="registry.local/gastown-agent:1")
    base.update(kw)
    return JobRequest(**base)


@pytest.fixture
def job():
    return session_job(request())


def env_of(container):
    return {e["name"]: e for e in container["env"]}


def test_names_are_dns_labels():
    assert session_name("furiosa", "wa-k3x9q.1", 3) == "gt-furiosa-wa-k3x9q-1-3"
    long = session_name("a" * 80, "wa-k3x9q", 12)
    assert len(long) <= 63 and long.endswith("-12")


def test_polecat_resources_carry_the_rig_and_long_names_stay_apart():
    from gastown.polecats import resource_name

    assert resource_name("webapp", "furiosa") == "webapp-furiosa"
    assert resource_name("api", "furiosa") != resource_name("webapp", "furiosa")
    a, b = resource_name("r" * 60, "furiosa"), resource_name("r" * 60, "furiosa-2")
    assert len(a) <= 63 and len(b) <= 63 and a != b  # cut to a DNS label, told apart by a hash
    # two sessions of one long-named Polecat on two beads never share a Job name
    assert session_name(a, "gt-abc", 1) != session_name(a, "gt-abd", 1)
    req = request(polecat="furiosa", polecat_resource="webapp-furiosa")
    assert req.name.startswith("gt-webapp-furiosa-") and req.home_claim == "gt-home-webapp-furiosa"
    assert session_job(req)["metadata"]["ownerReferences"][0]["name"] == "webapp-furiosa"


def test_owner_and_labels(job):
    meta = job["metadata"]
    assert meta["name"] == "gt-furiosa-wa-k3x9q-1-3" and meta["namespace"] == "team-a"
    assert meta["ownerReferences"] == [{"apiVersion": "gastown.dev/v1alpha1", "kind": "Polecat", "name": "furiosa",
                                        "uid": "uid-1", "controller": True, "blockOwnerDeletion": True}]
    for labels in (meta["labels"], job["spec"]["template"]["metadata"]["labels"]):
        assert labels["gastown.dev/rig"] == "webapp" and labels["gastown.dev/polecat"] == "furiosa"
        assert labels["gastown.dev/bead"] == "wa-k3x9q.1" and labels["gastown.dev/convoy"] == "login"
        assert labels["app.kubernetes.io/managed-by"] == "gastown-operator"
    assert meta["annotations"]["gastown.dev/session-count"] == "3"


def test_job_runs_once_with_a_deadline_and_a_ttl(job):
    spec = job["spec"]
    assert spec["backoffLimit"] == 0 and spec["ttlSecondsAfterFinished"] == 3600
    assert spec["activeDeadlineSeconds"] == 900 + 600
    assert spec["template"]["spec"]["restartPolicy"] == "Never"


def test_restricted_pod_security(job):
    pod = job["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 1000
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["serviceAccountName"] == "gastown-agent-webapp"
    for c in pod["initContainers"] + pod["containers"]:
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
        assert sc["capabilities"] == {"drop": ["ALL"]} and sc["runAsNonRoot"] is True
        mounts = {m["mountPath"] for m in c["volumeMounts"]}
        assert {"/workspace", "/home/agent", "/tmp", "/var/run/gastown"} <= mounts
        assert c["resources"]["limits"]["memory"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert all("emptyDir" in volumes[n] for n in ("workspace", "tmp", "session", "cache"))
    assert volumes["git-ssh"]["secret"]["secretName"] == "webapp-git"
    # only the volume types the restricted profile allows (a PersistentVolumeClaim is one)
    restricted = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected",
                  "secret"}
    assert all(set(v) - {"name"} <= restricted for v in pod["volumes"])


def test_init_container_clones_with_credentials_from_the_secret(job):
    init = job["spec"]["template"]["spec"]["initContainers"][0]
    assert init["command"] == ["git", "clone", "--quiet", "--no-tags", "--branch", "trunk", "--",
                               "https://git.example.com/webapp.git", "/workspace/repo"]
    env = env_of(init)
    assert env["GIT_USERNAME"]["valueFrom"]["secretKeyRef"] == {"name": "webapp-git", "key": "username",
                                                                "optional": True}
    assert env["GIT_PASSWORD"]["valueFrom"]["secretKeyRef"]["key"] == "password"
    assert env["GIT_CONFIG_KEY_0"]["value"] == "credential.helper"
    assert "$GIT_PASSWORD" in env["GIT_CONFIG_VALUE_0"]["value"]  # read at run time, never stored


def test_agent_container_runs_the_wrapper_with_its_key(job):
    agent = job["spec"]["template"]["spec"]["containers"][0]
    assert agent["command"][:3] == ["gt", "session", "run"] and agent["image"] == "registry.local/gastown-agent:1"
    env = env_of(agent)
    assert env["ANTHROPIC_API_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "anthropic", "key": "api-key"}
    values = {k: v.get("value") for k, v in env.items()}
    assert values["GT_RIG"] == "https://git.example.com/webapp.git" and values["GT_BEAD"] == "wa-k3x9q.1"
    assert values["GT_POLECAT"] == "furiosa" and values["GT_SESSION"] == "gt-furiosa-wa-k3x9q-1-3"
    assert values["GT_RUNTIME"] == "claude" and values["GT_MODEL"] == "opus" and values["GT_TARGET"] == "trunk"
    assert values["GT_HEARTBEAT"] == "lease:team-a/gt-furiosa-wa-k3x9q-1-3" and values["GT_DEADLINE"] == "900"
    secrets = [e for e in agent["env"] if "value" in e and ("KEY" in e["name"] or "PASSWORD" in e["name"])
               and e["name"] != "GIT_CONFIG_KEY_0"]
    assert secrets == []  # no secret value is ever inline


def test_script_runtime_args_and_default_resources():
    job = session_job(request(runtime=RuntimeSpec(preset="script", args=["python", "apply.py"])))
    agent = job["spec"]["template"]["spec"]["containers"][0]
    assert agent["command"] == ["gt", "session", "run", "--state-dir", STATE_DIR, "--", "python", "apply.py"]
    assert agent["resources"]["requests"] == {"cpu": "500m", "memory": "1Gi"}
    assert not any(e["name"].endswith("API_KEY") for e in agent["env"])


@pytest.mark.parametrize(("status", "phase"), [
    ({"active": 1}, "Spawning"),
    ({"active": 1, "ready": 1, "startTime": "2026-01-01T00:00:00Z"}, "Working"),
    ({"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}, "Idle"),
    ({"failed": 1, "conditions": [{"type": "Failed", "status": "True"}]}, "Idle"),
])
def test_polecat_status_follows_the_job(job, status, phase):
    out = polecat_status_for_job({**job, "status": status})
    assert out["phase"] == phase and out["sessionCount"] == 3
    if phase == "Idle":
        assert out["currentBead"] is None and out["session"] is None
    else:
        assert out["currentBead"] == "wa-k3x9q.1" and out["branch"] == "polecat/furiosa/wa-k3x9q.1"


def test_custom_runtimes_come_from_the_configmap():
    job = session_job(request(runtimes_configmap="gastown-runtimes"))
    pod = job["spec"]["template"]["spec"]
    agent = pod["containers"][0]
    assert env_of(agent)["GT_RUNTIMES_FILE"]["value"] == "/etc/gastown/runtimes/runtimes.yaml"
    assert {"name": "runtimes", "mountPath": "/etc/gastown/runtimes", "readOnly": True} in agent["volumeMounts"]
    assert {"name": "runtimes", "configMap": {"name": "gastown-runtimes-agents"}} in pod["volumes"]  # the copy
    plain = session_job(request(runtimes_configmap=None))["spec"]["template"]["spec"]
    assert not any(v["name"] == "runtimes" for v in plain["volumes"])


def test_a_custom_runtime_gets_its_own_key_variable(tmp_path, monkeypatch):
    from gastown.runtimes.config import save
    from gastown.runtimes.definition import RuntimeDef

    monkeypatch.setenv("GT_RUNTIMES_FILE", str(tmp_path / "runtimes.yaml"))
    save({"mycli": RuntimeDef(command=["mycli"], api_key_env=["MYCLI_KEY"])})
    job = session_job(request(runtime=RuntimeSpec(preset="mycli", apiKeySecret=SecretKeyRef(name="k", key="v"))))
    env = env_of(job["spec"]["template"]["spec"]["containers"][0])
    assert env["MYCLI_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "k", "key": "v"}


# --- the key goes where the runtime reads it; the runtime's own settings -----------------------------

MULTI = Runtime("multi", ("multi",), api_key_env=("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "GEMINI_API_KEY"),
                provider_keys={"anthropic": "ANTHROPIC_API_KEY", "openai": "OPENAI_API_KEY",
                               "google": "GEMINI_API_KEY"})
KEY = SecretKeyRef(name="provider", key="api-key")


def keys_of(job):
    return {e["name"]: e["valueFrom"]["secretKeyRef"] for e in job["spec"]["template"]["spec"]["containers"][0]["env"]
            if "secretKeyRef" in e.get("valueFrom", {}) and not e["name"].startswith("GIT_")}


@pytest.mark.parametrize(("model", "variable"), [
    ("openai/gpt-5", "OPENAI_API_KEY"),
    ("google/gemini-2.5-pro", "GEMINI_API_KEY"),
    ("anthropic/claude-sonnet-4", "ANTHROPIC_API_KEY"),
    ("some-model", "ANTHROPIC_API_KEY"),  # no provider named: the preferred variable
    (None, "ANTHROPIC_API_KEY"),
])
def test_a_multi_provider_runtime_gets_the_key_in_its_models_providers_variable(model, variable):
    job = session_job(request(runtime=RuntimeSpec(preset="multi", model=model, apiKeySecret=KEY)), MULTI)
    assert keys_of(job) == {variable: {"name": "provider", "key": "api-key"}}  # that one variable, no other


@pytest.mark.parametrize("preset", sorted(n for n, rt in PRESETS.items() if rt.api_key_env))
@pytest.mark.parametrize("model", [None, "openai/gpt-5", "anthropic/claude-sonnet-4"])
def test_every_preset_gets_the_key_in_the_variable_it_reads(preset, model):
    """codex: CODEX_API_KEY (what `codex exec` reads); opencode, pi, omp: the model's provider's."""
    job = session_job(request(runtime=RuntimeSpec(preset=preset, model=model, apiKeySecret=KEY)))
    assert keys_of(job) == {PRESETS[preset].key_env(model): {"name": "provider", "key": "api-key"}}


def test_the_runtimes_own_settings_are_in_the_pod_with_its_state_in_the_polecats_home():
    rt = Runtime("cli", ("cli",), api_key_env=("CLI_KEY",), env={"CLI_TRUST_WORKSPACE": "true"},
                 state_env={"CLI_HOME": "{state_dir}/cli", "GT_BEAD": "{state_dir}/never"})
    job = session_job(request(runtime=RuntimeSpec(preset="cli")), rt)
    env = env_of(job["spec"]["template"]["spec"]["containers"][0])
    assert env["CLI_TRUST_WORKSPACE"]["value"] == "true"
    assert env["CLI_HOME"]["value"] == f"{STATE_DIR}/cli"
    assert env["GT_BEAD"]["value"] == "wa-k3x9q.1"  # gastown's own variables are never overridden
    assert [e["name"] for e in job["spec"]["template"]["spec"]["containers"][0]["env"]].count("GT_BEAD") == 1


# --- the polecat's HOME outlives its sessions -------------------------------------------------------

def test_the_polecats_home_is_its_own_claim_and_the_state_dir_is_inside_it(job):
    pod = job["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["home"] == {"name": "home", "persistentVolumeClaim": {"claimName": "gt-home-furiosa"}}
    for c in pod["initContainers"] + pod["containers"]:
        assert {"name": "home", "mountPath": HOME} in c["volumeMounts"]
        assert env_of(c)["HOME"]["value"] == HOME
    agent = pod["containers"][0]
    assert agent["command"] == ["gt", "session", "run", "--state-dir", STATE_DIR]
    assert STATE_DIR.startswith(HOME + "/")
    # the volume's files are the agent's: its group through fsGroup, the pod still non-root
    assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsUser"] == 1000


def test_the_home_claim_is_the_polecats():
    claim = state_claim(request())
    meta = claim["metadata"]
    assert claim["apiVersion"] == "v1" and claim["kind"] == "PersistentVolumeClaim"
    assert meta["name"] == "gt-home-furiosa" and meta["namespace"] == "team-a"
    assert meta["labels"]["gastown.dev/rig"] == "webapp" and meta["labels"]["gastown.dev/polecat"] == "furiosa"
    assert meta["labels"]["app.kubernetes.io/managed-by"] == "gastown-operator"
    assert meta["ownerReferences"] == [{"apiVersion": "gastown.dev/v1alpha1", "kind": "Polecat", "name": "furiosa",
                                        "uid": "uid-1", "controller": True, "blockOwnerDeletion": True}]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]  # one session per polecat at a time
    assert claim["spec"]["resources"] == {"requests": {"storage": "1Gi"}}
    assert "storageClassName" not in claim["spec"]  # the cluster's default class


def test_the_rig_sets_the_claims_size_and_class():
    spec = RIG.model_copy(update={"polecat_home": RIG.polecat_home.model_validate(
        {"size": "5Gi", "storageClassName": "fast-ssd"})})
    claim = state_claim(request(rig_spec=spec))
    assert claim["spec"]["resources"]["requests"]["storage"] == "5Gi"
    assert claim["spec"]["storageClassName"] == "fast-ssd"
    with pytest.raises(ValueError, match="size"):
        RigSpec.model_validate({"gitUrl": "https://x/y.git", "polecatHome": {"size": "lots"}})


def test_without_a_kept_home_and_for_the_mayor_home_is_an_empty_dir():
    off = RIG.model_copy(update={"polecat_home": RIG.polecat_home.model_validate({"enabled": False})})
    mayor = request(polecat="mayor", polecat_uid="", mayor_for=("login", "login", "uid-c"))
    for req in (request(rig_spec=off), mayor):
        assert state_claim(req) is None
        volumes = {v["name"]: v for v in session_job(req)["spec"]["template"]["spec"]["volumes"]}
        assert volumes["home"] == {"name": "home", "emptyDir": {}}
    assert "--state-dir" not in session_job(mayor)["spec"]["template"]["spec"]["containers"][0]["command"]
