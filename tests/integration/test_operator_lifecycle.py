"""The operator's objects across its own life: restarts never regress a status, and with the
operator stopped every gastown kind can be deleted (no finalizer waits for it)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time

import pytest
import yaml

from gastown import convoy as convoys
from gastown.kube import rbac
from gastown.ledger import Status

from conftest import GT, wait_for
from rigs import make_rig

pytestmark = pytest.mark.slow


def cr(kind, name, spec, namespace="default"):
    return {"apiVersion": "gastown.dev/v1alpha1", "kind": kind, "metadata": {"name": name, "namespace": namespace},
            "spec": spec}


def town(kubeapi, rig) -> None:
    """A Rig, its MergeQueue and a Convoy of one bead."""
    kubeapi.create(cr("Rig", "webapp", {"gitUrl": f"file://{rig.remote}", "maxPolecats": 1,
                                        "runtime": {"preset": "script", "args": ["true"]}}))
    kubeapi.create(cr("MergeQueue", "webapp", {"rig": "webapp"}))
    kubeapi.create(cr("Convoy", "feature", {"rig": "webapp", "beads": [{"key": "one", "title": "One"}]}))


def phase(kubeapi, plural, name):
    return ((kubeapi.get(plural, "default", name) or {}).get("status") or {}).get("phase")


def phases_written(kubeapi, since: int) -> dict[tuple[str, str], list[str | None]]:
    """Every phase each gastown object was written with after ``since`` (an index in the history)."""
    out: dict[tuple[str, str], list[str | None]] = {}
    for event in kubeapi.history[since:]:
        if event.resource.group == "gastown.dev" and event.type == "MODIFIED":
            key = (event.resource.plural, event.obj["metadata"]["name"])
            out.setdefault(key, []).append((event.obj.get("status") or {}).get("phase"))
    return out


def settled(kubeapi, plurals, seconds: float = 3.0) -> None:
    """Wait until no object of ``plurals`` has changed for ``seconds``."""
    def quiet():
        recent = [e for e in kubeapi.history if e.resource.plural in plurals]
        last = recent[-1].rv if recent else 0
        time.sleep(seconds)
        recent = [e for e in kubeapi.history if e.resource.plural in plurals]
        return (recent[-1].rv if recent else 0) == last

    wait_for(quiet, timeout=60, what=f"{plurals} to settle")


def test_a_done_convoy_stays_done_and_nothing_regresses_across_restarts(kubeapi, operator, tmp_path):
    rig = make_rig(tmp_path)
    first = operator()
    town(kubeapi, rig)
    wait_for(lambda: phase(kubeapi, "convoys", "feature") == "Running", what="the convoy Running")
    with rig.ledger() as lg:
        bead = lg.get(convoys.convoy_id("gt", "default/feature")).metadata["keys"]["one"]
        if lg.get(bead).status != Status.CLOSED:
            lg.close_bead(bead, "merged (test)")
    wait_for(lambda: phase(kubeapi, "convoys", "feature") == "Done", what="the convoy Done", timeout=40)
    settled(kubeapi, ("rigs", "convoys", "mergequeues", "polecats"))
    before = {(p, o["metadata"]["name"]): (o.get("status") or {}).get("phase")
              for p in ("rigs", "convoys", "mergequeues", "polecats") for o in kubeapi.list(p, "default")}
    assert before[("rigs", "webapp")] == "Ready" and before[("convoys", "feature")] == "Done"
    assert before[("mergequeues", "webapp")] == "Idle"

    for restart in range(2):
        first.stop()
        since = len(kubeapi.history)
        first = operator()
        # each object's resume handlers have run, and the rig loop has had its first rounds
        wait_for(lambda op=first: op.output().count("Resuming is processed") >= 3, timeout=40,
                 what=f"the restarted operator ({restart + 1}) to resume the Rig, the MergeQueue and the Convoy")
        settled(kubeapi, ("rigs", "convoys", "mergequeues", "polecats"))
        written = phases_written(kubeapi, since)
        for key, phases in written.items():
            if key in before:
                assert set(phases) <= {before[key]}, f"{key} went {before[key]} -> {phases} on restart {restart + 1}"
        assert phase(kubeapi, "convoys", "feature") == "Done"


def test_with_the_operator_stopped_every_kind_can_be_deleted(kubeapi, operator, tmp_path):
    rig = make_rig(tmp_path)
    op = operator()
    town(kubeapi, rig)
    kubeapi.create(cr("Polecat", "slit", {"rig": "webapp"}))
    wait_for(lambda: phase(kubeapi, "rigs", "webapp") == "Ready", what="the Rig Ready")
    wait_for(lambda: phase(kubeapi, "convoys", "feature") == "Running", what="the convoy Running")
    wait_for(lambda: kubeapi.list("jobs", "default"), what="a session at work")
    settled(kubeapi, ("rigs", "convoys", "mergequeues", "polecats"))
    op.stop()

    held = {(p, o["metadata"]["name"]): o["metadata"].get("finalizers")
            for p in ("rigs", "convoys", "mergequeues", "polecats") for o in kubeapi.list(p, "default")}
    assert all(not f for f in held.values()), f"finalizers only where gastown has work at deletion: {held}"
    for plural, name in [("polecats", "slit"), ("convoys", "feature"), ("mergequeues", "webapp"), ("rigs", "webapp")]:
        kubeapi.delete(plural, "default", name)
        assert kubeapi.get(plural, "default", name) is None, f"{plural}/{name} waits for the stopped operator"
    # what the Rig owned went with it (the garbage collector): its Polecats, their Jobs, its quotas
    assert kubeapi.list("polecats", "default") == []
    assert kubeapi.list("jobs", "default") == []
    assert kubeapi.list("resourcequotas", "default") == []


def test_a_deleted_rig_stops_its_loop_without_a_finalizer(kubeapi, operator, tmp_path):
    rig = make_rig(tmp_path)
    op = operator()
    kubeapi.create(cr("Rig", "webapp", {"gitUrl": f"file://{rig.remote}", "maxPolecats": 2,
                                        "runtime": {"preset": "script", "args": ["true"]}}))
    wait_for(lambda: phase(kubeapi, "rigs", "webapp") == "Ready", what="the Rig Ready")
    assert not kubeapi.get("rigs", "default", "webapp")["metadata"].get("finalizers")
    kubeapi.delete("rigs", "default", "webapp")
    assert kubeapi.get("rigs", "default", "webapp") is None
    wait_for(lambda: "Daemon 'dispatch' succeeded" in op.output() or "Daemon 'dispatch' has exited" in op.output(),
             what="the rig loop to stop", timeout=20)
    # a convoy for the gone rig is never dispatched: its loop is not there to do it
    kubeapi.create(cr("Convoy", "late", {"rig": "webapp", "beads": [{"key": "one", "title": "One"}]}))
    time.sleep(3)
    assert kubeapi.list("jobs", "default") == [] and kubeapi.list("polecats", "default") == []
    assert op.proc.poll() is None


def gt(kubeconfig, *args, timeout=60):
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    return subprocess.run([GT, *args], capture_output=True, text=True, env=env, timeout=timeout)


def test_gt_operator_uninstall_frees_the_namespace_and_says_what_it_leaves(kubeapi, operator, kubeconfig, tmp_path):
    rig = make_rig(tmp_path)
    op = operator()
    town(kubeapi, rig)
    wait_for(lambda: kubeapi.list("jobs", "default"), what="a session at work")
    wait_for(lambda: kubeapi.list("persistentvolumeclaims", "default"), what="the polecat's HOME claim")
    op.stop()
    # an older operator's finalizers (and someone else's, which stays)
    kubeapi.patch("rigs", "default", "webapp", {"metadata": {"finalizers": ["gastown.dev/finalizer", "example.com/keep"]}})
    kubeapi.patch("convoys", "default", "feature", {"metadata": {"finalizers": ["gastown.dev/finalizer"]}})
    made = {p: kubeapi.list(p, "default") for p in ("serviceaccounts", "roles", "rolebindings", "resourcequotas",
                                                    "cronjobs", "jobs")}
    assert all(made.values()), made
    kubeapi.create({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "theirs", "namespace": "default"}})
    since = len(kubeapi.requests)

    dry = gt(kubeconfig, "operator", "uninstall", "-n", "default", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    planned = json.loads(dry.stdout)
    assert sorted(planned["finalizersRemoved"]) == ["default/convoys/feature", "default/rigs/webapp"]
    assert "default/serviceaccounts/gastown-agent-webapp" in planned["deleted"]
    assert kubeapi.get("convoys", "default", "feature")["metadata"]["finalizers"] == ["gastown.dev/finalizer"]
    assert kubeapi.list("jobs", "default")  # a dry run changes nothing

    done = gt(kubeconfig, "operator", "uninstall", "-n", "default")
    assert done.returncode == 0, done.stderr
    assert "remove gastown's finalizer from 2 object(s)" in done.stdout and "ledgers in git" in done.stdout
    assert "persistentvolumeclaims/" in done.stdout.split("left in place:")[1]  # the HOME claim, named
    assert kubeapi.get("rigs", "default", "webapp")["metadata"]["finalizers"] == ["example.com/keep"]
    assert not kubeapi.get("convoys", "default", "feature")["metadata"].get("finalizers")
    for plural in made:
        assert kubeapi.list(plural, "default") == [] if plural != "serviceaccounts" else \
            [o["metadata"]["name"] for o in kubeapi.list(plural, "default")] == ["theirs"], plural
    assert kubeapi.list("persistentvolumeclaims", "default")  # kept: an agent's home
    kubeapi.delete("convoys", "default", "feature")
    assert kubeapi.get("convoys", "default", "feature") is None
    # again, with the claims: idempotent
    again = gt(kubeconfig, "operator", "uninstall", "-n", "default", "--delete-home-claims")
    assert again.returncode == 0, again.stderr
    assert kubeapi.list("persistentvolumeclaims", "default") == []
    # the uninstall's calls are exactly what its own rules allow (rbac.UNINSTALL; the operator's are checked apart)
    calls = kubeapi.requests[since:]
    del kubeapi.requests[since:]  # (the fixture checks the rest against the operator's rules)
    kubeapi.requests, operators = calls, kubeapi.requests
    try:
        denied = sorted(c for c in kubeapi.verbs() if not rbac.allows(rbac.UNINSTALL, *c))
    finally:
        kubeapi.requests = operators
    assert not denied, denied


def test_gt_operator_uninstall_never_hangs_on_a_silent_api_server(tmp_path):
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        config = tmp_path / "kubeconfig"
        config.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "c",
            "clusters": [{"name": "c", "cluster": {"server": f"http://127.0.0.1:{silent.getsockname()[1]}"}}],
            "users": [{"name": "u", "user": {"token": "t"}}],
            "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}]}))
        started = time.monotonic()
        proc = gt(config, "operator", "uninstall", "-n", "default", "--timeout", "3", timeout=60)
    assert proc.returncode == 1 and "no answer from the API server" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert time.monotonic() - started < 30  # bounded: --timeout, not the API client's retries
