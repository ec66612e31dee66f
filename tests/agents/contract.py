"""The contract every preset is held to, as a reusable town: a small Python project whose one
bead is "make add() return the sum", done by the real CLI whose model is the stand-in.

The scripted agent does what a real one would: writes calc.py with its own file tool, runs the
tests and commits with its own shell tool, then runs `gt done`. The Refinery verifies the
change with the project's own tests and merges it to main.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from gastown.ledger import Ledger, Status
from gastown.runtimes.install import bin_dirs
from gastown.standin import StandIn

from support import free_port, scrape  # noqa: F401 (for the tests of this folder)

ROOT = Path(__file__).resolve().parents[2]
GT = str(Path(sys.executable).parent / "gt")

BEAD_TITLE = "Make add() in calc.py return the sum of its two arguments"
# with characters a shell or a template would eat: the prompt must reach the model unaltered
BEAD_DESCRIPTION = "Keep `calc.py` small; $HOME, {model}, {prompt_file} and 'quotes' stay as written."
CALC = "def add(a, b):\n    return a + b\n"
SHELL_STEP = ("python3 -m unittest -q && git add -A && git commit -q -m 'calc: add returns the sum' "
              "&& gt done")
FINAL = "Done: add() returns the sum and the tests pass."

PROJECT = {
    "README.md": "# calc\n",
    "calc.py": "def add(a, b):\n    raise NotImplementedError\n",
    "test_calc.py": "import unittest\n\nimport calc\n\n\nclass T(unittest.TestCase):\n"
                    "    def test_add(self):\n        self.assertEqual(calc.add(2, 3), 5)\n",
}


def cli_path(preset: str) -> list[Path] | None:
    """The bin folders of the preset's pinned install and of what it needs, or None."""
    return bin_dirs(preset)


