"""Where `make agents` keeps the pinned agent CLIs: one npm prefix per preset and version.

    $GT_AGENTS_DIR (default ~/.cache/gastown/agents)/<preset>-<version>/node_modules/.bin/
    $GT_AGENTS_DIR/<package>-<version>/...            what a preset needs besides (omp: bun)

The contract suite and `DEMO_RUNTIME=<preset> make demo` run the CLIs from here when they are
not on PATH; scripts/fetch_agents.py installs them.
"""

from __future__ import annotations

import os
from pathlib import Path

from .packages import npm_specs
from .presets import PRESETS


def agents_dir() -> Path:
    given = os.environ.get("GT_AGENTS_DIR")
    if given:
        return Path(given)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "gastown" / "agents"


def folders(preset: str) -> dict[str, str]:
    """Install folder -> npm spec, for the preset's pinned CLI and what it needs (the same specs
    the agent image installs: packages.npm_specs)."""
    rt = PRESETS[preset]
    if not (rt.package and rt.version):
        return {}
    out = {}
    for spec in npm_specs([preset]):
        package, _, version = spec.rpartition("@")
        out[f"{preset if package == rt.package else package}-{version}"] = spec
    return out


def bin_dirs(preset: str) -> list[Path] | None:
    """The bin folders of the preset's pinned install and of what it needs; None when missing."""
    found = folders(preset)
    dirs = [agents_dir() / folder / "node_modules" / ".bin" for folder in found]
    if not found or not all((d.parent.parent / ".installed").exists() for d in dirs):
        return None
    return dirs
