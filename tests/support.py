"""Helpers the tests of every folder share (tests/conftest.py re-exports them)."""

from __future__ import annotations

import json
import socket
import time
import urllib.request
from collections.abc import Iterable
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    """The samples at 127.0.0.1:port/metrics by (name, sorted labels); empty while nothing answers."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    except OSError:
        return {}
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def session_processes(session: str) -> list[tuple[int, int, str]]:
    """(pid, process group, command line) of every live process of a gastown session, found by the
    GT_SESSION its environment holds (zombies are not live). Linux: it reads /proc."""
    mark = f"GT_SESSION={session}".encode()
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, _, group = stat.read_text().rpartition(")")[2].split()[:3]
            if state not in ("Z", "X") and mark in (stat.parent / "environ").read_bytes().split(b"\0"):
                cmdline = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                out.append((int(stat.parent.name), int(group), cmdline))
        except (OSError, ValueError):
            continue
    return out


def most_at_once(starts: Iterable[float], ends: Iterable[float]) -> int:
    """The most things running together, from when each started and ended (in any order)."""
    running = peak = 0
    for _t, step in sorted([(t, 1) for t in starts] + [(t, -1) for t in ends]):
        running += step  # an end and a start at the same instant: the end first (-1 sorts before 1)
        peak = max(peak, running)
    return peak


def agents_at_once(sessions: Path) -> int:
    """The most agents that ran together in the session dirs under ``sessions``: each agent from its
    start (its wrapper writes agent.pgid as it spawns it) to its exit (agent.ended, before the
    wrapper's wrap-up, during which the slot is already free: wrappers overlap then, by design, and
    are not what the limit counts). Every session there must have run its agent."""
    dirs = [request.parent for request in sessions.glob("*/request.json")]
    return most_at_once([(d / "agent.pgid").stat().st_mtime for d in dirs],
                        [(d / "agent.ended").stat().st_mtime for d in dirs])


def session_results(sessions: Path, timeout: float = 60) -> list[dict]:
    """The result of every session under ``sessions``, once every wrapper has written its own. A
    wrapper writes it after its last ledger write, so a bead may merge, and a convoy finish, a moment
    before its last session's result is there."""
    deadline = time.monotonic() + timeout
    while True:
        results = [d.parent / "result.json" for d in sessions.glob("*/request.json")]
        missing = [r.parent.name for r in results if not r.exists()]
        if not missing:
            return [json.loads(r.read_text()) for r in results]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for the results of sessions {missing}")
        time.sleep(0.05)


def write_kubeconfig(path: Path, server: str) -> Path:
    """A user's kubeconfig at ``path`` for the API at ``server`` (its context: "test", namespace default)."""
    import yaml

    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "test",
        "clusters": [{"name": "test", "cluster": {"server": server}}],
        "users": [{"name": "test", "user": {"token": "test-token"}}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test", "namespace": "default"}}]}))
    return path
