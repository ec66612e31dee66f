"""Where gastown caches: one rule, in a module light enough for a `gt` that loads nothing else."""

from __future__ import annotations

import os
from pathlib import Path

TYPE_CHECKING = False  # for mypy only: importing typing costs a light `gt` several ms (cli/entry.py)
if TYPE_CHECKING:
    from collections.abc import Mapping


def cache_root(env: Mapping[str, str] | None = None) -> Path:
    """GT_CACHE_DIR, else $XDG_CACHE_HOME/gastown, else ~/.cache/gastown. Ledger caches live
    under its ``ledgers/``."""
    env = os.environ if env is None else env
    if env.get("GT_CACHE_DIR"):
        return Path(env["GT_CACHE_DIR"])
    return Path(env.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "gastown"
