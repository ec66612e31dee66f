"""What an idle town costs: the local daemon's CPU with 20 idle rigs, with real git and `gt up`.

A town gets 20 rigs (bare repositories with a commit, `gt rig add`), none with work; `gt up`
starts the daemon, which is left to settle (its waits grow to the idle cap), then its CPU time is
read from /proc/PID/stat over the measured window. Figures:

  daemon + its git   the daemon's CPU (utime + stime) and its reaped children's (cutime + cstime:
                     the git commands it runs, ls-remote above all), % of one core: the figure
                     the issue's baseline measured
  daemon alone       utime + stime only

Prints figures beside the target and the baseline (issue #19); asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET = "< 3 %"
BASELINE = "53 %"  # ls-remote every 0.2 s per rig, a pass every 2 s
GT = [sys.executable, "-m", "gastown.cli.main"]


def git(*args: str, cwd: Path | None = None) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def make_rig(root: Path, name: str) -> Path:
    remote = root / f"{name}.git"
    git("init", "-q", "--bare", "--initial-branch=main", str(remote))
    seed = root / f"{name}-seed"
    git("clone", "-q", str(remote), str(seed))
    (seed / "README.md").write_text("bench\n")
    git("add", "-A", cwd=seed)
    git("-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qm", "seed", cwd=seed)
    git("push", "-q", "origin", "HEAD:main", cwd=seed)
    return remote


def gt(town: Path, *args: str) -> str:
    proc = subprocess.run([*GT, *args, "--town", str(town)], capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise SystemExit(f"gt {' '.join(args)}: {proc.stderr.strip()}")
    return proc.stdout


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(the process's own CPU seconds, its reaped children's), from /proc/PID/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()  # fields from 3 (state) on: utime is 14, cstime 17
    tick = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / tick, (int(fields[13]) + int(fields[14])) / tick


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rigs", type=int, default=20)
    parser.add_argument("--settle", type=float, default=45.0, help="seconds before measuring (the backoff grows)")
    parser.add_argument("--window", type=float, default=60.0,
                        help="seconds measured: two idle intervals, so that each rig's polls are in it")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gt-idle-bench-") as tmp:
        root, town = Path(tmp), Path(tmp) / "town"
        for i in range(args.rigs):
            name = f"rig{i:02d}"
            gt(town, "rig", "add", name, str(make_rig(root, name)), "--runtime", "script", "--agent-arg", "true")
        gt(town, "up")
        pid = int((town / "daemon.pid").read_text().split()[0])
        try:
            time.sleep(args.settle)
            own0, kids0 = cpu_seconds(pid)
            t0 = time.monotonic()
            time.sleep(args.window)
            own1, kids1 = cpu_seconds(pid)
            elapsed = time.monotonic() - t0
        finally:
            gt(town, "down")
    own, kids = 100 * (own1 - own0) / elapsed, 100 * (kids1 - kids0) / elapsed
    print(f"\nidle town: {args.rigs} rigs, the daemon measured {elapsed:.0f} s after {args.settle:.0f} s up")
    print(f"  {'figure':<34}{'now':>10}   {'target':>8}   {'baseline':>8}")
    print(f"  {'daemon + its git, % of a core':<34}{own + kids:>9.1f}%   {TARGET:>8}   {BASELINE:>8}")
    print(f"  {'daemon alone, % of a core':<34}{own:>9.1f}%")

if __name__ == "__main__":
    main()
