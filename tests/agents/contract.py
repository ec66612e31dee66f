"""The contract every preset is held to, as a reusable town: a small Python project whose one
bead is "make add() return the sum", done by the real CLI whose model is the stand-in.

The scripted agent does what a real one would: writes calc.py with its own file tool, runs the
tests and commits with its own shell tool, then runs `gt done`. The Refinery verifies the
change with the project's own tests and merges it to main.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest

from gastown.ledger import Ledger, Status
from gastown.runtimes import PRESETS
from gastown.runtimes.install import bin_dirs
from gastown.standin import StandIn, Turn, steps
from gastown.standin.server import Seen

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


def write_then_shell(write: str, path_key: str, shell: str, description: bool = True):
    """The usual script, in the CLI's own tool names: ``write`` (its path argument ``path_key``)
    writes calc.py, ``shell`` runs SHELL_STEP (with a ``description`` where the tool takes one),
    then the answer FINAL."""
    shell_input = {"command": SHELL_STEP, **({"description": "test, commit, gt done"} if description else {})}
    return steps(
        Turn(tool=write, input={path_key: "calc.py", "content": CALC}),
        Turn(tool=shell, input=shell_input),
        Turn(text=FINAL))


def standin_fixture(dialect: Callable[[], object], script: Callable[[], object]):
    """A test module's ``standin`` fixture: a stand-in speaking ``dialect()`` that plays
    ``script()``, fresh for each test (``standin = standin_fixture(Anthropic, script)``)."""

    @pytest.fixture
    def standin():
        with StandIn([dialect()], script()) as s:
            yield s

    return standin


def assert_key_goes_to_the_models_provider(preset: str) -> None:
    """A preset that runs models of several providers puts the key in the variable of the model's
    provider, named by the model's ``provider/`` prefix."""
    runtime = PRESETS[preset]
    assert runtime.key_env("anthropic/claude-sonnet-4-5") == "ANTHROPIC_API_KEY"
    assert runtime.key_env("openai/gpt-5.1") == "OPENAI_API_KEY"
    assert runtime.key_env("google/gemini-2.5-pro") == "GEMINI_API_KEY"


def session_id(log: str) -> str | None:
    """The CLI's own session id, from the header a pi-like CLI's --mode json prints first."""
    for line in log.splitlines():
        if line.startswith('{"type":"session"'):
            return json.loads(line).get("id")
    return None


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

    def started(self) -> list[float]:
        """When each session started (epoch seconds), oldest first."""
        return [json.loads(p.read_text())["started"] for p in self.sessions()]

    def polecat(self, index: int = 0) -> str:
        """The polecat a session ran as."""
        return json.loads(self.sessions()[index].read_text())["request"]["polecat"]

    def first_result(self, timeout: float = 60) -> dict:
        """The first session's result, once there is one."""
        self.wait(lambda: self.results(), timeout, "the first session's result")
        return self.results()[0]

    def last_result(self, timeout: float = 60) -> dict:
        """The latest session's result, once its wrapper has written it: the bead may merge before
        that (the wrapper writes its result after its last ledger write; the Refinery does not wait)."""
        self.wait(lambda: (req := self.sessions()) and (req[-1].parent / "result.json").exists(), timeout,
                  "the latest session's result")
        return self.results()[-1]

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


def rate_limited_first(town: AgentTown, retry_after: float | None, *, within: float | None = None,
                       backoff: float | None = None, backoff_within: float = 2, timeout: float = 60,
                       after_first: Callable[[], object] | None = None) -> tuple[dict, datetime]:
    """The first half of every rate-limit test: returns the first session's result and the rig's
    backoff, having asserted that

    - the first session (waited for up to ``timeout`` s) ended ``rate_limited``;
    - its ``retry_after`` is ``retry_after`` (``pytest.approx``, to ``within`` if given; None: the
      CLI reported no delay);
    - the rig backs off until the session's end plus ``backoff`` (by default the reported
      ``retry_after``; give it where the rig's own default applies), to ``backoff_within`` s.

    ``after_first`` runs as soon as the result is in (for example to lift a stand-in's unlimited
    rate limit before the next session starts).
    """
    first = town.first_result(timeout)
    if after_first is not None:
        after_first()
    assert first["status"] == "rate_limited", town.report()
    if retry_after is None:
        assert first["retry_after"] is None, town.report()
    else:
        assert first["retry_after"] == pytest.approx(retry_after, abs=within), town.report()
    delay = first["retry_after"] if backoff is None else backoff
    until = backoff_until(town)
    assert until is not None, town.report()
    assert until.timestamp() == pytest.approx(first["ended_at"] + delay, abs=backoff_within), town.report()
    return first, until


