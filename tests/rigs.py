"""Real rig repositories for tests: a bare remote with code on main, and its ledger."""

from __future__ import annotations

import subprocess
import textwrap
from dataclasses import dataclass
from pathlib import Path

from gastown.ledger import Ledger
from gastown.polecats import Done, EnsureAgent, Hook


def git(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


@dataclass
class Rig:
    remote: Path
    cache: Path
    name: str = "webapp"

    def ledger(self, actor: str = "user tester") -> Ledger:
        return Ledger(str(self.remote), cache_dir=self.cache, actor=actor)

    def hooked_bead(self, title: str, polecat: str = "furiosa", **fields) -> str:
        with self.ledger() as lg:
            lg.apply(EnsureAgent(polecat, self.name, "user tester", "script"))
            bead = lg.create(title, **fields)
            lg.apply(Hook(bead.id, polecat, "user tester"))
            return bead.id

    def branch_file(self, branch: str, path: str) -> str:
        return git("show", f"{branch}:{path}", cwd=self.remote)

    def branches(self) -> list[str]:
        out = git("for-each-ref", "--format=%(refname:short)", "refs/heads", cwd=self.remote)
        return out.splitlines()


def make_rig(root: Path, files: dict[str, str] | None = None) -> Rig:
    remote = root / "webapp.git"
    git("init", "--quiet", "--bare", "--initial-branch=main", str(remote))
    work = root / "seed"
    git("clone", "--quiet", str(remote), str(work))
    for name, text in (files or {"README.md": "# webapp\n"}).items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text(text)
    git("add", "-A", cwd=work)
    git("-c", "user.name=seed", "-c", "user.email=s@x", "commit", "-q", "-m", "seed", cwd=work)
    git("push", "-q", "origin", "HEAD:main", cwd=work)
    return Rig(remote, root / "ledger-cache")


# A gate for merge-queue tests: fails when any mods/*.txt holds the line BAD.
GATE_CHECK = textwrap.dedent("""\
    import pathlib, sys, time
    time.sleep(float(sys.argv[1]) if len(sys.argv) > 1 else 0)
    bad = [p.name for p in sorted(pathlib.Path("mods").glob("*.txt")) if "BAD" in p.read_text()]
    print("checked", len(list(pathlib.Path("mods").glob("*.txt"))), "mods")
    if bad:
        print("FAIL: bad line in", ", ".join(bad))
        sys.exit(1)
""")


def push_mr(rig: Rig, tmp_path: Path, name: str, text: str, files: dict[str, str] | None = None) -> str:
    """A polecat's branch adding mods/NAME.txt, pushed, and its `gt done`: the MR's ID."""
    polecat = f"cat-{name}"
    work = tmp_path / "work" / name
    git("clone", "-q", str(rig.remote), str(work))
    branch = f"polecat/{polecat}/{name}"
    git("checkout", "-q", "-b", branch, cwd=work)
    for path, content in {f"mods/{name}.txt": text, **(files or {})}.items():
        (work / path).write_text(content)
    git("add", "-A", cwd=work)
    git("-c", "user.name=p", "-c", "user.email=p@x", "commit", "-q", "-m", f"add {name}", cwd=work)
    git("push", "-q", "origin", branch, cwd=work)
    commit = git("rev-parse", "HEAD", cwd=work)
    with rig.ledger() as lg:
        lg.apply(EnsureAgent(polecat, rig.name, "user tester", "script"))
        bead = lg.create(f"work {name}")
        lg.apply(Hook(bead.id, polecat, "user tester"))
        mr = lg.apply(Done(bead_id=bead.id, polecat=polecat, session=f"s-{name}", status="completed", branch=branch,
                           target="main", commit=commit, reason="", actor="user tester"))
    return mr.id
