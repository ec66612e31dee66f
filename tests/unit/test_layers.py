"""The layers hold because a linter keeps them: import-linter's contracts (pyproject.toml), run
on a scratch copy of the package, pass as it is and break on one bad import."""

from __future__ import annotations

import ast
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
    ("ledger/gitstore.py", "import git", "Nothing imports git (GitPython)"),
])
def test_a_bad_import_breaks_its_contract(tmp_path, module, line, contract):
    out = lint(tmp_path, add_import(module, line))
    assert out.returncode != 0
    assert f"{contract} BROKEN" in out.stdout


MYPY = Path(sys.executable).parent / "mypy"


def replace_in(module: str, old: str, new: str) -> Callable[[Path], None]:
    def edit(package: Path) -> None:
        path = package / module
        text = path.read_text()
        assert text.count(old) == 1, f"{module}: {old!r}"
        path.write_text(text.replace(old, new))
    return edit


@pytest.mark.slow
def test_a_port_that_drifts_from_its_protocol_fails_mypy(tmp_path):
    """The configuration of `make lint`, on a copy in which the local port lost a method and the
    cluster's port changed one: mypy fails on both drivers' Protocol lines, and only there."""
    src = tmp_path / "operator"
    shutil.copytree(ROOT / "operator" / "gastown", src / "gastown", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "bench", tmp_path / "bench", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    replace_in("local/driver.py", "    def stop_session(self, polecat: str) -> None:",
               "    def stop_sessions(self, polecat: str) -> None:")(src / "gastown")
    replace_in("kube/rigloop_daemon.py", "    def deliver(self, esc: Bead, route: str) -> bool:",
               "    def deliver(self, esc: Bead) -> bool:")(src / "gastown")
    out = subprocess.run([str(MYPY), "--cache-dir", str(tmp_path / "cache")], cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 1, out.stdout + out.stderr
    errors = [line for line in out.stdout.splitlines() if ": error:" in line]
    assert {line.split(":")[0] for line in errors} == {"operator/gastown/local/driver.py",
                                                       "operator/gastown/kube/rigloop_daemon.py"}, errors
    for module, port in (("local/driver.py", "LocalPort"), ("kube/rigloop_daemon.py", "KubePort")):
        assert any(line.startswith(f"operator/gastown/{module}:") and f'"type[{port}]", variable has type '
                   '"type[DriverPort]"' in line for line in errors), errors


def test_one_place_runs_the_rig_pass():
    """One rig loop: `RigPass` is built (and so run) in one place of the package, the loop's step."""
    package = ROOT / "operator" / "gastown"
    places = [f"{path.relative_to(package)}:{node.lineno}"
              for path in sorted(package.rglob("*.py"))
              for node in ast.walk(ast.parse(path.read_text()))
              if isinstance(node, ast.Call) and (getattr(node.func, "id", None) == "RigPass"
                                                 or getattr(node.func, "attr", None) == "RigPass")]
    assert len(places) == 1 and places[0].startswith("rigloop.py:"), places


def scratch_lint(tmp_path: Path, shapes: str, calls: str) -> subprocess.CompletedProcess:
    """scripts/positional_calls.py on ``calls``, in a scratch package defining ``shapes``."""
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "positional_calls.py", tmp_path / "scripts")
    package = tmp_path / "operator" / "gastown"
    package.mkdir(parents=True)
    (package / "shapes.py").write_text(shapes)
    (tmp_path / "calls.py").write_text(calls)
    return subprocess.run([sys.executable, str(tmp_path / "scripts" / "positional_calls.py"),
                           str(tmp_path / "calls.py")], capture_output=True, text=True, timeout=60)


def test_a_call_with_more_than_four_positional_arguments_fails_the_lint(tmp_path):
    """scripts/positional_calls.py (in `make lint`): a call passing five arguments by position to a
    callee that takes them so is found; the same call to a keyword-only callee (``*``,
    ``kw_only=True``, a ``KW_ONLY`` marker, ``field(kw_only=True)``) is not."""
    fields = "    a: int\n    b: int\n    c: int\n    d: int\n    e: int\n"
    out = scratch_lint(tmp_path, "from dataclasses import KW_ONLY, dataclass, field\n\n\n"
                       f"@dataclass\nclass Wide:\n{fields}\n\n"
                       f"@dataclass(kw_only=True)\nclass Named:\n{fields}\n\n"
                       f"@dataclass\nclass Marked:\n    a: int\n    _: KW_ONLY\n{fields[11:]}\n\n"
                       "@dataclass\nclass Fielded:\n    a: int\n    b: int = field(kw_only=True)\n"
                       "    c: int = field(kw_only=True)\n    d: int = field(kw_only=True)\n"
                       "    e: int = field(kw_only=True)\n\n\n"
                       "def wide(a, b, c, d, e):\n    pass\n\n\n"
                       "def named(a, *, b, c, d, e):\n    pass\n",
                       "from gastown import shapes\n\n"
                       "shapes.Wide(1, 2, 3, 4, 5)\nshapes.Named(1, 2, 3, 4, 5)\nshapes.Marked(1, 2, 3, 4, 5)\n"
                       "shapes.Fielded(1, 2, 3, 4, 5)\nwide(1, 2, 3, 4, 5)\nnamed(1, 2, 3, 4, 5)\n"
                       "wide(1, 2, 3, 4, e=5)\n")
    assert out.returncode == 1, out.stdout + out.stderr
    assert out.stdout.splitlines() == [
        "calls.py:3: Wide(...) with 5 positional arguments (defined at operator/gastown/shapes.py:5)",
        "calls.py:7: wide(...) with 5 positional arguments (defined at operator/gastown/shapes.py:41)",
    ], out.stdout


def test_no_call_in_the_package_its_tests_or_benches_passes_more_than_four_positional_arguments():
    """What `make lint` runs, over the tests and benches too (mypy reads only the package): every
    call to gastown's own code passes at most four arguments by position."""
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "positional_calls.py"),
                          *(str(ROOT / d) for d in ("operator/gastown", "tests", "bench"))],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_positional_lint_sees_a_subclass_constructor_and_not_a_click_command(tmp_path):
    """A dataclass subclass takes its base's fields by position too, so a call passing five of them
    is found; a click command is never called by position, so a method of another library that
    shares its name (``runner.plan``) is not."""
    out = scratch_lint(tmp_path, "from dataclasses import dataclass\n\nimport click\n\n\n"
                       "@dataclass\nclass Base:\n    a: int\n    b: int\n    c: int\n    d: int\n    e: int\n\n\n"
                       "@dataclass\nclass Sub(Base):\n    f: int = 0\n\n\n"
                       "@click.command()\n@click.argument('a')\n"
                       "def plan(a, b, c, d, e):\n    pass\n",
                       "Sub(1, 2, 3, 4, 5)\nrunner.plan(1, 2, 3, 4, 5)\n")
    assert out.returncode == 1, out.stdout + out.stderr
    [finding] = out.stdout.splitlines()
    assert finding.startswith("calls.py:1: Sub(...) with 5 positional arguments (defined at "
                              "operator/gastown/shapes.py:16)"), finding
