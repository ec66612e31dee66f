"""`gt`'s entry point reads a create handed to the committer without click (cli/entry.py): it
must read every such command line as click does, and leave every other one to click."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import entry_points

import click
import pytest
from click.testing import CliRunner

from gastown.cli import bead_create, entry
from gastown.cli.bead import bead
from gastown.cli.main import cli
from gastown.settings import Settings

from conftest import GT

ENV = {"GT_RIG": "", "GT_ACTOR": "", "GT_CACHE_DIR": ""}  # click's envvars, unset unless a case sets them

READ_HERE = [  # (argv, environment): command lines the entry point reads itself
    (["bead", "--rig", "/r.git", "create", "a title"], {}),
    (["bead", "--rig=/r.git", "--actor", "ann", "--cache-dir", "/c", "create", "t"], {}),
    (["bead", "create", "from the environment"], {"GT_RIG": "https://h/r.git", "GT_ACTOR": "env",
                                                   "GT_CACHE_DIR": "/env-cache"}),
    (["bead", "create", "here, the default rig"], {}),
    (["bead", "--rig", "/group.git", "create", "--rig", "/command.git", "the command's rig wins"], {}),
    (["bead", "--rig", "/r.git", "create", "-d", "what", "-a", "how", "-t", "bug", "-p", "0", "-l", "x", "-l", "y",
      "--assignee", "bo", "--owner", "al", "--parent", "gt-abc", "--needs", "gt-1", "--needs", "gt-2",
      "--meta", "k=v", "--meta", "gone=", "--json", "every option"], {}),
    (["bead", "--rig", "/r.git", "create", "--type=epic", "options around", "--priority=4", "--description=d"], {}),
    (["bead", "--rig", "/r.git", "create", "-p", "1", "-p", "3", "the last one wins"], {}),
    (["bead", "--rig", "/r.git", "create", "--assignee", "", "-d", "", "empty values"], {}),
    (["bead", "--rig", "/r.git", "create", "title; rm -rf / $(x) `y` 'z' \"w\""], {}),
    (["bead", "--rig", "git@host:r.git", "create", "scp-like URL"], {}),
]

LEFT_TO_CLICK = [  # command lines click reads (for help, an error, or the full way through a Ledger)
    [], ["--help"], ["--version"], ["bead"], ["bead", "--help"], ["bead", "create", "--help"],
    ["bead", "--rig", "/r.git", "list"], ["status"], ["bead", "--rig", "/r.git", "create"],
    ["bead", "--rig", "/r.git", "create", "one", "two"], ["bead", "--rig", "/r.git", "create", "-x", "t"],
    ["bead", "--rig", "/r.git", "create", "-p", "5", "t"], ["bead", "--rig", "/r.git", "create", "-p", "+1", "t"],
    ["bead", "--rig", "/r.git", "create", "-p1", "t"], ["bead", "--rig", "/r.git", "create", "-t", "Bug", "t"],
    ["bead", "--rig", "/r.git", "create", "-t", "merge-batch", "t"],
    ["bead", "--rig", "/r.git", "create", "--meta", "novalue", "t"],
    ["bead", "--rig", "/r.git", "create", "--meta", "=v", "t"], ["bead", "--rig", "/r.git", "create", "   "],
    ["bead", "--rig", "/r.git", "create", "--", "-dash title"], ["bead", "--rig", "/r.git", "create", "-d", "-x", "t"],
    ["bead", "--rig", "/r.git", "create", "t", "--json=1"], ["bead", "--rig", "/r.git", "create", "t", "-d"],
    ["bead", "--rig", "myrig", "create", "a town's rig"], ["bead", "--prefix", "ab", "--rig", "/r.git", "create", "t"],
    ["bead", "--town", "/t", "--rig", "/r.git", "create", "t"], ["bead", "--rig", "", "create", "t"],
    ["bead", "--rig", "/r.git", "create", "--town", "/t", "t"], ["--help", "bead", "--rig", "/r.git", "create", "t"],
    ["bead", "--rig", "/r.git", "--unknown", "create", "t"], ["bead", "--rig", "/r.git", "show", "create"],
]


def clicks_reading(argv, env, monkeypatch):
    """What click hands to ``create_handed_off`` for ``gt ARGV`` (None: it does not hand off)."""
    seen = []
    monkeypatch.setattr(bead_create, "create_handed_off", lambda **kw: seen.append(kw))
    res = CliRunner().invoke(cli, argv, env={**ENV, **env}, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    (found,) = seen
    return {**found, "cache_dir": None if found["cache_dir"] is None else str(found["cache_dir"])}


@pytest.mark.parametrize(("argv", "env"), READ_HERE, ids=[" ".join(a) for a, _ in READ_HERE])
def test_the_entry_point_reads_a_create_as_click_does(argv, env, monkeypatch):
    assert entry.read_create(argv, env) == clicks_reading(argv, env, monkeypatch)


@pytest.mark.parametrize("argv", LEFT_TO_CLICK, ids=[" ".join(a) or "(none)" for a in LEFT_TO_CLICK])
def test_every_other_command_line_is_left_to_click(argv):
    assert entry.read_create(argv, {}) is None


@pytest.mark.parametrize("variable", entry.SETTINGS_VARIABLES)
def test_a_setting_in_the_environment_leaves_the_create_to_click(variable):
    """click's `gt` reads and checks every setting; with one set, the create is click's too."""
    argv = ["bead", "--rig", "/r.git", "create", "t"]
    assert entry.read_create(argv, {}) is not None
    assert entry.read_create(argv, {variable: "1"}) is None
    assert entry.read_create(argv, {variable: ""}) is not None  # Settings ignores an empty one too


def test_the_settings_it_knows_are_the_settings():
    assert set(entry.SETTINGS_VARIABLES) == set(Settings._ENV.values())
    assert entry.DEFAULT_GIT_TIMEOUT == Settings.from_env({}).git_timeout


@pytest.mark.parametrize(("group", "table"), [(bead, entry.GROUP_OPTIONS),
                                              (bead.get_command(click.Context(bead), "create"),
                                               entry.CREATE_OPTIONS | entry.CREATE_FLAGS)], ids=["bead", "create"])
def test_each_option_is_read_here_under_clicks_name_or_left_to_click(group, table):
    """A new option of click's command is left to click (a word the entry point does not know),
    and each it reads has the keyword and the kind of click's (a flag, repeated, one value)."""
    options = {opt: param for param in group.params if isinstance(param, click.Option) for opt in param.opts}
    assert set(table) <= set(options)
    for opt, keyword in table.items():
        param = options[opt]
        assert keyword == param.name, opt
        assert param.is_flag == (opt in entry.CREATE_FLAGS), opt
        assert param.multiple == (keyword in entry.REPEATED), opt
    assert set(options) - set(table) <= {"--town", "--prefix", "--help"}


