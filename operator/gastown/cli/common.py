"""What the `gt` commands share: errors as one line, JSON output, the town, the rig's ledger."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..settings import Settings, SettingsError
from .entry import fail as fail
from .entry import json_text

if TYPE_CHECKING:  # the ledger (and GitPython) is imported by the commands that open one
    from ..ledger import Ledger

SETTINGS = "gastown.settings"  # where the process's Settings live in click's context


def load_settings(config: Mapping[str, object] | None = None) -> Settings:
    """The settings of this `gt` process, from its environment (and a town's ``config``); a bad
    value is a usage error."""
    try:
        return Settings.from_env(config=config)
    except SettingsError as e:
        raise click.UsageError(str(e)) from None


def use_git_timeout(found: Settings) -> None:
    """Every git command of this process may take the settings' git_timeout (called at start-up)."""
    from ..ledger.gitrun import set_git_timeout

    set_git_timeout(found.git_timeout)


def settings() -> Settings:
    """The settings loaded when this `gt` command started."""
    ctx = click.get_current_context(silent=True)
    found = ctx.meta.get(SETTINGS) if ctx is not None else None
    if found is None:
        found = load_settings()
        use_git_timeout(found)
    return found


def emit(data: Any) -> None:
    click.echo(json_text(data))


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
town_option = click.option("--town", envvar="GT_TOWN", type=click.Path(path_type=Path, file_okay=False),
                           help="The town directory (env GT_TOWN; default ~/gt).")
cache_option = click.option("--cache-dir", envvar="GT_CACHE_DIR", type=click.Path(path_type=Path, file_okay=False),
                            help="gastown's cache root: a ledger's cache is under its ledgers/ (env GT_CACHE_DIR; "
                                 "default $XDG_CACHE_HOME/gastown, else ~/.cache/gastown).")
rig_option = click.option("--rig", "rig", envvar="GT_RIG", required=True, metavar="NAME|PATH|URL",
                          help="A rig of the town by name, or a rig repository by path or URL (env GT_RIG).")


@contextmanager
def rig_ledger(town_dir: Path | None, rig: str, actor: str | None = None) -> Iterator[tuple[Any, Ledger]]:
    """The rig (a town rig by name, or a path or URL) and its ledger; errors become one line."""
    from ..ledger import Ledger, LedgerError
    from ..local.town import Town, TownError

    try:
        town = Town(town_dir)
        config = town.rig(rig)
        ledger = Ledger(config.remote, cache_dir=town.ledger_cache(config.remote), actor=actor)
    except (TownError, LedgerError) as e:
        fail(e)
    try:
        yield config, ledger
    except (LedgerError, ValueError) as e:
        fail(e)
    finally:
        ledger.close()
