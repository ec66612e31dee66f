"""`gt --help` and `gt bead --help` start fast: they load no Kubernetes client, kopf, GitPython,
operator module, pydantic model or metrics library (the commands are imported on first use)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import GT

# what `gt` would run, and then the modules it loaded, one JSON list on the last line of stdout
PROGRAM = """
import json, sys
from gastown.cli.main import main
try:
    main()
except SystemExit:
    pass
print(json.dumps(sorted(sys.modules)))
"""

HEAVY = ("kubernetes", "kopf", "git", "gastown.kube", "gastown.ledger", "gastown.local", "pydantic", "yaml",
         "prometheus_client", "opentelemetry")


def loaded_by(*args: str) -> tuple[str, list[str]]:
    """The output of `gt ARGS` in a fresh interpreter, and the modules it imported."""
    res = subprocess.run([sys.executable, "-c", PROGRAM, *args], capture_output=True, text=True, check=True)
    *out, modules = res.stdout.splitlines()
    return "\n".join(out), json.loads(modules)


def heavy(modules: list[str]) -> list[str]:
    return [m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY)]


@pytest.mark.parametrize("args", [["--help"], ["bead", "--help"], ["--version"]], ids=" ".join)
def test_help_imports_nothing_heavy(args):
    out, modules = loaded_by(*args)
    assert out.startswith("Usage: gt") or out.startswith("gt, version"), out
    assert heavy(modules) == []


def test_a_command_still_loads_what_it_needs():
    """The check above would pass for a CLI that loads nothing: a real command does load the ledger."""
    out, modules = loaded_by("bead", "create", "--help")
    assert "--description" in out
    assert "gastown.ledger" in modules


@pytest.mark.parametrize("command", [["bead", "--rig", "{rig}", "create", "hello"], ["escalate", "list", "--rig", "{rig}"]],
                         ids=["lazy group", "top-level command"])
def test_the_git_timeout_still_reaches_the_ledger(tmp_path, command):
    """Settings are applied once the command is known (a lazy group applies them itself)."""
    rig = tmp_path / "rig.git"
    subprocess.run(["git", "init", "-q", "--bare", str(rig)], check=True)
    env = {**os.environ, "GT_GIT_TIMEOUT": "0.001", "XDG_CACHE_HOME": str(tmp_path / "cache"), "GT_TOWN": str(tmp_path)}
    res = subprocess.run([GT, *(a.format(rig=rig) for a in command)], capture_output=True, text=True, env=env)
    assert res.returncode == 1
    assert "timed out" in res.stderr
