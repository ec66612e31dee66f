"""`gt config agent` as a user runs it."""

from __future__ import annotations

import os
import subprocess

from conftest import GT


def gt(tmp_path, *args):
    env = {**os.environ, "GT_RUNTIMES_FILE": str(tmp_path / "runtimes.yaml")}
    return subprocess.run([GT, "config", "agent", *args], capture_output=True, text=True, env=env)


def test_set_show_list_rm(tmp_path):
    res = gt(tmp_path, "set", "mycli", "--command", "mycli run", "--args", "--yes '{prompt}'",
             "--model-args", "--model {model}", "--api-key-env", "MYCLI_KEY")
    assert res.returncode == 0, res.stderr
    show = gt(tmp_path, "show", "mycli").stdout
    assert "command:     mycli run" in show and "args:        --yes '{prompt}'" in show
    assert "API keys in: MYCLI_KEY" in show
    listing = gt(tmp_path, "list").stdout
    assert "mycli      custom" in listing and "claude     preset" in listing
    assert gt(tmp_path, "set", "claude", "--command", "/opt/claude-shim").returncode == 0
    assert "claude     custom" in gt(tmp_path, "list").stdout
    assert gt(tmp_path, "rm", "claude").returncode == 0
    assert "claude     preset" in gt(tmp_path, "list").stdout


def test_errors(tmp_path):
    res = gt(tmp_path, "set", "Bad Name", "--command", "x")
    assert res.returncode == 1 and res.stderr == "gt: error: 'Bad Name' is not a runtime name: use lowercase letters, digits and '-'\n"
    res = gt(tmp_path, "show", "nope")
    assert res.returncode == 1 and "unknown runtime 'nope'" in res.stderr
    res = gt(tmp_path, "rm", "nope")
    assert res.returncode == 1 and "no custom runtime 'nope'" in res.stderr
