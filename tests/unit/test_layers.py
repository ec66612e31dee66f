"""The layers hold because a linter keeps them: import-linter's contracts (pyproject.toml), run
on a scratch copy of the package, pass as it is and break on one bad import."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint(tmp_path: Path, edit: Callable[[Path], None] | None = None) -> subprocess.CompletedProcess:
    src = tmp_path / "src"
    shutil.copytree(ROOT / "operator" / "gastown", src / "gastown", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    if edit:
        edit(src / "gastown")
    env = {**os.environ, "PYTHONPATH": str(src)}
    return subprocess.run([str(LINT_IMPORTS), "--config", str(tmp_path / "pyproject.toml"), "--no-cache"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


def add_import(module: str, line: str) -> Callable[[Path], None]:
    def edit(package: Path) -> None:
        path = package / module
        path.write_text(path.read_text() + f"\n{line}  # noqa\n")
    return edit


def test_the_package_keeps_its_contracts(tmp_path):
    out = lint(tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 broken" in out.stdout


@pytest.mark.parametrize(("module", "line", "contract"), [
    ("rigloop.py", "from .local import driver", "The engine never imports a driver, the CLI, kopf or kubernetes"),
    ("scheduler.py", "import kopf", "The engine never imports a driver, the CLI, kopf or kubernetes"),
    ("kube/rigloop_daemon.py", "from ..local.driver import RigDriver", "The two drivers never import each other"),
    ("witness.py", "import git", "Only ledger/ imports git (GitPython)"),
])
def test_a_bad_import_breaks_its_contract(tmp_path, module, line, contract):
    out = lint(tmp_path, add_import(module, line))
    assert out.returncode != 0
    assert f"{contract} BROKEN" in out.stdout
