"""Install the agent CLIs the contract suite runs, at the versions the presets pin, from npm.

    python scripts/fetch_agents.py [DIR] [PRESET ...]

Each goes into DIR/<preset>-<version> (default DIR: $GT_AGENTS_DIR, or
~/.cache/gastown/agents), with what it needs to run beside it (omp: bun). An install that
is already there is kept. Without npm it says so once and exits 0: the suite then skips. With
npm, a failed install fails (exit 1).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from gastown.runtimes import PRESETS
from gastown.runtimes.install import agents_dir, folders


def install(root: Path, folder: str, spec: str) -> str:
    dest = root / folder
    if (dest / ".installed").exists():
        return f"{spec}: cached"
    tmp = root / f".{folder}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    proc = subprocess.run(["npm", "install", "--prefix", str(tmp), "--no-audit", "--no-fund", "--loglevel=error",
                           "--no-save", spec], capture_output=True, text=True)
    if proc.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        return f"{spec}: FAILED ({proc.stderr.strip().splitlines()[-1:] or proc.returncode})"
    (tmp / ".installed").write_text(spec + "\n")
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    return f"{spec}: installed"


def main(argv: list[str]) -> int:
    root = Path(argv[0]) if argv and "/" in argv[0] else agents_dir()
    names = [a for a in argv if "/" not in a]
    if shutil.which("npm") is None:
        print("fetch_agents: npm is not installed; the agent contract suite (tests/agents) will be skipped")
        return 0
    root.mkdir(parents=True, exist_ok=True)
    wanted = {folder: spec for name in names or sorted(PRESETS) for folder, spec in folders(name).items()}
    with ThreadPoolExecutor(max_workers=4) as pool:
        lines = list(pool.map(lambda item: install(root, *item), wanted.items()))
    for line in lines:
        print(f"fetch_agents: {line}")
    # npm is there but an install failed: fail, rather than let the suite skip what it could run
    return 1 if any("FAILED" in line for line in lines) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
