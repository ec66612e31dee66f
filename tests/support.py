"""Helpers the tests of every folder share (tests/conftest.py re-exports them)."""

from __future__ import annotations

import socket
import urllib.request
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
