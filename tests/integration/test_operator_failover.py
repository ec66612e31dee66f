"""High availability: replicas of `gt operator run` (real processes) elect a leader on a Lease of
the API double; the standby takes over when the leader dies or stops; a 403 at start-up is a
log line and a retry, not an exit; /readyz says which replica is fit to serve."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path

import pytest
from test_refinery_operator import play

from gastown.ledger import BeadType, Status
from gastown.polecats import Done

from conftest import GT, free_port, wait_for
from rigs import GATE_CHECK, git, make_rig

NS = "gastown-system"
LEASE = "gastown"


class Replica:
    """One operator replica as in the chart: its own POD_NAME, the release's POD_NAMESPACE, the probes."""

    def __init__(self, kubeconfig: Path, log: Path, pod: str, *args: str):
        self.pod, self.log, self.port = pod, log, free_port()
        env = {**os.environ, "KUBECONFIG": str(kubeconfig), "PYTHONUNBUFFERED": "1", "POD_NAME": pod,
               "POD_NAMESPACE": NS, "GT_CACHE_DIR": str(log.parent / f"{pod}-cache")}  # the pod's own emptyDir
        self.proc = subprocess.Popen(
            [GT, "operator", "run", "--liveness", f"http://127.0.0.1:{self.port}/healthz", "--metrics-port", "0",
             *args], stdout=log.open("ab"), stderr=subprocess.STDOUT, env=env)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def probe(self, path: str = "/readyz") -> tuple[int, dict] | None:
        """(status, body) of a probe; None while nothing answers."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
                return r.status, json.loads(r.read() or b"{}")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")
        except OSError:
            return None

    def ready(self) -> bool:
        answer = self.probe()
        return bool(answer and answer[0] == 200)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def replicas(kubeapi, kubeconfig, tmp_path):
    kubeapi.namespace(NS)
    started: list[Replica] = []

    def start(pod: str, *args: str) -> Replica:
        replica = Replica(kubeconfig, tmp_path / f"{pod}.log", pod, *args)
        started.append(replica)
        return replica

    yield start
    for replica in started:
        replica.stop()
        print(f"--- {replica.pod}\n{replica.output()}")  # shown when the test fails


def holder(kubeapi) -> str | None:
    lease = kubeapi.get("leases", NS, LEASE, group="coordination.k8s.io") or {}
    return (lease.get("spec") or {}).get("holderIdentity")


def rig_phase(kubeapi, name: str) -> str | None:
    return ((kubeapi.get("rigs", "default", name) or {}).get("status") or {}).get("phase")


def apply_rig(kubeapi, name: str, remote: Path) -> None:
    kubeapi.create({"apiVersion": "gastown.dev/v1alpha1", "kind": "Rig", "metadata": {"name": name},
                    "spec": {"gitUrl": f"file://{remote}"}})


@pytest.mark.slow
def test_sigterm_releases_the_lease_and_the_standby_takes_over_at_once(kubeapi, replicas, tmp_path):
    first = replicas("gastown-0")
    wait_for(lambda: holder(kubeapi) == "gastown-0", timeout=30, what=f"gastown-0 to lead\n{first.output()}")
    second = replicas("gastown-1")
    wait_for(lambda: first.ready() and second.ready(), timeout=30,
             what=f"both replicas ready\n{first.output()}\n{second.output()}")
    assert "standby" in second.probe()[1]["reason"] and "leader" in first.probe()[1]["reason"]
    apply_rig(kubeapi, "webapp", make_rig(tmp_path / "webapp").remote)
    wait_for(lambda: rig_phase(kubeapi, "webapp") == "Ready", timeout=30, what="the leader to reconcile the Rig")
    assert "webapp" not in second.output()  # the standby did nothing

    first.proc.send_signal(signal.SIGTERM)
    stopped = time.monotonic()
    wait_for(lambda: holder(kubeapi) == "gastown-1", timeout=10, what=f"the takeover\n{second.output()}")
    takeover = time.monotonic() - stopped
    print(f"\ntakeover after SIGTERM of the leader: {takeover:.2f}s (the lease lasts 10s)")
    assert first.proc.wait(20) == 0 and "released the Lease" in first.output()
    assert takeover < 5  # well under the lease's 10 s: the Lease was released, not left to expire
    # the new leader works: a second rig is reconciled
    apply_rig(kubeapi, "api", make_rig(tmp_path / "api").remote)
    wait_for(lambda: rig_phase(kubeapi, "api") == "Ready", timeout=30, what=f"the new leader at work\n{second.output()}")
    # the last replica stops (an uninstall): no Lease is left behind, held or not
    second.proc.send_signal(signal.SIGTERM)
    assert second.proc.wait(20) == 0, second.output()[-3000:]  # a clean stop, even mid-tick of the new rig's loop
    assert kubeapi.get("leases", NS, LEASE, group="coordination.k8s.io") is None, second.output()[-2000:]


@pytest.mark.slow
def test_a_restarted_single_replica_is_working_within_15_seconds(kubeapi, replicas, tmp_path):
    # a cluster installed by an older chart still has kopf's peering object: it must not make anyone pause
    kubeapi.create({"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": {"name": "gastown"}})
    first = replicas("gastown-0")
    apply_rig(kubeapi, "webapp", make_rig(tmp_path / "webapp").remote)
    wait_for(lambda: rig_phase(kubeapi, "webapp") == "Ready", timeout=60, what=f"the Rig\n{first.output()}")
    first.proc.kill()  # a crash: nothing released
    first.proc.wait()

    restarted = time.monotonic()
    again = replicas("gastown-0")  # the container restarted in the same pod: the same POD_NAME
    apply_rig(kubeapi, "api", make_rig(tmp_path / "api").remote)
    wait_for(lambda: rig_phase(kubeapi, "api") == "Ready", timeout=15,
             what=f"the restarted operator to reconcile a new Rig within 15 s\n{again.output()}")
    print(f"\nrestarted replica working after {time.monotonic() - restarted:.2f}s")
    assert "Pausing" not in again.output()


@pytest.mark.slow
def test_a_403_at_start_up_is_a_clear_log_line_and_a_retry_until_it_is_granted(kubeapi, operator, tmp_path):
    kubeapi.forbidden.add(("list", "gastown.dev", "rigs"))
    op = operator()  # standalone: no Lease
    wait_for(lambda: "forbidden: the operator may not list rigs.gastown.dev in all namespaces" in op.output(),
             timeout=30, what=f"the log line naming the permission\n{op.output()}")
    assert "list and watch on rigs.gastown.dev" in op.output()
    time.sleep(4)  # several retries later, it still waits rather than exits
    assert op.proc.poll() is None, op.output()
    assert op.output().count("may not list rigs.gastown.dev") >= 2  # retried
    apply_rig(kubeapi, "webapp", make_rig(tmp_path / "webapp").remote)
    kubeapi.forbidden.clear()  # the ClusterRole is fixed
    wait_for(lambda: rig_phase(kubeapi, "webapp") == "Ready", timeout=60, what=f"the Rig once allowed\n{op.output()}")


@pytest.mark.slow
def test_a_403_on_the_lease_is_a_clear_log_line_and_not_ready_until_granted(kubeapi, replicas, tmp_path):
    kubeapi.forbidden.add(("get", "coordination.k8s.io", "leases"))
    replica = replicas("gastown-0")
    wait_for(lambda: "forbidden: the operator may not get, create or update the Lease gastown-system/gastown"
             in replica.output(), timeout=30, what=f"the log line\n{replica.output()}")
    assert "leases.coordination.k8s.io in namespace gastown-system" in replica.output()
    status, body = wait_for(replica.probe, what="the probe")
    assert status == 503 and "forbidden" in body["reason"]
    kubeapi.forbidden.clear()
    wait_for(replica.ready, timeout=30, what=f"ready once allowed\n{replica.output()}")
    assert holder(kubeapi) == "gastown-0"


@pytest.mark.slow
def test_readiness_before_connecting_and_after_losing_the_lease(kubeapi, replicas, tmp_path):
    # no API server at all: alive, not ready, and says why
    lost = tmp_path / "nowhere.kubeconfig"
    lost.write_text((tmp_path / "kubeconfig").read_text().replace(kubeapi.url, f"http://127.0.0.1:{free_port()}"))
    alone = Replica(lost, tmp_path / "alone.log", "alone")
    try:
        status, body = wait_for(alone.probe, timeout=30, what=f"the probe\n{alone.output()}")
        assert status == 503 and "waiting for the API server" in body["reason"]
        assert alone.probe("/healthz") == (200, {})
    finally:
        alone.stop()

    leader = replicas("gastown-0")
    wait_for(leader.ready, timeout=30, what=f"the leader ready\n{leader.output()}")
    standby = replicas("gastown-1")
    wait_for(standby.ready, timeout=30, what=f"the standby ready\n{standby.output()}")
    # the leader can no longer renew (nor can anyone take over yet)
    kubeapi.forbidden.add(("update", "coordination.k8s.io", "leases"))
    cut = time.monotonic()
    status, body = wait_for(lambda: (a := leader.probe()) and a[0] == 503 and a, timeout=10,
                            what=f"the leader not ready\n{leader.output()}")
    assert "forbidden" in body["reason"]
    # it stops acting before the lease (10 s) could expire for anyone else
    assert leader.proc.wait(10) == 3
    stopped = time.monotonic() - cut
    assert "stopping: could not renew the Lease gastown-system/gastown" in leader.output()
    assert holder(kubeapi) == "gastown-0"  # nobody took it over meanwhile
    print(f"\nthe leader stopped acting {stopped:.2f}s after its renewals began to fail")
    kubeapi.forbidden.clear()
    wait_for(lambda: holder(kubeapi) == "gastown-1", timeout=20, what=f"the standby to take over\n{standby.output()}")


def session_jobs(kubeapi) -> list[dict]:
    return [j for j in kubeapi.list("jobs", "default")
            if j["metadata"]["labels"].get("app.kubernetes.io/component") == "agent-session"]


def play_sessions(kubeapi, rig, tmp_path: Path, played: set[str]) -> None:
    """Each new session Job does its bead's work as a polecat would: a branch adding mods/<bead>.txt,
    pushed, then `gt done` in the ledger; the Job then completes."""
    for job in session_jobs(kubeapi):
        name, labels = job["metadata"]["name"], job["metadata"]["labels"]
        if name in played:
            continue
        bead = labels["gastown.dev/bead"]
        with rig.ledger() as lg:
            polecat = lg.get(bead).assignee
        work, branch = tmp_path / "sessions" / name, f"polecat/{polecat}/{bead}"
        git("clone", "-q", str(rig.remote), str(work))
        git("checkout", "-q", "-b", branch, cwd=work)
        (work / "mods" / f"{bead}.txt").write_text(f"work of {bead}\n")
        git("add", "-A", cwd=work)
        git("-c", "user.name=p", "-c", "user.email=p@x", "commit", "-q", "-m", f"do {bead}", cwd=work)
        git("push", "-q", "origin", branch, cwd=work)
        with rig.ledger(actor=f"polecat {polecat}") as lg:
            lg.apply(Done(bead_id=bead, polecat=polecat, session=name, status="completed", branch=branch,
                          target="main", commit=git("rev-parse", "HEAD", cwd=work), reason="",
                          actor=f"polecat {polecat}"))
        kubeapi.patch("jobs", "default", name, {"status": {"active": 0, "succeeded": 1, "conditions": [
            {"type": "Complete", "status": "True"}]}}, subresource="status")
        played.add(name)


@pytest.mark.slow
def test_kill_9_of_the_leader_during_a_merge_the_standby_finishes_the_convoy_merging_each_bead_once(
        kubeapi, replicas, tmp_path):
    rig = make_rig(tmp_path, {"README.md": "# tiny\n", "check.py": GATE_CHECK, "mods/.keep": ""})
    first = replicas("gastown-0")
    wait_for(lambda: holder(kubeapi) == "gastown-0", timeout=30, what="gastown-0 to lead")
    pods = {"gastown-0": first, "gastown-1": replicas("gastown-1")}
    wait_for(pods["gastown-1"].ready, timeout=30, what="the standby ready")
    kubeapi.create({"apiVersion": "gastown.dev/v1alpha1", "kind": "Rig", "metadata": {"name": "webapp"},
                    "spec": {"gitUrl": f"file://{rig.remote}", "maxPolecats": 4, "verification": {
                        "gates": {"test": [sys.executable, "check.py"]}, "timeoutSeconds": 120}}})
    kubeapi.create({"apiVersion": "gastown.dev/v1alpha1", "kind": "MergeQueue", "metadata": {"name": "webapp"},
                    "spec": {"rig": "webapp", "fillWindowSeconds": 0}})
    kubeapi.create({"apiVersion": "gastown.dev/v1alpha1", "kind": "Convoy", "metadata": {"name": "feature"},
                    "spec": {"rig": "webapp", "beads": [{"key": f"b{i}", "title": f"Bead {i}"} for i in range(4)]}})
    sessions: set[str] = set()
    verified: dict[str, int] = {}
    killed: dict[str, float] = {}

    def kill_the_leader_as_it_merges() -> None:
        """Once a verification has passed, wait for the merge to reach main (or 3 s) and kill -9 the leader
        at once: the ledger has not recorded the merge yet, or has just."""
        main = git("rev-parse", "main", cwd=rig.remote)
        deadline = time.monotonic() + 3
        while git("rev-parse", "main", cwd=rig.remote) == main and time.monotonic() < deadline:
            time.sleep(0.01)
        leader = holder(kubeapi)
        pods[leader].proc.send_signal(signal.SIGKILL)
        killed[leader] = time.time()
        print(f"\nkilled {leader} {'just after its merge reached main' if git('rev-parse', 'main', cwd=rig.remote) != main else 'before its merge reached main'}")

    def progress() -> str | None:
        play_sessions(kubeapi, rig, tmp_path, sessions)
        before = len(verified)
        play(kubeapi, tmp_path, verified)
        if not killed and any(code == 0 for code in verified.values()) and len(verified) > before:
            kill_the_leader_as_it_merges()
        status = (kubeapi.get("convoys", "default", "feature") or {}).get("status") or {}
        return status.get("phase") == "Done" and killed and status

    status = wait_for(progress, timeout=240, what="the convoy to be Done after the failover")
    (dead, at), = killed.items()
    survivor = next(name for name in pods if name != dead)
    assert holder(kubeapi) == survivor
    lease = kubeapi.get("leases", NS, LEASE, group="coordination.k8s.io")
    took = datetime.fromisoformat(lease["spec"]["acquireTime"].replace("Z", "+00:00"))
    print(f"\nkill -9 of leader {dead} during a merge: {survivor} took the Lease over {took.timestamp() - at:.2f}s "
          f"later (the lease lasts 10 s)")
    assert status["progress"] == "4/4"

    # every bead merged exactly once, each by one session
    with rig.ledger() as lg:
        beads = [b for b in lg.beads().values() if b.type == BeadType.TASK]
    assert len(beads) == 4
    subjects = git("log", "main", "--merges", "--format=%s", cwd=rig.remote).splitlines()
    for bead in beads:
        assert bead.status == Status.CLOSED
        assert sum(bead.metadata["mr"] in s for s in subjects) == 1, (bead.id, subjects)
        assert rig.branch_file("main", f"mods/{bead.id}.txt") == f"work of {bead.id}"
        assert len([j for j in session_jobs(kubeapi) if j["metadata"]["labels"]["gastown.dev/bead"] == bead.id]) == 1
