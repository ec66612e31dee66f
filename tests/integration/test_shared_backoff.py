"""Two rigs of one town on one API key: a rate limit on one holds the other until it ends."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from gastown.ledger import Ledger, Status

from conftest import GT
from rigs import git

AGENT = """\
import os, pathlib, sys
if os.environ["GT_RIG"].endswith("limited.git") and not pathlib.Path(os.environ["GT_SESSION_DIR"]).parent.joinpath("hit").exists():
    pathlib.Path(os.environ["GT_SESSION_DIR"]).parent.joinpath("hit").write_text("1")
    print("API Error: 429 Too Many Requests; Retry-After: 6")
    sys.exit(1)
pathlib.Path("WORK.md").write_text("done\\n")
"""


def make_remote(root, name):
    remote = root / f"{name}.git"
    git("init", "-q", "--bare", "--initial-branch=main", str(remote))
    seed = root / f"seed-{name}"
    git("clone", "-q", str(remote), str(seed))
    (seed / "README.md").write_text(f"# {name}\n")
    git("add", "-A", cwd=seed)
    git("-c", "user.name=s", "-c", "user.email=s@x", "commit", "-q", "-m", "seed", cwd=seed)
    git("push", "-q", "origin", "HEAD:main", cwd=seed)
    return remote


def test_rigs_sharing_a_key_share_its_rate_limit_backoff(tmp_path):
    agent = tmp_path / "agent.py"
    agent.write_text(AGENT)
    runtimes = tmp_path / "runtimes.yaml"
    runtimes.write_text(f"runtimes:\n  keyed:\n    command: [{sys.executable}, {agent}]\n    apiKeyEnv: [KEYED_API_KEY]\n")
    env = {**os.environ, "GT_TOWN": str(tmp_path / "town"), "GT_RUNTIMES_FILE": str(runtimes),
           "KEYED_API_KEY": "sk-shared-0001"}

    def gt(*args):
        proc = subprocess.run([GT, *args], env=env, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.strip()

    remotes = {name: make_remote(tmp_path, name) for name in ("limited", "bystander")}
    for name, remote in remotes.items():
        gt("rig", "add", name, str(remote), "--runtime", "keyed", "--max-polecats", "1")

    def bead(name, bead_id):
        with Ledger(str(remotes[name]), cache_dir=tmp_path / f"cache-{name}", actor="user t") as lg:
            return lg.beads()[bead_id]

    first = gt("bead", "--rig", str(remotes["limited"]), "create", "Limited work").split()[-1]
    gt("up")
    try:
        deadline = time.monotonic() + 30
        while bead("limited", first).metadata.get("last_outcome") != "rate_limited":
            assert time.monotonic() < deadline, "the limited rig's session never ended rate limited"
            time.sleep(0.2)
        limited_at = time.monotonic()
        second = gt("bead", "--rig", str(remotes["bystander"]), "create", "Bystander work").split()[-1]
        # the bystander's work waits: its key is backing off, though its own rig never hit a limit
        time.sleep(3)
        assert bead("bystander", second).status == Status.OPEN
        deadline = time.monotonic() + 40
        while not (bead("bystander", second).metadata.get("mr") and bead("limited", first).metadata.get("mr")):
            assert time.monotonic() < deadline, "the work was not done after the backoff"
            time.sleep(0.2)
        assert time.monotonic() - limited_at >= 5  # it waited out the server's 6 s
    finally:
        gt("down")
