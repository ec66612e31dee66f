"""Every command and option of `gt` explains itself."""

from __future__ import annotations

import importlib
import subprocess

import click
import pytest

from gastown.cli.lazy import LazyGroup
from gastown.cli.main import cli

from conftest import GT


def _commands(group: click.Group, prefix=("gt",)):
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        path = (*prefix, name)
        yield path, cmd
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, path)


COMMANDS = list(_commands(cli))
LAZY = [(path, cmd) for path, cmd in [(("gt",), cli), *COMMANDS] if isinstance(cmd, LazyGroup)]


@pytest.mark.parametrize(("path", "cmd"), COMMANDS, ids=[" ".join(p) for p, _ in COMMANDS])
def test_every_command_and_option_has_help(path, cmd):
    assert (cmd.help or "").strip(), f"{' '.join(path)} has no help text"
    for param in cmd.params:
        if isinstance(param, click.Option):
            assert (param.help or "").strip(), f"{' '.join(path)} {param.opts[0]} has no help"


def test_gt_help_runs_as_a_program():
    out = subprocess.run([GT, "--help"], capture_output=True, text=True, check=True).stdout
    assert "operator" in out
    out = subprocess.run([GT, "operator", "run", "--help"], capture_output=True, text=True, check=True).stdout
    for option in ("--namespace", "--all-namespaces", "--standalone", "--lease-name", "--lease-namespace",
                   "--lease-duration", "--liveness", "--server-timeout", "--client-timeout", "--workers", "--verbose"):
        assert option in out
    assert "--peering-name" not in out and "--priority" not in out  # deprecated, ignored, hidden


def test_namespace_and_all_namespaces_conflict():
    res = subprocess.run([GT, "operator", "run", "-n", "a", "-A"], capture_output=True, text=True)
    assert res.returncode == 2
    assert "either --namespace or --all-namespaces" in res.stderr


@pytest.mark.parametrize(("path", "group"), LAZY, ids=[" ".join(p) for p, _ in LAZY])
def test_the_lazy_table_agrees_with_the_commands(path, group):
    """A lazy group lists its commands from its table: the names and short help are theirs."""
    ctx = click.Context(group)
    for name, (_where, short_help) in group.lazy.items():
        cmd = group.get_command(ctx, name)
        assert cmd is not None and cmd.name == name, f"{' '.join(path)} {name}"
        for limit in (20, 45, 60, 80, 200):
            assert click.Command(name, help=short_help).get_short_help_str(limit) == cmd.get_short_help_str(limit), \
                f"{' '.join(path)} {name}: the table's short help differs from the command's"


@pytest.mark.parametrize(("path", "group"), LAZY, ids=[" ".join(p) for p, _ in LAZY])
def test_every_command_of_the_modules_is_in_the_table(path, group):
    """A command defined in one of the table's modules but left out of the table would be unreachable."""
    modules = {where.partition(":")[0] for where, _ in group.lazy.values()}
    defined = {obj for m in modules for obj in vars(importlib.import_module(m)).values()
               if isinstance(obj, click.Command) and obj is not group}
    nested = {sub for obj in defined if isinstance(obj, click.Group) for sub in obj.commands.values()}
    ctx = click.Context(group)
    assert defined - nested == {group.get_command(ctx, name) for name in group.lazy}


def test_the_help_lists_every_command_as_an_eager_group_would():
    eager = click.Group("gt", params=cli.params, help=cli.help, context_settings=cli.context_settings,
                        commands={name: cli.get_command(click.Context(cli), name) for name in cli.lazy})
    # both in the context `gt` runs in (its -h, its width): click caches a command's help option once
    # it has run, so a bare Context would print the help of a `gt` that ran differently
    lazy_help = cli.get_help(click.Context(cli, info_name="gt", **cli.context_settings))
    assert lazy_help == eager.get_help(click.Context(eager, info_name="gt", **cli.context_settings))
