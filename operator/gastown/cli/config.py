"""``gt config``: local configuration (custom agent runtimes)."""

from __future__ import annotations

import shlex
import sys
from typing import Literal

import click

from ..runtimes import config as runtimes
from ..runtimes.definition import RuntimeDef


@click.group()
def config() -> None:
    """Local configuration."""


@config.group()
def agent() -> None:
    """Agent runtimes: the presets and your own (a custom runtime named like a preset overrides it)."""


def _fail(err: object) -> None:
    click.echo(f"gt: error: {err}", err=True)
    sys.exit(1)


@agent.command("set")
@click.argument("name")
@click.option("--command", "command", required=True, metavar="'BIN [SUBCOMMAND]'",
              help="The program (and subcommand), split like a shell would but never run by one.")
@click.option("--args", "args", default="", metavar="'ARGS'",
              help="Arguments; {prompt}, {prompt_file}, {session_dir} and {model} are filled in.")
@click.option("--prompt-mode", type=click.Choice(["arg", "stdin", "file"]), default="arg", show_default=True,
              help="How the prompt reaches the agent: in {prompt}, on stdin, or in {prompt_file}.")
@click.option("--model-args", default="", metavar="'ARGS'", help="Added when a model is chosen, e.g. '--model {model}'.")
@click.option("--resume-args", default="", metavar="'ARGS'", help="Added when a session resumes earlier work.")
@click.option("--api-key-env", multiple=True, metavar="VAR", help="Variable that carries the API key (repeat).")
def agent_set(*, name: str, command: str, args: str, prompt_mode: Literal["arg", "stdin", "file"], model_args: str, resume_args: str,
              api_key_env: tuple[str, ...]) -> None:
    """Define the runtime NAME (written to the runtimes file)."""
    try:
        runtimes.check_name(name)
        defs = runtimes.load()
        defs[name] = RuntimeDef(
            command=shlex.split(command), args=shlex.split(args), prompt_mode=prompt_mode,
            model_args=shlex.split(model_args), resume_args=shlex.split(resume_args),
            api_key_env=list(api_key_env))
        path = runtimes.save(defs)
    except (ValueError, runtimes.ConfigError) as e:
        _fail(e)
    click.echo(f"runtime {name} saved in {path}")


@agent.command("list")
def agent_list() -> None:
    """List the runtimes: presets and custom ones."""
    try:
        custom = runtimes.load()
        found = runtimes.all_runtimes()
    except runtimes.ConfigError as e:
        _fail(e)
    for name, rt in sorted(found.items()):
        origin = "custom" if name in custom else "preset"
        click.echo(f"{name:<10} {origin:<7} {' '.join(rt.command) or '(args)':<20} {rt.description}")


@agent.command("show")
@click.argument("name")
def agent_show(name: str) -> None:
    """Show how the runtime NAME is run."""
    try:
        rt = runtimes.resolve(name)
    except runtimes.ConfigError as e:
        _fail(e)
    click.echo(f"{rt.name}: {rt.description}")
    click.echo(f"  command:     {shlex.join(rt.command)}")
    click.echo(f"  args:        {shlex.join(rt.args)}")
    click.echo(f"  prompt:      {rt.prompt_mode}")
    click.echo(f"  model args:  {shlex.join(rt.model_args)}")
    click.echo(f"  resume args: {shlex.join(rt.resume_args)}")
    click.echo(f"  API keys in: {', '.join(rt.api_key_env) or '-'}")
    if rt.package:
        click.echo(f"  package:     {rt.package}" + (f"@{rt.version}" if rt.version else ""))
    if rt.verified:
        click.echo(f"  verified:    {rt.verified}")


@agent.command("rm")
@click.argument("name")
def agent_rm(name: str) -> None:
    """Remove the custom runtime NAME (a preset of that name comes back)."""
    defs = runtimes.load()
    if name not in defs:
        _fail(f"no custom runtime {name!r} in {runtimes.config_file()}")
    del defs[name]
    runtimes.save(defs)
    click.echo(f"runtime {name} removed")
