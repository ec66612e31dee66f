"""List the calls that pass more than four positional arguments to gastown's own functions,
methods, classes or dataclasses (`make lint`: such a call should name its arguments, and the
callee make them keyword-only with ``*`` or ``kw_only=True``).

A call is matched to the package's definitions by the callee's name (``f(...)``, ``x.f(...)``),
and counted only when a definition of that name still takes more than four positional
arguments: calls to other libraries' functions that share no name with gastown's are ignored,
and so are click commands (click calls them by keyword). A dataclass subclass takes its bases'
positional fields before its own.

    python scripts/positional_calls.py [DIR ...]

DIR defaults to operator/gastown; it exits 1 on a finding.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

MOST = 4
CLICK = {"command", "group"}  # the decorators that make a function a click command
ROOT = Path(__file__).resolve().parents[1]


def _shown(path: Path) -> Path:
    return path.relative_to(ROOT) if path.is_relative_to(ROOT) else path


def _decorator_name(node: ast.expr) -> str:
    if isinstance(node, ast.Call):
        node = node.func
    return node.attr if isinstance(node, ast.Attribute) else node.id if isinstance(node, ast.Name) else ""


def _kw_only_dataclass(node: ast.ClassDef) -> bool | None:
    """None when ``node`` is no dataclass (nor NamedTuple), else whether its fields are keyword-only."""
    if any(_decorator_name(b) == "NamedTuple" for b in node.bases):
        return False
    for d in node.decorator_list:
        if _decorator_name(d) == "dataclass":
            return isinstance(d, ast.Call) and any(
                k.arg == "kw_only" and isinstance(k.value, ast.Constant) and k.value.value for k in d.keywords)
    return None


def _positional(fn: ast.FunctionDef | ast.AsyncFunctionDef, method: bool) -> int | None:
    """How many arguments ``fn`` takes by position (None: any number, ``*args``)."""
    if fn.args.vararg:
        return None
    count = len(fn.args.posonlyargs) + len(fn.args.args)
    return count - 1 if method and count and not any(_decorator_name(d) == "staticmethod"
                                                     for d in fn.decorator_list) else count


def _by_position(field: ast.AnnAssign) -> bool:
    """Whether a dataclass field is taken by position (no ``ClassVar``, no ``field(kw_only=True)``)."""
    return "ClassVar" not in ast.unparse(field.annotation) and not (
        isinstance(field.value, ast.Call) and _decorator_name(field.value) == "field"
        and any(k.arg == "kw_only" and isinstance(k.value, ast.Constant) and k.value.value
                for k in field.value.keywords))


def _fields(node: ast.ClassDef, kw_only: bool) -> int:
    """How many fields a dataclass declares that its constructor takes by position (those before a
    ``_: KW_ONLY`` marker)."""
    count = 0
    for s in node.body if not kw_only else []:
        if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name):
            if _decorator_name(s.annotation) == "KW_ONLY":
                break
            count += _by_position(s)
    return count


def definitions(files: list[Path]) -> dict[str, list[tuple[str, int]]]:
    """Each name the package defines (function, method, class) -> (where, positional arguments)."""
    found: dict[str, list[tuple[str, int]]] = defaultdict(list)
    dataclasses: list[tuple[str, str, list[str], int]] = []  # (name, where, its bases, its own fields)

    def fields(name: str, bases: list[str], own: int) -> int:
        known = {n: (b, o) for n, _, b, o in dataclasses if n != name}
        return sum(fields(b, *known[b]) for b in bases if b in known) + own

    def visit(body: list[ast.stmt], where: Path, in_class: bool) -> None:
        for node in body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                n = _positional(node, in_class)
                if n is not None and not any(_decorator_name(d) in CLICK for d in node.decorator_list):
                    found[node.name].append((f"{where}:{node.lineno}", n))
                visit(node.body, where, False)
            elif isinstance(node, ast.ClassDef):
                kw_only = _kw_only_dataclass(node)
                init = next((s for s in node.body if isinstance(s, ast.FunctionDef) and s.name == "__init__"), None)
                if init is not None:
                    n = _positional(init, True)
                    if n is not None:
                        found[node.name].append((f"{where}:{node.lineno}", n))
                elif kw_only is not None:
                    dataclasses.append((node.name, f"{where}:{node.lineno}", [_decorator_name(b) for b in node.bases],
                                        _fields(node, kw_only)))
                visit(node.body, where, True)

    for path in files:
        visit(ast.parse(path.read_text(), str(path)).body, _shown(path), False)
    for name, where, bases, own in dataclasses:
        found[name].append((where, fields(name, bases, own)))
    return found


def calls(files: list[Path], defined: dict[str, list[tuple[str, int]]]) -> Iterator[str]:
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Call) or any(isinstance(a, ast.Starred) for a in node.args):
                continue
            name = _decorator_name(node.func)
            if len(node.args) <= MOST or name not in defined:
                continue
            wide = [where for where, n in defined[name] if n > MOST]
            if wide:
                yield (f"{_shown(path)}:{node.lineno}: {name}(...) with {len(node.args)} positional "
                       f"arguments (defined at {', '.join(wide)})")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dirs", nargs="*", type=Path, help="what to read (default: operator/gastown)")
    args = parser.parse_args(argv)
    dirs = [d.resolve() for d in args.dirs] or [ROOT / "operator" / "gastown"]
    files = sorted(p for d in dirs for p in (d.rglob("*.py") if d.is_dir() else [d]))
    defined = definitions(sorted((ROOT / "operator" / "gastown").rglob("*.py")))
    found = list(calls(files, defined))
    print("\n".join(found) or f"no call passes more than {MOST} positional arguments to gastown's own code")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