def rate_limited_then_merged(town: AgentTown, retry_after: float | None, *, merge_timeout: float = 120,
                             **first_kwargs) -> dict:
    """A whole rate-limit test but for the CLI's own details: returns the first session's result.

    Asserts what ``rate_limited_first`` does (its keyword arguments pass through), then that the
    bead merges (within ``merge_timeout`` s) in exactly two sessions, the second started no sooner
    than the backoff, and that the rate limit spent none of the bead's attempts.
    """
    first, until = rate_limited_first(town, retry_after, **first_kwargs)
    town.wait_merged(merge_timeout)
    started = town.started()
    assert len(started) == 2 and started[1] >= until.timestamp() - 0.5, town.report()
    assert int(town.bead_state().metadata.get("attempts", 0)) == 0  # a rate limit is not a failed attempt
    return first


def stopped_then_resumed(town: AgentTown, standin: StandIn, *, hold_timeout: float = 60,
                         requests: Callable[[], list[Seen]] | None = None,
                         trim: Callable[[str], str] = lambda prompt: prompt, tool_results: int = 1,
                         paused: bool = False, while_stopped: Callable[[], object] | None = None,
                         more_sessions: bool = False) -> list[Seen]:
    """A whole resume test but for the CLI's own details. The test has started ``town`` with
    ``standin.hold(1)``: the model never answers after the first tool call.

    Once the stand-in holds (within ``hold_timeout`` s), the session's wrapper is sent SIGTERM (what
    the Witness or a deleted pod does), its result is waited for, ``while_stopped`` runs, the
    stand-in is released and the bead must merge. With ``paused`` the rig's scheduler is paused
    from before the stop until after the release, so that no session starts before
    ``while_stopped`` has run.

    Asserts that there were exactly two sessions (at least two with ``more_sessions``), the second
    as the first one's polecat, and that the second session's first request (among ``requests()``,
    by default the stand-in's main requests) carries the first one's conversation: its prompt
    (prompts compared after ``trim``, for a CLI that trims them) and at least ``tool_results``
    tool results. Returns the second session's requests, its first request first.
    """
    town.wait(standin.held.is_set, hold_timeout, "the first session to reach step 1")
    if paused:
        town.ok("scheduler", "pause", "--rig", "calc")
    os.kill(wrapper_pid(town.sessions()[0]), signal.SIGTERM)  # the Witness or a deleted pod stops it
    town.wait(lambda: town.results(), 30, "the stopped session's result")
    if while_stopped is not None:
        while_stopped()
    standin.hold(None)
    if paused:
        town.ok("scheduler", "resume", "--rig", "calc")
    town.wait_merged()
    count = len(town.sessions())
    assert (count >= 2 if more_sessions else count == 2), town.report()
    assert town.polecat(1) == town.polecat(0), town.report()
    seen = (requests or standin.main_requests)()
    second = [s for s in seen if s.conversation.says(trim(town.prompt(1)))]
    assert second and second[0].conversation.says(trim(town.prompt(0))), town.report()
    assert second[0].conversation.tool_results >= tool_results, town.report()
    return second


def merged_unattended(town: AgentTown, standin: StandIn) -> tuple[list[Seen], dict]:
    """The common part of a completes-a-bead test: returns the stand-in's main requests and the
    last session's result, having waited for the bead to merge and asserted that the model was
    asked, that the first request carries the town's prompt unaltered, that the CLI worked
    unattended (three turns, each carrying back every tool result so far, no question asked),
    that its own `gt done` worked in its shell, and that the session completed."""
    town.wait_merged()
    main = standin.main_requests()
    assert main, town.report()
    assert main[0].conversation.says(town.prompt(0)), town.report()
    assert [s.conversation.tool_results for s in main] == [0, 1, 2], town.report()
    assert_done_in_its_shell(town, main)
    result = town.last_result()
    assert result["status"] == "completed", town.report()
    return main, result


def assert_done_in_its_shell(town: AgentTown, main: list[Seen]) -> None:
    """The agent's own `gt done` worked in the CLI's shell: the model read the line it prints. (The
    wrapper records a result the agent's `gt done` failed to, which would hide its failure: GitHub
    Copilot's shell sets safe.bareRepository=explicit, and the ledger's git failed there; Codex's
    ran a login shell, whose PATH had no `gt`.)"""
    assert main[-1].conversation.says(f"{town.bead}: completed; pushed polecat/"), \
        [t[-600:] for t in main[-1].conversation.texts if "gt done" in t or "gt:" in t][-2:]
