"""Shared fixtures: the Kubernetes API double, a kubeconfig for it, the operator process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))

from gastown.kube import rbac  # noqa: E402

from kubeapi import KubeAPI  # noqa: E402
from support import (  # noqa: E402, F401 (re-exported: the tests import them from here)
    agents_at_once,
    free_port,
    most_at_once,
    scrape,
    session_processes,
    session_results,
)

ROOT = Path(__file__).resolve().parent.parent
GT = str(Path(sys.executable).parent / "gt")


def wait_for(predicate: Callable[[], object], timeout: float = 20,
             what: str | Callable[[], str] = "condition") -> object:
    """Poll ``predicate`` until it returns something truthy; fail with ``what`` after ``timeout``
    (a callable: what to say, read when it fails, such as a log's tail)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what() if callable(what) else what}")
        time.sleep(0.05)


@pytest.fixture
def kubeapi() -> Iterator[KubeAPI]:
    api = KubeAPI().start()
    yield api
    api.stop()
    # every call made (by the operator, or a `gt` command acting for a user) is one the chart's RBAC allows
    # (its Roles in the watched namespaces, its ClusterRole, its leader Role)
    denied = sorted(c for c in api.verbs() if not rbac.allows(rbac.NAMESPACED + rbac.CLUSTER + rbac.LEADER, *c))
    assert not denied, f"API calls no RBAC rule of gastown.kube.rbac allows: {denied}"


@pytest.fixture
def kubeconfig(kubeapi: KubeAPI, tmp_path: Path) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "test",
        "clusters": [{"name": "test", "cluster": {"server": kubeapi.url}}],
        "users": [{"name": "test", "user": {"token": "test-token"}}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test",
                                                  "namespace": "default"}}],
    }))
    return path


class OperatorProcess:
    def __init__(self, kubeconfig: Path, log: Path, args: list[str], cache: Path):
        self.log = log
        # its own ledger caches, as each replica's pod has (not ~/.cache/gastown, which every test run shares)
        env = {"GT_CACHE_DIR": str(cache), **os.environ, "KUBECONFIG": str(kubeconfig), "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [GT, "operator", "run", "--standalone", "--liveness", "", "--metrics-port", "0", *args],
            stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def operator(kubeconfig: Path, tmp_path: Path) -> Iterator[Callable[..., OperatorProcess]]:
    """Start ``gt operator run`` as a real process against the API double."""
    started: list[OperatorProcess] = []

    def start(*args: str) -> OperatorProcess:
        n = len(started)
        op = OperatorProcess(kubeconfig, tmp_path / f"operator-{n}.log", list(args), cache=tmp_path / f"operator-{n}-cache")
        started.append(op)
        return op

    yield start
    for op in started:
        op.stop()
