"""`gt`'s entry point reads a create, a close, a reopen and a comment handed to the committer
without click (cli/entry.py): it must read every such command line as click does, and leave
every other one to click."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import entry_points

import click
import pytest
from click.testing import CliRunner

from gastown.cli import bead_commands, bead_create, entry
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


CHANGES_READ_HERE = [  # (argv, environment): a close, a reopen, a comment read by the entry point
    (["bead", "--rig", "/r.git", "close", "gt-abc"], {}),
    (["bead", "--rig", "/r.git", "close", "-r", "done", "gt-abc", "--json"], {}),
    (["bead", "--rig=/r.git", "--actor", "ann", "close", "--reason=first", "--reason", "last wins", "gt-abc"], {}),
    (["bead", "close", "gt-abc"], {"GT_RIG": "https://h/r.git", "GT_ACTOR": "env", "GT_CACHE_DIR": "/env-cache"}),
    (["bead", "--rig", "/r.git", "reopen", "gt-abc", "-r", "again"], {}),
    (["bead", "--rig", "/r.git", "comment", "gt-abc", "a note; rm -rf / $(x)"], {}),
    (["bead", "--rig", "/r.git", "comment", "--json", "gt-abc", "a note", "--rig", "/command.git"], {}),
    (["bead", "--cache-dir", "/c", "--rig", "git@host:r.git", "comment", "gt-abc.1", "   "], {}),
]

CHANGES_LEFT_TO_CLICK = [
    ["bead", "--rig", "/r.git", "close"], ["bead", "--rig", "/r.git", "close", "a", "b"],
    ["bead", "--rig", "/r.git", "close", "gt-a", "-r"], ["bead", "--rig", "/r.git", "close", "-x", "gt-a"],
    ["bead", "--rig", "/r.git", "close", "--help"], ["bead", "--rig", "/r.git", "close", "--town", "/t", "gt-a"],
    ["bead", "--rig", "/r.git", "close", "-r", "-dash", "gt-a"], ["bead", "--rig", "/r.git", "close", "--", "gt-a"],
    ["bead", "--rig", "myrig", "close", "gt-a"], ["bead", "--prefix", "ab", "--rig", "/r.git", "close", "gt-a"],
    ["bead", "--rig", "/r.git", "reopen"], ["bead", "--rig", "/r.git", "comment", "gt-a"],
    ["bead", "--rig", "/r.git", "comment", "gt-a", "one", "two"], ["bead", "--rig", "/r.git", "comment", "-r", "x", "gt-a", "t"],
    ["bead", "--rig", "/r.git", "comment", "gt-a", ""], ["bead", "--rig", "/r.git", "comment", "gt-a", "-dash text"],
    ["bead", "--rig", "/r.git", "show", "gt-a"], ["bead", "--rig", "/r.git", "update", "gt-a", "--title", "t"],
]


def handed(monkeypatch, module, name):
    """What click hands to ``module.name`` (a hand-off), recorded instead of run."""
    seen = []
    monkeypatch.setattr(module, name, lambda **kw: seen.append(kw))
    return seen


def clicks_reading(argv, env, monkeypatch, module=bead_create, name="create_handed_off"):
    """What click hands to ``create_handed_off`` (or ``name`` of ``module``) for ``gt ARGV``."""
    seen = handed(monkeypatch, module, name)
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


@pytest.mark.parametrize(("argv", "env"), CHANGES_READ_HERE, ids=[" ".join(a) for a, _ in CHANGES_READ_HERE])
def test_the_entry_point_reads_a_change_as_click_does(argv, env, monkeypatch):
    assert entry.read_create(argv, env) is None
    assert entry.read_change(argv, env) == clicks_reading(argv, env, monkeypatch, bead_commands, "change_handed_off")


@pytest.mark.parametrize("argv", CHANGES_LEFT_TO_CLICK + LEFT_TO_CLICK,
                         ids=[" ".join(a) or "(none)" for a in CHANGES_LEFT_TO_CLICK + LEFT_TO_CLICK])
def test_every_other_change_is_left_to_click(argv):
    assert entry.read_change(argv, {}) is None


def test_a_change_on_a_towns_rig_is_made_by_a_ledger_of_the_process(tmp_path, monkeypatch):
    """A rig by name is not handed off, by either way: click makes the change itself."""
    seen = handed(monkeypatch, bead_commands, "change_handed_off")
    res = CliRunner().invoke(cli, ["bead", "--town", str(tmp_path / "town"), "--rig", "myrig", "close", "gt-a"],
                             env=ENV)
    assert seen == [] and res.exit_code == 1 and "myrig" in res.output


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
                                               entry.CREATE_OPTIONS | entry.FLAGS),
                                              *((bead.get_command(click.Context(bead), kind),
                                                 entry.CHANGE_OPTIONS[kind] | entry.FLAGS)
                                                for kind in entry.CHANGE_OPTIONS)],
                         ids=["bead", "create", *entry.CHANGE_OPTIONS])
def test_each_option_is_read_here_under_clicks_name_or_left_to_click(group, table):
    """A new option of click's command is left to click (a word the entry point does not know),
    and each it reads has the keyword and the kind of click's (a flag, repeated, one value)."""
    options = {opt: param for param in group.params if isinstance(param, click.Option) for opt in param.opts}
    assert set(table) <= set(options)
    for opt, keyword in table.items():
        param = options[opt]
        assert param.name == ("reason" if keyword == "text" else keyword), opt  # (a reason is a change's text)
        assert param.is_flag == (opt in entry.FLAGS), opt
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