def git(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def make_project(root: Path) -> Path:
    remote = root / "calc.git"
    git("init", "--quiet", "--bare", "--initial-branch=main", str(remote))
    work = root / "seed"
    git("clone", "--quiet", str(remote), str(work))
    for name, text in PROJECT.items():
        (work / name).write_text(text)
    git("add", "-A", cwd=work)
    git("-c", "user.name=seed", "-c", "user.email=s@x", "commit", "-q", "-m", "seed", cwd=work)
    git("push", "-q", "origin", "HEAD:main", cwd=work)
    return remote


class AgentTown:
    """A local town with one rig, ``calc``, run by ``preset`` against ``standin``.

    ``env`` is what the daemon (and so every session) gets on top of a clean environment: the
    CLI's base-URL setting, its key. HOME is the town's own, so no real configuration is read.
    """

    def __init__(self, root: Path, preset: str, standin: StandIn, bin_dirs: list[Path],
                 env: dict[str, str] | None = None, model: str | None = None, args: tuple[str, ...] = (),
                 deadline: int = 120, title: str | None = BEAD_TITLE, description: str = BEAD_DESCRIPTION):
        self.root = root
        root.mkdir(parents=True)
        self.town = root / "town"
        self.home = root / "home"
        self.home.mkdir()
        self.remote = make_project(root)
        # `gt` runs from a checkout of its own, as a user's would: no agent may work in it
        self.decoy = root / "decoy"
        git("clone", "--quiet", str(self.remote), str(self.decoy))
        self.decoy_head = git("rev-parse", "HEAD", cwd=self.decoy)
        self.preset, self.standin = preset, standin
        path = os.pathsep.join([*map(str, bin_dirs), str(Path(sys.executable).parent), os.environ["PATH"]])
        self.env = {"PATH": path, "HOME": str(self.home), "LANG": "C.UTF-8", "TERM": "dumb", "NO_COLOR": "1",
                    "GIT_CONFIG_NOSYSTEM": "1", **(env or {})}
        runtime = {"preset": preset, **({"model": model} if model else {}), **({"args": list(args)} if args else {})}
        manifests = [
            {"apiVersion": "gastown.dev/v1alpha1", "kind": "Rig", "metadata": {"name": "calc"},
             "spec": {"gitUrl": f"file://{self.remote}", "maxPolecats": 1, "runtime": runtime,
                      "sessionDeadlineSeconds": max(deadline, 60),
                      "verification": {"gates": {"test": ["python3", "-m", "unittest", "-q"]}}}},
            {"apiVersion": "gastown.dev/v1alpha1", "kind": "MergeQueue", "metadata": {"name": "calc"},
             "spec": {"rig": "calc", "fillWindowSeconds": 0}},
        ]
        path_file = root / "town.json"
        path_file.write_text("\n".join(json.dumps(m) for m in manifests))
        # `gt apply` reads YAML, of which JSON documents separated by --- are a part
        path_file.write_text("\n---\n".join(json.dumps(m) for m in manifests))
        self.ok("apply", "-f", str(path_file))
        self.bead = ""
        if title is not None:  # None: the test gives the work itself (a convoy's goal, say)
            self.bead = self.ok("bead", "--rig", str(self.remote), "create", title, "-d", description).strip().split()[-1]
        self.up = False

    # --- commands --------------------------------------------------------------------------------
    def gt(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        env = {**os.environ, **self.env, "GT_TOWN": str(self.town), "PWD": str(self.decoy)}
        return subprocess.run([GT, *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=self.decoy)

    def ok(self, *args: str) -> str:
        proc = self.gt(*args)
        assert proc.returncode == 0, f"gt {' '.join(args)}: {proc.stderr or proc.stdout}"
        return proc.stdout

    def start(self, *args: str) -> AgentTown:
        self.ok("up", *args)
        self.up = True
        return self

    def down(self) -> None:
        if self.up:
            self.gt("down")
            self.up = False
        touched = git("status", "--porcelain", cwd=self.decoy)
        assert git("rev-parse", "HEAD", cwd=self.decoy) == self.decoy_head and not touched, \
            f"an agent worked in the checkout `gt up` was run from: {touched}"

    # --- what happened ---------------------------------------------------------------------------
    def ledger(self) -> Ledger:
        return Ledger(str(self.remote), cache_dir=self.root / "read-cache", actor="user tester")

    def bead_state(self):
        with self.ledger() as lg:
            return lg.beads()[self.bead]

    def wait(self, predicate, timeout: float = 120, what: str = "the town") -> object:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.25)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{self.report()}")

    def wait_merged(self, timeout: float = 120) -> None:
        self.wait(lambda: self.bead_state().status == Status.CLOSED, timeout, f"{self.bead} merged")
        assert git("show", "main:calc.py", cwd=self.remote) == CALC.strip()

    def sessions(self) -> list[Path]:
        """The session folders, oldest first."""
        return sorted((self.town / "sessions").glob("*/request.json"),
                      key=lambda p: json.loads(p.read_text())["started"])

    def results(self) -> list[dict]:
        out = []
        for req in self.sessions():
            result = req.parent / "result.json"
            if result.exists():
                out.append(json.loads(result.read_text()))
        return out

    def prompt(self, index: int = 0) -> str:
        return (self.sessions()[index].parent / "prompt.md").read_text()

    def log(self, index: int = -1) -> str:
        path = self.sessions()[index].parent / "session.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def report(self) -> str:
        """Everything worth reading when a contract test fails."""
        parts = [f"stand-in saw: {[(s.method, s.path, s.status) for s in self.standin.seen][-20:]}"]
        for req in self.sessions()[-3:]:
            for name in ("result.json", "session.log", "wrapper.log"):
                path = req.parent / name
                if path.exists():
                    parts.append(f"--- {req.parent.name}/{name}\n{path.read_text(errors='replace')[-3000:]}")
        daemon = self.town / "daemon.log"
        if daemon.exists():
            parts.append(f"--- daemon.log\n{daemon.read_text(errors='replace')[-3000:]}")
        return "\n".join(parts)


def wrapper_pid(session_request: Path) -> int:
    """The pid of the session wrapper (`gt session run`) of a session folder's request.json."""
    return int((session_request.parent / "pid").read_text())


def backoff_until(town: AgentTown):
    """The rig's rate-limit backoff as the ledger holds it (None: none)."""
    from gastown.scheduler import state_of

    with town.ledger() as lg:
        snap = lg.snapshot()
        return state_of(snap.beads(), snap.prefix).backoff_until
