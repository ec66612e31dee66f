"""What reading a polecat's last commit costs the Witness, which asks on every rig pass.

Prints figures; asserts nothing about time. The same question two ways, on a real worktree
whose HEAD reflog holds COMMITS commits and as many checkouts (a long-lived polecat):

  reflog     gastown.ledger.worktree.last_commit_age: the tail of the worktree's logs/HEAD
  git log    the naive way: `git log -1 --format=%ct` in the worktree, one process per ask
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from gastown.ledger.worktree import last_commit_age


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def polecat_worktree(root: Path, commits: int) -> Path:
    repo, wt = root / "repo", root / "wt"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "-c", "user.name=b", "-c", "user.email=b@b", "commit", "-q", "--allow-empty", "-m", "root")
    git(repo, "worktree", "add", "-q", "--detach", str(wt))
    for i in range(commits):
        git(wt, "checkout", "-q", "-B", f"polecat/p/{i % 50}")
        git(wt, "-c", "user.name=b", "-c", "user.email=b@b", "commit", "-q", "--allow-empty", "-m", f"c{i}")
    return wt


def median(fn, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--commits", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        wt = polecat_worktree(Path(tmp), args.commits)
        size = (Path(git(wt, "rev-parse", "--git-dir")) / "logs" / "HEAD").stat().st_size
        fast = median(lambda: last_commit_age(wt), args.rounds)
        naive = median(lambda: git(wt, "log", "-1", "--format=%ct"), args.rounds)
    print(f"witness: last commit of a worktree with {args.commits} commits (reflog {size // 1024} KiB), "
          f"median of {args.rounds}")
    print(f"  reflog   {fast * 1e3:8.3f} ms")
    print(f"  git log  {naive * 1e3:8.3f} ms   ({naive / fast:.0f}x the reflog read)")


if __name__ == "__main__":
    main()