def test_a_change_handed_off_and_one_read_by_click_print_and_make_the_same(tmp_path):
    """A comment, a close and a reopen, each made by `gt` (the entry point) and by click's
    `python -m gastown.cli.main` on a real bare repository: the same line printed, the same
    change recorded, the same error for a bead that does not exist."""
    rig = tmp_path / "rig.git"
    subprocess.run(["git", "init", "-q", "--bare", str(rig)], check=True)
    env = {**os.environ, "GT_CACHE_DIR": str(tmp_path / "cache"), "GT_TOWN": str(tmp_path / "town"),
           "GT_ACTOR": "tester"}
    ways = {"entry": [GT], "click": [sys.executable, "-m", "gastown.cli.main"]}

    def gt(way, *args, check=True):
        return subprocess.run([*ways[way], "bead", "--rig", str(rig), *args], capture_output=True, text=True,
                              check=check, env=env)

    beads = {way: gt(way, "create", f"changed by {way}").stdout.strip() for way in ways}
    said = {}
    for way, bead_id in beads.items():
        said[way] = [gt(way, "comment", bead_id, "first; $(rm -rf /)").stdout.replace(bead_id, "ID"),
                     json.loads(gt(way, "comment", "--json", bead_id, "second").stdout)["text"],
                     gt(way, "close", "-r", "done", bead_id).stdout.replace(bead_id, "ID").replace(way, "WAY"),
                     gt(way, "reopen", bead_id, "--reason", "again").stdout.replace(bead_id, "ID").replace(way, "WAY"),
                     json.loads(gt(way, "close", "--json", bead_id).stdout)["status"]]
    assert said["entry"] == said["click"]
    assert said["entry"][:2] == ["ID: 1 comments\n", "second"]
    assert said["entry"][2].split() == ["ID", "closed", "P2", "task", "-", "changed", "by", "WAY"]
    listed = json.loads(gt("entry", "list", "--all", "--json").stdout)
    kept = {b["id"]: ([c["text"] for c in b["comments"]], b["status"], b.get("close_reason")) for b in listed}
    assert kept[beads["entry"]] == kept[beads["click"]] == (["first; $(rm -rf /)", "second", "reopened: again"],
                                                            "closed", None)
    failed = {way: gt(way, "close", "gt-nope", check=False) for way in ways}
    assert failed["entry"].returncode == failed["click"].returncode == 1
    assert failed["entry"].stderr == failed["click"].stderr == "gt: error: no bead gt-nope in this ledger\n"


def test_gt_is_the_entry_point():
    """The `gt` the package installs runs the entry point (not click's group directly)."""
    (gt,) = entry_points(group="console_scripts", name="gt")
    assert gt.value == "gastown.cli.entry:main"
