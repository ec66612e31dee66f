"""The agent image brings each chosen CLI, at its preset's pin, and what the CLI runs on.

No Docker engine here: the Dockerfile and the Makefile are read, and the npm specs they install
are computed as the image build computes them (`python -m gastown.runtimes.packages $AGENTS`). Where
the contract suite's installs of the same pins are at hand (`make agents`), each CLI's binary and
the interpreter its `#!` line names are checked against what the image brings.
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from gastown.runtimes import PRESETS, install, packages
from gastown.runtimes.packages import UnknownAgent, npm_specs

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "images" / "agent" / "Dockerfile"
PACKAGED = sorted(n for n, rt in PRESETS.items() if rt.package)
# what an interpreter found through PATH resolves to in the image: Node.js, copied in by the Dockerfile
# (checked below), and the binaries of the npm packages installed into the agents' prefix
PREFIX_BIN = "/opt/agents/node_modules/.bin"


def stages() -> dict[str, list[tuple[str, str]]]:
    """The Dockerfile's stages by name (the last one: "final"), each a list of (INSTRUCTION, rest)."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        if word.upper() == "FROM":
            current = []
            name = rest.split(" AS ")[1].strip() if " AS " in rest else f"stage{len(out)}"
            out[name] = current
        current.append((word.upper(), rest.strip()))
    out["final"] = out.pop(list(out)[-1])
    return out


def package_name(spec: str) -> str:
    return spec.rpartition("@")[0] if "@" in spec[1:] else spec


def image_packages(agents: str) -> list[str]:
    """The npm specs the image build installs for ``agents``, as its `packages` stage computes them
    (`python -m gastown.runtimes.packages $AGENTS`; in-process here, run as a command once below)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert packages.main(agents.split()) == 0
    return out.getvalue().split()


def test_the_build_resolves_agents_from_the_presets_and_installs_them_on_path():
    s = stages()
    # AGENTS (preset names) -> npm specs, by gastown's own presets
    packages = s["packages"]
    default = next(rest for word, rest in packages if word == "ARG" and rest.startswith("AGENTS="))
    assert npm_specs(shlex.split(default.partition("=")[2])[0].split())  # the default names presets
    runs = [rest for word, rest in packages if word == "RUN"]
    assert any("python -m gastown.runtimes.packages $AGENTS > /agents.txt" in r for r in runs)
    assert any("pip install" in r and "/wheels/" in r for r in runs)  # gastown importable there
    # ... installed, with their install scripts (bun's and claude's put their native binaries in place)
    agents = s["agents"]
    assert agents[0][1].startswith("node:22")
    assert ("COPY", "--from=packages /agents.txt /agents.txt") in agents
    install = next(r for w, r in agents if w == "RUN" and "npm install" in r)
    assert "--prefix /opt/agents" in install and "$(cat /agents.txt)" in install
    assert "--ignore-scripts" not in install
    # ... into the final image, with node, and on PATH
    final = s["final"]
    assert ("COPY", "--from=agents /opt/agents /opt/agents") in final
    assert ("COPY", "--from=agents /usr/local/bin/node /usr/local/bin/node") in final
    env = " ".join(r for w, r in final if w == "ENV")
    path = re.search(r"PATH=(\S+)", env).group(1).split(":")
    assert path[0] == PREFIX_BIN and "$PATH" in path  # the base image's PATH holds /usr/local/bin
    assert ("USER", "1000:1000") in final


def test_make_image_passes_preset_names_through_and_checks_them_first():
    makefile = (ROOT / "Makefile").read_text()
    default = re.search(r"^AGENTS\s*\?=\s*(.*)$", makefile, re.M).group(1).strip()
    assert npm_specs(default.split())
    recipe = makefile.split("\nimage:", 1)[1].split("\n\n", 1)[0]
    assert "-m gastown.runtimes.packages $(AGENTS)" in recipe
    assert '-f images/agent/Dockerfile --build-arg AGENTS="$(AGENTS)"' in recipe


@pytest.mark.parametrize("preset", PACKAGED)
def test_each_preset_with_a_package_brings_its_pinned_cli_and_what_it_needs(preset):
    rt = PRESETS[preset]
    specs = image_packages(preset)
    assert specs[0] == f"{rt.package}@{rt.version}"  # the pin the contract suite runs
    assert all(need in specs for need in rt.needs)
    if preset == "omp":  # `#!/usr/bin/env bun`: the bun package's binary, beside omp's on PATH
        assert "bun" in {package_name(s) for s in specs}


def test_several_presets_share_one_install_and_names_are_checked():
    assert image_packages("claude omp pi omp") == [
        f"{PRESETS['claude'].package}@{PRESETS['claude'].version}",
        f"{PRESETS['omp'].package}@{PRESETS['omp'].version}", *PRESETS["omp"].needs,
        f"{PRESETS['pi'].package}@{PRESETS['pi'].version}"]
    assert npm_specs(["script"]) == []  # runs the rig's own command
    assert npm_specs([PRESETS["codex"].package]) == npm_specs(["codex"])  # a preset's package: its pin
    assert npm_specs(["mycli@1.2.3"]) == ["mycli@1.2.3"]  # a custom runtime's CLI, pinned by its owner
    for wrong in ("cluade", "mycli", "cursor"):  # a typo, an unpinned package, a CLI not on npm
        with pytest.raises(UnknownAgent, match=wrong):
            npm_specs([wrong])
    for argv, code in ((["claude omp"], 0), (["cluade"], 2)):  # as the Dockerfile runs it
        proc = subprocess.run([sys.executable, "-m", "gastown.runtimes.packages", *argv], capture_output=True,
                              text=True)
        assert proc.returncode == code
        assert proc.stdout.split() == (image_packages("claude omp") if code == 0 else [])
    assert "cluade: not a preset" in proc.stderr


# --- against the real packages, where `make agents` installed the same pins ---------------------------

def interpreter(path: Path) -> str | None:
    """What a `#!/usr/bin/env X` line asks PATH for; None for a native binary (glibc, as the image)."""
    with path.open("rb") as fh:
        first = fh.read(200).split(b"\n", 1)[0]
    if not first.startswith(b"#!"):
        return None
    words = first[2:].decode().split()
    return words[1] if words[0].endswith("/env") else Path(words[0]).name


@pytest.mark.parametrize("preset", PACKAGED)
def test_the_image_brings_each_clis_binary_and_the_interpreter_it_names(preset):
    """What npm links into a prefix's node_modules/.bin for these specs is what the image's PATH gets."""
    dirs = install.bin_dirs(preset)  # the preset's own prefix first, then those of its needs
    if dirs is None:
        pytest.skip(f"{preset}: not installed here (make agents installs the pinned CLIs from npm)")
    assert sorted(install.folders(preset).values()) == sorted(image_packages(preset))  # the same pins
    on_path = {"node"} | {b.name for d in dirs for b in d.iterdir()}
    binary = dirs[0] / PRESETS[preset].command[0]
    assert binary.exists(), f"{preset}: its package links no {binary.name}"
    needed = interpreter(binary.resolve())
    assert needed is None or needed in on_path, f"{preset}: {binary.name} runs on {needed}, which the image lacks"
