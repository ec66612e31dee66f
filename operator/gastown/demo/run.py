"""`make demo`: a town on this machine builds a small library with a convoy of scripted agents.

It runs the real thing, through the same `gt` commands a user types: a sample project becomes
a rig, `gt up` starts the daemon, `gt convoy create --goal` asks the Mayor for a plan (canned
here), polecats (at most 3 at once) work the beads, the merge queue verifies the changes with
the project's own tests, bisects the batch holding a broken change, sends it back with the
failing test's output, and merges the rest; the fixed change merges after. What happens is
printed as the ledger records it, then a summary.

    DEMO_DIR           where the sample project and the town go (default: .demo)
    DEMO_RUNTIME       script (default), or an agent preset (claude, ...) to use a real agent
                       CLI (on PATH, or installed by `make agents`). With its API key in the
                       environment it works against the real API; without one, against a local
                       stand-in of the provider's API that plays the same plan and changes
    DEMO_AGENT_SECONDS how long each scripted agent session works (default 1.0)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .. import convoy as convoys
from ..ledger import Bead, BeadType, Ledger, Status
from ..runtimes import PRESETS, ConfigError, resolve
from ..runtimes.install import bin_dirs
from ..standin.profiles import PROFILES, Profile
from . import model, project

RIG, CONVOY = "stats", "stats-lib"


@dataclass
class Demo:
    root: Path
    runtime: str = "script"
    agent_seconds: float = 1.0
    fill_window: int = 2
    echo: Callable[[str], None] = print
    started: float = field(default_factory=time.monotonic)
    agent_env: dict[str, str] = field(default_factory=dict)  # the CLI's PATH and, played, its settings
    played: str | None = None  # what the stand-in plays, when it does

    @property
    def town(self) -> Path:
        return self.root / "town"

    @property
    def remote(self) -> Path:
        return self.root / f"{RIG}.git"

    def env(self) -> dict[str, str]:
        return {**os.environ, **self.agent_env, "GT_TOWN": str(self.town), "GT_ACTOR": "user demo",
                "DEMO_AGENT_SECONDS": str(self.agent_seconds)}

    def gt(self, *args: str, show: bool = True) -> str:
        """Run a `gt` command as a user would, and show it."""
        if show:
            self.echo(f"$ gt {' '.join(a if ' ' not in a else repr(a) for a in args)}")
        proc = subprocess.run([sys.executable, "-m", "gastown.cli.main", *args], env=self.env(), text=True,
                              capture_output=True, timeout=120)
        if proc.returncode != 0:
            raise DemoError(f"gt {args[0]} failed: {proc.stderr.strip() or proc.stdout.strip()}")
        if show and proc.stdout.strip():
            self.echo("  " + proc.stdout.strip().replace("\n", "\n  "))
        return proc.stdout

    # -- the steps ------------------------------------------------------------------------

    def setup(self) -> None:
        """A fresh sample project (a bare repository with the seed on main) and a town with it as a rig."""
        if self.root.exists():
            shutil.rmtree(self.root)
        seed = self.root / "seed"
        seed.mkdir(parents=True)
        for path, text in project.SEED.items():
            (seed / path).parent.mkdir(parents=True, exist_ok=True)
            (seed / path).write_text(text)
        _git(self.root, "init", "-q", "--bare", "--initial-branch=main", str(self.remote))
        _git(seed, "init", "-q", "--initial-branch=main")
        _git(seed, "add", "-A")
        _git(seed, "-c", "user.name=demo", "-c", "user.email=demo@gastown.local", "commit", "-q", "-m",
             "stats: an empty package")
        _git(seed, "push", "-q", str(self.remote), "main")
        gate = " ".join([sys.executable, *project.GATE_ARGS])
        agent = ["--agent-arg", sys.executable, "--agent-arg", "-m", "--agent-arg", "gastown.demo.agent"] \
            if self.runtime == "script" else []
        self.gt("rig", "add", RIG, str(self.remote), "--runtime", self.runtime, "--max-polecats", "3",
                "--gate", f"test={gate}", *agent)
        queue = self.root / "mergequeue.yaml"
        queue.write_text(f"apiVersion: gastown.dev/v1alpha1\nkind: MergeQueue\nmetadata:\n  name: {RIG}\n"
                         f"spec:\n  rig: {RIG}\n  batchSize: 8\n  fillWindowSeconds: {self.fill_window}\n"
                         "  parallelVerifications: 4\n")
        self.gt("apply", "-f", str(queue))

    def start(self) -> None:
        self.gt("up")

    def stop(self) -> None:
        self.gt("down")

    def order(self) -> None:
        self.gt("convoy", "create", "--rig", RIG, "--name", CONVOY, "--goal", project.GOAL)

    def ledger(self) -> Ledger:
        return Ledger(str(self.remote), cache_dir=self.root / "watch-cache", actor="user demo")

    def follow(self, timeout: float = 600.0) -> Mapping[str, Bead]:
        """Print what the ledger records until the convoy is closed; its final beads."""
        seen: set[str] = set()
        with self.ledger() as ledger:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                tip = ledger.refresh()
                if tip is not None:
                    beads = ledger.snapshot(refresh=False).beads()
                    convoy = beads.get(convoys.convoy_id(ledger.prefix, CONVOY))
                    for entry in reversed(ledger.store.log(tip)):
                        if entry["commit"] not in seen:
                            seen.add(entry["commit"])
                            self._show(entry, beads, (convoy.metadata.get("keys") or {}) if convoy else {})
                    if convoy is not None and convoy.status == Status.CLOSED:
                        return beads
                time.sleep(0.3)
        raise DemoError(f"the convoy did not finish within {timeout:.0f}s; see {self.town}/daemon.log")

    def _show(self, entry: dict, beads: Mapping[str, Bead], keys: Mapping[str, str]) -> None:
        """The ledger commit's lines that tell the story, each with the bead's key in the plan."""
        names = {v: k for k, v in keys.items()}
        for line in entry["message"].splitlines():
            head, _, what = line.partition(": ")
            what = what.removesuffix(f" ({entry['author']})")
            if not head.startswith("bead ") or what.startswith(QUIET):
                continue
            bead = beads.get(head.removeprefix("bead "))
            if bead is None:
                continue
            name = names.get(bead.id) or ("merge queue" if bead.type == BeadType.MERGE_BATCH else "convoy"
                                          if bead.type == BeadType.CONVOY else None)
            if bead.type == BeadType.MERGE_REQUEST:
                name = f"{names.get(bead.metadata.get('source', ''), '?')} MR"
            if name is None:
                continue
            self.echo(f"{time.monotonic() - self.started:6.1f}s  {entry['author']:<18} {name:<14} {what}")

    def summary(self, beads: Mapping[str, Bead]) -> str:
        convoy = next(b for b in beads.values() if b.type == BeadType.CONVOY and b.metadata.get("name") == CONVOY)
        keys = convoy.metadata.get("keys") or {}
        mrs = [b for b in beads.values() if b.type == BeadType.MERGE_REQUEST]
        batches = [b for b in beads.values() if b.type == BeadType.MERGE_BATCH]
        out = [f"Convoy {CONVOY}: {convoy.close_reason} in {time.monotonic() - self.started:.0f}s",
               f"Agents: {self.played or self.runtime}", "", "The Mayor's plan, and who did what:"]
        for key, bead_id in sorted(keys.items(), key=lambda kv: [c.key for c in project.CHANGES].index(kv[0])
                                   if project.change_keyed(kv[0]) else 99):
            bead = beads[bead_id]
            mine = [m for m in mrs if m.metadata.get("source") == bead_id]
            needs = change.needs if (change := project.change_keyed(key)) else ()
            took = (bead.closed_at - bead.created_at).total_seconds() if bead.closed_at else 0
            merged = next((m.metadata.get("merged_commit", "")[:10] for m in mine if m.status == Status.CLOSED), "-")
            rejected = sum(int(m.metadata.get("rejections", 0)) for m in mine)
            out.append(f"  {key:<11} {bead.title:<20} needs {', '.join(needs) or '-':<22} "
                       f"by {', '.join(sorted({str(m.metadata.get('worker')) for m in mine})) or '-':<10} "
                       f"merged {merged}  {took:5.1f}s" + (f"  (rejected {rejected}x first)" if rejected else ""))
        rejections = [m for m in mrs if int(m.metadata.get("rejections", 0))]
        if rejections:
            out += ["", "Rejected by the merge queue, and why:"]
            for m in rejections:
                source = beads[m.metadata["source"]]
                comment = next((c.text for c in reversed(source.comments) if "rejected by the merge queue" in c.text),
                               "")
                failing = [ln for ln in comment.splitlines() if ln.startswith(("FAIL", "ERROR", "AssertionError"))]
                out.append(f"  {source.title} ({m.id}): {m.metadata.get('rejection', {}).get('reason', '')}")
                out += [f"    {ln}" for ln in failing[:4]]
        runs = sum(int(b.metadata.get("total_runs", 0)) for b in batches)
        out += ["", f"Merge queue: {len(batches)} batches, {runs} verification runs, "
                    f"{sum(1 for m in mrs if m.metadata.get('merged_commit'))} merge requests merged.",
                "", "Where to look:",
                f"  the project:   git -C {self.remote} log --oneline --graph main",
                f"  the ledger:    git -C {self.remote} log --oneline gastown/ledger   (or GT_TOWN={self.town} gt bead list --rig {RIG})",
                f"  session logs:  {self.town}/sessions/*/",
                f"  verification:  {self.town}/verify/",
                f"  the daemon:    {self.town}/daemon.log",
                f"  try:           GT_TOWN={self.town} gt status"]
        return "\n".join(out)


class DemoError(RuntimeError):
    pass


# lines that repeat what another line says
QUIET = ("created task", "in_progress -> in_progress", "open -> in_progress: verifying", "merged: merged into",
         "in_progress -> hooked", "convoy stats-lib: completion announced")


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def agent_setup(runtime: str) -> tuple[dict[str, str], Profile | None]:
    """A real agent needs its CLI, and its key or a stand-in: the environment that gives them
    (and the stand-in's profile when it plays the model). Says what is missing, before anything starts."""
    if runtime == "script":
        return {}, None
    try:
        rt = resolve(runtime)
    except ConfigError as e:
        raise DemoError(str(e)) from None
    env: dict[str, str] = {}
    if rt.command and shutil.which(rt.command[0]) is None:
        dirs = bin_dirs(runtime) if runtime in PRESETS else None
        if dirs is None:
            raise DemoError(f"DEMO_RUNTIME={runtime}: `{rt.command[0]}` is not installed"
                            + (" (make agents installs the pinned version)" if rt.package else ""))
        env["PATH"] = os.pathsep.join([*map(str, dirs), os.environ.get("PATH", "")])
    if not rt.api_key_env or any(os.environ.get(k) for k in rt.api_key_env):
        return env, None
    profile = PROFILES.get(runtime)
    if profile is None:
        raise DemoError(f"DEMO_RUNTIME={runtime}: set {' or '.join(rt.api_key_env)} in the environment "
                        f"(no stand-in of its API plays {runtime} yet)")
    return env, profile


def main() -> int:
    root = Path(os.environ.get("DEMO_DIR", ".demo")).resolve()
    runtime = os.environ.get("DEMO_RUNTIME", "script")
    demo = Demo(root, runtime, float(os.environ.get("DEMO_AGENT_SECONDS", "1.0")))
    standin = None
    try:
        demo.agent_env, profile = agent_setup(runtime)
        if profile is not None:
            standin, settings = model.serve(profile)
            demo.agent_env.update(settings)
            demo.played = f"the real {runtime} CLI against a local stand-in of {profile.api} at {standin.url} " \
                          f"(no API key given: the stand-in plays the model with a prepared plan and changes)"
        print(f"gastown demo: a town in {demo.town}, agents: {demo.played or runtime}\n")
        demo.setup()
        demo.start()
        try:
            demo.order()
            print()
            beads = demo.follow()
        finally:
            print()
            demo.stop()
        print("\n" + demo.summary(beads))
    except (DemoError, subprocess.CalledProcessError) as e:
        print(f"demo: {e}", file=sys.stderr)
        return 1
    finally:
        if standin is not None:
            standin.stop()
    return 0
