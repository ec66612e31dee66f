"""Every command and option of `gt` explains itself."""

from __future__ import annotations

import subprocess

import click
import pytest

from gastown.cli.main import cli

from conftest import GT


def _commands(group: click.Group, prefix=("gt",)):
    for name, cmd in group.commands.items():
        path = (*prefix, name)
        yield path, cmd
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, path)


COMMANDS = list(_commands(cli))


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
