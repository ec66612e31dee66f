"""Where gastown caches: one rule, in a module light enough for a `gt` that loads nothing else
(paths as strings: pathlib costs a `gt bead create` about 5 ms of CPU, cli/entry.py)."""

from __future__ import annotations

import os

TYPE_CHECKING = False  # for mypy only: importing typing costs a light `gt` several ms (cli/entry.py)
if TYPE_CHECKING:
    from collections.abc import Mapping


def cache_root(env: Mapping[str, str] | None = None) -> str:
    """GT_CACHE_DIR, else $XDG_CACHE_HOME/gastown, else ~/.cache/gastown. Ledger caches live
    under its ``ledgers/``."""
    env = os.environ if env is None else env
    if env.get("GT_CACHE_DIR"):
        return env["GT_CACHE_DIR"]
    return os.path.join(env.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "gastown")
