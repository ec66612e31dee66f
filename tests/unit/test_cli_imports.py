"""`gt --help` and `gt bead --help` start fast: they load no Kubernetes client, kopf, GitPython,
operator module, pydantic model or metrics library (the commands are imported on first use)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import GT

# what `gt` would run, and then the modules it loaded, on the last line of stdout (not as JSON:
# the json module would load re, which a create must not need)
PROGRAM = """
import sys
from gastown.cli.main import main
try:
    main()
except SystemExit:
    pass
print(" ".join(sorted(sys.modules)))
"""
ENTRY_PROGRAM = PROGRAM.replace("cli.main", "cli.entry")  # what the `gt` console script runs
# what a create read by the entry point would load but for the work done to spare it (each costs
# it 2-8 ms of CPU; together more than the interpreter's start): none of these
NOT_FOR_A_CREATE = ("click", "gastown.settings", "typing", "inspect", "dataclasses", "re", "pathlib", "hashlib",
                    "pickle", "json", "contextlib", "subprocess", "importlib")

HEAVY = ("kubernetes", "kopf", "git", "gastown.kube", "gastown.ledger", "gastown.local", "pydantic", "yaml",
         "prometheus_client", "opentelemetry")


def loaded_by(*args: str) -> tuple[str, list[str]]:
    """The output of `gt ARGS` in a fresh interpreter, and the modules it imported."""
    res = subprocess.run([sys.executable, "-c", PROGRAM, *args], capture_output=True, text=True, check=True)
    *out, modules = res.stdout.splitlines()
    return "\n".join(out), modules.split()


def heavy(modules: list[str]) -> list[str]:
    return [m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY)]


@pytest.mark.parametrize("args", [["--help"], ["bead", "--help"], ["--version"]], ids=" ".join)
def test_help_imports_nothing_heavy(args):
    out, modules = loaded_by(*args)
    assert out.startswith("Usage: gt") or out.startswith("gt, version"), out
    assert heavy(modules) == []


def test_a_command_still_loads_what_it_needs():
    """The check above would pass for a CLI that loads nothing: a real command does load the ledger."""
    out, modules = loaded_by("bead", "show", "--help")
    assert "--json" in out
    assert "gastown.ledger.ledger" in modules and "pydantic" in modules


@pytest.mark.parametrize("program", [ENTRY_PROGRAM, PROGRAM], ids=["gt", "click"])
def test_a_create_handed_to_the_committer_loads_no_ledger(tmp_path, program):
    """`gt bead create` on a rig path spools its write for the machine's committer and waits for
    its outcome: it loads neither pydantic nor the git plumbing, and the bead is on the remote.
    Read by `gt`'s entry point (cli/entry.py), it loads no click, nor what click costs most."""
    rig = tmp_path / "rig.git"
    subprocess.run(["git", "init", "-q", "--bare", str(rig)], check=True)
    env = {**os.environ, "GT_CACHE_DIR": str(tmp_path / "cache"), "GT_TOWN": str(tmp_path), "GT_ACTOR": "tester"}
    made = []
    for title in ("handed off", "once a committer listens"):  # the first starts it (and loads subprocess)
        res = subprocess.run([sys.executable, "-c", program, "bead", "--rig", str(rig), "create", title],
                             capture_output=True, text=True, check=True, env=env)
        *out, modules = res.stdout.splitlines()
        loaded = modules.split()
        assert heavy(loaded) == ["gastown.ledger", "gastown.ledger.errors", "gastown.ledger.handoff"]
        made.append((out[0], title, "tester"))
    if "entry" in program:
        assert [m for m in loaded if m in NOT_FOR_A_CREATE] == []
    listed = subprocess.run([GT, "bead", "--rig", str(rig), "list", "--json"], capture_output=True, text=True,
                            check=True, env=env).stdout
    assert sorted((b["id"], b["title"], b["created_by"]) for b in json.loads(listed)) == sorted(made)


@pytest.mark.parametrize("change", [["comment", "{id}", "a note"], ["close", "{id}", "-r", "done"], ["reopen", "{id}"]],
                         ids=["comment", "close", "reopen"])
def test_a_change_handed_to_the_committer_loads_no_ledger(tmp_path, change):
    """`gt bead comment|close|reopen` on a rig path, read by the entry point, is handed to the
    committer as a create is: no pydantic, git plumbing or click, nor the imports a create spares."""
    rig = tmp_path / "rig.git"
    subprocess.run(["git", "init", "-q", "--bare", str(rig)], check=True)
    env = {**os.environ, "GT_CACHE_DIR": str(tmp_path / "cache"), "GT_TOWN": str(tmp_path), "GT_ACTOR": "tester"}

    def gt(*args):
        return subprocess.run([sys.executable, "-c", ENTRY_PROGRAM, "bead", "--rig", str(rig), *args],
                              capture_output=True, text=True, check=True, env=env).stdout.splitlines()

    bead_id = gt("create", "to change")[0]
    if change[0] == "reopen":
        gt("close", bead_id)
    *out, modules = gt(*(a.format(id=bead_id) for a in change))
    loaded = modules.split()
    assert heavy(loaded) == ["gastown.ledger", "gastown.ledger.errors", "gastown.ledger.handoff"]
    assert [m for m in loaded if m in NOT_FOR_A_CREATE] == []
    shown = json.loads(subprocess.run([GT, "bead", "--rig", str(rig), "show", "--json", bead_id], capture_output=True,
                                      text=True, check=True, env=env).stdout)
    assert out[0].startswith(bead_id)
    assert {"comment": lambda: shown["comments"][-1]["text"] == "a note",
            "close": lambda: (shown["status"], shown["close_reason"]) == ("closed", "done"),
            "reopen": lambda: shown["status"] == "open"}[change[0]]()


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


def test_the_light_create_offers_every_kind_of_bead_a_person_makes():
    """`gt bead create` spells the types out (it loads no model): they are the model's, but merge-batch."""
    from gastown.cli.entry import TYPES
    from gastown.ledger import BeadType

    assert TYPES == [t.value for t in BeadType if t != BeadType.MERGE_BATCH]


def test_a_local_sessions_wrapper_loads_nothing_heavy_before_its_agent_starts():
    """The wrapper (`python -m gastown.runtimes.wrapper`) starts the agent from what its own module
    imports: no click, no settings, no ledger, git or pydantic until the agent runs, nor typing
    (several ms of a freed slot's gap)."""
    program = "import json, sys, gastown.runtimes.wrapper; print(json.dumps(sorted(sys.modules)))"
    res = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=True)
    modules = json.loads(res.stdout)
    assert "gastown.runtimes.session" in modules
    assert heavy(modules) + [m for m in modules if m in ("click", "gastown.settings", "gastown.cli", "typing")] == []