def test_a_create_handed_off_and_one_read_by_click_make_the_same_bead(tmp_path):
    """The two ways end to end, on a real bare repository: `gt` (the entry point) and click's
    `python -m gastown.cli.main` make the same record, and fail with the same line."""
    rig = tmp_path / "rig.git"
    subprocess.run(["git", "init", "-q", "--bare", str(rig)], check=True)
    env = {**os.environ, "GT_CACHE_DIR": str(tmp_path / "cache"), "GT_TOWN": str(tmp_path / "town"),
           "GT_ACTOR": "tester"}
    args = ["bead", "--rig", str(rig), "create", "-d", "what", "-t", "bug", "-p", "1", "-l", "x", "--meta", "k=v",
            "--json", "same either way"]
    ways = {"entry": [GT], "click": [sys.executable, "-m", "gastown.cli.main"]}
    made = {}
    for way, program in ways.items():
        res = subprocess.run([*program, *args], capture_output=True, text=True, check=True, env=env)
        made[way] = {k: v for k, v in json.loads(res.stdout).items() if k not in ("id", "created_at", "updated_at")}
    assert made["entry"] == made["click"]
    assert made["entry"]["labels"] == ["x"] and made["entry"]["metadata"] == {"k": "v"}

    missing = tmp_path / "no such rig"
    failed = {way: subprocess.run([*program, "bead", "--rig", str(missing), "create", "t"], capture_output=True,
                                  text=True, env=env)
              for way, program in ways.items()}
    assert failed["entry"].returncode == failed["click"].returncode == 1
    assert failed["entry"].stderr == failed["click"].stderr
    assert failed["entry"].stderr.startswith("gt: error: ") and str(missing) in failed["entry"].stderr


def test_gt_is_the_entry_point():
    """The `gt` the package installs runs the entry point (not click's group directly)."""
    (gt,) = entry_points(group="console_scripts", name="gt")
    assert gt.value == "gastown.cli.entry:main"
