"""What an agent image installs for the runtimes it carries, read from the presets (the one source).

Each preset named gives its CLI's npm package at the version the preset pins, then what it needs
to run besides Node.js (omp: bun, whose npm package puts a ``bun`` binary beside the CLIs, where
omp's ``#!/usr/bin/env bun`` finds it). The agent image's Dockerfile runs this on its ``AGENTS``
build argument::

    python -m gastown.runtimes.packages claude omp
    @anthropic-ai/claude-code@2.1.332
    @oh-my-pi/pi-coding-agent@18.2.3
    bun@1.4.5

A preset's package name works too (``@openai/codex``: pinned as the codex preset pins it), and an
npm spec with an explicit version (``mycli@1.2.3``, for a custom runtime) is kept as it is.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping

from .presets import PRESETS, Runtime


class UnknownAgent(ValueError):
    pass


def _pinned(name: str) -> bool:
    """An npm spec with a version: name@version or @scope/name@version."""
    return "@" in name[1:]


def npm_specs(names: Iterable[str], presets: Mapping[str, Runtime] = PRESETS) -> list[str]:
    """The npm specs to install for ``names`` (presets, their packages, or pinned npm specs), each
    once, in order: a preset's own package first, then what it needs."""
    by_package = {rt.package: rt for rt in presets.values() if rt.package}
    out: list[str] = []
    for name in names:
        rt = presets.get(name) or by_package.get(name)
        if rt is None:
            if not _pinned(name):
                raise UnknownAgent(f"{name}: not a preset ({', '.join(sorted(presets))}), nor an npm "
                                   f"package with a version (name@version)")
            specs = [name]
        elif not rt.command:
            specs = []  # the script runtime runs the rig's own command: nothing to install
        elif not rt.package:
            raise UnknownAgent(f"{rt.name}: its CLI is not on npm ({rt.description}); build an image with "
                               f"it installed and name that image in the runtime's spec")
        else:
            specs = [f"{rt.package}@{rt.version}" if rt.version else rt.package, *rt.needs]
        out += [s for s in specs if s not in out]
    return out


def main(argv: list[str]) -> int:
    try:
        specs = npm_specs(" ".join(argv).split())
    except UnknownAgent as e:
        print(f"gastown: agent image: {e}", file=sys.stderr)
        return 2
    for spec in specs:
        print(spec)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
