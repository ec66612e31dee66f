"""Failover: how long the standby `gt operator run` takes to lead after the leader dies (kill -9)
and after it stops cleanly (SIGTERM), against the Kubernetes API double (tests/kubeapi.py).

Prints figures; asserts nothing (the tests check the behaviour: tests/integration/test_operator_failover.py).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from kubeapi import KubeAPI  # noqa: E402

GT = str(Path(sys.executable).parent / "gt")
NS = "gastown-system"


def holder(api: KubeAPI) -> str | None:
    lease = api.get("leases", NS, "gastown", group="coordination.k8s.io") or {}
    return (lease.get("spec") or {}).get("holderIdentity")


def wait(predicate, timeout: float = 60) -> float:
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise SystemExit("timed out")
        time.sleep(0.02)
    return time.monotonic() - start


def replica(kubeconfig: Path, pod: str, log: Path) -> subprocess.Popen:
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "POD_NAME": pod, "POD_NAMESPACE": NS}
    return subprocess.Popen([GT, "operator", "run", "--liveness", "", "--metrics-port", "0"],
                            stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env)


def main() -> None:
    api = KubeAPI().start()
    api.namespace(NS)
    procs: list[subprocess.Popen] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            kubeconfig = Path(tmp) / "kubeconfig"
            kubeconfig.write_text(yaml.safe_dump({
                "apiVersion": "v1", "kind": "Config", "current-context": "t",
                "clusters": [{"name": "t", "cluster": {"server": api.url}}],
                "users": [{"name": "t", "user": {"token": "t"}}],
                "contexts": [{"name": "t", "context": {"cluster": "t", "user": "t"}}]}))
            procs.append(replica(kubeconfig, "op-0", Path(tmp) / "op-0.log"))
            wait(lambda: holder(api) == "op-0")
            procs.append(replica(kubeconfig, "op-1", Path(tmp) / "op-1.log"))
            time.sleep(3)  # the standby has seen the Lease renewed
            procs[0].send_signal(signal.SIGKILL)
            crash = wait(lambda: holder(api) == "op-1")
            procs.append(replica(kubeconfig, "op-2", Path(tmp) / "op-2.log"))
            time.sleep(3)
            procs[1].send_signal(signal.SIGTERM)
            clean = wait(lambda: holder(api) == "op-2")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
        api.stop()
    print("failover (lease 10 s, two `gt operator run` against the API double)")
    print(f"  takeover after kill -9 of the leader: {crash:6.2f} s")
    print(f"  takeover after SIGTERM of the leader: {clean:6.2f} s  (the Lease is released)")


if __name__ == "__main__":
    main()
